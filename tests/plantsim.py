"""A plant on a simulated clock for the figures' scenario tests (tests/test_figures.py).

- `Machine`: the truth: its lamps over time, and the units it made (at a set share of its
  ideal rate while RUN: green lit, yellow and red dark).
- `SimNode`: a node as the firmware behaves: frames built with the firmware's own codec
  (firmware/lwproto.py) and queued in the firmware's own outbox ring (firmware/outbox.py:
  48 frames, drop policy, retransmission with backoff, ACKs); a lamp change is reported
  1.5 s after it began (the classifier's delay) with the time it began; a heartbeat every
  `hb_s` with cumulative counts; a link that can go down.
- `Plant`: the collector through its real path, `CollectorRuntime` (journal, HostClock with a
  wall and a monotonic clock both injected, deriver, restart replay), stopped and started
  again for an outage; frames reach `Collector.submit` 3 ms after they are sent; a tick every
  simulated second; the wall clock can be stepped.
"""

from __future__ import annotations

import asyncio
import math
import sys
from bisect import bisect_right
from pathlib import Path

from lampwatch.config import load_config
from lampwatch.node_files import firmware_dir
from lampwatch.runtime import CollectorRuntime

sys.path.insert(0, str(firmware_dir()))
import lwproto
from outbox import Outbox

DAY = 1_772_409_600.0  # 2026-03-02 00:00 UTC, a Monday
H, M = 3600.0, 60.0
G, Y, R = 0, 1, 2
_CLASSIFY_S = 1.5
_DELAY_S = 0.003


class Machine:
    """What a machine really did. `changes`: (time, {channel: 0 OFF / 1 ON}) in time order."""

    def __init__(self, changes, ideal_s: float, speed: float = 1.0, ng_every: int = 0):
        self.changes = sorted(changes, key=lambda c: c[0])
        self.ideal_s, self.speed, self.ng_every = ideal_s, speed, ng_every
        lamps, t_run, runs = [0] * 5, None, []
        for t, change in self.changes:
            lamps = [change.get(ch, v) for ch, v in enumerate(lamps)]
            running = lamps[G] == 1 and lamps[Y] == 0 and lamps[R] == 0
            if running and t_run is None:
                t_run = t
            elif not running and t_run is not None:
                runs.append((t_run, t))
                t_run = None
        if t_run is not None:
            runs.append((t_run, math.inf))
        self.runs = runs  # the truth's RUN intervals

    def lamps_at(self, t: float) -> list[int]:
        lamps = [0] * 5
        for ts, change in self.changes:
            if ts > t:
                break
            lamps = [change.get(ch, v) for ch, v in enumerate(lamps)]
        return lamps

    def run_s(self, a: float, b: float) -> float:
        """Seconds it ran in [a, b)."""
        return sum(max(0.0, min(b, e) - max(a, s)) for s, e in self.runs)

    def units(self, t: float) -> int:
        return int(self.speed * self.run_s(-math.inf, t) / self.ideal_s + 1e-9)

    def counts(self, t: float) -> tuple[int, int]:
        """(good, ng) made up to t."""
        n = self.units(t)
        ng = n // self.ng_every if self.ng_every else 0
        return n - ng, ng


class SimNode:
    """A node with the firmware's codec and outbox; see the module docstring."""

    def __init__(self, plant: Plant, node_id: int, machine: Machine, boot_at: float,
                 hb_s: float = 10.0):
        self.plant, self.node_id, self.machine = plant, node_id, machine
        self.codec = lwproto.Codec(node_id, plant.keys[node_id])
        self.outbox = Outbox(48, 1000, 16000)
        self.boot_id, self.boot_at, self.hb_s = 0x5000 + node_id, boot_at, hb_s
        self.seq = 0
        self.built: list[int] = []  # every seq built
        self.link_down: list[tuple[float, float]] = []
        self._was_up = True
        self._next_hb = boot_at + hb_s
        self._reports = [(t + _CLASSIFY_S, t, ch, st) for t, change in machine.changes
                         if t >= boot_at for ch, st in sorted(change.items())]
        self._queue(lwproto.T_HELLO, self.codec.hello, (0, 1, 0), 1, b"\xa1\xb2\xc3\xd4", 0,
                    0b111, int(hb_s * 1000), at=boot_at)
        lamps = machine.lamps_at(boot_at)
        if any(lamps):
            self._queue(lwproto.T_LAMP, self.codec.lamp,
                        [(ch, st, 0) for ch, st in enumerate(lamps) if st], at=boot_at)

    def up_ms(self, t: float) -> int:
        return round((t - self.boot_at) * 1000)

    def _queue(self, ftype, build, *args, at: float) -> None:
        seq, self.seq = self.seq, self.seq + 1
        self.built.append(seq)
        self.outbox.add(self.boot_id, seq, ftype, build(self.boot_id, seq, self.up_ms(at), *args),
                        self.up_ms(at))

    def step(self, t: float) -> None:
        while self._reports and self._reports[0][0] <= t:
            _, began, ch, st = self._reports.pop(0)
            self._queue(lwproto.T_LAMP, self.codec.lamp, [(ch, st, self.up_ms(began))], at=t)
        while self._next_hb <= t:
            good, ng = self.machine.counts(self._next_hb)
            self._queue(lwproto.T_HEARTBEAT, self.codec.heartbeat, good, ng,
                        self.machine.lamps_at(self._next_hb - _CLASSIFY_S), at=self._next_hb)
            self._next_hb += self.hb_s
        up = not any(a <= t < b for a, b in self.link_down)
        if not up:
            self._was_up = False
            return
        now_ms = self.up_ms(t)
        if not self._was_up:  # the link is back: retry everything now (as app.py does)
            self._was_up = True
            self.outbox.reschedule_all(now_ms)
        for frame in self.outbox.due(now_ms, 8):
            self.plant.deliver(self, frame, t)

    def ack(self, data: bytes) -> None:
        seqs = self.codec.parse_ack(data, self.boot_id)
        assert seqs is not None, "the collector's ACK does not verify"
        self.outbox.ack(self.boot_id, seqs)


