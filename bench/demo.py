"""Demo benchmark: `lampwatch demo` at its speed, against the plant's nodes alone.

    .venv/bin/python bench/demo.py [--shift-hours 8] [--speed 240] [--no-baseline]

"demo": `lampwatch demo --board off` in a subprocess (the collector, its journal, six virtual
nodes running the real firmware over loopback UDP, the table), its wall time, the simulated
hours and the real seconds of the run as the demo says them at the end, and the speed that
makes (asked: `--speed`), its CPU (user, system) and peak RSS, and the frames the collector
took and the resent ones.
"baseline": the necessary work under it, in a subprocess too: the same six nodes with the
same scenarios and seed, run to the same simulated time as fast as they go, their frames
ACKed in memory (no collector, no network, no waiting): what simulating the plant costs.
One JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_BASELINE = """
import json, sys, time
from lampwatch.demo import plant as demo_plant
from lampwatch.demo.run import _LEAD_S, _TAIL_S
from lampwatch.vnode import VirtualNode
shift_s = float(sys.argv[1]) * 3600
plans = demo_plant.build_plant(shift_s, 1, lead_s=_LEAD_S, tail_s=_TAIL_S, seed=1)
t0 = time.monotonic()
nodes = [VirtualNode(demo_plant.node_config(p.spec, "00" * 16, 1), p.scenario,
                     seed=1000 + p.spec.node_id) for p in plans]
end = plans[0].scenario.duration_s
for n in nodes:
    n.run_until(end)
print(json.dumps({"sim_s": end, "wall_s": time.monotonic() - t0,
                  "frames": sum(len(n.frames) for n in nodes)}))
"""


def child(cmd: list[str], cwd: Path) -> tuple[str, dict]:
    """Run `cmd`: its output, and its wall time, CPU and peak RSS (its own: os.wait4)."""
    with open(cwd / "out.txt", "w+") as out:
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    if proc.returncode:
        raise SystemExit(f"{cmd[0]} failed ({proc.returncode}):\n{text[-2000:]}")
    return text, {"wall_s": round(wall, 2), "cpu_user_s": round(usage.ru_utime, 2),
                  "cpu_system_s": round(usage.ru_stime, 2),
                  "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shift-hours", type=float, default=8.0)
    ap.add_argument("--speed", type=float, default=240.0)
    ap.add_argument("--no-baseline", action="store_true")
    args = ap.parse_args()
    result: dict = {"date": time.strftime("%Y-%m-%d"),
                    "machine": {"cores": os.cpu_count(), "python": sys.version.split()[0],
                                "loadavg_1min": os.getloadavg()[0]},
                    "settings": {"shift_hours": args.shift_hours, "speed": args.speed}}
    lampwatch = Path(sys.executable).with_name("lampwatch")
    with tempfile.TemporaryDirectory(prefix="lwbench-demo") as tmp:
        text, run = child([str(lampwatch), "demo", "--board", "off", "--speed",
                           str(args.speed), "--shift-hours", str(args.shift_hours),
                           "--journal", "demo.sqlite"], Path(tmp))
        # what it says at the end: "the shift ended: H simulated hours in S s" (from the
        # nodes' start: the process's start and the report are not in it) and "N frames
        # accepted, M resent ..."
        ended = re.search(r"ended: ([\d.]+) simulated hours in ([\d.]+) s", text)
        took = re.search(r"([\d,]+) frames accepted, ([\d,]+) resent", text)
        if ended is None or took is None:
            raise SystemExit(f"the demo's output is not as expected:\n{text[-2000:]}")
        hours, seconds = float(ended[1]), float(ended[2])
        run.update(sim_hours=hours, run_s=seconds, speed=round(hours * 3600 / seconds, 1),
                   frames=int(took[1].replace(",", "")), resent=int(took[2].replace(",", "")))
        result["demo"] = run
        if not args.no_baseline:
            text, base = child([sys.executable, "-c", _BASELINE, str(args.shift_hours)],
                               Path(tmp))
            inner = json.loads(text.strip().splitlines()[-1])
            base.update(sim_hours=round(inner["sim_s"] / 3600, 2), run_s=round(inner["wall_s"], 2),
                        speed=round(inner["sim_s"] / inner["wall_s"], 1),
                        frames=inner["frames"])
            result["baseline"] = base
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
