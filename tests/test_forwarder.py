"""Forwarder against a real VictoriaMetrics on loopback: exact values, outages, replays."""

import logging
import socket
import threading
import time
from types import SimpleNamespace

import pytest
import servers
from faultproxy import FaultProxy
from lampwatch.config import InfluxTarget
from lampwatch.influx.forwarder import (
    Forwarder,
    InfluxWriter,
    RetryPolicy,
    WriteError,
    forwarder_for,
)
from lampwatch.influx.points import Placement, event_points
from lampwatch.influx.writer import RETRY_AFTER_MAX_S, Failure, classify, retry_after_s
from lampwatch.journal import Journal

# The real-server fixtures, shared through tests/servers.py.
victoria_metrics = servers.victoria_metrics
victoria_metrics_stopped = servers.victoria_metrics_stopped

PLACES = {"husker": Placement("mill1", "L1"), "packer": Placement("mill1", "L2")}
T0 = 1_700_000_000  # s; VictoriaMetrics runs with -retentionPeriod=100y
T0_MS = T0 * 1000


class ScenarioJournal(Journal):
    """The real journal, plus a one-event append for readable scenarios."""

    def add_event(self, ts_s, kind, node_id, machine, data):
        self.commit(events=[(ts_s, kind, node_id, machine, data)])
        return self.last_event_id()


@pytest.fixture
def journal_path(tmp_path):
    return tmp_path / "journal.sqlite"


@pytest.fixture
def journal(journal_path):
    j = ScenarioJournal(journal_path)
    yield j
    j.close()


