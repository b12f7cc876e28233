"""The host clock: event time from a wall and a monotonic clock, following steps, never back."""

import itertools
import logging

import pytest
from lampwatch.hostclock import HostClock

T0 = 1_772_438_400.0  # 2026-03-02 08:00 UTC


class Clocks:
    """A wall clock that can be stepped and a monotonic one that cannot, both driven by hand."""

    def __init__(self):
        self.mono, self.offset = 1000.0, T0 - 1000.0

    def wall(self):
        return self.mono + self.offset

    def advance(self, s):
        self.mono += s


@pytest.fixture
def c():
    return Clocks()


def test_event_time_is_the_wall_clock_while_nothing_steps(c):
    h = HostClock(c.wall, lambda: c.mono)
    assert h.now() == T0
    c.advance(10.5)
    assert h.now() == T0 + 10.5
    assert h.utc(c.mono - 5) == T0 + 5.5
    assert h.mono_of(T0 + 10.5) == c.mono  # the latest reading: exact
    assert h.steps == []


def test_forward_step_jumps_and_is_recorded(c, caplog):
    h = HostClock(c.wall, lambda: c.mono)
    h.now()
    c.advance(60)
    c.offset += 3600  # NTP puts the wall clock an hour forward
    with caplog.at_level(logging.WARNING, "lampwatch.hostclock"):
        now = h.now()
    assert now == T0 + 60 + 3600
    (step,) = h.steps
    assert (step.step_s, step.before_s, step.after_s) == (3600, T0 + 60, T0 + 3660)
    assert "stepped forward by 3600.000 s" in caplog.text
    # a late frame made before the step keeps the old mapping: no reordering
    assert h.utc(c.mono - 30) == T0 + 30
    assert h.utc(c.mono + 1) == T0 + 3661


def test_backward_step_pauses_event_time_until_the_wall_clock_catches_up(c):
    h = HostClock(c.wall, lambda: c.mono)
    h.now()
    c.advance(60)
    c.offset -= 3600  # the wall clock goes back an hour
    assert h.now() == T0 + 60  # not T0 + 60 - 3600
    (step,) = h.steps
    assert (step.step_s, step.before_s) == (-3600, T0 + 60)
    assert step.after_s == pytest.approx(T0 + 60 + 0.0036, abs=1e-6)  # an hour's creep
    seen = []
    for _ in range(3660 // 60):
        c.advance(60)
        seen.append(h.now())
    # never back, and while it stands still it creeps (a millionth of real time), so each
    # reading has its own time
    assert all(a < b for a, b in itertools.pairwise(seen))
    assert seen[0] == pytest.approx(T0 + 60 + 60e-6, abs=1e-6)
    assert seen[58] == pytest.approx(T0 + 60 + 3540e-6, abs=1e-6)  # still standing still
    assert seen[-1] == pytest.approx(T0 + 120, abs=1e-6)  # caught up at + 3600 and went on
    assert h.utc(c.mono - 3660 + 1800) == pytest.approx(T0 + 60 + 1800e-6, abs=1e-6)


def test_small_drift_is_followed_without_a_step_and_never_backwards(c):
    h = HostClock(c.wall, lambda: c.mono)
    prev = h.now()
    for _ in range(100):
        c.advance(1.0)
        c.offset -= 0.01  # slewing back 10 ms a second: 1 s in 100 s
        now = h.now()
        assert now >= prev
        prev = now
    assert h.steps == []
    assert prev == pytest.approx(T0 + 100 - 1.0, abs=0.06)


def test_hold_from_after_a_restart(c):
    h = HostClock(c.wall, lambda: c.mono)
    h.hold_from(T0 + 1800)  # the journal reaches half an hour past the wall clock
    assert h.now() == T0 + 1800 and h.steps[0].step_s == -1800
    c.advance(900)
    assert h.now() == pytest.approx(T0 + 1800 + 900e-6, abs=1e-6)  # standing, creeping
    c.advance(1000)
    assert h.now() == pytest.approx(T0 + 1900, abs=1e-6)
    fresh = HostClock(c.wall, lambda: c.mono)
    fresh.hold_from(T0)  # the journal is behind the wall clock: nothing to hold
    assert fresh.now() == c.wall() and fresh.steps == []


def test_one_clock_for_both_never_goes_back():
    t = [T0]
    h = HostClock(lambda: t[0], lambda: t[0])
    assert h.now() == T0
    t[0] = T0 - 10  # a test's (or the demo's) one clock set back: a backward step
    assert h.now() == T0 and [s.step_s for s in h.steps] == [-10]
    t[0] = T0 + 5
    assert h.now() == T0 + 5
