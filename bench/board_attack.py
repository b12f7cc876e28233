"""The Andon board under attack: collector memory, ingest latency and legitimate board
requests while HTTP clients misbehave; a collector in a subprocess, as systemd runs it.

    .venv/bin/python bench/board_attack.py [--clients 150] [--headers 100] [--header-kib 64]
        [--seconds 10] [--nodes 200] [--idle 1100] [--nofile 1024]

Prints one JSON object:
- baseline: N nodes send one LAMP frame a second each over loopback UDP (bench/ingest.py's
  steady run); latency is sendto() -> ACK (the ACK follows the journal commit); a board
  user's GET /api/board every 0.5 s from another address. No attack: the figures the
  attack is compared with, in the same run.
- headers_attack: the same while C clients each send H headers of K KiB and never the
  blank line that ends them, reconnecting whenever the board closes them (from a separate
  process). Collector RSS (/proc, every 50 ms): its peak growth over the RSS before the
  attack. A legitimate GET /api/board from another address every 0.5 s meanwhile.
- idle_flood: I connections opened and left idle, then legitimate requests (the page, the
  JSON, the live stream) from the same and from another address.
The collector runs with the open-file limit `--nofile` (1024: what a service gets without
LimitNOFILE); this process raises its own soft limit (within the hard one) for the flood.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ingest  # bench/ingest.py: the config, the nodes, the steady sender

PIN = "583920"
_PIN_ENV = "LW_BENCH_BOARD_PIN"
# `lampwatch collect` with a lower open-file soft limit, set by the child itself.
_COLLECT = """import resource, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
want = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_NOFILE, (want if hard == resource.RLIM_INFINITY
                                            else min(want, hard), hard))
