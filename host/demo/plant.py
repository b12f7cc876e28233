"""The demo plant: a rice-milling line of six machines, their registry entries and scenarios; pure.

Every machine runs the same kind of day as a real line: a setup with the yellow lamp
blinking, runs with a steady green lamp and count pulses, minor stops (steady yellow for a
few minutes), one breakdown (red), a green lamp on unrectified 50 Hz AC that flickers at
100 Hz, NG pulses, and one node (the bagging scale) that loses Wi-Fi for 20 minutes.

Times in the plan are minutes of an 8-hour shift; a shorter or longer shift scales them
(and so the counts, since cycle times stay real). Scenario time 0 is the nodes' power-up,
`lead_s` before the first shift starts.

Units. Each node counts the pulses of one sensor, and the registry gives the unit:
husker: paddy sacks (50 kg) tipped into its intake; whitener and polisher: 100 kg batches
from their weigh hoppers; grader: 250 kg bins; packer: 5 kg retail packs (NG: checkweigher
rejects); bagging scale: kilograms, from the weighing controller's totalizer output set to
1 pulse = 1 kg, so a full 50 kg bag is 50 GOOD pulses and a rejected (off-weight) bag is a
burst of 50 NG pulses.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..vnode.scenario import Scenario

__all__ = [
    "LAMP_MAP",
    "MACHINES",
    "SHIFT_S",
    "MachinePlan",
    "MachineSpec",
    "build_plant",
    "node_config",
]

SHIFT_S = 8 * 3600.0
PLANT, LINE = "demo-mill", "rice-line-1"
# Priority order: red beats yellow beats green. Blinking yellow is a setup (changeover,
# warm-up), steady yellow a stop waiting for the operator, red a breakdown.
LAMP_MAP = {"red": "STOP:breakdown", "blink:yellow": "STOP:setup", "yellow": "IDLE",
            "green": "RUN"}
HEARTBEAT_MS = 5000
# The firmware's slowest pass (config.py allows 1..50 ms): edges are stamped by IRQ, so
# only the classification latency grows, and six nodes fit one core at 240x real time.
POLL_MS = 50
_BLINK_HZ = 1.0
_FLICKER_HZ = 100.0  # a lamp on 50 Hz mains through a bare rectifier bridge
_SCALE_BAG_KG = 50
_SCALE_REJECT_EVERY_MIN = 55.0
_OUTAGE = ("scale-1", 300.0, 320.0)  # (machine, from, to) in shift minutes


@dataclass(frozen=True)
class MachineSpec:
    """One machine of the demo line: registry entry and how it behaves.

    ideal_cycle_s: the registry's ideal seconds per unit; cycle_s: what it really does.
    ng_every: one NG unit per this many GOOD (0: none). segments: (kind, from_min, to_min)
    with kind run / setup / minor / breakdown, in minutes of an 8-hour shift.
    """

    node_id: int
    machine: str
    unit: str
    ideal_cycle_s: float
    cycle_s: float
    ng_every: int
    segments: tuple[tuple[str, float, float], ...]
    flicker: tuple[float, float] | None = None  # green flickers at 100 Hz over these minutes


MACHINES = (
    MachineSpec(101, "husker-1", "sack", 50.0, 56.0, 0, (
        ("setup", 0, 15), ("run", 15, 480)), ),
    MachineSpec(102, "whitener-1", "batch", 100.0, 108.0, 60, (
        ("setup", 0, 25), ("run", 25, 480)), flicker=(25, 40)),
    MachineSpec(103, "polisher-1", "batch", 100.0, 104.0, 80, (
        ("setup", 0, 5), ("run", 5, 190), ("breakdown", 190, 228), ("run", 228, 480))),
    MachineSpec(104, "grader-1", "bin", 300.0, 330.0, 15, (
        ("setup", 0, 10), ("run", 10, 480))),
    MachineSpec(105, "packer-1", "pack", 5.0, 5.6, 120, (
        ("setup", 0, 10), ("run", 10, 240), ("setup", 240, 262), ("run", 262, 480))),
    MachineSpec(106, "scale-1", "kg", 1.5, 1.8, 0, (
        ("setup", 0, 8), ("run", 8, 306), ("minor", 306, 309), ("run", 309, 480))),
)
_LAMPS_OF = {"run": {"green": "on"}, "setup": {"yellow": "blink"}, "minor": {"yellow": "on"},
             "breakdown": {"red": "on"}}


@dataclass
class MachinePlan:
    """A machine's scenario and what it must produce (times: scenario seconds)."""

    spec: MachineSpec
    scenario: Scenario
    lamp_changes: list[tuple[float, str, str]]  # (t_s, lamp, ON / BLINK / OFF), as intended
    outage: tuple[float, float] | None = None  # Wi-Fi lost over this span

    @property
    def good(self) -> int:
        return self.scenario.expected_pulses("good")

    @property
    def ng(self) -> int:
        return self.scenario.expected_pulses("ng")


