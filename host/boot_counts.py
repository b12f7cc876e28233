"""A node's cumulative GOOD / NG per boot -> count deltas that never count twice; pure.

Per boot id the highest cumulative GOOD / NG seen (modulo 2**32) is kept; a heartbeat
contributes max(0, new - highest), so duplicates and reordered frames never count twice, a
new boot id starts from 0, and a late heartbeat of an earlier boot still adds to that boot's
total. A cumulative value "behind" the highest by the modular difference (>= 2**31) is an
older frame and adds nothing. A boot first seen mid-way (a collector with a fresh journal)
counts from 0: a count is never lost.

Each delta comes with `since`: when the previous heartbeat of its boot was made (or the
boot began). The output was made in between; host/losses.py spreads it over that span, so
output made across a gap is output in unknown time instead of inflating performance.
"""

from __future__ import annotations

from typing import NamedTuple

from .protocol import COUNT_MOD

__all__ = ["BOOTS_KEPT", "BootCounts", "Delta"]

_HALF = COUNT_MOD // 2
BOOTS_KEPT = 4  # per node: the most recently counted (a restart seeds no more)


class Delta(NamedTuple):
    good: int
    ng: int
    good_total: int
    ng_total: int
    since: float  # when the output of this delta began to be made (host time)


class BootCounts:
    """The count maxima of one node's last few boots (times in host monotonic seconds)."""

    __slots__ = ("_boots",)

    def __init__(self) -> None:
        # boot id -> [highest good, highest ng, when its last heartbeat was made], least
        # recently used first (a plain dict: an OrderedDict costs ~1 KB more per node)
        self._boots: dict[int, list] = {}

    def heartbeat(self, boot_id: int, good: int, ng: int, made: float,
                  boot_start: float) -> Delta:
        """The delta of a heartbeat made at `made` with cumulative `good` / `ng`."""
        boots = self._boots
        best = boots.get(boot_id)
        if best is None:  # the first heartbeat seen of this boot: it counted from 0
            best = boots[boot_id] = [good, ng, boot_start]
            d_good, d_ng = good, ng
            while len(boots) > BOOTS_KEPT:
                del boots[next(iter(boots))]
        else:
            # A delta "behind" the highest seen is an older or duplicated frame: 0.
            d_good = (good - best[0]) % COUNT_MOD
            if d_good >= _HALF:
                d_good = 0
            d_ng = (ng - best[1]) % COUNT_MOD
            if d_ng >= _HALF:
                d_ng = 0
            best[0] = (best[0] + d_good) % COUNT_MOD
            best[1] = (best[1] + d_ng) % COUNT_MOD
            _to_end(boots, boot_id)
        since = best[2]
        if made > since:
            best[2] = made
        return Delta(d_good, d_ng, best[0], best[1], min(since, made))

    def unchanged(self, boot_id: int, good: int, ng: int) -> bool:
        """True if a heartbeat of `boot_id` with these counts is no delta: the boot's highest
        counts are these (then `heartbeat` would return a zero delta; `made` records it)."""
        best = self._boots.get(boot_id)
        return best is not None and best[0] == good and best[1] == ng

    def made(self, boot_id: int, made: float) -> None:
        """What `heartbeat` does with a zero delta of a known boot: its last heartbeat was
        made at `made` (the next delta's output began then)."""
        best = self._boots[boot_id]
        _to_end(self._boots, boot_id)
        best[2] = max(best[2], made)

    def seed(self, boot_id: int, good_total: int, ng_total: int, made: float) -> None:
        """Raise a boot's maxima to a journaled count event's totals (after a restart)."""
        totals = [good_total % COUNT_MOD, ng_total % COUNT_MOD]
        best = self._boots.get(boot_id)
        if best is None:
            self._boots[boot_id] = [*totals, made]
            return
        for i, value in enumerate(totals):
            if 0 < (value - best[i]) % COUNT_MOD < _HALF:
                best[i] = value


def _to_end(boots: dict, boot_id: int) -> None:
    """Make `boot_id` the most recently used (a no-op when it is: the usual case)."""
    if next(reversed(boots)) != boot_id:
        boots[boot_id] = boots.pop(boot_id)
