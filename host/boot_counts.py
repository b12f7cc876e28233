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


class BootCounts(list):
    """The count maxima of one node's last few boots (times in host monotonic seconds).

    Per boot, least recently used first, four items in one flat list, which is this object
    itself: boot id, highest good, highest ng, when its last heartbeat was made. A node has
    one boot at a time: a dict of lists took ~310 bytes a node, this list ~90 (an object
    holding it, 40 more). Only the methods below change it.
    """

    __slots__ = ()

    def _at(self, boot_id: int) -> int:
        """Where `boot_id`'s entry begins, now the most recently used; -1: none."""
        b = self
        i = len(b) - 4
        if i >= 0 and b[i] == boot_id:  # the usual case
            return i
        for j in range(i - 4, -1, -4):
            if b[j] == boot_id:
                b += b[j:j + 4]
                del b[j:j + 4]
                return i
        return -1

    def heartbeat(self, boot_id: int, good: int, ng: int, made: float,
                  boot_start: float) -> Delta:
        """The delta of a heartbeat made at `made` with cumulative `good` / `ng`."""
        b = self
        i = self._at(boot_id)
        if i < 0:  # the first heartbeat seen of this boot: it counted from 0
            b += (boot_id, good, ng, boot_start)
            d_good, d_ng = good, ng
            if len(b) > 4 * BOOTS_KEPT:
                del b[:-4 * BOOTS_KEPT]
            i = len(b) - 4
        else:
            # A delta "behind" the highest seen is an older or duplicated frame: 0.
            d_good = (good - b[i + 1]) % COUNT_MOD
            if d_good >= _HALF:
                d_good = 0
            d_ng = (ng - b[i + 2]) % COUNT_MOD
            if d_ng >= _HALF:
                d_ng = 0
            b[i + 1] = (b[i + 1] + d_good) % COUNT_MOD
            b[i + 2] = (b[i + 2] + d_ng) % COUNT_MOD
        since = b[i + 3]
        if made > since:
            b[i + 3] = made
        return Delta(d_good, d_ng, b[i + 1], b[i + 2], min(since, made))

    def unchanged(self, boot_id: int, good: int, ng: int) -> bool:
        """True if a heartbeat of `boot_id` with these counts is no delta: the boot's highest
        counts are these (then `heartbeat` would return a zero delta; `made` records it)."""
        b = self
        i = len(b) - 4
        if i < 0 or b[i] != boot_id:
            i = self._find(boot_id)
        return i >= 0 and b[i + 1] == good and b[i + 2] == ng

    def made(self, boot_id: int, made: float) -> None:
        """What `heartbeat` does with a zero delta of a known boot: its last heartbeat was
        made at `made` (the next delta's output began then)."""
        i = self._at(boot_id)
        if i < 0:
            raise KeyError(boot_id)
        b = self
        b[i + 3] = max(b[i + 3], made)

    def seed(self, boot_id: int, good_total: int, ng_total: int, made: float) -> None:
        """Raise a boot's maxima to a journaled count event's totals (after a restart)."""
        totals = (good_total % COUNT_MOD, ng_total % COUNT_MOD)
        b = self
        i = self._find(boot_id)
        if i < 0:  # the most recently used from now on, as a heartbeat's would be
            b += (boot_id, *totals, made)
            return
        for k, value in enumerate(totals, start=i + 1):
            if 0 < (value - b[k]) % COUNT_MOD < _HALF:
                b[k] = value

    def _find(self, boot_id: int) -> int:
        """Where `boot_id`'s entry begins (its place unchanged); -1: none."""
        b = self
        for j in range(len(b) - 4, -1, -4):
            if b[j] == boot_id:
                return j
        return -1
