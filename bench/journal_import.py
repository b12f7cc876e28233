"""Import benchmark: memory stays bounded while `lampwatch journal import` reads a big file.

    .venv/bin/python bench/journal_import.py [--nodes 100] [--frames 1000000] [--part 0.1]

Generates a raw-frames file (JSON Lines, as `journal export` writes): per node a HEARTBEAT
every 10 s with growing counts, signed with the firmware's own codec. Then, each in a fresh
process, and in the same run:
- baseline: reads and parses every line (history/jsonl.parse_line), with the same modules
  imported: the memory any import needs;
- import of the first `--part` of the file (a tenth) into a fresh journal;
- import of the whole file into a fresh journal.
Prints one JSON object: peak RSS of each (MB, VmHWM), frames/s and CPU s per frame of
the imports, and `growth_mb`: the whole file's peak less the part's. Bounded memory means
the growth stops once the collector's dedupe window of each node is full (4,096 seqs a
node and boot, host/dedupe.py): compare two parts both past it (`--part 0.5` with 10,000+
frames a node).
The config has two-hour shifts round the clock, so the running shift's OEE is evaluated
each minute as live, and the deriver forgets a shift's timeline after it (without shifts
the live deriver keeps every machine's per-minute counts: a growth of its own, not the
import's).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lampwatch.history.jsonl import format_line
from lampwatch.node_files import firmware_dir

sys.path.insert(0, str(firmware_dir()))
import lwproto

T0 = 1_772_409_600.0  # 2026-03-02 00:00 UTC
BOOT = 0x0B0B0001
_PROBE = """
import json, sys, time
def hwm_kb():
    # VmHWM: this process's own peak RSS (ru_maxrss would start at the parent's size: the
    # fork's copy of its memory counts until exec)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
from lampwatch.history import transfer
from lampwatch.history.jsonl import parse_line
mode, path, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
t, c = time.perf_counter(), time.process_time()
def lines():
    with open(path) as f:
        for i, line in enumerate(f):
            if i >= limit:
                return
            yield line
if mode == "baseline":
    n = sum(1 for i, line in enumerate(lines()) if parse_line(line, str(i)))
else:
    from lampwatch.config import load_config
    st = transfer.import_frames(lines(), path, load_config(sys.argv[4]))
    n = st.accepted
print(json.dumps({"frames": n, "wall_s": time.perf_counter() - t,
                  "cpu_s": time.process_time() - c,
                  "rss_mb": hwm_kb() / 1024}))
"""


def key(n: int) -> bytes:
    return n.to_bytes(2, "big") * 8


def write_config(tmp: Path, name: str, nodes: int) -> Path:
    lines = ["[collector]", "udp_listen = false", f'journal = "{name}.sqlite"',
             'log_level = "warning"', ""]
    for n in range(1, nodes + 1):
        lines += ["[[nodes]]", f"id = {n}", 'plant = "bench"', 'line = "l"',
                  f'machine = "m{n}"', f'key = "{key(n).hex()}"', "ideal_cycle_s = 1.0", ""]
    # two-hour shifts round the clock: the running shift's OEE is evaluated live as in a
    # plant, and each shift's end lets the deriver forget the last one's timeline
    lines += ["[calendar]", 'time_zone = "UTC"', ""]
    for h in range(0, 24, 2):
        lines += ["[[calendar.shifts]]", f'name = "s{h:02d}"', f'start = "{h:02d}:00"',
                  f'end = "{(h + 2) % 24:02d}:00"', ""]
    path = tmp / f"{name}.toml"
    path.write_text("\n".join(lines))
    return path


def write_frames(path: Path, nodes: int, frames: int) -> None:
    codecs = [lwproto.Codec(n, key(n)) for n in range(1, nodes + 1)]
    with open(path, "w") as f:
        for i in range(frames):
            k, n = divmod(i, nodes)
            up_ms = 10_000 * (k + 1)
            raw = codecs[n].heartbeat(BOOT, k, up_ms, 5 * k, k // 50, [1, 0, 0, 0, 0])
            rx = T0 + n * 10.0 / nodes + up_ms / 1000 + 0.003
            f.write(format_line(rx, f"udp:10.0.{n // 256}.{n % 256}:4210", raw) + "\n")


def probe(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _PROBE, *map(str, args)], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--frames", type=int, default=1_000_000)
    ap.add_argument("--part", type=float, default=0.1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        dump = tmp / "frames.jsonl"
        t = time.perf_counter()
        write_frames(dump, args.nodes, args.frames)
        made_s = time.perf_counter() - t
        tenth = int(args.frames * args.part)
        base = probe("baseline", dump, args.frames)
        part = probe("import", dump, tenth, write_config(tmp, "part", args.nodes))
        whole = probe("import", dump, args.frames, write_config(tmp, "whole", args.nodes))
    assert part["frames"] == tenth and whole["frames"] == args.frames, (part, whole)
    print(json.dumps({
        "date": time.strftime("%Y-%m-%d"), "nodes": args.nodes, "frames": args.frames,
        "file_written_s": round(made_s, 1),
        "baseline_parse_only": {"rss_mb": round(base["rss_mb"], 1),
                                "wall_s": round(base["wall_s"], 1)},
        "import_part": {"frames": tenth, "rss_mb": round(part["rss_mb"], 1)},
        "import_whole": {"rss_mb": round(whole["rss_mb"], 1),
                         "wall_s": round(whole["wall_s"], 1),
                         "frames_per_s": round(args.frames / whole["wall_s"]),
                         "cpu_us_per_frame": round(1e6 * whole["cpu_s"] / args.frames, 1)},
        "growth_mb": round(whole["rss_mb"] - part["rss_mb"], 1),
        "over_baseline_mb": round(whole["rss_mb"] - base["rss_mb"], 1),
    }, indent=2))


if __name__ == "__main__":
    main()
