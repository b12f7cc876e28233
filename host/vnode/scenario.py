"""Scenario timelines for the virtual node: what its lamps and count inputs do, and when faults
strike. Times are seconds (floats) in the API and whole microseconds inside.

    sc = Scenario(duration_s=120)
    sc.lamp("red", 12.0, "on", flicker_hz=100)     # red lights at 12.000 s, on 100 Hz AC
    sc.lamp("green", 30.0, "blink", hz=2)          # green flashes 2 Hz from 30 s
    sc.lamp("green", 60.0, "off")
    sc.pulses("good", 5.0, n=100, every_s=0.5, width_s=0.05)
    sc.fault("wifi_down", 40.0, duration_s=300)
    sc.fault("stall", 70.0, duration_s=12)         # a hang: the watchdog resets the node
    sc.gc_pauses(every_s=0.5, pause_s=0.015)       # garbage collections: IRQ handlers wait
    sc.irq_latency(0.0, 50, 100)                   # each handler runs 50-100 us after its edge
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise

LAMPS = ("green", "yellow", "red", "blue", "white")
COUNTS = ("good", "ng")
FAULTS = ("wifi_down", "stall", "gc", "busy", "watchdog", "soft_reset", "power_loss",
          "dns_down")


def _us(t_s: float) -> int:
    return round(t_s * 1_000_000)


@dataclass
class Scenario:
    """A timeline per input plus faults. Later entries for the same input take over from
    their start time; pulse trains return the input to inactive when they end."""

    duration_s: float
    timelines: dict[str, list[tuple[int, tuple]]] = field(default_factory=dict)
    faults: list[tuple[int, str, int]] = field(default_factory=list)
    latency: list[tuple[int, int, int]] = field(default_factory=list)

    def _add(self, name: str, t_s: float, mode: tuple) -> Scenario:
        if name not in LAMPS + COUNTS:
            raise ValueError(f"unknown input {name!r}: use one of {', '.join(LAMPS + COUNTS)}")
        if not 0 <= t_s <= self.duration_s:
            raise ValueError(f"time {t_s} s is outside the scenario (0..{self.duration_s} s)")
        tl = self.timelines.setdefault(name, [])
        tl.append((_us(t_s), mode))
        tl.sort(key=lambda e: e[0])
        return self

    def lamp(self, name: str, t_s: float, state: str, *, hz: float = 1.0, duty: float = 0.5,
             flicker_hz: float | None = None, flicker_duty: float = 0.5) -> Scenario:
        """Set a lamp at t_s: "on" (steady, or flickering at flicker_hz), "off", or "blink"
        (flashing at hz with the given duty)."""
        if state == "on":
            mode = ("square", flicker_hz, flicker_duty) if flicker_hz else ("level", 1)
        elif state == "off":
            mode = ("level", 0)
        elif state == "blink":
            mode = ("square", hz, duty)
        else:
            raise ValueError(f"lamp state must be on, off or blink, not {state!r}")
        return self._add(name, t_s, mode)

    def glitch(self, name: str, t_s: float, width_s: float) -> Scenario:
        """One short pulse (a reflection, contact noise), then back to dark."""
        return self._add(name, t_s, ("pulses", 1, _us(width_s), _us(width_s) * 2))

    def pulses(self, name: str, t_s: float, *, n: int, every_s: float,
               width_s: float = 0.05) -> Scenario:
        """n count pulses (or lamp flashes) of width_s, one every every_s, from t_s."""
        if width_s >= every_s:
            raise ValueError("width_s must be shorter than every_s")
        return self._add(name, t_s, ("pulses", n, _us(width_s), _us(every_s)))

    def pattern(self, name: str, t_s: float, *, n: int, every_s: float,
                edges: list[tuple[float, int]], parts: int = 1) -> Scenario:
        """n repetitions, one every every_s, of `edges`: (offset_s, level) in time order,
        e.g. a contact that bounces before it closes. `parts` says how many real parts one
        repetition is (the truth expected_pulses() reports); the input returns to inactive
        when the pattern ends."""
        period = _us(every_s)
        pat = tuple((_us(off), 1 if lvl else 0) for off, lvl in edges)
        if any(b[0] <= a[0] for a, b in pairwise(pat)) or pat and pat[-1][0] >= period:
            raise ValueError("pattern edges must be in time order and within every_s")
        return self._add(name, t_s, ("pattern", n, period, pat, parts))

    def irq_latency(self, t_s: float, lo_us: int, hi_us: int) -> Scenario:
        """From t_s each IRQ handler starts lo_us..hi_us after its edge (soft IRQ model)."""
        if not 0 <= lo_us <= hi_us:
            raise ValueError("need 0 <= lo_us <= hi_us")
        self.latency.append((_us(t_s), lo_us, hi_us))
        self.latency.sort()
        return self

    def fault(self, kind: str, t_s: float, *, duration_s: float = 0.0) -> Scenario:
        """wifi_down (for duration_s); stall (the VM hangs for duration_s: soft IRQs queue, 8
        at most, and a hang longer than the watchdog timeout resets the node); gc (a garbage
        collection of duration_s, taken by the main loop at its next pass: soft IRQs queue);
        busy (the main loop is held up for duration_s but IRQs run: the edge ring can
        overflow); watchdog (reset now); soft_reset; power_loss (dark for duration_s, RTC
        memory lost); dns_down (the LAN's DNS server does not answer for duration_s)."""
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}: use one of {', '.join(FAULTS)}")
        self.faults.append((_us(t_s), kind, _us(duration_s)))
        self.faults.sort()
        return self

    def gc_pauses(self, every_s: float, pause_s: float, start_s: float = 0.0) -> Scenario:
        """Periodic garbage collections (5-30 ms on an ESP32): each is taken by the main loop
        at its next pass; meanwhile IRQ handlers wait and queue (8 at most)."""
        t = start_s + every_s
        while t < self.duration_s:
            self.fault("gc", t, duration_s=pause_s)
            t += every_s
        return self

    def compile(self, config: dict) -> dict:
        """The plain-data form the simulator takes (also passed into the MicroPython VM):
        {"inputs": {gpio: (invert, timeline)}, "faults": [...], "end_us": int}."""
        inputs = {}
        for section, names in (("lamps", LAMPS), ("counts", COUNTS)):
            for name, spec in config.get(section, {}).items():
                if isinstance(spec, int):
                    spec = {"pin": spec}
                invert = 1 if spec.get("active_low", True) else 0
                inputs[spec["pin"]] = (invert, list(self.timelines.get(name, [])))
        for name in self.timelines:
            section = "lamps" if name in LAMPS else "counts"
            if name not in config.get(section, {}):
                raise ValueError(f"the scenario drives {name}, which the config does not wire")
        return {"inputs": inputs, "faults": list(self.faults), "end_us": _us(self.duration_s),
                "latency": list(self.latency)}

    def expected_pulses(self, name: str) -> int:
        """How many pulses the timeline puts on a count input."""
        tl = self.timelines.get(name, [])
        end = _us(self.duration_s)
        total = 0
        for i, (t0, mode) in enumerate(tl):
            t1 = tl[i + 1][0] if i + 1 < len(tl) else end
            if mode[0] == "pulses":
                _, n, _, period = mode
                total += sum(1 for k in range(n) if t0 + k * period < t1)
            elif mode[0] == "pattern":
                _, n, period, pat, parts = mode
                last = pat[-1][0] if pat else 0
                total += parts * sum(1 for k in range(n) if t0 + k * period + last < t1)
        return total


