"""Refused board requests: one rate-limited log line each, and a budget per client address
past which the address is barred (host/board/limits.py holds its connections)."""

from __future__ import annotations

import logging
import time

__all__ = ["Refusals"]

log = logging.getLogger(__name__)

_LOG_BURST = 10        # refusal lines logged back to back at most...
_LOG_PER_S = 1.0       # ...then this many a second; the rest are counted in the next line
# Refused requests one address may cause back to back, then this many a second. Past that
# its new connections are held unanswered (limits.Gate): junk costs the collector's loop
# an accept, not a parse, a response and a log line each. (A browser gets a 404 for its
# favicon; a typo in the PIN is a 403.)
REFUSAL_BURST = 10
REFUSALS_PER_S = 1.0
_MAX_TRACKED = 4096    # addresses whose refusals are counted; the longest quiet go first


class _Bucket:
    """A token bucket refilled `rate` a second up to `burst`; it may go into debt down to
    -burst (requests already in flight when it ran dry), which keeps it empty longer."""

    __slots__ = ("at", "burst", "rate", "tokens")

    def __init__(self, burst: float, rate: float, now: float):
        self.burst, self.rate, self.tokens, self.at = burst, rate, burst, now

    def level(self, now: float) -> float:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        return self.tokens

    def take(self, now: float) -> bool:
        """One token if there is one."""
        if self.level(now) < 1:
            return False
        self.tokens -= 1
        return True

    def charge(self, now: float) -> None:
        """One token, or one more of debt."""
        self.tokens = max(-self.burst, self.level(now) - 1)


class Refusals:
    """Refused requests: one log line each, at most _LOG_BURST at once and _LOG_PER_S after
    that (lines held back are counted in the next one, so an attack cannot flood the log);
    and per address a budget of REFUSAL_BURST, refilled REFUSALS_PER_S, past which the
    address is `barred`."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._log = _Bucket(_LOG_BURST, _LOG_PER_S, clock())
        self._held = 0
        self._by_address: dict[str, _Bucket] = {}  # least recently refused first
        self.unanswered = 0  # connections closed at once, from barred addresses

    def refused(self, who: str, status: int, what: str) -> None:
        now = self._clock()
        bucket = self._by_address.pop(who, None) or _Bucket(REFUSAL_BURST, REFUSALS_PER_S, now)
        bucket.charge(now)
        self._by_address[who] = bucket
        if len(self._by_address) > _MAX_TRACKED:
            del self._by_address[next(iter(self._by_address))]
        self._line(status, who, what, now)

    def standing(self, who: str) -> float:
        """How much refusal budget `who` has left (REFUSAL_BURST: never refused lately)."""
        bucket = self._by_address.get(who)
        return REFUSAL_BURST if bucket is None else bucket.level(self._clock())

    def barred(self, who: str) -> bool:
        """Whether `who` has used up its refusals: then its connection is held, not served."""
        bucket = self._by_address.get(who)
        if bucket is None or bucket.level(self._clock()) >= 1:
            return False
        self.unanswered += 1
        self._line(429, who, "too many refused requests: its connections are held "
                   "unanswered, then reset", self._clock())
        return True

    def _line(self, status: int, who: str, what: str, now: float) -> None:
        if not self._log.take(now):
            self._held += 1
            return
        more = f" ({self._held} more refused, not logged)" if self._held else ""
        self._held = 0
        log.warning("Andon board: %d for %s: %s%s", status, who, what, more)