class Plant:
    """The collector's real path on a simulated clock; see the module docstring.

    `t` is the true time (epoch s). The host's monotonic clock is t from an arbitrary zero;
    its wall clock is t plus whatever steps were made.
    """

    def __init__(self, tmp_path: Path, nodes: dict[int, dict], shifts: str, oee: str = ""):
        self.keys = {n: bytes([n]) * 16 for n in nodes}
        entries = "".join(f"""
[[nodes]]
id = {n}
plant = "mill"
line = "rice-1"
machine = "{spec['machine']}"
key = "{self.keys[n].hex()}"
heartbeat_s = 10
unit = "{spec.get('unit', 'kg')}"
""" + (f"ideal_cycle_s = {spec['ideal_s']}\n" if spec.get("ideal_s") else "")
            + (f"lamp_map = {{ {spec['lamp_map']} }}\n" if spec.get("lamp_map") else "")
            for n, spec in nodes.items())
        self.config_path = tmp_path / "collector.toml"
        self.config_path.write_text(f"""
[collector]
udp_listen = false
journal = "journal.sqlite"
journal_sync = "normal"
{entries}
[calendar]
time_zone = "UTC"
{shifts}
[oee]
{oee}
""")
        self.config = load_config(self.config_path)
        self.journal_path = self.config.journal_path
        self.t = DAY  # the true time, epoch s
        self.wall_offset = 0.0  # wall clock = t + wall_offset
        self.nodes: list[SimNode] = []
        self.runtime: CollectorRuntime | None = None
        self._loop = asyncio.new_event_loop()
        self.lost = 0  # frames sent while the collector was down

    def wall(self) -> float:
        return self.t + self.wall_offset

    def mono(self) -> float:
        return 5000.0 + (self.t - DAY)

    def node(self, node_id: int, machine: Machine, boot_at: float, **kw) -> SimNode:
        n = SimNode(self, node_id, machine, boot_at, **kw)
        self.nodes.append(n)
        return n

    def start_collector(self) -> None:
        self.runtime = CollectorRuntime(self.config, clock=self.wall, mono=self.mono,
                                        forward=False)
        self._loop.run_until_complete(self.runtime.start())

    def stop_collector(self) -> None:
        if self.runtime is not None:
            self._loop.run_until_complete(self.runtime.stop())
            self.runtime = None

    def deliver(self, node: SimNode, frame: bytes, t: float) -> None:
        if self.runtime is None:
            self.lost += 1
            return
        self.t = max(self.t, t + _DELAY_S)
        self.runtime.collector.submit(frame, f"udp:10.0.0.{node.node_id}:4210", node.ack)

    def run(self, until: float, *, dt: float = 0.5, steps=(), outages=()) -> None:
        """Advance the true time to `until` (epoch s). steps: (at, seconds) wall-clock steps;
        outages: (from, to) when the collector is down. Ticks once a simulated second."""
        steps = sorted(steps)
        outages = sorted(outages)
        t, next_tick = self.t, math.floor(self.t) + 1.0
        while t < until:
            t = round(t + dt, 3)
            self.t = max(self.t, t)
            while steps and steps[0][0] <= t:
                self.wall_offset += steps.pop(0)[1]
            down = any(a <= t < b for a, b in outages)
            if down and self.runtime is not None:
                self.stop_collector()
            elif not down and self.runtime is None:
                self.start_collector()  # a restart: journal, replay, the same rules
            for n in self.nodes:
                n.step(t)
            if t >= next_tick and self.runtime is not None:
                self.runtime.collector.tick()
                next_tick = math.floor(t) + 1.0

    def close(self) -> None:
        self.stop_collector()
        self._loop.close()


def at(hhmm: str, day: float = DAY) -> float:
    """Epoch seconds of "HH:MM[:SS.s]" on the simulated day (UTC)."""
    parts = [float(p) for p in hhmm.split(":")]
    return day + parts[0] * H + parts[1] * M + (parts[2] if len(parts) > 2 else 0.0)


def in_runs(runs: list[tuple[float, float]], t: float) -> bool:
    i = bisect_right([a for a, _ in runs], t) - 1
    return i >= 0 and t < runs[i][1]
