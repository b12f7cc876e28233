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

The uncertainty is the median gap between the recent samples (the last 32: five minutes of
heartbeats every 10 s) and the estimate: how far the typical frame sits above the fastest
one. The true offset lies below the estimate by the one-way delay of the fastest frame,
which one-way timing cannot observe (a few ms on a LAN).

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

_DEFAULT_BUCKET_S = 60.0
_DEFAULT_WINDOW_S = 1800.0
_DEFAULT_FIT_SPAN_S = 600.0
_DEFAULT_MAX_DRIFT_PPM = 200.0
_DEFAULT_LATE_S = 2.0
_RECENT_SAMPLES = 32
# The single-precision offsets are kept within this of their reference (ClockAnchor._m)
_REBASE_S = 16.0
_BOOTS_KEPT = 4
_EPOCHS_KEPT = 4


@dataclass(frozen=True)
class AnchorFigures:
    """A node's clock figures for health events (milliseconds, drift in ppm)."""

    offset_ms: float
    uncertainty_ms: float
    drift_ppm: float
    samples: int


class _Options:
    """An anchor's settings, shared by every anchor with the same ones (10,000 nodes: one)."""

    __slots__ = ("bucket_s", "fit_span_s", "late_s", "max_slope", "n_buckets")

    def __init__(self, bucket_s: float, window_s: float, fit_span_s: float,
                 max_drift_ppm: float, late_s: float):
        if bucket_s <= 0 or window_s < bucket_s or fit_span_s <= 0 or max_drift_ppm < 0:
            raise ValueError("anchor needs bucket_s > 0, window_s >= bucket_s, fit_span_s > 0 "
                             "and max_drift_ppm >= 0")
        self.bucket_s = bucket_s
        self.n_buckets = int(window_s // bucket_s) + 1
        self.fit_span_s = fit_span_s
        self.max_slope = max_drift_ppm * 1e-6
        self.late_s = late_s


_SHARED: dict[tuple[float, ...], _Options] = {}
_NAN = math.nan
_isnan = math.isnan


def _options(*args: float) -> _Options:
    opts = _SHARED.get(args)
    if opts is None:
        opts = _Options(*args)
        if len(_SHARED) < 64:  # tests try many; a collector uses one
            _SHARED[args] = opts
    return opts


class ClockAnchor:
    """Maps one boot epoch's uptime to wall time; see the module docstring.

    One per node and boot epoch, so it is kept small (~0.8 KB; a collector may hold 10,000):
    slots, settings shared, and the numbers it keeps in two arrays of a fixed size: a few
    doubles for the line and a reference sample, single-precision floats for the bucket minima
    and the recent samples (a dict of bucket tuples took ~4.4 KB a node; three arrays and the
    cached lines as tuples ~2.3 KB; one array of doubles ~1.7 KB; the minima in doubles and
    64 recent samples ~1.3 KB; 64 recent samples ~1.05 KB: 32 halve them, and the floats
    then fit in 512 bytes, which Python's small-object allocator serves without malloc's
    overhead).

    Args:
        bucket_s: uptime span that keeps one minimum sample.
        window_s: uptime span of buckets kept (older ones are dropped).
        fit_span_s: bucket span needed before the drift is fitted.
        max_drift_ppm: bound on the fitted drift (a crystal is within +-50 ppm).
        late_s: a sample this much above the estimate waited somewhere (module docstring).
    """

    # _a (doubles): the cached line (slope, intercept; NaN: none), the latest line even if
    # stale (NaN: none yet), while the cached line is the constant estimate bounds on the
    # minima's uptimes (lowest, highest; NaN: none) for the fast path of `_lower`, and the
    # reference sample (uptime, offset): the first sample, its offset moved to a bucket
    # minimum whenever one lies more than _REBASE_S from it (`_rebase`); then the number of
    # samples and the highest bucket index ("newest"; NaN: none), kept rather than max()ed
    # (as floats, exact below 2**53: as two ints in slots they took 64 bytes more a node).
    # _m (single precision), for n buckets: [0, n) each bucket minimum's uptime less its
    # bucket's start, bucket index i (within the window) in slot i % n, NaN: empty (the index
    # is floor(t / bucket); a slot's is the one in the window (newest - n, newest] that
    # falls in it); [n, 2n) their offsets less the reference's; then the last
    # _RECENT_SAMPLES samples as t0, off0, t1, off1, ... (a ring, _recent_n of them so far),
    # each less the reference sample's. A float's 24 bits cost a minimum's uptime at most
    # 4 us within its minute and its offset at most 1 us (within 16 s of the reference; the
    # first sample may have waited an hour, and the crystal drifts up to 4 s a day): far
    # below a frame's delay, where doubles took 0.5 KB a node. The recent samples only feed
    # the uncertainty, as gaps above the line: there the uptime's rounding costs at most
    # max_drift x its ulp (25 us after 49 days of uptime at 50 ppm).
    __slots__ = ("_a", "_count", "_m", "_opts", "_recent_at", "_recent_n")

    def __init__(self, bucket_s: float = _DEFAULT_BUCKET_S, window_s: float = _DEFAULT_WINDOW_S,
                 fit_span_s: float = _DEFAULT_FIT_SPAN_S,
                 max_drift_ppm: float = _DEFAULT_MAX_DRIFT_PPM, late_s: float = _DEFAULT_LATE_S):
        self._opts = opts = _options(bucket_s, window_s, fit_span_s, max_drift_ppm, late_s)
        n = opts.n_buckets
        self._a = array("d", [_NAN]) * 10
        self._a[8] = 0.0  # samples
        self._m = array("f", [_NAN]) * (2 * n + 2 * _RECENT_SAMPLES)
        self._count = 0  # buckets filled
        self._recent_n = 0  # samples in the ring
        self._recent_at = 0  # where the next sample goes once the ring is full

    @property
    def ready(self) -> bool:
        return self._count > 0

    @property
    def samples(self) -> int:
        return int(self._a[8])

    def _minima(self) -> list[tuple[float, float]]:
        """The bucket minima (uptime, offset), unordered."""
        m, n, newest = self._m, self._opts.n_buckets, self._a[9]
        if _isnan(newest):
            return []
        newest = int(newest)
        bucket_s, off0 = self._opts.bucket_s, self._a[7]
        return [((newest - (newest - i) % n) * bucket_s + m[i], off0 + m[n + i])
                for i in range(n) if not _isnan(m[i])]

    def observe(self, uptime_ms: int, rx_s: float) -> None:
        """Take one frame's (uptime, receive time) sample."""
        t = uptime_ms / 1000.0
        off = rx_s - t
        a, m, opts = self._a, self._m, self._opts
        # the first sample: no bucket yet (every sample after it leaves one at least)
        first = not self._count
        if first:
            a[6], a[7] = t, off
        a[8] += 1.0
        n = opts.n_buckets
        r = 2 * n + (2 * self._recent_n if self._recent_n < _RECENT_SAMPLES
                     else self._recent_at)
        m[r], m[r + 1] = t - a[6], off - a[7]
        if self._recent_n < _RECENT_SAMPLES:
            self._recent_n += 1
        else:
            self._recent_at = (self._recent_at + 2) % (2 * _RECENT_SAMPLES)
        bucket_s = opts.bucket_s
        idx = math.floor(t / bucket_s)
        # a float: compared as it is, made an int only to walk buckets
        newest = idx if first else a[9]
        if idx <= newest - n:
            return  # older than the window: the window already has better information
        # Against the latest line, even if a new minimum made it stale since: for a frame that
        # waited seconds it is near enough, and refitting for every sample would cost twice.
        slope = a[0]
        if _isnan(slope):
            slope, intercept = a[2], a[3]  # the latest line (NaN: none yet)
        else:
            intercept = a[1]
        if (_isnan(slope) or off - (intercept + slope * t) > opts.late_s) and (
                self._count and self._waited(t, off)):
            return  # its offset holds the wait: it would only bend the drift line
        slot = idx % n
        empty = _isnan(m[slot])
        # a filled slot holds a bucket of the window (newest - n, newest]: this one unless
        # the sample opens a newer bucket, whose slot an older one still holds
        same = not empty and idx <= newest
        rel = off - a[7]
        if not same or rel < m[n + slot]:
            if not -_REBASE_S <= rel <= _REBASE_S:
                self._rebase(rel)
                rel = 0.0
            if empty:
                self._count += 1
            m[slot], m[n + slot] = t - idx * bucket_s, rel
            self._lower(t, off)
            if not same and not empty:  # that older bucket went, as below
                a[0] = _NAN
        if idx > newest or first:
            a[9] = idx
            newest = int(newest)
            # the buckets of the old window (newest - n, newest] that left it are emptied;
            # the new bucket's slot (that of idx - n) was taken over above
            for old in range(newest - n + 1, min(newest, idx - n) + 1):
                i = old % n
                if i != slot and not _isnan(m[i]):
                    m[i] = _NAN
                    self._count -= 1
                    a[0] = _NAN

    def _rebase(self, d: float) -> None:
        """Move the offsets' reference by `d` seconds, to a new bucket minimum far from it."""
        a, m, n = self._a, self._m, self._opts.n_buckets
        a[7] += d
        for i in range(n, 2 * n):
            m[i] -= d  # NaN stays NaN
        r = 2 * n
        for i in range(r + 1, r + 2 * self._recent_n, 2):
            m[i] -= d

    def _waited(self, t: float, off: float) -> bool:
        """Did this sample's frame wait somewhere (module docstring)?"""
        slope, intercept = self._fit()
        opts = self._opts
        t_new = (self._a[9] + 1) * opts.bucket_s
        drift = opts.max_slope * max(0.0, t - t_new)
        return off - (intercept + slope * t) > opts.late_s + drift

    def _lower(self, t: float, off: float) -> None:
        """A bucket minimum became (t, off): drop the cached line, or lower it in place.

        Frames that keep arriving sooner than the ones before (a node's backlog draining, a
        collector catching up) lower a bucket minimum on nearly every frame. While the
        estimate is the constant one and (t, off) keeps the minima's uptime span under
        fit_span_s, the new constant is just min(old, off): no re-sort of the buckets.
        """
        a = self._a
        if not _isnan(a[0]) and not _isnan(a[4]):
            lo, hi = min(a[4], t), max(a[5], t)
            if hi - lo < self._opts.fit_span_s:  # bounds of the true span: still under it
                a[4], a[5] = lo, hi
                if off < a[1]:
                    a[0], a[1] = a[2], a[3] = 0.0, off
                return
        a[0] = _NAN

    def offset_s(self, uptime_ms: int) -> float:
        """Estimated wall - uptime (seconds) at `uptime_ms`. Raises LookupError before a sample."""
        slope, intercept = self._fit()
        return intercept + slope * (uptime_ms / 1000.0)

    def to_wall(self, uptime_ms: int) -> float:
        """Wall time (epoch s) of node uptime `uptime_ms` in this epoch."""
        t = uptime_ms / 1000.0
        a = self._a  # offset_s, inlined: once per frame
        slope = a[0]
        if _isnan(slope):
            slope, intercept = self._fit()
        else:
            intercept = a[1]
        return t + (intercept + slope * t)

    def figures(self) -> AnchorFigures:
        """Offset at the newest sample, uncertainty and drift, for a health event."""
        slope, intercept = self._fit()
        t_new = max(t for t, _ in self._minima())
        a, m, r = self._a, self._m, 2 * self._opts.n_buckets
        # a gap is off - (intercept + slope t) with t, off = reference + the ring's difference
        first = a[7] - (intercept + slope * a[6])
        gaps = [first + m[i + 1] - slope * m[i] for i in range(r, r + 2 * self._recent_n, 2)]
        return AnchorFigures(offset_ms=(intercept + slope * t_new) * 1000.0,
                             uncertainty_ms=max(0.0, _median(gaps)) * 1000.0,
                             drift_ppm=slope * 1e6, samples=self.samples)

    def _fit(self) -> tuple[float, float]:
        a = self._a
        if _isnan(a[0]):
            if not self._count:
                raise LookupError("clock anchor has no sample yet")
            pts = sorted(self._minima())
            slope = 0.0
            a[4], a[5] = pts[0][0], pts[-1][0]
            if pts[-1][0] - pts[0][0] >= self._opts.fit_span_s:
                max_slope = self._opts.max_slope
                slope = max(-max_slope, min(max_slope, _hull_slope(pts)))
                a[4] = a[5] = _NAN
            a[0], a[1] = a[2], a[3] = slope, min(off - slope * t for t, off in pts)
            return slope, a[1]
        return a[0], a[1]


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


def _median(xs: list[float]) -> float:
    """statistics.median, which brings fractions, decimal and random into the collector
    (0.9 MB of RSS) for this one figure."""
    xs = sorted(xs)
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


def _cross(o: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


# A boot's epochs (NodeClock): its one anchor, or (first seq, anchor) sorted by first seq.
_Epochs = ClockAnchor | list[tuple[int, ClockAnchor]]


class NodeClock:
    """The anchors of one node: per boot id, one per epoch (a HELLO starts an epoch)."""

    __slots__ = ("_boots", "_last_boot", "_last_epochs", "_options")

    def __init__(self, **anchor_options: float):
        self._options = anchor_options or None  # None: the defaults (no dict per node)
        # boot id -> its epochs, least recently used boot first (a plain dict: an
        # OrderedDict costs ~1 KB more per node). A boot's epochs are its anchor while it had
        # one epoch (the usual case: it began at seq 0), else [(first seq, anchor)] sorted
        # by first seq (a list and a tuple per node cost ~120 bytes more). `_boots` is None
        # while the node had one boot only, the usual case: that one is just the most
        # recent below.
        self._boots: dict[int, _Epochs] | None = None
        self._last_boot: int | None = None  # the most recently used boot and its epochs
        self._last_epochs: _Epochs | None = None

    @property
    def boot(self) -> int | None:
        """The boot id of the frame fed last (None: none yet), as the int kept here."""
        return self._last_boot

    def hello(self, boot_id: int, seq: int) -> None:
        """A HELLO at `seq`: a reset, so uptime from here on gets a fresh anchor."""
        epochs = self._epochs(boot_id)
        if type(epochs) is ClockAnchor:
            # its HELLO (seq 0), or one before any sample: the same epoch
            if seq == 0 or not epochs.ready:
                return
            epochs = [(0, epochs)]
        elif any(first == seq for first, _ in epochs):
            return
        epochs.append((seq, ClockAnchor(**self._options or {})))
        epochs.sort(key=lambda e: e[0])
        del epochs[:-_EPOCHS_KEPT]
        self._last_epochs = epochs  # _epochs made this boot the most recent
        if self._boots is not None:
            self._boots[boot_id] = epochs

    def anchor(self, boot_id: int, seq: int) -> ClockAnchor:
        """The anchor of the epoch that frame (boot_id, seq) belongs to."""
        epochs = self._epochs(boot_id)
        if type(epochs) is ClockAnchor:  # no reset in this boot: the usual case
            return epochs
        chosen = epochs[0][1]
        for first, anchor in epochs:
            if first <= seq:
                chosen = anchor
        return chosen

    def observe(self, boot_id: int, seq: int, uptime_ms: int, rx_s: float) -> ClockAnchor:
        """Feed a frame's sample to its anchor and return that anchor."""
        anchor = self.anchor(boot_id, seq)
        anchor.observe(uptime_ms, rx_s)
        return anchor

    def _epochs(self, boot_id: int) -> _Epochs:
        epochs = self._last_epochs
        if epochs is not None and self._last_boot == boot_id:  # most recently used
            return epochs
        boots = self._boots
        if boots is None:
            if epochs is None:  # the first frame: the one boot
                self._last_boot = boot_id
                epochs = self._last_epochs = ClockAnchor(**self._options or {})
                return epochs
            boots = self._boots = {self._last_boot: epochs}
        epochs = boots.get(boot_id)
        if epochs is None:
            epochs = boots[boot_id] = ClockAnchor(**self._options or {})
            while len(boots) > _BOOTS_KEPT:
                del boots[next(iter(boots))]
        else:  # now the most recently used
            del boots[boot_id]
            boots[boot_id] = epochs
        self._last_boot, self._last_epochs = boot_id, epochs
        return epochs
