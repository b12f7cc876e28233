"""The Andon board's HTTP limits: aiohttp's parser limits, connection caps per client address,
live-viewer slots sized from RLIMIT_NOFILE, and one rate-limited log line per refusal."""

from __future__ import annotations

import logging
import resource
import time

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong

from ..errors import ConfigError
from .auth import client_key

__all__ = ["Connection", "ConnectionGuard", "RefusalLog", "handler_args", "viewer_slots"]

log = logging.getLogger(__name__)

# aiohttp's request parser limits. A board request from a browser is a short line and about
# 20 headers without cookies; these bound what one connection can make the parser hold to
# MAX_HEADERS x MAX_FIELD_SIZE (kept twice: raw and decoded), about 0.5 MB.
MAX_LINE_SIZE = 8190
MAX_FIELD_SIZE = 8190
MAX_HEADERS = 32
MAX_BODY = 4096  # client_max_size: a stop reason is under 300 bytes
# aiohttp's keepalive timer runs from the moment a connection opens: one that has not sent
# a whole request by then (slow headers) is closed, as is one idle this long between requests.
KEEPALIVE_S = 10.0
LINGER_S = 1.0  # reading an unread body after answering, at most
BODY_TIMEOUT_S = 5.0
SHUTDOWN_S = 1.0

# Connections without a request in progress (headers still arriving, or keep-alive). Past
# MAX_IDLE the oldest idle connection of the address holding the most is closed, so a
# flood of idle connections from one place costs only that place its own.
MAX_IDLE = 64
MAX_BUSY = 64          # plain requests (not the live stream) handled at once
MAX_PER_ADDRESS = 16   # requests in progress from one address, live streams included
# File descriptors left for the journal, UDP, serial ports, the forwarder and logging.
RESERVED_FDS = 128
MAX_AUTO_SLOTS = 1000  # live viewers when not configured: more screens than any plant has

_LOG_BURST = 10        # refusal lines logged back to back at most...
_LOG_PER_S = 1.0       # ...then this many a second; the rest are counted in the next line


def handler_args() -> dict:
    """aiohttp RequestHandler arguments: the parser limits and timeouts above, no access log."""
    return {"max_line_size": MAX_LINE_SIZE, "max_field_size": MAX_FIELD_SIZE,
            "max_headers": MAX_HEADERS, "keepalive_timeout": KEEPALIVE_S,
            "lingering_time": LINGER_S, "access_log": None}


def viewer_slots(configured: int | None, nofile: int | None = None) -> int:
    """Live board viewers (SSE streams) at once: `configured`, or by default what the open
    file limit leaves after everything else (at most MAX_AUTO_SLOTS).

    Raises ConfigError when the limit (systemd's LimitNOFILE) is too low for them.
    """
    if nofile is None:
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if nofile == resource.RLIM_INFINITY:
        nofile = 1 << 20
    others = RESERVED_FDS + MAX_IDLE + MAX_BUSY
    room = nofile - others
    want = configured if configured is not None else 1
    if want > room:
        what = f"board.sse_slots = {configured}" if configured is not None else "the board"
        raise ConfigError(f"{what} needs an open-file limit of at least {others + want} "
                          f"(systemd: LimitNOFILE); it is {nofile}")
    return configured if configured is not None else min(MAX_AUTO_SLOTS, room)


class RefusalLog:
    """One line per refused request, at most _LOG_BURST at once and _LOG_PER_S after that;
    lines held back are counted in the next one, so an attack cannot flood the log."""

    def __init__(self, clock=time.monotonic):
        self._clock, self._tokens, self._at, self._held = clock, float(_LOG_BURST), clock(), 0

    def refused(self, who: str, status: int, what: str) -> None:
        now = self._clock()
        self._tokens = min(_LOG_BURST, self._tokens + (now - self._at) * _LOG_PER_S)
        self._at = now
        if self._tokens < 1:
            self._held += 1
            return
        self._tokens -= 1
        more = f" ({self._held} more refused, not logged)" if self._held else ""
        self._held = 0
        log.warning("Andon board: %d for %s: %s%s", status, who, what, more)


class ConnectionGuard:
    """Counts the board's connections per client address; closes idle ones past MAX_IDLE and
    refuses requests past MAX_BUSY / MAX_PER_ADDRESS (see `begin`)."""

    def __init__(self, max_idle: int = MAX_IDLE, max_busy: int = MAX_BUSY,
                 per_address: int = MAX_PER_ADDRESS):
        self.max_idle, self.max_busy, self.per_address = max_idle, max_busy, per_address
        self._idle: dict[str, dict[Connection, None]] = {}  # address -> idle, oldest first
        self._idle_n = 0
        self._busy: dict[str, int] = {}
        self.busy_plain = 0
        self.closed_idle = 0  # idle connections closed to make room (for tests and logs)

    @property
    def idle(self) -> int:
        return self._idle_n

    def opened(self, conn: Connection) -> None:
        self._park(conn)
        while self._idle_n > self.max_idle:
            heaviest = max(self._idle.values(), key=len)
            oldest = next(iter(heaviest))
            self._unpark(oldest)
            self.closed_idle += 1
            oldest.force_close()

    def closed(self, conn: Connection) -> None:
        self._unpark(conn)

    def begin(self, conn: Connection, plain: bool) -> str | None:
        """A request starts on `conn`: None, or why it must be refused (then do not `end`)."""
        who = conn.who
        if self._busy.get(who, 0) >= self.per_address:
            return f"{self.per_address} requests from one address at once at most"
        if plain and self.busy_plain >= self.max_busy:
            return "too many requests at once"
        self._unpark(conn)
        self._busy[who] = self._busy.get(who, 0) + 1
        self.busy_plain += plain
        return None

    def end(self, conn: Connection, plain: bool) -> None:
        who = conn.who
        left = self._busy.get(who, 1) - 1
        if left:
            self._busy[who] = left
        else:
            self._busy.pop(who, None)
        self.busy_plain -= plain
        if conn.transport is not None:  # keep-alive: idle again, as the newest
            self._park(conn)

    def _park(self, conn: Connection) -> None:
        conns = self._idle.setdefault(conn.who, {})
        if conn not in conns:
            conns[conn] = None
            self._idle_n += 1

    def _unpark(self, conn: Connection) -> None:
        conns = self._idle.get(conn.who)
        if conns is not None and conn in conns:
            del conns[conn]
            self._idle_n -= 1
            if not conns:
                del self._idle[conn.who]


class Connection(web.RequestHandler):
    """aiohttp's per-connection protocol, counted by a ConnectionGuard, answering a request
    the parser refuses (line or header too long, too many headers, not HTTP) with a JSON 400
    and one rate-limited log line instead of a traceback."""

    def __init__(self, guard: ConnectionGuard, refusals: RefusalLog, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.guard, self.refusals, self.who = guard, refusals, "?"

    def connection_made(self, transport) -> None:
        peer = transport.get_extra_info("peername")
        self.who = client_key(peer[0] if peer else None)
        super().connection_made(transport)
        self.guard.opened(self)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.guard.closed(self)
        super().connection_lost(exc)

    def handle_error(self, request, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if status >= 500:  # a bug: aiohttp logs it with its traceback
            return super().handle_error(request, status, exc, message)
        if isinstance(exc, LineTooLong):
            what = f"request line or header longer than {MAX_FIELD_SIZE} bytes"
        else:
            what = str(getattr(exc, "message", "") or message or "bad request")
            what = " ".join(what.split())[:120]
        self.refusals.refused(self.who, status, what)
        resp = web.json_response({"error": what}, status=status)
        resp.force_close()
        return resp
