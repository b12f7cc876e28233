"""Ingest benchmark: simulated nodes over loopback UDP into a collector, against a baseline.

    .venv/bin/python bench/ingest.py [--nodes 1000] [--frames 200000] [--seconds 20]
        [--rate 1] [--heartbeats counting|idle] [--rounds 1] [--sync full|normal]
        [--deriver real|null] [--no-baseline] [--floor] [--calendar]
    .venv/bin/python bench/ingest.py --nodes 10000 --rate 1 --frames 0 --seconds 20

Two receivers, in turn, in subprocesses, each on a fresh journal and fed the same frames by
the same sender: "lampwatch" (the collector: decode + verify + dedupe + derivation + journal
+ ACK) and "baseline" (bench/baseline.py: HMAC check + SQLite WAL insert with
synchronous=FULL + ACK after the commit, nothing else). `--rounds` alternates them.
Per receiver, one JSON object:
- max_throughput: N nodes send HEARTBEATs as fast as ACKs come back (a bounded window of
  unACKed frames, resent after 1 s, as a node's ring does); frames/s counts frames ACKed.
  `counting`: each HEARTBEAT reports one more good part (a count event each, the worst
  case); `idle`: nothing changes (the heartbeat of a stopped or idle machine).
- steady: each node sends `rate` frames a second, spread evenly: `--mix lamp` every one a
  LAMP frame with a lamp change (a state change each: the worst case), `--mix plant` one in
  20 (the others HEARTBEATs, every other one a part more); latency is from sendto() to the
  ACK arriving. Both receivers ACK only after the commit,
  so this is an upper bound of "lamp -> in the journal".
  Before it, `--warmup` seconds of the same load, not timed (every node's first frames
  seed its dedupe window, clock anchor and machine state: a cold start, not the steady state).
- receiver CPU seconds (from /proc) and CPU per ACKed frame, per phase; RSS now and peak.
- journal: both phases check afterwards that it holds exactly the ACKed frames.
`efficiency`: baseline CPU per frame / lampwatch CPU per frame, per round and phase (the
goal: >= 0.8). `--floor` adds a third receiver, "floor" (bench/baseline.py --journal: the
baseline plus the rows lampwatch's journal keeps, in its schema with its indexes: a count
event per counting HEARTBEAT, heard and sources), and `efficiency_vs_floor`: floor CPU per
frame / lampwatch's in the max_throughput phase (HEARTBEATs only), what lampwatch's Python
costs above what its journal's schema costs. The sender runs in this process and shares the
machine's cores with the receiver, as it would not in a plant.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lampwatch.node_files import firmware_dir

sys.path.insert(0, str(firmware_dir()))
import lwproto

BOOT = 0x0B0B0001
_ACK = struct.Struct(">BHIBHI")
_RUNNER = """
import asyncio, os, signal, sys
from lampwatch.cli.collect import setup_logging
from lampwatch.derive import NullDeriver
from lampwatch.config import load_config
from lampwatch.runtime import CollectorRuntime
cfg = load_config(sys.argv[1])
setup_logging("warning")
async def main():
    stop = asyncio.Event()
    for s in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(s, stop.set)
    await CollectorRuntime(cfg, deriver=NullDeriver() if sys.argv[2] == "null" else None).run(stop)
if os.environ.get("LWBENCH_PROFILE"):  # cProfile the collector into that file
    import cProfile
    cProfile.run("asyncio.run(main())", os.environ["LWBENCH_PROFILE"])
else:
    asyncio.run(main())
"""


_CALENDAR = ["[calendar]", 'time_zone = "UTC"'] + [
    line for name, a, b in (("A", "00:00", "08:00"), ("B", "08:00", "16:00"),
                            ("C", "16:00", "00:00"))
    for line in ("[[calendar.shifts]]", f'name = "{name}"', f'start = "{a}"', f'end = "{b}"')]


def write_config(tmp: Path, port: int, nodes: int, sync: str, calendar: bool = False) -> Path:
    """The collector's config: `nodes` nodes with the bench's keys; `calendar`: three 8 h
    shifts round the clock, so the live OEE and its per-minute points run as in a plant."""
    lines = (_CALENDAR + [""] if calendar else []) + ["[collector]", f'udp_listen = "127.0.0.1:{port}"', 'journal = "journal.sqlite"',
             f'journal_sync = "{sync}"', 'log_level = "warning"', ""]
    for n in range(1, nodes + 1):
        lines += ["[[nodes]]", f"id = {n}", 'plant = "bench"', 'line = "l"',
                  f'machine = "m{n}"', f'key = "{key(n).hex()}"', "ideal_cycle_s = 1.0", ""]
    path = tmp / "collector.toml"
    path.write_text("\n".join(lines))
    return path


def key(n: int) -> bytes:
    return n.to_bytes(2, "big") * 8


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def acked_seqs(data: bytes):
    """(node, seqs) of an ACK, unverified: the collector's tags are checked in the tests."""
    if len(data) != 22:
        return None, ()
    _, node, _, hi, lo, bitmap = _ACK.unpack_from(data)
    base = (hi << 16) | lo
    return node, [base] + [base + 1 + i for i in range(32) if bitmap >> i & 1]


