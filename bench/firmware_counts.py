"""Count bench: the highest line rate the node counts exactly, per counting mode.

    .venv/bin/python bench/firmware_counts.py [--seconds 20] [--seeds 1 2] [--no-vm]

Runs the unmodified firmware on the virtual node, config max_rate_hz set to the line's rate
as hw/wiring.md tells a technician to, at rising rates (50 % duty pulses), and prints one
JSON object: for each mode (hardware pulse counter, IRQ-only) and condition, the highest rate
at which every run counted every part exactly (difference 0), and each rate's result:

- baseline: the node's necessary work only: ideal IRQs (each handler at its edge), no GC.
- latency_gc: handlers 50-100 us after their edge (the ESP32 port's soft IRQs, queue of 8),
  and 15 ms garbage collections every 0.5 s.
- chatter: handlers 50-100 us late, and each part's contact chatters as it closes and opens:
  spikes 40 us wide every 80 us, for a tenth of the period (at most 2 ms) each time.

Searched in the CPython engine (every seed must be exact); the highest exact rate of each
mode and condition is then run once more in the real MicroPython VM (unless --no-vm).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from lampwatch import protocol
from lampwatch.vnode import Scenario, VirtualNode

ROOT = Path(__file__).resolve().parent.parent
CONFIG = json.loads((ROOT / "firmware" / "config.example.json").read_text())
KEYS = {CONFIG["node_id"]: bytes.fromhex(CONFIG["key"])}
RATES_HZ = (10, 25, 50, 100, 150, 200, 250, 300, 350, 400)  # config allows 0.1-400
SPIKE_S, SPIKE_EVERY_S = 40e-6, 80e-6


def spikes(t0: float, burst: float) -> list[tuple[float, int]]:
    out = []
    k = 0
    while k * SPIKE_EVERY_S + SPIKE_S <= burst:
        t = t0 + k * SPIKE_EVERY_S
        out += [(t, 1), (t + SPIKE_S, 0)]
        k += 1
    return out


def chattering(period: float) -> list[tuple[float, int]]:
    """One part of a contact chattering as it closes and opens; closed 40 % of the period."""
    burst = min(0.002, period / 10)
    close = burst + SPIKE_EVERY_S
    opened = close + 0.4 * period
    return spikes(0.0, burst) + [(close, 1), (opened, 0)] + spikes(opened + SPIKE_EVERY_S,
                                                                     burst)


def scenario(rate: float, condition: str, seconds: float) -> Scenario:
    n = int(seconds * rate)
    sc = Scenario(duration_s=seconds + 7)  # heartbeats after the last part
    if condition == "chatter":
        sc.pattern("good", 1.0, n=n, every_s=1 / rate, edges=chattering(1 / rate))
    else:
        sc.pulses("good", 1.0, n=n, every_s=1 / rate, width_s=0.5 / rate)
    if condition == "latency_gc":
        sc.gc_pauses(every_s=0.5, pause_s=0.015)
    return sc


def run(rate: float, condition: str, mode: str, seconds: float, seed: int,
        engine: str = "cpython") -> dict:
    sc = scenario(rate, condition, seconds)
    options = {"irq": "instant"} if condition == "baseline" else {}
    node = VirtualNode(dict(CONFIG, max_rate_hz=rate), sc, engine=engine, seed=seed,
                       has_counter=mode == "hardware", vm_timeout_s=1200, **options)
    t0 = time.monotonic()
    node.run_until(sc.duration_s)
    wall = time.monotonic() - t0
    frames = [protocol.decode(f.data, KEYS) for f in node.frames]
    counted = [f.body.good for f in frames if f.header.type == protocol.T_HEARTBEAT][-1]
    truth = sc.expected_pulses("good")
    return {"rate_hz": rate, "seed": seed, "engine": engine, "truth": truth,
            "counted": counted, "difference": counted - truth,
            "irq_dropped": node.stats()["irq_dropped"], "wall_s": round(wall, 2)}


def search(condition: str, mode: str, seconds: float, seeds: list[int]) -> dict:
    """Rates in order until the first one any seed miscounts: the highest exact rate is
    the last one before it."""
    tried = []
    best = None
    for rate in RATES_HZ:
        results = [run(rate, condition, mode, seconds, s) for s in seeds]
        exact = all(r["difference"] == 0 for r in results)
        tried.append({"rate_hz": rate, "exact": exact,
                      "differences": [r["difference"] for r in results],
                      "irq_dropped": max(r["irq_dropped"] for r in results)})
        if not exact:
            break
        best = rate
    return {"highest_exact_hz": best, "rates": tried}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="seconds of parts per run")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2],
                    help="latency draws per rate (CPython engine)")
    ap.add_argument("--no-vm", action="store_true", help="skip the MicroPython VM check")
    args = ap.parse_args()
    t0 = time.monotonic()
    out: dict = {"bench": "firmware_counts", "seconds_of_parts": args.seconds,
                 "seeds": args.seeds, "rates_tried_hz": list(RATES_HZ), "modes": {}}
    for mode in ("hardware", "irq-only"):
        res = {}
        for condition in ("baseline", "latency_gc", "chatter"):
            r = search(condition, mode, args.seconds, args.seeds)
            if r["highest_exact_hz"] is not None and not args.no_vm:
                vm = run(r["highest_exact_hz"], condition, mode, args.seconds, args.seeds[0],
                         "micropython")
                r["micropython_vm"] = {k: vm[k] for k in ("truth", "counted", "difference",
                                                          "wall_s")}
            res[condition] = r
        out["modes"][mode] = res
    out["wall_s"] = round(time.monotonic() - t0, 1)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