sys.argv[:2] = ["lampwatch"]
from lampwatch.cli import main
main()
"""


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for {pid}")


def start_collector(tmp: Path, nodes: int, nofile: int, sync: str):
    """A `lampwatch collect` subprocess with the board; (process, udp port, board port)."""
    udp, board = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
    cfg = ingest.write_config(tmp, udp, nodes, sync)
    cfg.write_text(cfg.read_text() + f'\n[board]\nlisten = "127.0.0.1:{board}"\n'
                   f'operator_pin_env = "{_PIN_ENV}"\n')
    with open(tmp / "collector.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-c", _COLLECT, str(nofile), "collect",
                                 "--config", str(cfg)], stderr=log,
                                env=dict(os.environ, **{_PIN_ENV: PIN}))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", board), timeout=0.2).close()
            return proc, udp, board
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"the collector did not start: {(tmp / 'collector.log').read_text()}")


def get(port: int, path: str = "/api/board", source: str = "127.0.0.3",
        timeout_s: float = 5.0) -> tuple[int, float]:
    """(status, seconds) of one legitimate request; status 0 when it failed."""
    t = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s,
                                      source_address=(source, 0))
    try:
        conn.request("GET", path)
        res = conn.getresponse()
        if path == "/events":
            status = res.status if res.status != 200 or res.readline() else 0
        else:
            res.read()
            status = res.status
    except OSError as exc:
        status = 0
        errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
    finally:
        conn.close()
    return status, time.perf_counter() - t


errors: dict[str, int] = {}  # why legitimate requests failed, by exception type


class Sampler(threading.Thread):
    """Collector RSS every 50 ms, and a legitimate GET /api/board every 0.5 s."""

    def __init__(self, pid: int, board: int):
        super().__init__(daemon=True)
        self.pid, self.board, self.stop_at = pid, board, None
        self.peak_kib, self.requests = 0, []
        self._done = threading.Event()

    def run(self):
        next_get = time.monotonic()
        while not self._done.is_set():
            self.peak_kib = max(self.peak_kib, rss_kib(self.pid))
            if time.monotonic() >= next_get:
                next_get += 0.5
                self.requests.append(get(self.board))
            self._done.wait(0.05)

    def finish(self):
        self._done.set()
        self.join()

    def summary(self) -> dict:
        codes, took = [s for s, _ in self.requests], sorted(d for _, d in self.requests)
        return {"board_requests": len(codes), "board_ok": codes.count(200),
                "board_ms": {"p50": round(1000 * took[len(took) // 2], 1) if took else None,
                             "max": round(1000 * took[-1], 1) if took else None}}


def attacker(port: int, clients: int, headers: int, header_bytes: int, seconds: float,
             sources: int = 1) -> dict:
    """`clients` connections each sending a request head and `headers` lines of
    `header_bytes`, never the blank line; a connection the server closes is reopened.
    Client i sends from 127.0.1.(1 + i % sources): one address, or many."""
    pad = b"X-Pad: " + b"a" * (header_bytes - 9) + b"\r\n"
    payload = memoryview(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n" + pad * headers)
    sel = selectors.DefaultSelector()
    sent_at: dict[socket.socket, int] = {}
    stats = {"connections": 0, "bytes_sent": 0, "closed_by_board": 0, "answered_400": 0,
             "finished_all_headers": 0}

    def open_one():
        s = socket.socket()
        s.bind((f"127.0.1.{1 + stats['connections'] % sources}", 0))
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE)
        sent_at[s] = 0
        stats["connections"] += 1

    def reopen(s):
        sel.unregister(s)
        del sent_at[s]
        s.close()
        stats["closed_by_board"] += 1
        open_one()

    for _ in range(clients):
        open_one()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for key, events in sel.select(0.05):
            s = key.fileobj
            if events & selectors.EVENT_READ:
                try:
                    data = s.recv(65536)
                except BlockingIOError:
                    data = None
                except OSError:
                    data = b""
                if data == b"":
                    reopen(s)
                    continue
                if data and data.startswith(b"HTTP/1.") and data[9:12] == b"400":
                    stats["answered_400"] += 1
            if events & selectors.EVENT_WRITE:
                off = sent_at[s]
                try:
                    n = s.send(payload[off:off + (256 << 10)])
                except BlockingIOError:
                    continue
                except OSError:
                    reopen(s)
                    continue
                sent_at[s] += n
                stats["bytes_sent"] += n
                if sent_at[s] >= len(payload):  # all sent: hold it open, never finishing
                    stats["finished_all_headers"] += 1
                    sel.modify(s, selectors.EVENT_READ)
    for s in list(sent_at):
        s.close()
    return stats


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def idle_flood(pid: int, port: int, count: int, source: str = "127.0.0.4") -> dict:
    """`count` connections from `source` opened and left idle, then legitimate requests
    from the same address and another; the collector's open files meanwhile."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = count + 256
    if soft != resource.RLIM_INFINITY and soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            raise SystemExit(f"the idle flood needs {need} open files; the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    socks = []
    fds0, peak = fds(pid), 0
    t = time.perf_counter()
    for _ in range(count):
        s = socket.socket()
        s.bind((source, 0))
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        socks.append(s)
    # Every connect is done (accepted by the kernel) before the legitimate requests.
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_WRITE)
    pending, deadline = len(socks), time.monotonic() + 20
    while pending and time.monotonic() < deadline:
        peak = max(peak, fds(pid))
        for key, _ in sel.select(0.1):
            sel.unregister(key.fileobj)
            pending -= 1
    opened_s = time.perf_counter() - t
    legit = {}
    for path in ("/", "/api/board", "/events"):
        for src in (source, "127.0.0.5"):
            legit[f"{path} from {src}"] = get(port, path, src)
            peak = max(peak, fds(pid))
    for _ in range(20):  # the kernel hands the rest over as the board accepts them
        peak = max(peak, fds(pid))
        time.sleep(0.1)
    for s in socks:
        s.close()
    return {"connections": count, "connected": count - pending,
            "open_s": round(opened_s, 2), "collector_fds_before": fds0,
            "collector_fds_peak": peak,
            "legit": {k: {"status": s, "ms": round(1000 * d, 1)} for k, (s, d) in legit.items()}}


