"""Node uptime -> host wall time, per boot, from the frames that arrived fastest; pure.

Every frame gives one sample: offset = rx_s - uptime_s. Network and queueing delay, and
retransmission of a frame that waited in the node's ring, only ever make a frame arrive
later, so a sample's offset is the true offset plus a delay >= 0. The lowest offsets are the
best estimates (the NTP/PTP "minimum filter").

The ESP32 crystal drifts (20-50 ppm: up to 4 s a day), so the true offset is a slow line, not
a constant. Samples are kept as one minimum per `bucket_s` of uptime over the last
`window_s`; the estimate is the lower envelope of those minima:

- while they span less than `fit_span_s`, a constant: the lowest offset in the window (then
  the estimate is exactly true offset + the smallest delay seen, never more);
- afterwards, a line under every bucket minimum, touching the lower convex hull of the
  minima on the edge above their mean uptime. That line minimises the summed gap to the
  minima (the linear-programming skew estimator of Moon, Skelly and Towsley, 1999), so
  delayed buckets lie above it and never pull it up; its slope is the crystal drift,
  clamped to +-`max_drift_ppm`.

The uncertainty is the median gap between the recent samples and the estimate: how far the
typical frame sits above the fastest one. The true offset lies below the estimate by the
one-way delay of the fastest frame, which one-way timing cannot observe (a few ms on a LAN).

A sample later than the estimate by more than `late_s` (plus the most the crystal can have
drifted since the newest bucket) is a frame that waited: in the node's outbox while its link
or the collector was down, or in a queue. It never moves the window forward and is not kept:
otherwise the first frame a node resends after an outage would push every good bucket out of
the window and be mapped to its own arrival time, and so would the older lamp changes that
follow it; kept in an empty bucket it would bend the drift line. The next fresh frame moves
the window on.

The anchor is given host *monotonic* time (host/hostclock.py): a wall-clock step never
reaches it, so it never looks like a jump in the node's offset.

A new boot id, and a HELLO within a boot (a watchdog or soft reset: uptime continues only
approximately), starts a new anchor; `NodeClock` keeps them per (boot id, first seq), so a
late frame of an older boot or epoch is still mapped with the anchor it belongs to.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass
from itertools import pairwise
from statistics import median

_DEFAULT_BUCKET_S = 60.0
_DEFAULT_WINDOW_S = 1800.0
_DEFAULT_FIT_SPAN_S = 600.0
_DEFAULT_MAX_DRIFT_PPM = 200.0
_DEFAULT_LATE_S = 2.0
_RECENT_SAMPLES = 64
_BOOTS_KEPT = 4
_EPOCHS_KEPT = 4


@dataclass(frozen=True)
class AnchorFigures:
    """A node's clock figures for health events (milliseconds, drift in ppm)."""

    offset_ms: float
    uncertainty_ms: float
    drift_ppm: float
    samples: int