def drain(sock: socket.socket, on_ack) -> None:
    while True:
        try:
            data = sock.recv(64)
        except BlockingIOError:
            return
        node, seqs = acked_seqs(data)
        for s in seqs:
            on_ack(node, s)


def max_throughput(sock, addr, frames: list[tuple[int, int, bytes]], window: int) -> dict:
    pending: dict[tuple[int, int], float] = {}
    done: set[tuple[int, int]] = set()
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ)
    nxt, resent = 0, 0
    t0 = time.perf_counter()

    def on_ack(node, seq):
        if pending.pop((node, seq), None) is not None:
            done.add((node, seq))

    deadline = t0 + 300
    while len(done) < len(frames) and time.perf_counter() < deadline:
        while len(pending) < window and nxt < len(frames):
            node, seq, data = frames[nxt]
            try:
                sock.send(data)
            except BlockingIOError:
                break
            pending[(node, seq)] = time.perf_counter()
            nxt += 1
        sel.select(0.05)
        drain(sock, on_ack)
        now = time.perf_counter()
        if nxt >= len(frames) or len(pending) >= window:
            for (node, seq), sent in list(pending.items())[:256]:
                if now - sent > 1.0:  # lost (socket buffer full): resend like a node
                    sock.send(frames_by_key[(node, seq)])
                    pending[(node, seq)] = now
                    resent += 1
    elapsed = time.perf_counter() - t0
    return {"frames": len(frames), "acked": len(done), "seconds": round(elapsed, 3),
            "frames_per_s": round(len(done) / elapsed), "resent": resent, "window": window}


frames_by_key: dict[tuple[int, int], bytes] = {}