def _minor_stops(spec: MachineSpec, rng: random.Random) -> list[tuple[str, float, float]]:
    """The spec's segments with two or three minor stops (2-4 min) cut into its runs."""
    out: list[tuple[str, float, float]] = []
    for kind, a, b in spec.segments:
        if kind != "run" or b - a < 60:
            out.append((kind, a, b))
            continue
        cuts = sorted(rng.uniform(a + 20, b - 20) for _ in range(max(1, int((b - a) // 150))))
        t = a
        for c in cuts:
            if c - t < 10:
                continue
            length = rng.uniform(2.0, 4.0)
            out += [("run", t, c), ("minor", c, c + length)]
            t = c + length
        out.append(("run", t, b))
    return out


def build_plant(shift_s: float = SHIFT_S, shifts: int = 1, *, lead_s: float = 30.0,
                tail_s: float = 30.0, seed: int = 1) -> list[MachinePlan]:
    """One plan per machine for `shifts` back-to-back shifts of `shift_s` seconds.

    The first shift starts `lead_s` after power-up; the scenarios end `tail_s` after the
    last shift, so the last heartbeats (and their counts) arrive. Pure: same arguments,
    same plans.
    """
    if shift_s <= 0 or shifts < 1:
        raise ValueError("shift_s must be > 0 and shifts >= 1")
    scale = shift_s / SHIFT_S
    duration = lead_s + shifts * shift_s + tail_s
    plans = []
    for spec in MACHINES:
        sc = Scenario(duration_s=duration)
        lamps = {"green": "off", "yellow": "off", "red": "off"}
        changes: list[tuple[float, str, str]] = []
        outage = None
        for k in range(shifts):
            rng = random.Random(f"{seed}/{spec.node_id}/{k}")
            base = lead_s + k * shift_s

            def at(minute: float, base: float = base) -> float:
                return round(base + minute * 60.0 * scale, 3)

            prev = "setup"
            for kind, a, b in _minor_stops(spec, rng):
                want = dict.fromkeys(lamps, "off") | _LAMPS_OF[kind]
                for lamp, state in want.items():
                    if state != lamps[lamp]:
                        sc.lamp(lamp, at(a), state, hz=_BLINK_HZ)
                        changes.append((at(a), lamp, state.upper()))
                        lamps[lamp] = state
                if kind == "run":
                    _counts(sc, spec, at(a), at(b), rng, resumed=prev != "setup")
                prev = kind
            if spec.flicker is not None:
                a, b = spec.flicker
                sc.lamp("green", at(a), "on", flicker_hz=_FLICKER_HZ)
                sc.lamp("green", at(b), "on")
            # a reflection on the dark red lens (before any breakdown): too short to count
            sc.glitch("red", at(rng.uniform(60, 180)), 0.004)
            if spec.machine == _OUTAGE[0]:
                outage = (at(_OUTAGE[1]), at(_OUTAGE[2])) if outage is None else outage
                if k == 0:
                    sc.fault("wifi_down", outage[0], duration_s=outage[1] - outage[0])
        changes.sort(key=lambda c: c[0])
        plans.append(MachinePlan(spec, sc, changes, outage))
    return plans


def _counts(sc: Scenario, spec: MachineSpec, a: float, b: float, rng: random.Random,
            resumed: bool = True) -> None:
    """GOOD (and NG) pulse trains over one run from a to b (scenario seconds). A run that
    resumes after a stop finishes the unit it was making half a cycle in; one after a setup
    starts a new unit, which takes a whole cycle (not faster than the machine can)."""
    cycle = spec.cycle_s * rng.uniform(0.97, 1.03)  # each run a little faster or slower
    first = a + (cycle / 2 if resumed else cycle)
    n = int((b - first) // cycle)
    if n <= 0:
        return
    width = min(0.05, cycle / 4)
    sc.pulses("good", first, n=n, every_s=cycle, width_s=width)
    if spec.machine == "scale-1":
        # a rejected bag: its 50 kg counted on the NG output in one burst
        every = _SCALE_REJECT_EVERY_MIN * 60.0
        t = a + every / 2
        while t + _SCALE_BAG_KG * 0.1 < b:
            sc.pulses("ng", t, n=_SCALE_BAG_KG, every_s=0.1, width_s=0.04)
            t += every
    elif spec.ng_every:
        every = cycle * spec.ng_every
        start = a + every / 2
        if start < b:
            sc.pulses("ng", start, n=int((b - start) // every) + 1, every_s=every,
                      width_s=width)


def node_config(spec: MachineSpec, key_hex: str, collector_port: int) -> dict:
    """The node's config.json (as `lampwatch flash` would write it) for the virtual node."""
    pin = {"green": 34, "yellow": 35, "red": 36, "good": 25, "ng": 26}
    return {
        "node_id": spec.node_id, "key": key_hex, "machine": spec.machine, "transport": "udp",
        "wifi": {"ssid": "demo-mill", "password": "demo-mill"},
        "collector": {"host": "127.0.0.1", "port": collector_port},
        "lamps": {n: {"pin": pin[n], "active_low": True} for n in ("green", "yellow", "red")},
        "counts": {n: {"pin": pin[n], "active_low": True} for n in ("good", "ng")},
        "counter": "auto", "min_pulse_ms": 5, "flicker_gap_ms": 16, "glitch_ms": 20,
        "max_phase_ms": 1500, "heartbeat_ms": HEARTBEAT_MS, "health_ms": 60000,
        "poll_ms": POLL_MS, "wdt_ms": 8000, "unacked_max": 48, "retry_ms": 1000,
    }
