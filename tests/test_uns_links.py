"""The UNS publisher's links on real brokers (issue 16): mqtts:// with a password read from
the environment (and a wrong one refused in one log line, nothing lost), and a JetStream
stream the publisher resumes exactly where it ends, even when someone else wrote into it."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import threading
import time

import paho.mqtt.client as paho
import pytest
import servers
from lampwatch.config import parse_config
from lampwatch.journal.uns import UnsJournal
from lampwatch.node_files import firmware_dir
from lampwatch.uns.publisher import build_publisher
from lampwatch.uns.topics import places
from paho.mqtt.enums import CallbackAPIVersion
from test_end_to_end import CLI

sys.path.insert(0, str(firmware_dir()))
import lwproto

KEY = bytes([5]) * 16
NODES = [{"id": 5, "plant": "p1", "line": "l1", "machine": "m5", "key": KEY.hex()}]


def fill(journal: UnsJournal, first_seq: int, n: int, t0: float = 1.7e9) -> None:
    """n heartbeats of node 5 (and a count and a lamp event each) into the journal."""
    codec = lwproto.Codec(5, KEY)
    frames, events = [], []
    for seq in range(first_seq, first_seq + n):
        raw = codec.heartbeat(0xAB, seq, seq * 1000, seq, 0, [1, 0, 0, 0, 0])
        frames.append((t0 + seq, "udp:test", 5, 0xAB, seq, 3, seq * 1000, raw))
        events.append((t0 + seq, "count", 5, "m5", {"good": 1, "ng": 0, "good_total": seq,
                                                   "ng_total": 0, "boot_id": 0xAB}))
        events.append((t0 + seq, "lamp", 5, "m5", {"lamp": "green", "state": "ON"}))  # not sent
    journal.commit(frames, events)


def drain(publisher, timeout_s: float = 30.0) -> None:
    """Step the publisher until every lane's cursor is at the journal's end (bounded)."""
    j = publisher.journal
    deadline = time.monotonic() + timeout_s
    while (j.get_cursor("uns_raw") != j.last_frame_id()
           or j.get_cursor("uns_events") != j.last_event_id()):
        assert time.monotonic() < deadline, "publisher did not catch up"
        if not publisher.run_once():
            time.sleep(0.05)


@pytest.fixture
def tls_files(tmp_path):
    """A throwaway CA and a server certificate for 127.0.0.1, made with openssl."""
    d = tmp_path / "tls"
    d.mkdir()

    def ssl(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)
    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
        "ca.pem", "-days", "1", "-subj", "/CN=lampwatch test CA")
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=127.0.0.1")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    ssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "1", "-extfile", "san.ext")
    return d / "ca.pem", d / "server.pem", d / "server.key"


def test_mqtts_with_a_password_from_the_environment(tmp_path, tls_files, monkeypatch, caplog):
    ca = tls_files[0]
    mq = servers.Mosquitto(tmp_path / "mq", users={"edge": "right-pw", "it": "it-pw"},
                           tls=tls_files).start()
    got, ready = [], threading.Event()
    sub = paho.Client(CallbackAPIVersion.VERSION2, client_id="it")
    sub.username_pw_set("it", "it-pw")
    sub.tls_set(ca_certs=str(ca))
    sub.on_connect = lambda c, u, f, rc, p: (c.subscribe("lampwatch/#", qos=1), ready.set())
    sub.on_message = lambda c, u, m: got.append((m.topic, json.loads(m.payload)))
    sub.connect("127.0.0.1", mq.tls_port)
    sub.loop_start()
    pubs = []
    try:
        assert ready.wait(10)
        table = {"url": f"mqtts://127.0.0.1:{mq.tls_port}", "username": "edge",
                 "password_env": "LW_TEST_UNS_PW", "ca_file": str(ca), "retry_max_s": 2}
        cfg = parse_config({"nodes": NODES, "uns": table})
        with UnsJournal(tmp_path / "wrong.sqlite") as wrong:
            fill(wrong, 1, 5)
            monkeypatch.setenv("LW_TEST_UNS_PW", "wrong-pw")
            with caplog.at_level(logging.INFO, logger="lampwatch.uns"):
                pubs.append(build_publisher(cfg.uns, places(cfg.nodes.values()), wrong))
                deadline = time.monotonic() + 4
                while time.monotonic() < deadline:
                    pubs[-1].run_once()
            refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
            assert len(refused) == 1 and "Not authorized" in refused[0], refused
            assert wrong.get_cursor("uns_raw") is None  # nothing counted as sent
            assert "wrong-pw" not in caplog.text
        with UnsJournal(tmp_path / "right.sqlite") as journal:
            fill(journal, 1, 5)
            monkeypatch.setenv("LW_TEST_UNS_PW", "right-pw")
            pubs.append(build_publisher(cfg.uns, places(cfg.nodes.values()), journal))
            drain(pubs[-1])
        deadline = time.monotonic() + 5
        while len(got) < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        for p in pubs:
            p.close()
        sub.loop_stop()
        sub.disconnect()
        mq.stop()
    raw = sorted(b["seq"] for t, b in got if t == "lampwatch/p1/_raw/5")
    counts = sorted(b["good_total"] for t, b in got if t == "lampwatch/p1/l1/m5/count")
    assert raw == counts == [1, 2, 3, 4, 5]


def test_collect_check_shows_the_uns_and_fails_without_its_password(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("""
[collector]
udp_listen = false
[uns]
url = "mqtts://broker.plant:8883"
username = "edge"
password_env = "LW_TEST_UNS_PW_NEVER_SET"
raw_url = "nats://n1:4222,nats://n2:4222"
[[nodes]]
id = 5
plant = "p1"
line = "l1"
machine = "m5"
key = "0505050505050505050505050505050505"
""")
    out = subprocess.run([*CLI, "collect", "--check", "--config", str(config)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 1
    assert ("uns: publish to mqtts://broker.plant:8883 under lampwatch/ as 'lampwatch-"
            in out.stdout)
    assert ("raw frames JetStream stream lampwatch_raw_p1 (R3) on nats://n1:4222,nats://n2:4222;"
            " user 'edge', password MISSING (expected in $LW_TEST_UNS_PW_NEVER_SET)"
            in out.stdout)
    assert out.stdout.splitlines()[:2] == [
        "not ready: 1 problem",
        "problem: UNS password: environment variable LW_TEST_UNS_PW_NEVER_SET is not set"]


def stream_messages(url: str, stream: str) -> list[tuple[str, bytes]]:
    import nats

    async def read():
        nc = await nats.connect(url.split(","))
        js = nc.jetstream()
        try:
            info = await js.stream_info(stream)
            out = []
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                m = await js.get_msg(stream, seq)
                out.append(((m.headers or {}).get("Nats-Msg-Id", ""), m.data))
            return out
        finally:
            await nc.close()
    return asyncio.run(read())


def publish_foreign(url: str, subject: str) -> None:
    import nats

    async def send():
        nc = await nats.connect(url.split(","))
        try:
            await nc.jetstream().publish(subject, b"not ours", headers={"Nats-Msg-Id": "x"})
        finally:
            await nc.close()
    asyncio.run(send())


def test_the_publisher_resumes_where_the_stream_ends(tmp_path, caplog):
    nats_server = servers.NatsCluster(tmp_path / "nats", size=1).start()
    cfg = parse_config({"nodes": NODES, "uns": {
        "url": nats_server.mqtt_url(0), "raw_url": nats_server.url, "raw_replicas": 1,
        "retry_max_s": 1}})
    pubs = []
    try:
        with UnsJournal(tmp_path / "j.sqlite") as journal, \
                caplog.at_level(logging.INFO, logger="lampwatch.uns"):
            fill(journal, 1, 30)

            def publisher():  # one at a time: they share the MQTT client id
                for p in pubs:
                    p.close()
                pubs[:] = [build_publisher(cfg.uns, places(cfg.nodes.values()), journal)]
                return pubs[0]
            drain(publisher())
            # The cursor lost (as if the journal's cursor write had not happened): a new
            # publisher asks the stream where it ends and sends nothing twice.
            journal.set_cursor("uns_raw", 10)
            fill(journal, 31, 5)
            p = publisher()
            drain(p)
            assert p.lanes[0].stats.published == 5
            assert "the stream ends at frame 30 (cursor 10): resuming after it" in caplog.text
            # Someone else writes into the stream: the next batch is refused whole (the
            # expected sequence moved), logged, and then published after the stranger.
            publish_foreign(nats_server.url, "lampwatch.p1._raw.5")
            fill(journal, 36, 5)
            drain(p, timeout_s=60)
            assert ("the stream holds messages that are not frames of this journal after "
                    "frame 35" in caplog.text)
        stored = stream_messages(nats_server.url, "lampwatch_raw_p1")
    finally:
        for p in pubs:
            p.close()
        nats_server.stop()
    ids = [i for i, _ in stored]
    assert ids == [f"5.171.{s}" for s in range(1, 36)] + ["x"] + [
        f"5.171.{s}" for s in range(36, 41)]


def test_collect_check_describes_a_central_collector(tmp_path):
    config = tmp_path / "central.toml"
    config.write_text("""
[[uns_source]]
url = "nats://n1:4222,nats://n2:4222"
stream = "lampwatch_raw_p1"
name = "office"
[[nodes]]
id = 5
plant = "p1"
line = "l1"
machine = "m5"
key = "0505050505050505050505050505050505"
""")
    out = subprocess.run([*CLI, "collect", "--check", "--config", str(config)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert ("uns_source: frames from nats://n1:4222,nats://n2:4222 (stream lampwatch_raw_p1) "
            "as 'office'; no user") in out.stdout
    assert "listen:" not in out.stdout  # neither UDP nor "nothing": its brokers