def steady(sock, nodes: int, seconds: float, start_s: float = 0, rate: float = 1.0,
           mix: str = "lamp", drain_s: float = 2.0) -> dict:
    """Each node sends `rate` frames a second (spread evenly over the nodes) for `seconds`;
    `start_s`: seconds of the nodes' boot already sent (a later run continues their sequence
    numbers). mix "lamp": every frame a LAMP frame changing the green lamp (a lamp and a
    state event each, the worst case); "plant": one frame in 20 such a LAMP frame, the others
    HEARTBEATs with the lamps as they are, every other one reporting one more good part.
    After the last send, ACKs are awaited up to `drain_s`."""
    codecs = [lwproto.Codec(n, key(n)) for n in range(1, nodes + 1)]
    rounds = int(seconds * rate)
    total = nodes * rounds
    plan = []  # (offset_s, node, seq, frame): node n sends at (n/nodes + k) / rate seconds
    for k in range(rounds):
        r = int(start_s * rate) + k  # rounds since the nodes' first
        seq = 100000 + r
        for i, c in enumerate(codecs):
            up = int(1000 * (start_s + k / rate)) + i
            # plant: node i toggles green at rounds r = -i mod 20; green starts ON
            toggles = (r - (-i) % 20) // 20 + 1 if r >= (-i) % 20 else 0
            green = r % 2 if mix == "lamp" else 1 - toggles % 2
            if mix == "lamp" or (r + i) % 20 == 0:
                f = c.lamp(BOOT, seq, up, [(lwproto.GREEN, green, up)])
            else:
                f = c.heartbeat(BOOT, seq, up, 1000 + r // 2, 0, [green, 0, 0, 0, 0])
            plan.append(((k + i / nodes) / rate, c.node_id, seq, f))
    sent_at: dict[tuple[int, int], float] = {}
    lat: list[float] = []

    def on_ack(node, seq):
        t = sent_at.pop((node, seq), None)
        if t is not None:
            lat.append(time.perf_counter() - t)

    t0 = time.perf_counter()
    late = 0
    for offset, node, seq, data in plan:
        while True:
            now = time.perf_counter()
            wait = t0 + offset - now
            if wait <= 0:
                break
            drain(sock, on_ack)
            time.sleep(min(wait, 0.0005))
        late += (now - (t0 + offset)) > 0.005
        sent_at[(node, seq)] = time.perf_counter()
        sock.send(data)
        drain(sock, on_ack)
    end = time.perf_counter() + drain_s
    while sent_at and time.perf_counter() < end:
        drain(sock, on_ack)
        time.sleep(0.001)
    elapsed = time.perf_counter() - t0
    lat.sort()

    def pct(p):
        return round(1000 * lat[min(len(lat) - 1, int(p * len(lat)))], 2) if lat else None

    return {"nodes": nodes, "seconds": seconds, "rate_hz": rate, "frames": total,
            "acked": len(lat), "elapsed_s": round(elapsed, 3),
            "frames_per_s": round(len(lat) / elapsed) if elapsed else None,
            "latency_ms": {"p50": pct(0.50), "p90": pct(0.90), "p99": pct(0.99),
                           "max": round(1000 * lat[-1], 2) if lat else None},
            "sends_late_over_5ms": late}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--frames", type=int, default=200_000,
                    help="HEARTBEATs of the max_throughput phase (0: skip it)")
    ap.add_argument("--window", type=int, default=4000)
    ap.add_argument("--seconds", type=float, default=20.0, help="of the steady phase")
    ap.add_argument("--warmup", type=float, default=3.0,
                    help="seconds of the steady load sent, not timed, before it is timed")
    ap.add_argument("--rate", type=float, default=1.0, help="frames/s per node, steady phase")
    ap.add_argument("--mix", choices=("lamp", "plant"), default="lamp",
                    help="steady phase: every frame a lamp change, or a plant's mix")
    ap.add_argument("--heartbeats", choices=("counting", "idle"), default="counting",
                    help="counting: each HEARTBEAT one part more; idle: nothing changes")
    ap.add_argument("--rounds", type=int, default=1, help="lampwatch, baseline, ... alternated")
    ap.add_argument("--sync", choices=("full", "normal"), default="full")
    ap.add_argument("--deriver", choices=("real", "null"), default="real")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--floor", action="store_true",
                    help="also run the journal floor (bench/baseline.py --journal)")
    ap.add_argument("--calendar", action="store_true",
                    help="three 8 h shifts: the live OEE runs (a point per machine a minute)")
    args = ap.parse_args()
    frames = heartbeats(args.nodes, args.frames, args.heartbeats == "idle")
    runs: dict[str, list[dict]] = {"lampwatch": [], "baseline": [], "floor": []}
    kinds = ("lampwatch",) + (() if args.no_baseline else ("baseline",)) + (
        ("floor",) if args.floor else ())
    for _ in range(args.rounds):
        for kind in kinds:
            runs[kind].append(receiver_run(kind, args, frames))
    result = {
        "machine": {"cores": os.cpu_count(), "python": sys.version.split()[0],
                    "loadavg_1min": os.getloadavg()[0]},
        "settings": {"nodes": args.nodes, "journal_sync": args.sync, "deriver": args.deriver,
                     "heartbeats": args.heartbeats, "rate_hz": args.rate, "mix": args.mix,
                     "steady_s": args.seconds, "warmup_s": args.warmup,
                     "calendar": args.calendar},
        **{k: v for k, v in runs.items() if v},
    }
    if runs["baseline"]:
        result["efficiency"] = efficiency(runs)
    if runs["floor"]:
        # max_throughput only: the floor derives nothing from LAMP frames (the steady phase's)
        result["efficiency_vs_floor"] = efficiency(runs, "floor", ("max_throughput",))
    print(json.dumps(result, indent=2))


def efficiency(runs: dict[str, list[dict]], against: str = "baseline",
               phases: tuple[str, ...] = ("max_throughput", "steady")) -> dict:
    """`against`'s CPU per frame / lampwatch CPU per frame, per round and phase (1.0:
    lampwatch costs what the necessary work costs)."""
    out: dict[str, list[float]] = {}
    for lw, base in zip(runs["lampwatch"], runs[against]):
        for phase in phases:
            a, b = lw.get(phase, {}), base.get(phase, {})
            if a.get("cpu_us_per_frame") and b.get("cpu_us_per_frame"):
                out.setdefault(phase, []).append(
                    round(b["cpu_us_per_frame"] / a["cpu_us_per_frame"], 3))
    return out