def run(args) -> dict:
    """The whole run (main's JSON); `args` as main parses them."""
    errors.clear()
    with tempfile.TemporaryDirectory(prefix="lwattack") as tmp_name:
        tmp = Path(tmp_name)
        proc, udp, board = start_collector(tmp, args.nodes, args.nofile, args.sync)
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            sock.connect(("127.0.0.1", udp))
            sock.setblocking(False)
            result = {"machine": {"cores": os.cpu_count(), "python": sys.version.split()[0]},
                      "settings": {k: v for k, v in vars(args).items() if k != "attacker"}}
            ingest.steady(sock, args.nodes, 2, start_s=0)  # warm up: every node's first frame
            rss0 = rss_kib(proc.pid)
            sampler = Sampler(proc.pid, board)  # the same board requests as under attack
            sampler.start()
            cpu0 = ingest.cpu_s(proc.pid)
            base = ingest.steady(sock, args.nodes, args.seconds, start_s=2)
            base["collector_cpu_s"] = round(ingest.cpu_s(proc.pid) - cpu0, 2)
            sampler.finish()
            result["baseline"] = {"latency_ms": base["latency_ms"], "acked": base["acked"],
                                  "collector_cpu_s": base["collector_cpu_s"],
                                  "frames": base["frames"], "rss_mib": round(rss0 / 1024, 1),
                                  "rss_peak_mib": round(sampler.peak_kib / 1024, 1),
                                  **sampler.summary()}
            rss1 = rss_kib(proc.pid)
            sampler = Sampler(proc.pid, board)
            # The attacker runs at a lower priority: in a plant it is another machine; here
            # it shares the cores with the collector and the node sender.
            attack = subprocess.Popen(
                ["nice", "-n", "10", sys.executable, __file__, "--attacker", str(board),
                 "--clients", str(args.clients), "--headers", str(args.headers),
                 "--header-kib", str(args.header_kib), "--seconds", str(args.seconds + 1),
                 "--sources", str(args.sources)], stdout=subprocess.PIPE)
            sampler.start()
            time.sleep(0.5)  # the attack is under way before the first measured frame
            cpu0 = ingest.cpu_s(proc.pid)
            hit = ingest.steady(sock, args.nodes, args.seconds, start_s=2 + int(args.seconds))
            hit["collector_cpu_s"] = round(ingest.cpu_s(proc.pid) - cpu0, 2)
            sampler.finish()
            out, _ = attack.communicate(timeout=60)
            result["headers_attack"] = {
                "latency_ms": hit["latency_ms"], "acked": hit["acked"], "frames": hit["frames"],
                "collector_cpu_s": hit["collector_cpu_s"], "rss_before_mib": round(rss1 / 1024, 1),
                "rss_peak_mib": round(sampler.peak_kib / 1024, 1),
                "rss_growth_mib": round((sampler.peak_kib - rss1) / 1024, 1),
                **sampler.summary(), "attacker": json.loads(out)}
            if args.idle:
                result["idle_flood"] = idle_flood(proc.pid, board, args.idle)
            result["after"] = {"rss_mib": round(rss_kib(proc.pid) / 1024, 1),
                               "peak_rss_mib": round(rss_kib(proc.pid, "VmHWM") / 1024, 1)}
        finally:
            ingest.stop(proc)
        log = (tmp / "collector.log").read_text(errors="replace")
        if os.environ.get("LW_BENCH_KEEP_LOG"):
            Path(os.environ["LW_BENCH_KEEP_LOG"]).write_text(log)
        result["legit_errors"] = errors
        result["collector_log"] = {"lines": log.count("\n"),
                                   "tracebacks": log.count("Traceback"),
                                   "pin_shown": PIN in log, "exit_code": proc.returncode}
        return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=150)
    ap.add_argument("--headers", type=int, default=100)
    ap.add_argument("--header-kib", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--nodes", type=int, default=200)
    ap.add_argument("--idle", type=int, default=1100)
    ap.add_argument("--nofile", type=int, default=1024)
    ap.add_argument("--sync", choices=("full", "normal"), default="full")
    ap.add_argument("--sources", type=int, default=1,
                    help="attacker source addresses (127.0.1.x), up to 254")
    ap.add_argument("--attacker", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.attacker:
        print(json.dumps(attacker(args.attacker, args.clients, args.headers,
                                  args.header_kib << 10, args.seconds, args.sources)))
        return
    print(json.dumps(run(args), indent=2))


if __name__ == "__main__":
    main()