def _spikes(t0_s: float, burst_s: float, spike_s: float, every_s: float
            ) -> list[tuple[float, int]]:
    out = []
    k = 0
    while k * every_s + spike_s <= burst_s + 1e-12:
        t = t0_s + k * every_s
        out += [(t, 1), (t + spike_s, 0)]
        k += 1
    return out


def chattering_part(width_s: float, spike_s: float, every_s: float,
                    burst_s: float = 0.002) -> list[tuple[float, int]]:
    """Edges of one part (for Scenario.pattern) on a chattering contact: a burst of spikes
    (spike_s wide, one every every_s) for burst_s as it closes, the closure of width_s, the
    same burst as it opens, and a burst of noise on the idle line 20 ms later (the pattern's
    every_s must leave room: width_s + 3 burst_s + 20 ms)."""
    make = _spikes(0.0, burst_s, spike_s, every_s)
    close = burst_s + every_s
    opened = close + width_s
    brk = _spikes(opened + every_s, burst_s, spike_s, every_s)
    noise = _spikes(opened + burst_s + 0.020, burst_s, spike_s, every_s)
    return make + [(close, 1), (opened, 0)] + brk + noise


def bouncing_part(width_s: float) -> list[tuple[float, int]]:
    """Edges of one part on a mechanical contact: it bounces for 2.1 ms as it closes (three
    contacts of 0.1-0.3 ms) and for 1.5 ms as it opens (two), closed width_s in between."""
    make = [(0.0, 1), (0.0003, 0), (0.0007, 1), (0.0009, 0), (0.0015, 1), (0.0016, 0),
            (0.0021, 1)]
    t = 0.0021 + width_s
    brk = [(t, 0), (t + 0.0003, 1), (t + 0.0008, 0), (t + 0.0011, 1), (t + 0.0015, 0)]
    return make + brk