def heartbeats(nodes: int, count: int, idle: bool) -> list[tuple[int, int, bytes]]:
    """`count` HEARTBEATs, round robin over the nodes: (node, seq, frame)."""
    frames = []
    codecs = [lwproto.Codec(n, key(n)) for n in range(1, nodes + 1)]
    for seq in range(1, -(-count // nodes) + 1):
        for c in codecs:
            good = 0 if idle else seq
            f = c.heartbeat(BOOT, seq, 1000 * seq, good, 0, [1, 0, 0, 0, 0])
            frames.append((c.node_id, seq, f))
            frames_by_key[(c.node_id, seq)] = f
    return frames[:count]


def rss_mb(pid: int) -> dict:
    """Resident memory of a process now and at its peak (VmHWM), MB."""
    status = dict(line.split(":", 1) for line in
                  Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {"now": round(int(status["VmRSS"].split()[0]) / 1024, 1),
            "peak": round(int(status["VmHWM"].split()[0]) / 1024, 1)}


def receiver_run(kind: str, args, frames: list) -> dict:
    """Start the collector ("lampwatch") or bench/baseline.py on a fresh journal, run both
    phases against it, check its journal, stop it."""
    with tempfile.TemporaryDirectory(prefix="lwbench") as tmp_name:
        tmp = Path(tmp_name)
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        if kind == "lampwatch":
            cfg = write_config(tmp, port, args.nodes, args.sync, args.calendar)
            cmd = [sys.executable, "-c", _RUNNER, str(cfg), args.deriver]
        else:  # the baseline, or with --journal its floor
            cmd = [sys.executable, str(Path(__file__).with_name("baseline.py")), str(port),
                   str(tmp / "journal.sqlite"), str(args.nodes)] + (
                       ["--journal"] if kind == "floor" else [])
        proc = subprocess.Popen(cmd)
        try:
            return run(proc, port, args, tmp, frames)
        finally:
            stop(proc)

def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the collector (it commits what is pending and exits); kill it after 30 s."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def connect(port: int, tries: int = 150) -> socket.socket:
    """A non-blocking UDP socket to the collector on `port`, once it ACKs a probe frame."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    sock.connect(("127.0.0.1", port))
    # Wait for the collector to listen: a probe frame from node 1 until it is ACKed.
    hello = lwproto.Codec(1, key(1)).health(BOOT, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    sock.settimeout(0.2)
    for _ in range(tries):
        try:
            sock.send(hello)
            sock.recv(64)
            break
        except OSError:  # not listening yet (refused) or no answer yet
            time.sleep(0.1)
    else:
        raise SystemExit("collector did not answer")
    sock.setblocking(False)
    return sock


def phase_cpu(proc, result: dict, cpu0: float) -> dict:
    cpu = cpu_s(proc.pid) - cpu0
    result["receiver_cpu_s"] = round(cpu, 2)
    if result["acked"]:
        result["cpu_us_per_frame"] = round(1e6 * cpu / result["acked"], 1)
    return result


def run(proc, port: int, args, tmp: Path, frames: list) -> dict:
    sock = connect(port, tries=600)
    out: dict = {"startup_rss_mb": rss_mb(proc.pid)}
    acked = 0
    if frames:
        cpu0 = cpu_s(proc.pid)
        out["max_throughput"] = phase_cpu(proc, max_throughput(sock, None, frames, args.window),
                                          cpu0)
        acked += out["max_throughput"]["acked"]
        time.sleep(1.0)
    if args.seconds > 0:
        start_s = 0
        if args.warmup > 0:  # every node's first frames (new boot, anchor, state): not timed
            w = steady(sock, args.nodes, args.warmup, rate=args.rate, mix=args.mix,
                       drain_s=120.0)  # the timed phase starts on an idle collector
            out["warmup"] = {"acked": w["acked"], "frames": w["frames"],
                             "elapsed_s": w["elapsed_s"]}
            acked += w["acked"]
            start_s = args.warmup
            time.sleep(1.0)
        cpu0 = cpu_s(proc.pid)
        out["steady"] = phase_cpu(proc, steady(sock, args.nodes, args.seconds, start_s=start_s,
                                               rate=args.rate, mix=args.mix), cpu0)
        acked += out["steady"]["acked"]
    out["rss_mb"] = rss_mb(proc.pid)
    time.sleep(1.5)  # the collector's last tick commit
    sock.close()
    db = sqlite3.connect(tmp / "journal.sqlite")
    stored = db.execute("SELECT count(*), count(DISTINCT node_id || '/' || seq) FROM frames"
                        ).fetchone()
    has_events = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'events'").fetchone()
    events = db.execute("SELECT count(*) FROM events").fetchone()[0] if has_events else 0
    db.close()
    out["journal"] = {"frames": stored[0], "distinct": stored[1], "events": events,
                      "expected_frames": 1 + acked}
    return out

if __name__ == "__main__":
    main()
