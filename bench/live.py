"""Live benchmark: a plant's collector over simulated hours of a shift, against a baseline.

    .venv/bin/python bench/live.py [--machines 1000] [--hours 2] [--heartbeat-s 10]
                                   [--lamp-every-s 240] [--no-calendar]
                                   [--window-min 10] [--restart-at H] [--no-baseline]

A collector (the real Collector, Deriver with a three-shift calendar, journal with its
upkeep: rollups and retention) is fed, in this process and on a simulated clock, what
`--machines` nodes send: a HEARTBEAT every `--heartbeat-s` with the parts made since (a part
per 2.5 s while running), a LAMP frame when the lamp changes (about every `--lamp-every-s`: 4
minutes), and its tick once a simulated second, as the runtime does. Frames go straight to
Collector.submit (no UDP: bench/ingest.py prices that) and are committed in batches of
2,000, like a busy collector's. Hours of a shift pass in minutes, so what grows with the
shift shows: the live OEE, the per-minute rollups, the clock anchors, the timelines.
`--no-calendar`: a collector without shifts (no live OEE), whose memory should stop growing
once every window is full (a dedupe bitmap spans 2,048 frames: 34 min at 1 frame/s).

Per `--window-min` simulated minutes it prints the RSS and the tick's wall time (p50, p99,
max: the tick blocks ingest while it runs), and for the whole run the CPU per frame and per
tick. The baseline is the same run with nothing but the necessary work: frames verified,
deduped, journaled and ACKed (a NullDeriver, no upkeep), so its ticks only commit. Each run
is its own process (RSS is per run). Issue 14's targets: a tick never stops ingest for more
than a few tens of ms, and memory that does not grow with the shift beyond its data.

`--restart-at H`: after H simulated hours the collector stops and a new one starts on the
same journal in a new process (no simulated time passes), as after a crash or an update. It
prints how long the start took (`start_s`: the runtime's start, the journal's replay;
`process_start_s`: from the old collector's stop, with the interpreter and the config), the
RSS before the stop and the new process's, how many ticks passed until every machine had
its first `oee` point again (each machine walks its shift from the start: live_oee.py), and
the ticks' wall times until then. From then on the figures are the new process's (its
windows' RSS, `rss_end_mb`, `rss_peak_mb`); CPU per frame and the ticks cover both.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

T0 = 1_780_041_600.0  # 2026-05-29 08:00 UTC: shift B's start (bench/ingest.py's calendar)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def pct(xs: list[float], p: float) -> float:
    return round(1000 * sorted(xs)[min(len(xs) - 1, int(p * len(xs)))], 2) if xs else 0.0


def run(kind: str, machines: int, hours: float, hb_s: float, window_min: float,
        restart_at: float | None = None, lamp_s: float = 240.0, calendar: bool = True,
        resume: Path | None = None) -> dict:
    """One run in this process: "lampwatch" or "baseline". `resume`: the state file a run
    left at its restart; this process is the new collector and goes on from there."""
    import asyncio

    sys.path.insert(0, str(Path(__file__).parent))
    from ingest import BOOT, key, lwproto, write_config
    from lampwatch.config import load_config
    from lampwatch.derive import NullDeriver
    from lampwatch.runtime import CollectorRuntime

    state = json.loads(resume.read_text()) if resume else None
    tmp = Path(state["dir"]) if state else Path(tempfile.mkdtemp(prefix="lwlive"))
    path = (tmp / "collector.toml" if state
            else write_config(tmp, 0, machines, "normal", calendar=calendar))
    cfg = load_config(path)
    now = [T0]
    out: dict = state["out"] if state else {"kind": kind, "windows": []}

    pointed: set[str] = set()  # machines with an `oee` point since the (re)start

    async def start() -> CollectorRuntime:
        rt = CollectorRuntime(cfg, clock=lambda: now[0], forward=False,
                              deriver=NullDeriver() if kind == "baseline" else None)
        await rt.start()
        if kind == "baseline":
            rt.collector.upkeep = None
        real_tick = rt.deriver.tick

        def tick(now_s: float):  # watches the points the deriver makes
            events = real_tick(now_s)
            pointed.update(e.machine for e in events if e.kind == "oee")
            return events

        rt.deriver.tick = tick  # type: ignore[method-assign]
        return rt

    async def main() -> dict:
        if state:  # the restarted collector: a new process, as after a crash or an update
            now[0] = state["now"]
            w0 = time.perf_counter()
            rt = await start()
            out["restart"].update(start_s=round(time.perf_counter() - w0, 2),
                                  process_start_s=round(time.time() - state["stopped_at"], 2),
                                  rss_started_mb=rss_mb())
            k0, after = state["k"], []  # after: tick times since the restart, until caught up
            lamp, seq, good = state["lamp"], state["seq"], state["good"]
            ticks, all_ticks = state["ticks"], state["all_ticks"]
            tick_cpu, frames, cpu_before = state["tick_cpu"], state["frames"], state["cpu"]
            next_tick = state["next_tick"]
        else:
            rt = await start()
            out["rss_started_mb"] = rss_mb()
            k0, after = 0, None
            lamp, seq, good = [1] * machines, [0] * machines, [0] * machines
            ticks, all_ticks = [], []
            tick_cpu, frames, cpu_before = 0.0, 0, 0.0
            next_tick = T0 + 1.0
        codecs = [lwproto.Codec(n, key(n)) for n in range(1, machines + 1)]  # (the nodes)
        col = rt.collector
        restart_k = None if restart_at is None or state else int(restart_at * 3600 / hb_s)
        cpu0 = time.process_time()
        steps = int(hours * 3600 / hb_s)
        for k in range(k0, steps):
            if k == restart_k:
                # The collector stops and a new process starts on the same journal (what a
                # restart costs in memory is a fresh process's, not this one's high-water
                # mark); the run goes on in it (below).
                col.flush()
                out["restart"] = {"at_sim_h": restart_at, "rss_before_mb": rss_mb()}
                await rt.stop()
                del rt, col
                left = tmp / "restart.json"
                left.write_text(json.dumps({
                    "dir": str(tmp), "out": out, "now": now[0], "k": k, "lamp": lamp,
                    "seq": seq, "good": good, "ticks": ticks, "all_ticks": all_ticks,
                    "tick_cpu": tick_cpu, "frames": frames, "next_tick": next_tick,
                    "cpu": cpu_before + time.process_time() - cpu0,
                    "stopped_at": time.time()}))
                return {"resume": str(left)}
            for i, c in enumerate(codecs):
                t = now[0] = T0 + k * hb_s + i * hb_s / machines
                while t >= next_tick:
                    c0, w0 = time.process_time(), time.perf_counter()
                    col.tick()
                    ticks.append(time.perf_counter() - w0)
                    tick_cpu += time.process_time() - c0
                    next_tick += 1.0
                    if after is not None:
                        after.append(ticks[-1])
                        if len(pointed) >= machines or kind == "baseline":
                            out["restart"].update(
                                ticks_until_all_points=len(after),
                                tick_ms={"p50": pct(after, 0.5), "p99": pct(after, 0.99),
                                         "max": pct(after, 1.0)})
                            after = None
                up = int((t - T0 + 5.0) * 1000)
                seq[i] += 1
                if (k * hb_s + i * 7.0) % lamp_s < hb_s:  # about every lamp_s: the lamp changes
                    lamp[i] ^= 1
                    f = c.lamp(BOOT, seq[i], up, [(lwproto.GREEN, lamp[i], up)])
                else:  # the parts made since the last heartbeat (a part per 2.5 s running)
                    good[i] += int((k + 1) * hb_s / 2.5) - int(k * hb_s / 2.5) if lamp[i] else 0
                    f = c.heartbeat(BOOT, seq[i], up, good[i], 0, [lamp[i], 0, 0, 0, 0])
                col.submit(f, "udp:127.0.0.1:1", None)
                frames += 1
                if frames % 2000 == 0:
                    col.flush()
            if (k + 1) * hb_s % (60 * window_min) < hb_s:
                out["windows"].append({
                    "sim_min": round((k + 1) * hb_s / 60), "rss_mb": rss_mb(),
                    "tick_ms": {"n": len(ticks), "p50": pct(ticks, 0.5), "p99": pct(ticks, 0.99),
                                "max": pct(ticks, 1.0)}})
                all_ticks += ticks
                ticks = []
        # CPU per frame: both processes' frames, without the restart's start (timed above)
        cpu = cpu_before + time.process_time() - cpu0
        out.update(frames=frames, ticks=len(all_ticks),
                   cpu_us_per_frame=round(1e6 * (cpu - tick_cpu) / frames, 1),
                   tick_cpu_ms_mean=round(1000 * tick_cpu / max(1, len(all_ticks)), 2),
                   tick_ms={"p50": pct(all_ticks, 0.5), "p99": pct(all_ticks, 0.99),
                            "p999": pct(all_ticks, 0.999), "max": pct(all_ticks, 1.0)},
                   rss_end_mb=rss_mb(),
                   rss_peak_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))
        await rt.stop()
        return out

    try:
        out = asyncio.run(main())
        if "resume" in out:  # the run goes on in a new process; its result is this run's
            child = subprocess.run(
                [sys.executable, __file__, "--run", kind, "--resume", out["resume"],
                 "--machines", str(machines), "--hours", str(hours), "--heartbeat-s", str(hb_s),
                 "--window-min", str(window_min), "--lamp-every-s", str(lamp_s)]
                + ([] if calendar else ["--no-calendar"]), check=True, capture_output=True,
                text=True)
            out = json.loads(child.stdout.strip().splitlines()[-1])
        return out
    finally:  # the journal of a shift of 1,000 machines is ~1 GB: never left in /tmp
        if not state:  # (the run that made it removes it)
            shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--machines", type=int, default=1000)
    ap.add_argument("--hours", type=float, default=2.0)
    ap.add_argument("--heartbeat-s", type=float, default=10.0)
    ap.add_argument("--lamp-every-s", type=float, default=240.0)
    ap.add_argument("--no-calendar", action="store_true")
    ap.add_argument("--window-min", type=float, default=10.0)
    ap.add_argument("--restart-at", type=float, help="simulated hours: restart the collector")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--run", choices=("lampwatch", "baseline"), help=argparse.SUPPRESS)
    ap.add_argument("--resume", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.run:  # a child: one run, its JSON on stdout
        print(json.dumps(run(args.run, args.machines, args.hours, args.heartbeat_s,
                             args.window_min, args.restart_at, args.lamp_every_s,
                             not args.no_calendar, args.resume)))
        return
    result = {"date": time.strftime("%Y-%m-%d"),
              "machine": {"cores": os.cpu_count(), "python": sys.version.split()[0]},
              "settings": {"machines": args.machines, "hours": args.hours,
                           "heartbeat_s": args.heartbeat_s, "restart_at": args.restart_at,
                           "lamp_every_s": args.lamp_every_s,
                           "calendar": not args.no_calendar}}
    for kind in ("lampwatch",) if args.no_baseline else ("lampwatch", "baseline"):
        child = subprocess.run(
            [sys.executable, __file__, "--run", kind, "--machines", str(args.machines),
             "--hours", str(args.hours), "--heartbeat-s", str(args.heartbeat_s),
             "--window-min", str(args.window_min), "--lamp-every-s", str(args.lamp_every_s)]
            + (["--no-calendar"] if args.no_calendar else [])
            + ([] if args.restart_at is None else ["--restart-at", str(args.restart_at)]),
            check=True, capture_output=True, text=True)
        result[kind] = json.loads(child.stdout.strip().splitlines()[-1])
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