class ClockAnchor:
    """Maps one boot epoch's uptime to wall time; see the module docstring.

    One per node and boot epoch, so it is kept small (~2 KB; a collector may hold 10,000):
    slots, and the bucket minima in a ring of plain doubles rather than a dict of tuples
    (which took ~4.4 KB a node once the window was full).

    Args:
        bucket_s: uptime span that keeps one minimum sample.
        window_s: uptime span of buckets kept (older ones are dropped).
        fit_span_s: bucket span needed before the drift is fitted.
        max_drift_ppm: bound on the fitted drift (a crystal is within +-50 ppm).
        late_s: a sample this much above the estimate waited somewhere (module docstring).
    """

    __slots__ = ("_bo", "_bt", "_bucket_s", "_count", "_fit_span_s", "_last_line", "_late_s",
                 "_line", "_max_slope", "_n_buckets", "_newest", "_recent", "_recent_at",
                 "_span", "samples")

    def __init__(self, bucket_s: float = _DEFAULT_BUCKET_S, window_s: float = _DEFAULT_WINDOW_S,
                 fit_span_s: float = _DEFAULT_FIT_SPAN_S,
                 max_drift_ppm: float = _DEFAULT_MAX_DRIFT_PPM, late_s: float = _DEFAULT_LATE_S):
        if bucket_s <= 0 or window_s < bucket_s or fit_span_s <= 0 or max_drift_ppm < 0:
            raise ValueError("anchor needs bucket_s > 0, window_s >= bucket_s, fit_span_s > 0 "
                             "and max_drift_ppm >= 0")
        self._bucket_s = bucket_s
        self._n_buckets = int(window_s // bucket_s) + 1
        self._fit_span_s = fit_span_s
        self._max_slope = max_drift_ppm * 1e-6
        self._late_s = late_s
        # Bucket minima: bucket index i (within the window) in slot i % _n_buckets, its
        # uptime in _bt and offset in _bo; NaN uptime: empty. The index is floor(t / bucket).
        self._bt = array("d", [math.nan]) * self._n_buckets
        self._bo = array("d", [math.nan]) * self._n_buckets
        self._count = 0  # buckets filled
        # The last _RECENT_SAMPLES (uptime, offset) samples, a ring of plain doubles: a deque
        # of float tuples took ~6.6 KB a node, 66 MB at 10,000 nodes.
        self._recent = array("d")  # t0, off0, t1, off1, ...
        self._recent_at = 0  # where the next sample goes once the ring is full
        self._line: tuple[float, float] | None = None  # (slope, intercept), cached
        self._last_line: tuple[float, float] | None = None  # the latest, even if stale
        # While the cached line is the constant estimate: bounds on the bucket minima's
        # uptimes (lowest, highest), for the fast path of `_lower`; None otherwise.
        self._span: tuple[float, float] | None = None
        self._newest: int | None = None  # highest bucket index, kept rather than max()ed
        self.samples = 0

    @property
    def ready(self) -> bool:
        return self._count > 0

    def _minima(self) -> list[tuple[float, float]]:
        """The bucket minima (uptime, offset), unordered."""
        return [(t, o) for t, o in zip(self._bt, self._bo) if not math.isnan(t)]

    def observe(self, uptime_ms: int, rx_s: float) -> None:
        """Take one frame's (uptime, receive time) sample."""
        t = uptime_ms / 1000.0
        off = rx_s - t
        self.samples += 1
        recent = self._recent
        if len(recent) < 2 * _RECENT_SAMPLES:
            recent.append(t)
            recent.append(off)
        else:
            i = self._recent_at
            recent[i], recent[i + 1] = t, off
            self._recent_at = (i + 2) % (2 * _RECENT_SAMPLES)
        idx = math.floor(t / self._bucket_s)
        newest = idx if self._newest is None else self._newest
        if idx <= newest - self._n_buckets:
            return  # older than the window: the window already has better information
        # Against the latest line, even if a new minimum made it stale since: for a frame that
        # waited seconds it is near enough, and refitting for every sample would cost twice.
        line = self._line or self._last_line
        if (line is None or off - (line[1] + line[0] * t) > self._late_s) and (
                self._count and self._waited(t, off)):
            return  # its offset holds the wait: it would only bend the drift line
        n, bucket_s, bts = self._n_buckets, self._bucket_s, self._bt
        slot = idx % n
        bt = bts[slot]
        same = not math.isnan(bt) and math.floor(bt / bucket_s) == idx
        if not same or off < self._bo[slot]:
            if not same:  # empty, or an older bucket out of the window in its slot
                self._count += 1 if math.isnan(bt) else 0
            bts[slot], self._bo[slot] = t, off
            self._lower(t, off)
            if not same and not math.isnan(bt):  # that older bucket went, as below
                self._line = None
        if idx > newest or self._newest is None:
            self._newest = idx
            # the buckets of the old window (newest - n, newest] that left it are emptied
            for old in range(newest - n + 1, min(newest, idx - n) + 1):
                bt = bts[old % n]
                if not math.isnan(bt) and math.floor(bt / bucket_s) == old:
                    bts[old % n] = math.nan
                    self._count -= 1
                    self._line = None

    def _waited(self, t: float, off: float) -> bool:
        """Did this sample's frame wait somewhere (module docstring)?"""
        slope, intercept = self._line or self._fit()
        t_new = (self._newest + 1) * self._bucket_s
        drift = self._max_slope * max(0.0, t - t_new)
        return off - (intercept + slope * t) > self._late_s + drift

    def _lower(self, t: float, off: float) -> None:
        """A bucket minimum became (t, off): drop the cached line, or lower it in place.

        Frames that keep arriving sooner than the ones before (a node's backlog draining, a
        collector catching up) lower a bucket minimum on nearly every frame. While the
        estimate is the constant one and (t, off) keeps the minima's uptime span under
        fit_span_s, the new constant is just min(old, off): no re-sort of the buckets.
        """
        line, span = self._line, self._span
        if line is not None and span is not None:
            lo, hi = min(span[0], t), max(span[1], t)
            if hi - lo < self._fit_span_s:  # bounds of the true span: still under it
                self._span = (lo, hi)
                if off < line[1]:
                    self._line = self._last_line = (0.0, off)
                return
        self._line = None

    def offset_s(self, uptime_ms: int) -> float:
        """Estimated wall - uptime (seconds) at `uptime_ms`. Raises LookupError before a sample."""
        slope, intercept = self._line or self._fit()
        return intercept + slope * (uptime_ms / 1000.0)

    def to_wall(self, uptime_ms: int) -> float:
        """Wall time (epoch s) of node uptime `uptime_ms` in this epoch."""
        t = uptime_ms / 1000.0
        slope, intercept = self._line or self._fit()  # offset_s, inlined: once per frame
        return t + (intercept + slope * t)

    def figures(self) -> AnchorFigures:
        """Offset at the newest sample, uncertainty and drift, for a health event."""
        slope, intercept = self._fit()
        t_new = max(t for t, _ in self._minima())
        recent = self._recent
        gaps = [recent[i + 1] - (intercept + slope * recent[i]) for i in range(0, len(recent), 2)]
        return AnchorFigures(offset_ms=(intercept + slope * t_new) * 1000.0,
                             uncertainty_ms=max(0.0, median(gaps)) * 1000.0,
                             drift_ppm=slope * 1e6, samples=self.samples)

    def _fit(self) -> tuple[float, float]:
        if self._line is None:
            if not self._count:
                raise LookupError("clock anchor has no sample yet")
            pts = sorted(self._minima())
            slope = 0.0
            self._span = (pts[0][0], pts[-1][0])
            if pts[-1][0] - pts[0][0] >= self._fit_span_s:
                slope = max(-self._max_slope, min(self._max_slope, _hull_slope(pts)))
                self._span = None
            self._line = self._last_line = (slope, min(off - slope * t for t, off in pts))
        return self._line


def _hull_slope(pts: list[tuple[float, float]]) -> float:
    """Slope of the lower convex hull edge above the mean of `pts` (sorted by x, >= 2)."""
    hull: list[tuple[float, float]] = []
    for p in pts:
        while len(hull) >= 2 and _cross(hull[-2], hull[-1], p) <= 0:
            hull.pop()
        hull.append(p)
    mean_t = sum(t for t, _ in pts) / len(pts)
    for (t0, y0), (t1, y1) in pairwise(hull):
        if t0 <= mean_t <= t1:
            return (y1 - y0) / (t1 - t0)
    return 0.0


def _cross(o: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


class NodeClock:
    """The anchors of one node: per boot id, one per epoch (a HELLO starts an epoch)."""

    __slots__ = ("_boots", "_last", "_options")

    def __init__(self, **anchor_options: float):
        self._options = anchor_options
        # boot id -> [(first seq, anchor)] sorted by first seq; least recently used boot
        # first (a plain dict: an OrderedDict costs ~1 KB more per node).
        self._boots: dict[int, list[tuple[int, ClockAnchor]]] = {}
        self._last: tuple[int, list[tuple[int, ClockAnchor]]] | None = None  # most recent

    def hello(self, boot_id: int, seq: int) -> None:
        """A HELLO at `seq`: a reset, so uptime from here on gets a fresh anchor."""
        epochs = self._epochs(boot_id)
        if not any(first == seq for first, _ in epochs):
            if len(epochs) == 1 and not epochs[0][1].ready:
                epochs[0] = (min(seq, epochs[0][0]), epochs[0][1])
            else:
                epochs.append((seq, ClockAnchor(**self._options)))
                epochs.sort(key=lambda e: e[0])
                del epochs[:-_EPOCHS_KEPT]

    def anchor(self, boot_id: int, seq: int) -> ClockAnchor:
        """The anchor of the epoch that frame (boot_id, seq) belongs to."""
        epochs = self._epochs(boot_id)
        chosen = epochs[0][1]
        if len(epochs) == 1:  # no reset in this boot: the usual case
            return chosen
        for first, anchor in epochs:
            if first <= seq:
                chosen = anchor
        return chosen

    def observe(self, boot_id: int, seq: int, uptime_ms: int, rx_s: float) -> ClockAnchor:
        """Feed a frame's sample to its anchor and return that anchor."""
        anchor = self.anchor(boot_id, seq)
        anchor.observe(uptime_ms, rx_s)
        return anchor

    def _epochs(self, boot_id: int) -> list[tuple[int, ClockAnchor]]:
        last = self._last
        if last is not None and last[0] == boot_id:  # most recently used: nothing to move
            return last[1]
        epochs = self._boots.get(boot_id)
        if epochs is None:
            epochs = self._boots[boot_id] = [(0, ClockAnchor(**self._options))]
            while len(self._boots) > _BOOTS_KEPT:
                del self._boots[next(iter(self._boots))]
        else:  # now the most recently used
            del self._boots[boot_id]
            self._boots[boot_id] = epochs
        self._last = (boot_id, epochs)
        return epochs
