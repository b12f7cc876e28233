"""The deriver's fast path for a heartbeat that changes no lamp or state (Deriver._quiet)
changes no result: a deriver with it and one without, fed the same random plant, emit the same events and
show the same snapshot, through count changes, lamp changes, stale and reordered frames,
silences, new boots and a host clock step."""

from __future__ import annotations

import random
from datetime import datetime, timezone

import pytest
from lampwatch import oee
from lampwatch.derive import DeriveConfig, Deriver, NodeConfig
from lampwatch.hostclock import HostClock
from lampwatch.protocol import (
    T_HEARTBEAT,
    T_HELLO,
    T_LAMP,
    Frame,
    Header,
    Heartbeat,
    Hello,
    Lamp,
    LampEvent,
)

T0 = datetime(2026, 3, 2, 6, 0, tzinfo=timezone.utc).timestamp()  # a Monday
NODES = (1, 2, 3)


class _Clocks:
    """A wall and a monotonic clock the test moves (the wall one steps once)."""

    def __init__(self):
        self.mono, self.step = 1000.0, 0.0

    def wall(self) -> float:
        return T0 + self.mono - 1000.0 + self.step


def _deriver(clocks: _Clocks, fast: bool) -> tuple[Deriver, HostClock, list[int]]:
    cal = oee.Calendar("UTC", (oee.Shift("A", "06:00", "14:00"),))
    cfg = DeriveConfig(nodes={n: NodeConfig(n, f"m{n}", ideal_cycle_s=2.0) for n in NODES},
                       calendar=cal, heartbeat_s=5.0)
    host = HostClock(clocks.wall, lambda: clocks.mono)
    d = Deriver(cfg, host=host)
    taken = [0]
    quiet = d._quiet
    if fast:
        def counted(*args):
            out = quiet(*args)
            taken[0] += out is not None
            return out
        d._quiet = counted
    else:
        d._quiet = lambda *args: None
    return d, host, taken


def _plant(seed: int):
    """(mono_s, frame) in arrival order, and when to tick."""
    rng = random.Random(seed)
    out = []
    state = {n: {"boot": 0xB000 + n, "seq": 0, "good": 0, "ng": 0, "lamps": [1, 0, 0, 0, 0],
                 "up0": 1000.0 - rng.uniform(0, 50)} for n in NODES}
    t = 1000.0
    late: list[tuple[float, Frame]] = []
    for _ in range(1500):
        t += rng.uniform(0.2, 2.0)
        n = rng.choice(NODES)
        s = state[n]
        if rng.random() < 0.01:  # silent for a while (longer than 3 heartbeat periods)
            t += rng.uniform(16, 60)
        if rng.random() < 0.005:  # a restart: new boot, HELLO first
            s["boot"] += 0x100
            s["seq"], s["good"], s["ng"], s["up0"] = 0, 0, 0, t
            s["seq"] += 1
            out.append((t, Frame(Header(T_HELLO, n, s["boot"], s["seq"], 0), Hello(
                (0, 3, 0), "power_on", b"\0\0\0\0", False, False, 0b111, 5000), b"")))
        s["seq"] += 1
        up = int((t - s["up0"]) * 1000)
        r = rng.random()
        if r < 0.1:  # a lamp change
            ch = rng.choice((0, 1, 2))
            st = rng.choice((0, 1, 2))
            s["lamps"][ch] = st
            body = Lamp((LampEvent(ch, st, max(0, up - rng.randint(0, 900))),))
            ftype = T_LAMP
        else:
            if r < 0.35:
                s["good"] += rng.randint(1, 3)
            elif r < 0.38:
                s["ng"] += 1
            body = Heartbeat(s["good"], s["ng"], tuple(s["lamps"]))
            ftype = T_HEARTBEAT
        f = Frame(Header(ftype, n, s["boot"], s["seq"], up), body, b"")
        if rng.random() < 0.03:  # delayed: arrives after later frames (a resend)
            late.append((t + rng.uniform(0.5, 10), f))
        else:
            out.append((t, f))
        for item in [x for x in late if x[0] <= t]:
            late.remove(item)
            out.append((t, item[1]))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_fast_path_changes_no_event_and_no_snapshot(seed):
    frames = _plant(seed)
    runs = []
    for fast in (True, False):
        clocks = _Clocks()
        d, host, taken = _deriver(clocks, fast)
        events, next_tick = [], frames[0][0]
        for i, (t, f) in enumerate(frames):
            clocks.mono = t
            if i == len(frames) // 2:
                clocks.step = 30.0  # the wall clock jumps forward: a clock event, UNKNOWN
            now = host.now()
            while next_tick <= t:
                events += d.tick(now)
                next_tick += 1.0
            events += d.on_frame(f, now)
        events += d.drain(host.now())
        rows = [(round(e.ts_s, 6), e.kind, e.node_id, e.machine, e.data) for e in events]
        runs.append((rows, d.snapshot(host.now()), taken[0]))
    (fast_rows, fast_snap, taken), (slow_rows, slow_snap, _) = runs
    assert taken > 600  # the fast path was taken: most heartbeats, counting or not
    assert len(fast_rows) > 100 and {r[1] for r in fast_rows} >= {"state", "count", "lamp"}
    assert fast_rows == slow_rows
    assert fast_snap == slow_snap
