"""Clock anchoring: minimum filter, drift line, uncertainty, reboot and watchdog epochs."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lampwatch.clock_anchor import ClockAnchor, NodeClock

T0 = 1_700_000_000.0  # wall time of uptime 0 in these tests
BOOT = 0x0B0B0001  # a boot id as nodes draw them (32 bits, an int of its own)
DAY_MS = 86_400_000


def test_offset_is_the_fastest_frame():
    a = ClockAnchor()
    # offsets rx - uptime: 1000.050, 1000.005, 1000.200 -> the minimum, 1000.005
    a.observe(0, 1000.050)
    a.observe(10_000, 1010.005)
    a.observe(20_000, 1020.200)
    assert a.offset_s(15_000) == pytest.approx(1000.005, abs=1e-9)
    assert a.to_wall(15_000) == pytest.approx(1015.005, abs=1e-9)


def test_late_retransmission_never_lowers_the_estimate_of_delay():
    a = ClockAnchor()
    a.observe(10_000, 1010.005)
    a.observe(5_000, 1030.0)  # a frame built at uptime 5 s, retransmitted 25 s later
    assert a.offset_s(5_000) == pytest.approx(1000.005, abs=1e-9)


def test_frames_resent_after_a_two_hour_outage_keep_their_own_times():
    # A node heartbeats every 5 s for 30 min (fast frames, 5 ms late), then its link is down
    # for 2 h; it resends a lamp change from 30 min into the outage and the newest frames
    # of its outbox (the last 4 min), then sends fresh frames again.
    a = ClockAnchor()
    for up_s in range(0, 1800, 5):
        a.observe(up_s * 1000, T0 + up_s + 0.005)
    back = T0 + 1800 + 7200
    resent = [3600_000] + [up * 1000 for up in range(8760, 9000, 5)]
    for i, up_ms in enumerate(resent):
        a.observe(up_ms, back + 0.02 * i)  # arrival: a burst when the link is back
        assert a.to_wall(up_ms) == pytest.approx(T0 + up_ms / 1000 + 0.005, abs=0.01)
    for up_s in range(9000, 9120, 5):  # fresh frames move the window on
        a.observe(up_s * 1000, T0 + up_s + 0.005)
    assert a.to_wall(9_100_000) == pytest.approx(T0 + 9100.005, abs=0.01)
    assert a.to_wall(3_600_000) == pytest.approx(T0 + 3600.005, abs=0.01)


def test_uncertainty_is_the_median_gap_above_the_fastest_frame():
    a = ClockAnchor()
    for up_ms, delay in ((0, 0.005), (1000, 0.010), (2000, 0.050)):
        a.observe(up_ms, 1000 + up_ms / 1000 + delay)
    fig = a.figures()
    # estimate 1000.005; gaps 0, 5, 45 ms -> median 5 ms
    assert fig.offset_ms == pytest.approx(1_000_005.0, abs=1e-6)
    assert fig.uncertainty_ms == pytest.approx(5.0, abs=1e-6)
    assert fig.drift_ppm == 0.0
    assert fig.samples == 3


def test_no_sample_raises_lookup_error():
    with pytest.raises(LookupError):
        ClockAnchor().offset_s(0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 590_000), st.floats(0.0, 2.0)), min_size=1,
                max_size=60))
def test_estimate_never_exceeds_true_offset_plus_min_delay(samples):
    # Within the fit span (600 s) the estimate is exactly true offset + the smallest delay.
    a = ClockAnchor()
    for up_ms, delay in samples:
        a.observe(up_ms, T0 + up_ms / 1000 + delay)
    min_delay = min(d for _, d in samples)
    for up_ms, _ in samples:
        est = a.offset_s(up_ms)
        assert est <= T0 + min_delay + 1e-6
        assert est >= T0 + min_delay - 1e-6


@settings(max_examples=30, deadline=None)
@given(st.floats(-50.0, 50.0), st.integers(0, 10_000))
def test_drift_is_followed_under_jittered_delays(drift_ppm, seed):
    # 1 h of frames every 10 s; delays: a 2 ms floor, exponential queueing (mean 20 ms),
    # and 10 % retransmissions up to 5 s late. After the fit the error at the newest frame
    # stays within 5 ms of true offset + floor (measured worst case about 3.5 ms, part of
    # it the whole-millisecond uptime).
    rnd = random.Random(seed)
    d = drift_ppm * 1e-6
    a = ClockAnchor()
    up_ms = 0
    for k in range(360):
        up_ms = k * 10_000 + rnd.randrange(1000)
        delay = 0.002 + rnd.expovariate(1 / 0.02)
        if rnd.random() < 0.1:
            delay += rnd.uniform(0, 5)
        a.observe(up_ms, T0 + d * up_ms / 1000 + up_ms / 1000 + delay)
    true = T0 + d * up_ms / 1000
    assert abs(a.offset_s(up_ms) - (true + 0.002)) < 0.005
    assert a.figures().drift_ppm == pytest.approx(drift_ppm, abs=5.0)


def test_exact_drift_line_without_delay():
    # 40 ppm: the offset grows 40 us per second; the hull of collinear points is the line.
    a = ClockAnchor()
    for k in range(0, 3601, 10):
        a.observe(k * 1000, T0 + k + 40e-6 * k)
    assert a.offset_s(3_600_000) == pytest.approx(T0 + 0.144, abs=1e-6)  # 40e-6 x 3600
    assert a.figures().drift_ppm == pytest.approx(40.0, abs=1e-3)


def test_drift_is_clamped():
    a = ClockAnchor(max_drift_ppm=100)
    for k in range(0, 1201, 60):
        a.observe(k * 1000, T0 + k + 1e-3 * k)  # 1000 ppm: not a crystal
    assert a.figures().drift_ppm == pytest.approx(100.0)


def test_reboot_reanchors_and_late_frames_keep_their_boot():
    c = NodeClock()
    c.observe(0xA, 5, 50_000, T0 + 50.003)
    # boot B powered up 100 s after A's uptime 0: B's uptime 0 is wall T0 + 100
    c.hello(0xB, 0)
    c.observe(0xB, 0, 1_000, T0 + 101.002)
    c.observe(0xA, 6, 60_000, T0 + 104.0)  # A's last frame, reordered behind B's HELLO
    assert c.anchor(0xB, 0).to_wall(1_000) == pytest.approx(T0 + 101.002, abs=1e-9)
    assert c.anchor(0xA, 6).to_wall(60_000) == pytest.approx(T0 + 60.003, abs=1e-9)


def test_watchdog_hello_starts_a_new_epoch_within_the_boot():
    c = NodeClock()
    for seq in range(3):
        c.observe(7, seq, seq * 10_000, T0 + seq * 10 + 0.004)
    # watchdog reset: uptime resumes 2 s behind (lost while resetting): offset +2 s
    c.hello(7, 3)
    c.observe(7, 3, 30_000, T0 + 32.006)
    assert c.anchor(7, 3).to_wall(30_000) == pytest.approx(T0 + 32.006, abs=1e-9)
    assert c.anchor(7, 2).to_wall(20_000) == pytest.approx(T0 + 20.004, abs=1e-9)
    c.hello(7, 3)  # the same HELLO again (a duplicate) changes nothing
    assert c.anchor(7, 4) is c.anchor(7, 3)


def test_a_node_clock_with_its_window_full_takes_under_930_bytes():
    # A collector holds one per node (10,000): the numbers in two arrays of a fixed size (the
    # bucket minima and the recent samples in single precision), the settings shared, no
    # dict while a node has had one boot, the last 32 samples (the uncertainty's). Measured
    # by this test: 897 bytes; 961 while the sample count and the newest bucket were ints of
    # their own. Earlier, measured in the first 200 minutes of a boot (where those ints were
    # shared small ones): 897 bytes, 1,153 with 64 samples, 1,409 with the minima in doubles
    # too; one array of doubles: 1.9 KB
    import tracemalloc

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        clocks = [NodeClock() for _ in range(500)]
        # more samples than the recent ring, 5 h of buckets: all full; a day after the boot
        # (counts past 256 are ints of their own, unlike smaller ones)
        for k in range(300):
            for c in clocks:
                c.observe(BOOT, k, DAY_MS + 60_000 * k, T0 + 60 * k + 0.002 * (k % 5))
        per_node = (tracemalloc.get_traced_memory()[0] - before) / len(clocks)
    finally:
        tracemalloc.stop()
    assert per_node < 930, per_node
    anchor = clocks[0].anchor(BOOT, 299)
    assert anchor.samples == 300 and anchor.figures().uncertainty_ms >= 0


def test_the_uncertainty_stays_exact_to_microseconds_after_weeks_of_uptime_and_drift():
    # The recent samples are kept as single-precision differences from a reference sample; the
    # uncertainty, recomputed here in doubles from the same samples, must not feel it. 40 days
    # of uptime at the crystal's worst drift, 12 more days of heartbeats every 10 s.
    rnd = random.Random(7)
    a = ClockAnchor()
    drift, up0 = 50e-6, 40 * 86400.0
    samples = []
    for k in range(12 * 8640):
        up_s = up0 + 10.0 * k
        rx = T0 + up_s * (1 + drift) + rnd.expovariate(1 / 0.004)
        a.observe(round(up_s * 1000), rx)
        samples.append((round(up_s * 1000) / 1000.0, rx - round(up_s * 1000) / 1000.0))
    fig = a.figures()
    slope, offset_at_newest = fig.drift_ppm * 1e-6, fig.offset_ms / 1000.0
    t_new = max(t for t, _ in a._minima())
    gaps = sorted(off - (offset_at_newest + slope * (t - t_new)) for t, off in samples[-32:])
    want = max(0.0, (gaps[15] + gaps[16]) / 2) * 1000.0
    assert 1.0 < want < 10.0  # a median of exponential 4 ms delays: a real figure
    assert fig.uncertainty_ms == pytest.approx(want, abs=0.005)


def test_the_median_is_the_standard_librarys():
    import random
    import statistics

    from lampwatch.clock_anchor import _median

    rng = random.Random(3)
    for n in list(range(1, 9)) + [63, 64]:
        xs = [rng.uniform(-1, 1) for _ in range(n)]
        assert _median(xs) == statistics.median(xs)


def test_a_first_frame_that_waited_an_hour_costs_no_precision():
    # The anchor keeps offsets in single precision, as differences from a reference: the
    # first sample's, moved once a bucket minimum lies far from it. Here the first frame a
    # collector hears of the boot waited an hour in the node's outbox (its offset 3,600 s
    # above the true one), then fresh frames every 10 s for 2 h; offsets, the uncertainty
    # (recomputed in doubles from the same samples) and the drift must stay exact.
    rnd = random.Random(11)
    a = ClockAnchor()
    drift = 30e-6
    a.observe(1_000, T0 + 3_601.0)  # built at uptime 1 s, arrived an hour later
    samples = []
    for k in range(720):
        up_ms = 3_600_000 + 10_000 * k
        rx = T0 + up_ms / 1000 * (1 + drift) + rnd.expovariate(1 / 0.004)
        a.observe(up_ms, rx)
        samples.append((up_ms / 1000, rx - up_ms / 1000))
    slope, intercept = a._fit()
    assert slope == pytest.approx(drift, abs=2e-7)
    # the line touches the fastest frames: none lies below it by more than a microsecond
    assert min(off - (intercept + slope * t) for t, off in samples) > -1e-6
    gaps = sorted(off - (intercept + slope * t) for t, off in samples[-32:])
    want = max(0.0, (gaps[15] + gaps[16]) / 2) * 1000.0
    assert 1.0 < want < 10.0
    assert a.figures().uncertainty_ms == pytest.approx(want, abs=0.001)
