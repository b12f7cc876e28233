"""Real servers on free loopback ports for the tests (tier 3), as helpers and pytest fixtures.

Installed by `scripts/install.sh --test` from Debian packages; nothing here is mocked.
Import from test modules as `from servers import victoria_metrics, VictoriaMetrics`
(tests/conftest.py puts tests/ on sys.path).
"""

from __future__ import annotations

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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
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
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
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