class Recording:
    """Wraps a real writer and keeps every attempted batch and its outcome."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def write(self, lines):
        try:
            self.inner.write(lines)
        except WriteError:
            self.calls.append((False, list(lines)))
            raise
        self.calls.append((True, list(lines)))


def writer(vm, **kwargs):
    return InfluxWriter(vm.url, "not-checked-by-victoria-metrics", "lampwatch", "lampwatch",
                        **kwargs)


def series(export, skip=()):
    """{"name{tag=v,...}": [(ts_ms, value), ...]} from /api/v1/export lines."""
    out = {}
    for item in export:
        metric = dict(item["metric"])
        name = metric.pop("__name__")
        if name in skip:
            continue
        key = name + "{" + ",".join(f"{k}={v}" for k, v in sorted(metric.items())) + "}"
        assert key not in out, key
        out[key] = list(zip(item["timestamps"], item["values"]))
    return out


H = "line=L1,machine=husker,node=7,plant=mill1"
HM = "line=L1,machine=husker,plant=mill1"
# VictoriaMetrics has no string values (it stores them as 0); they are checked in
# test_influx.py as exact line protocol, and on InfluxDB 1.x by the dashboard tests.
STRING_FIELDS = {"machine_state_state", "machine_state_prev", "lamp_state", "node_hello_fw",
                 "node_hello_reset_cause", "node_hello_config_hash", "stop_reason_by"}


def test_known_events_read_back_exactly(victoria_metrics, journal):
    j = journal
    j.add_event(T0 + 0.25, "hello", 7, "husker",
                {"boot_id": 3, "fw": "0.1.0", "reset_cause": "watchdog", "config_hash": "ab"})
    j.add_event(T0 + 0.5, "state", 7, "husker", {"state": "RUN", "prev": "OFF"})
    j.add_event(T0 + 0.5, "lamp", 7, "husker", {"lamp": "green", "state": "ON"})
    j.add_event(T0 + 10.125, "count", 7, "husker",
                {"good": 3, "ng": 1, "good_total": 103, "ng_total": 4, "boot_id": 3})
    j.add_event(T0 + 30, "health", 7, "husker",
                {"rssi": -67, "free_heap": 81234, "reconnects": 2, "frames_dropped": 0,
                 "irq_resyncs": 1, "events_dropped": 0, "unacked": 3, "clock_offset_ms": 12.5,
                 "clock_uncertainty_ms": 3})
    j.add_event(T0 + 40.001, "state", 7, "husker", {"state": "STOP", "prev": "RUN"})
    j.add_event(T0 + 60, "oee", None, "husker",
                {"shift": "A", "shift_start_s": T0 - 3600, "final": False, "availability": 0.75,
                 "performance": 0.5, "quality": 0.75, "oee": 0.28125, "good": 3, "ng": 1,
                 "coverage": 1, "losses": {"breakdown_s": 20.0}})
    j.add_event(T0 + 100, "reason", None, "husker",
                {"reason": "breakdown", "start_s": T0 + 40.001, "end_s": T0 + 100, "by": "board"})
    fwd = Forwarder(j, writer(victoria_metrics), PLACES, batch_size=3)
    step = fwd.drain()
    assert (step.events, step.failed) == (8, False)
    assert j.get_cursor("influxdb") == 8
    assert fwd.stats.write_failures == 0 and fwd.stats.writes == 3

    got = series(victoria_metrics.export(), skip=STRING_FIELDS)
    assert got == {
        f"node_hello_boot_id{{{H}}}": [(T0_MS + 250, 3)],
        f"machine_state_code{{{H}}}": [(T0_MS + 500, 4), (T0_MS + 40001, 2)],
        f"lamp_code{{lamp=green,{H}}}": [(T0_MS + 500, 1)],
        f"counts_good{{{H}}}": [(T0_MS + 10125, 3)],
        f"counts_ng{{{H}}}": [(T0_MS + 10125, 1)],
        f"counts_good_total{{{H}}}": [(T0_MS + 10125, 103)],
        f"counts_ng_total{{{H}}}": [(T0_MS + 10125, 4)],
        f"counts_boot_id{{{H}}}": [(T0_MS + 10125, 3)],
        **{f"node_health_{k}{{{H}}}": [(T0_MS + 30000, v)] for k, v in {
            "rssi": -67, "free_heap": 81234, "reconnects": 2, "frames_dropped": 0,
            "irq_resyncs": 1, "events_dropped": 0, "unacked": 3, "clock_offset_ms": 12.5,
            "clock_uncertainty_ms": 3, "last_seen_ms": T0_MS + 30000}.items()},
        **{f"oee_{k}{{{HM},shift=A}}": [(T0_MS + 60000, v)] for k, v in {
            "availability": 0.75, "performance": 0.5, "quality": 0.75, "oee": 0.28125,
            "good": 3, "ng": 1, "coverage": 1, "final": 0, "shift_start_s": T0 - 3600}.items()},
        f"oee_loss_seconds{{{HM.replace('machine', 'loss=breakdown,machine')},shift=A}}":
            [(T0_MS + 60000, 20)],
        f"oee_loss_final{{{HM.replace('machine', 'loss=breakdown,machine')},shift=A}}":
            [(T0_MS + 60000, 0)],
        **{f"stop_reason_{k}{{{HM},reason=breakdown}}": [(T0_MS + 100000, v)] for k, v in {
            "start_s": T0 + 40.001, "end_s": T0 + 100, "duration_s": 59.999}.items()},
    }


def add_counts(j, n, start=0, machine="husker"):
    """n count events, one per second, good_total = 100 + index: an ordered sequence."""
    for i in range(start, start + n):
        j.add_event(T0 + i, "count", 7, machine,
                    {"good": 1, "ng": 0, "good_total": 100 + i, "ng_total": 0, "boot_id": 1})


def good_totals(vm):
    got = series(vm.export('{__name__="counts_good_total"}'))
    return got.get(f"counts_good_total{{{H}}}", [])


def test_outage_keeps_cursor_then_drains_in_order_exactly_once(victoria_metrics_stopped,
                                                               journal, caplog):
    vm, j = victoria_metrics_stopped, journal
    rec = Recording(writer(vm, timeout_ms=2000))
    fwd = Forwarder(j, rec, PLACES, batch_size=4)
    add_counts(j, 6)

    # Not started yet: every attempt fails, is logged and counted; the cursor stays put
    # while the journal keeps growing.
    with caplog.at_level(logging.WARNING, logger="lampwatch.influx.forwarder"):
        for n in range(1, 4):
            step = fwd.run_once()
            assert step.failed and step.error.status is None
            assert fwd.stats.write_failures == n
            assert j.get_cursor("influxdb") is None
            add_counts(j, 2, start=4 + 2 * n)
    assert sum("InfluxDB write of 4 points failed" in r.message for r in caplog.records) == 3
    assert "unreachable" in fwd.stats.last_error

    vm.start()
    step = fwd.drain()
    assert (step.events, step.failed) == (12, False)
    assert j.get_cursor("influxdb") == 12 and fwd.stats.consecutive_failures == 0
    assert good_totals(vm) == [(T0_MS + i * 1000, 100 + i) for i in range(12)]

    # Stopped mid-stream (SIGTERM, see VictoriaMetrics.stop): one batch lands, the next
    # fails, the cursor stops exactly there.
    add_counts(j, 8, start=12)
    assert not fwd.run_once().failed
    vm.stop()
    assert fwd.run_once().failed
    assert j.get_cursor("influxdb") == 16
    vm.start()  # same port and data directory
    assert not fwd.drain().failed
    assert j.get_cursor("influxdb") == 20

    # Forced replay of batches already written: the server receives them again...
    # (the counter restarted with the server; since then events 17-20, 5 fields each)
    assert vm.wait_rows_inserted(4 * 5) == 4 * 5
    j.set_cursor("influxdb", 8)
    assert fwd.drain().events == 12
    assert vm.wait_rows_inserted(16 * 5) == 16 * 5
    # ...and still holds every point exactly once, in order.
    assert good_totals(vm) == [(T0_MS + i * 1000, 100 + i) for i in range(20)]

    # Everything that was accepted went in journal order, and every failure was a retry of
    # the very batch that then succeeded.
    ok = [line for success, lines in rec.calls if success for line in lines]
    seconds = [int(line.rsplit(" ", 1)[1]) // 10**9 - T0 for line in ok]
    assert seconds == list(range(20)) + list(range(8, 20))  # one line per count event
    for i, (success, lines) in enumerate(rec.calls):
        if not success:
            assert next(b for s, b in rec.calls[i:] if s) == lines


def test_background_runner_survives_outage_without_blocking_ingest(
        victoria_metrics_stopped, journal, journal_path):
    vm, j = victoria_metrics_stopped, journal
    fwd = Forwarder(lambda: Journal(journal_path), writer(vm, timeout_ms=2000), PLACES,
                    batch_size=50, poll_interval_s=0.05,
                    retry=RetryPolicy(initial_s=0.02, max_s=0.1))
    fwd.start()
    try:
        t = time.monotonic()
        for i in range(200):  # the ingest path keeps journaling while InfluxDB is down
            add_counts(j, 1, start=i)
            fwd.notify()
        assert time.monotonic() - t < 5.0
        deadline = time.monotonic() + 10
        while fwd.stats.write_failures < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert fwd.stats.write_failures >= 3
        assert j.get_cursor("influxdb") is None

        vm.start()
        deadline = time.monotonic() + 15
        while j.get_cursor("influxdb") != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert j.get_cursor("influxdb") == 200
    finally:
        fwd.stop(timeout_s=10)
    assert not any(t.name == "influx-forwarder" for t in threading.enumerate())
    assert good_totals(vm) == [(T0_MS + i * 1000, 100 + i) for i in range(200)]


def test_hung_server_times_out_and_is_reported():
    with socket.socket() as s:  # accepts TCP connections (backlog) but never answers
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        w = InfluxWriter(f"http://127.0.0.1:{s.getsockname()[1]}", "t", "o", "b",
                         timeout_ms=300)
        t = time.monotonic()
        with pytest.raises(WriteError) as err:
            w.write(["m v=1 1"])
        assert time.monotonic() - t < 5 and err.value.status is None
        w.close()


def test_malformed_event_is_skipped_logged_and_counted(victoria_metrics, journal, caplog):
    add_counts(journal, 2)
    journal.add_event(T0 + 2, "count", 7, "husker", "{not json")
    add_counts(journal, 2, start=3)
    fwd = Forwarder(journal, writer(victoria_metrics), PLACES)
    with caplog.at_level(logging.ERROR, logger="lampwatch.influx.forwarder"):
        assert fwd.drain().events == 5
    assert fwd.stats.events_skipped == 1 and journal.get_cursor("influxdb") == 5
    assert "skips event 3 (count)" in caplog.text
    assert [v for _, v in good_totals(victoria_metrics)] == [100, 101, 103, 104]


class Refusing:
    """Stands for a server that refuses some points for good (HTTP 400), e.g. InfluxDB 1.x
    on a field type conflict; VictoriaMetrics accepts everything, so this one is faked."""

    def __init__(self):
        self.accepted = []

    def write(self, lines):
        if any("good_total=102i" in line for line in lines):
            raise WriteError("400 field type conflict", 400)
        self.accepted.extend(lines)


def test_refused_event_is_isolated_and_the_rest_written(journal):
    add_counts(journal, 5)
    fwd = Forwarder(journal, Refusing(), PLACES, batch_size=10)
    step = fwd.run_once()
    assert (step.events, step.failed) == (5, False)
    assert fwd.stats.events_skipped == 1 and fwd.stats.write_failures == 2
    assert journal.get_cursor("influxdb") == 5
    totals = [line.split("good_total=")[1].split("i")[0] for line in fwd.writer.accepted]
    assert totals == ["100", "101", "103", "104"]


def test_retry_policy_is_exponential_capped_and_jittered():
    p = RetryPolicy(initial_s=1, multiplier=2, max_s=60, jitter=0.25)
    assert [p.delay_s(n, rand=lambda: 0.0) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert p.delay_s(3, rand=lambda: 1.0) == 3.0
    assert p.delay_s(10_000, rand=lambda: 0.0) == 60
    assert all(45 <= p.delay_s(50) <= 60 for _ in range(100))
    with pytest.raises(ValueError):
        RetryPolicy(initial_s=0)
    with pytest.raises(ValueError):
        RetryPolicy(jitter=2)


def test_writer_hides_token_and_maps_influxdb1():
    w = InfluxWriter.for_influxdb1("http://127.0.0.1:8086", "lampwatch", "autogen",
                                   "user", "s3cret-pw")
    assert (w.bucket, w.org) == ("lampwatch/autogen", "-")
    assert "s3cret" not in repr(w)
    w.close()


def test_rejects_table_is_written_when_it_changes(victoria_metrics, journal):
    journal.commit(rejects={("udp:10.0.0.5:4210", "bad_tag"): (3, T0 + 5.0),
                            ("udp:10.0.0.5:4999", "bad_tag"): (2, T0 + 7.0),
                            ("serial:/dev/ttyUSB0", "bad_cobs"): (1, T0 + 9.5)})
    fwd = Forwarder(journal, writer(victoria_metrics), PLACES)
    assert fwd.run_once().points == 2
    assert fwd.run_once().points == 0 and fwd.stats.writes == 1  # unchanged: nothing sent
    journal.commit(rejects={("udp:10.0.0.5:4210", "bad_tag"): (1, T0 + 20.0)})
    assert fwd.run_once().points == 2
    got = series(victoria_metrics.export('{__name__="frames_rejected_count"}'))
    assert got == {
        "frames_rejected_count{reason=bad_tag,source=udp:10.0.0.5}":
            [(T0_MS + 7000, 5), (T0_MS + 20000, 6)],
        "frames_rejected_count{reason=bad_cobs,source=serial:/dev/ttyUSB0}":
            [(T0_MS + 9500, 1)],
    }


def test_forwarder_for_config_runs_in_its_own_thread_with_its_own_journal(victoria_metrics, journal,
                                                                 journal_path, monkeypatch):
    monkeypatch.setenv("LW_TEST_INFLUX_TOKEN", "secret-token")
    config = SimpleNamespace(
        influxdb=InfluxTarget(victoria_metrics.url, "lampwatch", "lampwatch",
                              token_env="LW_TEST_INFLUX_TOKEN"),
        journal_path=journal_path,
        nodes={7: SimpleNamespace(node_id=7, machine="husker", plant="mill1", line="L1")})
    fwd = forwarder_for(config, poll_interval_s=0.05)
    assert "secret" not in repr(fwd.writer)
    add_counts(journal, 3)
    fwd.start()
    try:
        deadline = time.monotonic() + 10
        while journal.get_cursor("influxdb") != 3 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        fwd.stop()
    assert good_totals(victoria_metrics) == [(T0_MS + i * 1000, 100 + i) for i in range(3)]
    assert forwarder_for(SimpleNamespace(influxdb=None)) is None


# --- failures classified once: rejected, too large, throttled or unavailable --------------

@pytest.fixture
def proxy(victoria_metrics):
    p = FaultProxy(victoria_metrics.url).start()
    yield p
    p.stop()


def test_failures_are_classified_by_status():
    assert [classify(s) for s in (400, 422)] == [Failure.REJECTED] * 2
    assert classify(413) is Failure.TOO_LARGE
    # No answer, throttling, server trouble, and settings to fix (token, bucket): retried,
    # never dropped, because the journal keeps every event until they are fixed.
    assert {classify(s) for s in (None, 401, 403, 404, 429, 500, 502, 503, 504)} \
        == {Failure.RETRY}


def test_retry_after_in_seconds_or_as_a_date_capped():
    assert retry_after_s("7") == 7.0 and retry_after_s(" 0 ") == 0.0
    assert retry_after_s("Wed, 21 Oct 2015 07:28:30 GMT", now_s=1445412480.0) == 30.0
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT", now_s=1445412500.0) == 0.0
    assert retry_after_s("86400") == RETRY_AFTER_MAX_S
    assert retry_after_s(None) is None and retry_after_s("soon") is None
    p = RetryPolicy(initial_s=1, max_s=60, jitter=0)
    assert p.delay_s(1, retry_after_s=5.0) == 5.0 and p.delay_s(4, retry_after_s=5.0) == 8.0


def test_too_large_batch_is_split_until_each_part_fits(proxy, victoria_metrics, journal):
    add_counts(journal, 8)
    one_line = len(next(p.to_line_protocol() for p in event_points(
        journal.events_after(0, 1)[0], PLACES)).encode())
    proxy.max_body = 2 * one_line + 8  # two events per write fit, three do not
    fwd = Forwarder(journal, InfluxWriter(proxy.url, "t", "lampwatch", "lampwatch"), PLACES,
                    batch_size=8)
    step = fwd.drain()
    assert (step.events, step.failed) == (8, False)
    assert fwd.stats.events_skipped == 0 and fwd.stats.batches_split == 3  # 8 -> 4+4 -> 2x2
    assert journal.get_cursor("influxdb") == 8
    assert good_totals(victoria_metrics) == [(T0_MS + i * 1000, 100 + i) for i in range(8)]
    assert [s for _, s, _ in proxy.log] == [413, 413, 204, 204, 413, 204, 204]


def test_one_event_too_large_on_its_own_is_skipped_and_the_rest_written(proxy, journal,
                                                                        victoria_metrics,
                                                                        caplog):
    add_counts(journal, 3)
    journal.add_event(T0 + 3, "reason", 7, "husker", {"reason": "breakdown", "start_s": T0,
                                                       "end_s": T0 + 3, "by": "x" * 5000})
    add_counts(journal, 2, start=4)
    proxy.max_body = 4000
    fwd = Forwarder(journal, InfluxWriter(proxy.url, "t", "lampwatch", "lampwatch"), PLACES)
    with caplog.at_level(logging.ERROR, logger="lampwatch.influx.forwarder"):
        step = fwd.drain()
    assert (step.events, step.failed) == (6, False)
    assert fwd.stats.events_skipped == 1 and journal.get_cursor("influxdb") == 6
    assert "skips event 4 (reason)" in caplog.text
    assert [v for _, v in good_totals(victoria_metrics)] == [100, 101, 102, 104, 105]


@pytest.mark.parametrize("status", [429, 503])
def test_throttled_write_waits_for_retry_after_then_lands(proxy, victoria_metrics, journal,
                                                          journal_path, status):
    add_counts(journal, 5)
    proxy.answers = [(status, {"Retry-After": "1.5"})]
    fwd = Forwarder(lambda: Journal(journal_path),
                    InfluxWriter(proxy.url, "t", "lampwatch", "lampwatch"), PLACES,
                    poll_interval_s=0.05, retry=RetryPolicy(initial_s=0.01, max_s=0.05))
    fwd.start()
    try:
        deadline = time.monotonic() + 10
        while journal.get_cursor("influxdb") != 5 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        fwd.stop()
    (t_refused, s_refused, _), (t_next, s_next, _) = proxy.log[:2]
    assert (s_refused, s_next) == (status, 204)
    # Our own backoff would have tried again after at most 50 ms.
    assert t_next - t_refused >= 1.5
    assert fwd.stats.write_failures == 1 and fwd.stats.events_skipped == 0
    assert good_totals(victoria_metrics) == [(T0_MS + i * 1000, 100 + i) for i in range(5)]


def test_wrong_token_is_retried_and_loses_nothing(proxy, victoria_metrics, journal):
    add_counts(journal, 4)
    proxy.answers = [(401, {}), (403, {})]
    fwd = Forwarder(journal, InfluxWriter(proxy.url, "t", "lampwatch", "lampwatch"), PLACES)
    for status in (401, 403):
        step = fwd.run_once()
        assert step.failed and step.error.status == status
        assert journal.get_cursor("influxdb") is None and fwd.stats.events_skipped == 0
    assert not fwd.drain().failed
    assert good_totals(victoria_metrics) == [(T0_MS + i * 1000, 100 + i) for i in range(4)]
