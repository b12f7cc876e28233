"""The unified namespace's pure parts and its config (issue 16): topics and payloads, the
[uns] / [[uns_source]] tables, the broker-fed source's checks and clock. No broker here:
tests/test_uns_brokers.py and tests/test_uns_links.py run the real ones."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

import pytest
from lampwatch.collector import Collector
from lampwatch.config import parse_config
from lampwatch.errors import ConfigError, ProtocolError
from lampwatch.journal import Journal
from lampwatch.node_files import firmware_dir
from lampwatch.sources.uns import StreamClock, UnsSource
from lampwatch.uns import topics
from lampwatch.uns.settings import stream_name

sys.path.insert(0, str(firmware_dir()))  # the firmware's own codec builds the frames
import lwproto

KEY = bytes(range(16))
NODE = {"id": 7, "plant": "cikarang", "line": "press-line-2", "machine": "press-07",
        "key": KEY.hex()}
AT = topics.places([parse_config({"nodes": [NODE]}).nodes[7]])


def cfg(**tables):
    return parse_config({"nodes": [NODE], **tables}, Path("/etc/lampwatch/collector.toml"))


# --- payloads -------------------------------------------------------------------------------

def test_raw_message_is_the_exact_frame_with_its_receive_time_and_identity():
    frame = lwproto.Codec(7, KEY).heartbeat(0xDEADBEEF, 42, 5000, 10, 1, [1, 0, 0, 0, 0])
    m = topics.raw_message("lampwatch", "cikarang", 7, 0xDEADBEEF, 42, 3, 1764568800.123456,
                           "udp:10.0.0.5:4210", frame)
    assert m.topic == "lampwatch/cikarang/_raw/7"
    assert m.id == "7.3735928559.42" and not m.retain
    assert json.loads(m.payload) == {
        "node": 7, "boot": 3735928559, "seq": 42, "type": "HEARTBEAT",
        "rx": "2025-12-01T06:00:00.123456Z", "rx_s": 1764568800.123456,
        "source": "udp:10.0.0.5:4210", "frame": base64.b64encode(frame).decode()}
    back = topics.parse_raw(m.payload)
    assert (back.frame, back.rx_s, back.node, back.boot, back.seq) == (
        frame, 1764568800.123456, 7, 0xDEADBEEF, 42)


@pytest.mark.parametrize("payload", [
    b"", b"not json", b"[]", b'{"node": 7}',
    b'{"node":7,"boot":1,"seq":2,"rx_s":1.5,"frame":"!!!"}',
    b'{"node":"7","boot":1,"seq":2,"rx_s":1.5,"frame":"AAAA"}',
    b'{"node":7,"boot":1,"seq":2,"rx_s":NaN,"frame":"AAAA"}',
    b'{"node":7,"boot":1,"seq":2,"rx_s":true,"frame":"AAAA"}',
    b"\xff\xfe"])
def test_a_message_that_is_not_a_raw_frame_is_a_clear_bad_message(payload):
    with pytest.raises(ProtocolError) as err:
        topics.parse_raw(payload)
    assert err.value.reason == "bad_message"
    assert "\n" not in str(err.value)


def test_state_count_oee_and_reason_messages():
    state = topics.event_message("lampwatch", AT, 11, 1764568800.5, "state", 7, "press-07",
                                 {"state": "STOP", "prev": "RUN", "reason": "setup"})
    assert state.topic == "lampwatch/cikarang/press-line-2/press-07/state" and state.retain
    assert json.loads(state.payload) == {
        "state": "STOP", "since": "2025-12-01T06:00:00.500Z", "since_s": 1764568800.5,
        "reason": "setup", "prev": "RUN", "node": 7, "machine": "press-07", "event": 11}
    count = topics.event_message("lampwatch", AT, 12, 1764568801.0, "count", 7, "press-07",
                                 {"good": 3, "ng": 1, "good_total": 1234, "ng_total": 5,
                                  "boot_id": 99})
    assert not count.retain and count.topic.endswith("/press-07/count")
    assert json.loads(count.payload) == {
        "good": 3, "ng": 1, "ts": "2025-12-01T06:00:01.000Z", "ts_s": 1764568801.0,
        "boot": 99, "good_total": 1234, "ng_total": 5, "node": 7, "machine": "press-07",
        "event": 12}
    oee = topics.event_message("lampwatch", AT, 13, 1764568860.0, "oee", 7, "press-07",
                               {"shift": "A", "shift_start_s": 1764540000.0, "final": False,
                                "oee": 0.5, "coverage": 0.9})
    body = json.loads(oee.payload)
    assert oee.retain and body["shift_start"] == "2025-11-30T22:00:00.000Z"
    assert (body["oee"], body["coverage"], body["event"]) == (0.5, 0.9, 13)
    reason = topics.event_message("lampwatch", AT, 14, 1764568900.0, "reason", 7, "press-07",
                                  {"reason": "breakdown", "start_s": 1764568800.0,
                                   "end_s": None, "by": "board"})
    assert json.loads(reason.payload)["start"] == "2025-12-01T06:00:00.000Z"
    assert json.loads(reason.payload)["end"] is None and not reason.retain
    # kinds not in the namespace, and machines the registry does not know: no message
    assert topics.event_message("lampwatch", AT, 15, 1.0, "lamp", 7, "press-07", {}) is None
    assert topics.event_message("lampwatch", AT, 16, 1.0, "state", 9, "ghost",
                                {"state": "RUN"}) is None


@pytest.mark.parametrize("text,nats,problem", [
    ("press-07", True, None), ("press 07", False, None), ("press 07", True, "' '"),
    ("a/b", False, "'/'"), ("a+", False, "'+'"), ("#", False, "'#'"), ("$SYS", False, "'$'"),
    ("", False, "empty"), ("line.2", True, "'.'"), ("line.2", False, None)])
def test_topic_levels(text, nats, problem):
    got = topics.level_problem(text, nats=nats)
    assert (got is None) if problem is None else (problem in got)


# --- config ---------------------------------------------------------------------------------

def test_uns_table_defaults_and_a_nats_raw_stream():
    c = cfg(uns={"url": "mqtts://broker.plant:8883", "username": "edge",
                 "password_env": "LW_UNS_PW", "raw_url": "nats://n1:4222, nats://n2"})
    u = c.uns
    assert (u.broker.scheme, u.broker.servers, u.broker.tls) == ("mqtts",
                                                                  (("broker.plant", 8883),), True)
    assert u.raw_broker.urls() == ["nats://n1:4222", "nats://n2:4222"]
    assert (u.topic_root, u.raw_stream, u.raw_replicas, u.raw) == (
        "lampwatch", "lampwatch_raw_cikarang", 3, True)
    assert c.udp_listen == ("0.0.0.0", 4210) and c.uns_sources == ()
    assert stream_name("lw", {"b", "a.x"}) == "lw_raw_a_x_b"


def test_a_central_collector_listens_to_its_brokers_only():
    c = cfg(uns_source=[{"url": "nats://hq:4222", "stream": "lampwatch_raw_cikarang",
                         "name": "hq"}])
    assert c.udp_listen is None and c.uns_sources[0].label == "uns:lampwatch_raw_cikarang"
    assert c.uns_sources[0].broker.is_nats


@pytest.mark.parametrize("tables,where,says", [
    ({"uns": {"url": "mqtt://b", "password": "hunter2"}}, "uns.password", "is not allowed"),
    ({"uns": {"url": "mqtt://u:hunter2@b"}}, "uns.url", "must not hold credentials"),
    ({"uns": {"url": "http://b"}}, "uns.url", "must start with mqtt:// or mqtts://"),
    ({"uns": {"url": "mqtt://a,mqtt://b"}}, "uns.url", "one MQTT broker"),
    ({"uns": {"url": "mqtt://b", "raw_url": "mqtt://b"}}, "uns.raw_url", "nats://"),
    ({"uns": {"url": "mqtt://b", "raw_replicas": 7}}, "uns.raw_replicas", "1 to 5"),
    ({"uns": {"url": "mqtt://b", "topic_root": "a/+"}}, "uns.topic_root", "'+'"),
    ({"uns": {"url": "mqtt://b", "qos": 2}}, "uns.qos", "is not a known option"),
    ({"uns_source": [{"url": "nats://b"}]}, "uns_source[0].stream", "is required"),
    ({"uns_source": [{"url": "mqtt://b", "token": "x"}]}, "uns_source[0].token",
     "is not allowed"),
    ({"collector": {"udp_listen": "0.0.0.0:4210"}, "uns_source": [{"url": "mqtt://b"}]},
     "uns_source", "cannot be combined with collector.udp_listen"),
    ({"serial": [{"port": "/dev/ttyUSB0"}], "uns_source": [{"url": "mqtt://b"}]},
     "uns_source", "cannot be combined"),
    ({"uns_source": [{"url": "mqtt://b", "name": "x"}, {"url": "mqtt://c", "name": "x"}]},
     "uns_source", "names must differ"),
])
def test_config_errors_are_one_line_naming_the_option(tables, where, says):
    with pytest.raises(ConfigError) as err:
        cfg(**tables)
    text = str(err.value)
    assert text.startswith(f"/etc/lampwatch/collector.toml: {where} ") and says in text
    assert "\n" not in text and "hunter2" not in text


def test_names_that_cannot_be_topic_levels_are_refused():
    bad = dict(NODE, machine="press/07")
    with pytest.raises(ConfigError, match=r"node 7's machine 'press/07' contains '/'"):
        parse_config({"nodes": [bad], "uns": {"url": "mqtt://b"}})
    with pytest.raises(ConfigError, match=r"node 7's plant 'cik arang' contains ' '"):
        parse_config({"nodes": [dict(NODE, plant="cik arang")], "uns": {"url": "mqtt://b"}})


def test_the_password_comes_from_the_environment_or_a_file(tmp_path, monkeypatch):
    c = cfg(uns={"url": "mqtt://b", "username": "edge", "password_env": "LW_TEST_UNS_PW"})
    monkeypatch.delenv("LW_TEST_UNS_PW", raising=False)
    with pytest.raises(ConfigError, match="environment variable LW_TEST_UNS_PW is not set"):
        c.uns.auth.password()
    assert "MISSING" in c.uns.auth.describe()
    monkeypatch.setenv("LW_TEST_UNS_PW", "s3cret")
    assert c.uns.auth.password() == "s3cret" and "s3cret" not in c.uns.auth.describe()
    (tmp_path / "pw").write_text("from-file\n")
    c = parse_config({"nodes": [NODE], "uns": {"url": "mqtt://b", "password_file": "pw"}},
                     tmp_path / "c.toml")
    assert c.uns.auth.password() == "from-file"


# --- the broker-fed source ------------------------------------------------------------------

def test_stream_clock_reads_the_slowest_site_and_ticks_once_a_second(tmp_path):
    clock = StreamClock(tmp_path / "j.sqlite", {1: "a", 2: "b"}, fallback=lambda: 5.0)
    with Journal(tmp_path / "j.sqlite"):
        pass
    assert clock() == 5.0  # an empty journal and no frame yet: the fallback
    assert clock.observe(1, 100.0) and clock() == 100.0
    assert not clock.observe(1, 100.5)
    assert clock.observe(2, 90.0) is False and clock() == 90.0  # b is behind: time is b's
    assert not clock.observe(1, 200.0) and clock() == 90.0
    assert clock.observe(2, 101.2) and clock() == 101.2
    assert not clock.observe(99, 500.0)  # a node not in the registry moves nothing


def test_stream_clock_resumes_at_the_journals_newest_frame(tmp_path):
    with Journal(tmp_path / "j.sqlite") as j:
        j.commit([(1234.5, "s", 1, 1, 1, 3, 0, b"x")])
    assert StreamClock(tmp_path / "j.sqlite", {}, fallback=lambda: 0.0)() == 1234.5


def test_the_source_reverifies_every_frame_and_keeps_the_sites_receive_time(tmp_path):
    c = cfg(uns_source=[{"url": "mqtt://b"}])
    codec = lwproto.Codec(7, KEY)
    good = codec.heartbeat(0xB007, 1, 1000, 5, 0, [1, 0, 0, 0, 0])
    forged = lwproto.Codec(7, bytes(16)).heartbeat(0xB007, 2, 1200, 10**6, 0, [1, 0, 0, 0, 0])
    stranger = lwproto.Codec(9, KEY).heartbeat(0xB007, 1, 1000, 5, 0, [1, 0, 0, 0, 0])

    def raw(frame, node=7, boot=0xB007, seq=1, rx_s=1700000000.25):
        return topics.raw_message("lampwatch", "cikarang", node, boot, seq, 3, rx_s, "udp:x",
                                  frame).payload

    with Journal(tmp_path / "central.sqlite") as journal:
        collector = Collector(c, journal, clock=lambda: 9e9)
        src = UnsSource(collector, c.uns_sources[0])
        assert src.deliver([raw(good), raw(good), raw(forged, seq=2), raw(stranger, node=9),
                            raw(good, seq=5), b"{oops", raw(b"\x13\x00")])
        frames = journal.frames_after(0)
        rejects = {reason: n for (_, reason), (n, _) in journal.rejects().items()}
        heard = journal.heard()
    assert [(f.seq, f.rx_s, f.raw, f.source) for f in frames] == [
        (1, 1700000000.25, good, "uns:+/udp:x")]
    # the broker's second delivery of the same bytes is a duplicate (docs/protocol.md)
    assert rejects == {"duplicate": 1, "bad_tag": 1, "unknown_node": 1, "bad_message": 3}
    assert [(h.node_id, h.rx_s) for h in heard] == [(7, 1700000000.25)]  # the site's time


def test_the_example_config_publishes_to_a_broker():
    from lampwatch.config import load_config

    c = load_config(Path(__file__).resolve().parent.parent / "examples" / "collector.toml")
    assert c.uns.broker.url == "mqtt://broker.plant.local:1883" and c.uns.raw_broker is None
    assert c.uns.raw_stream == "lampwatch_raw_cikarang" and c.uns_sources == ()
