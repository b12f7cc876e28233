"""The ingest path on real sockets: UDP on loopback, a pty as the serial line, a subprocess."""

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lampwatch.collector import Collector
from lampwatch.config import load_config, parse_config
from lampwatch.derive import NullDeriver
from lampwatch.journal import Journal, open_readonly
from lampwatch.node_files import firmware_dir
from lampwatch.protocol import SerialDeframer, serial_frame
from lampwatch.runtime import CollectorThread

sys.path.insert(0, str(firmware_dir()))
import lwproto

KEY7, KEY8 = bytes(range(16)), bytes(range(16, 48))
BOOT = 0xDEADBEEF
CLI = [sys.executable, "-c", "from lampwatch.cli import main; main()"]


def write_config(tmp_path, port=0, serial_port=None, extra=""):
    serial = f'[[serial]]\nport = "{serial_port}"\n' if serial_port else ""
    text = f"""
[collector]
udp_listen = "127.0.0.1:{port}"
journal = "journal.sqlite"
journal_sync = "normal"
{serial}
[[nodes]]
id = 7
plant = "p"
line = "l"
machine = "m7"
key = "{KEY7.hex()}"
ideal_cycle_s = 1.0
[[nodes]]
id = 8
plant = "p"
line = "l"
machine = "m8"
key = "{KEY8.hex()}"
ideal_cycle_s = 1.0
{extra}"""
    path = tmp_path / "collector.toml"
    path.write_text(text)
    return path


class Recorder(NullDeriver):
    """Emits one event per frame, so events ride in the frame's transaction."""

    def on_frame(self, frame, rx_s):
        h = frame.header
        return [(rx_s, "frame", h.node_id, f"m{h.node_id}", {"seq": h.seq})]


@pytest.fixture
def collector(tmp_path):
    ct = CollectorThread(load_config(write_config(tmp_path)), deriver=Recorder()).start()
    yield ct
    ct.stop()


@pytest.fixture
def node_sock():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(2.0)
    yield s
    s.close()


def heartbeat(seq, codec=None, boot=BOOT, good=0):
    codec = codec or lwproto.Codec(7, KEY7)
    return codec.heartbeat(boot, seq, 1000 * seq, good, 0, [1, 0, 0, 0, 0])


def acked(sock, codec, boot=BOOT, want=None, timeout_s=2.0):
    """Sequence numbers ACKed to `sock` (until `want` are all in, or timeout)."""
    got = set()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and (want is None or not want <= got):
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = sock.recv(64)
        except TimeoutError:
            break
        seqs = codec.parse_ack(data, boot)
        assert seqs is not None, f"ACK does not verify: {data.hex()}"
        got.update(seqs)
    return got


def test_valid_frame_is_journaled_then_acked(collector, node_sock, tmp_path):
    codec = lwproto.Codec(7, KEY7)
    node_sock.sendto(heartbeat(5), collector.udp_address)
    data = node_sock.recv(64)
    # The ACK verifies with the node's own codec, and the frame is already in the journal.
    assert codec.parse_ack(data, BOOT) == [5]
    with Journal(tmp_path / "journal.sqlite") as j:
        rows = j.frames_after(0)
        assert [(r.node_id, r.boot_id, r.seq, r.type) for r in rows] == [(7, BOOT, 5, 3)]
        assert rows[0].raw == heartbeat(5)
        assert rows[0].source == f"udp:127.0.0.1:{node_sock.getsockname()[1]}"
        assert [(e.kind, e.data) for e in j.events_after(0)] == [("frame", '{"seq":5}')]
    assert collector.stats().accepted == 1


def test_duplicates_reordered_and_replayed_frames_are_dropped_and_counted(collector, node_sock,
                                                                          tmp_path):
    codec = lwproto.Codec(7, KEY7)
    frames = [heartbeat(s) for s in range(20)]
    # resends, byte for byte, a few seconds of node time after the frame was made: what a
    # node does when an ACK is late (a copy played back this soon is the same, and as
    # harmless: it is never applied)
    order = list(range(20)) + [3, 3, 7, 19, 0]
    random.Random(4).shuffle(order)
    for s in order:
        node_sock.sendto(frames[s], collector.udp_address)
    assert acked(node_sock, codec, want=set(range(20))) == set(range(20))
    time.sleep(0.2)  # the late duplicates' ACKs
    stats = collector.stats()
    assert (stats.accepted, stats.duplicates) == (20, 5)
    collector.call(collector.runtime.collector.flush)
    with Journal(tmp_path / "journal.sqlite") as j:
        assert sorted(r.seq for r in j.frames_after(0)) == list(range(20))
        assert len(j.events_after(0)) == 20  # a duplicate is never handed to the deriver
        assert j.rejects() == {("udp:127.0.0.1", "duplicate"): (5, pytest.approx(time.time(),
                                                                                  abs=30))}
    with open_readonly(tmp_path / "journal.sqlite") as r:
        assert [row[:4] for row in r.reject_counts()] == [
            ("udp:127.0.0.1", "duplicate", 7, 5)]  # counted for node 7, a verified sender


def test_replays_told_from_duplicates_per_node(tmp_path):
    """A frame kept already is a duplicate only as the node's own resend: the same bytes,
    not yet ACKed or within 10 minutes of its ACK, the node not powered up since. Changed
    bytes under a valid tag, a copy played back later, or one from before a power-up are
    replays. Each is counted for the node the frame was verified as (two nodes, one
    address), and a malformed body under a valid tag too; a bad tag names no node."""
    now = [1000.0]
    journal = Journal(tmp_path / "journal.sqlite")
    col = Collector(load_config(write_config(tmp_path)), journal, clock=lambda: now[0])
    c7, c8 = lwproto.Codec(7, KEY7), lwproto.Codec(8, KEY8)
    src = "udp:127.0.0.1"

    def send(frame, at):
        now[0] = at
        col.submit(frame, f"{src}:4000", None, src)

    f1, f2 = (c7.heartbeat(BOOT, s, 1000 * s, s, 0, [1, 0, 0, 0, 0]) for s in (1, 2))
    send(f1, 1000.0)
    send(f1, 1001.0)  # resent before the batch was committed (not ACKed yet)
    col.flush()
    send(f2, 1002.0)
    col.flush()
    send(f1, 1000.0 + 590)  # 590 s after its ACK: still a resend
    send(f1, 1000.0 + 620)  # 620 s: long after any resend, a copy played back
    send(c7.heartbeat(BOOT, 2, 2000, 999, 0, [1, 0, 0, 0, 0]), 1700.0)  # seq 2, new count
    send(f2[:-1] + bytes([f2[-1] ^ 1]), 1700.0)  # a bad tag: anyone can write "node 7"
    old = c8.heartbeat(0x1111, 50, 900_000, 1, 0, [0] * 5)
    send(old, 1700.0)
    send(c8.heartbeat(0x2222, 0, 2_000, 0, 0, [0] * 5), 1701.0)  # node 8 powered up again
    send(old, 1702.0)  # its outbox died with the power: a replay, however soon
    send(c8._seal(c8._header(3, 0x2222, 1, 3_000) + b"\x00" * 8), 1703.0)  # a body too short
    col.flush()
    journal.close()
    with open_readonly(tmp_path / "journal.sqlite") as r:
        counts = {row[:3]: row[3] for row in r.reject_counts()}
        assert r.last_rx() == {7: 1002.0, 8: 1701.0}
    assert counts == {(src, "duplicate", 7): 2, (src, "replay", 7): 2, (src, "bad_tag", 0): 1,
                      (src, "replay", 8): 1, (src, "bad_body", 8): 1}
    assert col.stats.duplicates == 2 and col.stats.accepted == 4
    with Journal(tmp_path / "journal.sqlite") as j:
        assert j.stored_frame(7, BOOT, 2)[0] == f2  # the forged copy changed nothing


def test_a_frame_from_before_a_power_up_is_a_replay_from_the_batch_or_the_journal(tmp_path):
    """What the node's newest frame was (its boot and uptime) comes from the frames not yet
    committed and from the journal's `heard` row, as a restarted collector reads it: a copy
    of a frame from before a power-up is a replay whether the power-up's frame is still in
    the batch, committed, or committed before the collector restarted; a resend of the
    boot it is in now stays a duplicate."""
    now = [1000.0]
    c8 = lwproto.Codec(8, KEY8)
    src = "udp:127.0.0.1"
    old = c8.heartbeat(0x1111, 50, 900_000, 1, 0, [0] * 5)
    fresh = [c8.heartbeat(0x2222, s, 1_000 * s + 2_000, 0, 0, [0] * 5) for s in range(3)]

    def send(col, frame, at):
        now[0] = at
        col.submit(frame, f"{src}:4000", None, src)

    path = tmp_path / "journal.sqlite"
    journal = Journal(path)
    col = Collector(load_config(write_config(tmp_path)), journal, clock=lambda: now[0])
    send(col, old, 1000.0)
    col.flush()
    send(col, fresh[0], 1001.0)  # powered up: in the batch
    send(col, old, 1001.5)  # replay 1
    col.flush()
    send(col, old, 1002.0)  # replay 2: the power-up committed
    send(col, fresh[1], 1003.0)
    send(col, fresh[1], 1003.5)  # duplicate 1: a resend, its first copy in the batch
    col.flush()
    send(col, fresh[1], 1004.0)  # duplicate 2: committed, ACKed a second ago
    col.flush()
    journal.close()
    journal = Journal(path)  # the collector restarted
    col = Collector(load_config(write_config(tmp_path)), journal, clock=lambda: now[0])
    send(col, old, 1010.0)  # replay 3
    send(col, fresh[1], 1010.5)  # duplicate 3
    send(col, fresh[2], 1011.0)
    send(col, old, 1011.5)  # replay 4: the batch holds boot 0x2222 too
    col.flush()
    journal.close()
    with open_readonly(path) as r:
        counts = {row[:3]: row[3] for row in r.reject_counts()}
    assert counts == {(src, "replay", 8): 4, (src, "duplicate", 8): 3}


def test_resends_after_the_disk_came_back_are_duplicates(tmp_path):
    """Frames held while commits failed are ACKed only when they work again: the node's
    resends that follow are duplicates, however long the outage."""
    now = [0.0]
    journal = Journal(tmp_path / "journal.sqlite")
    col = Collector(load_config(write_config(tmp_path)), journal, clock=lambda: now[0])
    c7 = lwproto.Codec(7, KEY7)
    frames = [c7.heartbeat(BOOT, s, 1000 * s, s, 0, [1, 0, 0, 0, 0]) for s in range(1, 400)]
    db = journal._db
    db.execute(f"PRAGMA max_page_count = {db.execute('PRAGMA page_count').fetchone()[0]}")
    for f in frames:
        col.submit(f, "udp:1.2.3.4:5", None)
    assert col.flush() == 0 and col.stats.commit_failures == 1  # the disk is full: held
    now[0] = 3600.0  # an hour later, the node still resending its first frame
    col.submit(frames[0], "udp:1.2.3.4:5", None)
    db.execute("PRAGMA max_page_count = 1073741823")
    assert col.flush(retry_now=True) == 399  # the disk is back: committed and ACKed now
    now[0] = 3610.0
    col.submit(frames[0], "udp:1.2.3.4:5", None)  # a resend that crossed its ACK
    col.flush()
    assert col.stats.rejects == {("udp:1.2.3.4:5", "duplicate"): 2}
    journal.close()


def test_garbage_unknown_node_wrong_key_oversized(collector, node_sock, tmp_path):
    good = heartbeat(1)
    wrong_key = lwproto.Codec(7, bytes(16)).heartbeat(BOOT, 2, 0, 0, 0, [0] * 5)
    unknown = lwproto.Codec(99, KEY7).heartbeat(BOOT, 2, 0, 0, 0, [0] * 5)
    junk = [b"", b"\x00", os.urandom(7), os.urandom(100), good[:-1] + b"\x00",
            wrong_key, unknown, b"\x13" * 60000, good + b"x" * 300, b"\x23" + good[1:]]
    rng = random.Random(1)
    junk += [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 250)))
             for _ in range(300)]
    for j in junk:
        node_sock.sendto(j, collector.udp_address)
    node_sock.sendto(good, collector.udp_address)
    assert acked(node_sock, lwproto.Codec(7, KEY7), want={1}) == {1}
    stats = collector.stats()
    reasons = {r for (_, r) in stats.rejects}
    assert {"truncated", "bad_tag", "unknown_node", "oversized", "bad_version"} <= reasons
    assert stats.accepted == 1 and stats.rejected >= len(junk) - 1
    collector.call(collector.runtime.collector.flush)
    with Journal(tmp_path / "journal.sqlite") as j:
        assert j.frame_count() == 1
        assert sum(n for n, _ in j.rejects().values()) == stats.rejected


def test_acks_group_per_sender_and_node(collector, node_sock):
    c7, c8 = lwproto.Codec(7, KEY7), lwproto.Codec(8, KEY8)
    for s in range(40):
        node_sock.sendto(heartbeat(s, c7), collector.udp_address)
        node_sock.sendto(heartbeat(s, c8, boot=1), collector.udp_address)
    got7, got8 = set(), set()
    deadline = time.monotonic() + 3
    while (len(got7) < 40 or len(got8) < 40) and time.monotonic() < deadline:
        data = node_sock.recv(64)
        got7.update(c7.parse_ack(data, BOOT) or [])
        got8.update(c8.parse_ack(data, 1) or [])
    assert got7 == got8 == set(range(40))


def _pty(link: Path) -> int:
    """A new pty whose slave `link` points at (as udev's /dev/serial/by-id links do)."""
    master, slave = os.openpty()
    name = os.ttyname(slave)
    os.close(slave)
    tmp = link.with_suffix(".new")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(name)
    tmp.replace(link)
    return master


def _serial_acks(master: int, codec, want: set, timeout_s: float = 3.0) -> set:
    deframer, got = SerialDeframer(), set()
    deadline = time.monotonic() + timeout_s
    os.set_blocking(master, False)
    while not want <= got and time.monotonic() < deadline:
        try:
            data = os.read(master, 4096)
        except BlockingIOError:
            time.sleep(0.01)
            continue
        for chunk in deframer.feed(data):
            assert isinstance(chunk, bytes)
            got.update(codec.parse_ack(chunk, BOOT) or [])
    return got


def _wait(cond, timeout_s=5.0):
    deadline = time.monotonic() + timeout_s
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.02)
    return cond()


def test_serial_frames_noise_and_replug(tmp_path):
    link = tmp_path / "ttyLW0"
    master = _pty(link)
    cfg = load_config(write_config(tmp_path, serial_port=link))
    ct = CollectorThread(cfg, deriver=Recorder(), serial_backoff_s=(0.05, 0.2)).start()
    try:
        src = ct.runtime.serial[0]
        assert _wait(lambda: src.connected)
        codec = lwproto.Codec(7, KEY7)
        # A boot banner, a valid frame, a broken COBS chunk, an oversized run, a frame.
        os.write(master, b"ets Jun  8 2016 boot banner\r\n" + serial_frame(heartbeat(1)) +
                 b"\x05\x01\x01\x00" + b"\x07" * 500 + serial_frame(heartbeat(2)))
        assert _serial_acks(master, codec, {1, 2}) == {1, 2}
        # Unplug: the pty disappears. Plug back in: a new pty behind the same path.
        os.close(master)
        assert _wait(lambda: not src.connected)
        os.write(master := _pty(link), b"")
        assert _wait(lambda: src.connected and src.opens == 2)
        os.write(master, serial_frame(heartbeat(3)) + serial_frame(heartbeat(1)))
        assert _serial_acks(master, codec, {1, 3}) == {1, 3}
        stats = ct.stats()
        assert stats.accepted == 3
        src_name = f"serial:{link}"
        assert stats.rejects[(src_name, "bad_cobs")] >= 1
        assert stats.rejects[(src_name, "oversized")] == 1
        assert stats.rejects[(src_name, "duplicate")] == 1  # seq 1 resent after replug
    finally:
        ct.stop()
        os.close(master)


def run_cli(*args, env=None):
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=30, env=env,
                          check=False)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(cfg_path):
    proc = subprocess.Popen([*CLI, "collect", "--config", str(cfg_path)],
                            stderr=subprocess.PIPE, text=True)
    return proc


def _send_until_acked(sock, port, frames: dict, codec, timeout_s=10.0) -> set:
    """Like a node: resend every unACKed frame until all are ACKed (bounded)."""
    done = set()
    deadline = time.monotonic() + timeout_s
    while len(done) < len(frames) and time.monotonic() < deadline:
        for seq, f in frames.items():
            if seq not in done:
                sock.sendto(f, ("127.0.0.1", port))
        done |= acked(sock, codec, want=set(frames) - done, timeout_s=0.3)
    return done


def test_sigkill_then_restart_loses_nothing_and_doubles_nothing(tmp_path, node_sock):
    port = _free_port()
    cfg = write_config(tmp_path, port)
    codec = lwproto.Codec(7, KEY7)
    frames = {s: heartbeat(s, good=10 * s) for s in range(3000)}
    proc = _start(cfg)
    try:
        acked_before = set()
        # Stream frames until some are ACKed, then kill mid-stream.
        deadline = time.monotonic() + 15
        while len(acked_before) < 500 and time.monotonic() < deadline:
            for s in range(len(acked_before), min(len(acked_before) + 200, 3000)):
                node_sock.sendto(frames[s], ("127.0.0.1", port))
            acked_before |= acked(node_sock, codec, timeout_s=0.2)
        for s in range(3000):
            node_sock.sendto(frames[s], ("127.0.0.1", port))
        acked_before |= acked(node_sock, codec, timeout_s=0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
    assert len(acked_before) >= 500
    with Journal(tmp_path / "journal.sqlite") as j:
        stored = [r.seq for r in j.frames_after(0, 10**6)]
    assert acked_before <= set(stored), "an ACKed frame is missing after SIGKILL"
    # Restart; the node resends everything it has not seen ACKed (and some it has).
    proc = _start(cfg)
    try:
        resend = {s: f for s, f in frames.items() if s not in acked_before or s % 7 == 0}
        assert _send_until_acked(node_sock, port, resend, codec) == set(resend)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        proc.kill()
    with Journal(tmp_path / "journal.sqlite") as j:
        stored = [r.seq for r in j.frames_after(0, 10**6)]
        counts = [e for e in j.events_after(0, 10**6) if e.kind == "count"]
    assert sorted(stored) == list(range(3000))  # all there, none twice
    assert counts, "the real deriver made no count events"
    assert sum(json.loads(e.data)["good"] for e in counts) == 10 * 2999  # exactly once


def test_sigterm_flushes_and_exits_cleanly(tmp_path, node_sock):
    port = _free_port()
    proc = _start(write_config(tmp_path, port))
    try:
        codec = lwproto.Codec(7, KEY7)
        frames = {s: heartbeat(s) for s in range(50)}
        assert _send_until_acked(node_sock, port, frames, codec) == set(frames)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        err = proc.stderr.read()
        assert "Traceback" not in err and "collector stopped: 50 frames accepted" in err
    finally:
        proc.kill()
    with Journal(tmp_path / "journal.sqlite") as j:
        assert j.frame_count() == 50


@pytest.mark.parametrize("text, message", [
    ("[[nodes]]\nid = 7\n", "nodes[0].key is required"),
    ("[collector\n", "invalid TOML"),
])
def test_broken_config_is_one_line_no_traceback(tmp_path, text, message):
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    for args in (["collect", "--config", str(bad)], ["collect", "--check", "--config", str(bad)]):
        r = run_cli(*args)
        assert r.returncode != 0
        assert r.stderr.count("\n") == 1 and message in r.stderr
        assert r.stderr.startswith("lampwatch: ") and "Traceback" not in r.stderr
    r = run_cli("collect", "--config", str(tmp_path / "missing.toml"))
    assert r.returncode != 0 and r.stderr.startswith("lampwatch: ") and "cannot read" in r.stderr


def test_taken_port_is_one_line(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        cfg = write_config(tmp_path, s.getsockname()[1])
        r = run_cli("collect", "--config", str(cfg))
    assert r.returncode == 1
    assert r.stderr.splitlines()[-1].startswith("lampwatch: cannot start the collector")
    assert "Traceback" not in r.stderr


def test_check_prints_plan_with_masked_token(tmp_path):
    cfg = write_config(tmp_path, 4210, extra='[influxdb]\nurl = "http://127.0.0.1:8086"\n'
                       'org = "o"\nbucket = "b"\ntoken_env = "LW_T"\n')
    env = dict(os.environ, LW_T="super-secret-token")
    r = run_cli("collect", "--check", "--config", str(cfg), env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "ready"
    assert "listen: udp 127.0.0.1:4210" in r.stdout
    assert "node 7: p / l / m7" in r.stdout
    assert "token ******** (set, from $LW_T)" in r.stdout
    assert "super-secret" not in r.stdout + r.stderr
    # not even the token's length (18), anywhere but inside the test's own temporary paths
    assert not re.search(r"\b18\b", (r.stdout + r.stderr).replace(str(tmp_path), ""))
    env.pop("LW_T")
    r = run_cli("collect", "--check", "--config", str(cfg), env=env)
    assert r.returncode == 1 and r.stderr == ""
    assert r.stdout.splitlines()[:2] == [
        "not ready: 1 problem",
        "problem: InfluxDB token: environment variable LW_T is not set"]


def test_check_lists_every_problem_at_once(tmp_path):
    """Two missing secrets, a registry open to others, a journal under a file: the first
    line counts them, each has its line, the summary follows; exit 1; no secret shown."""
    registry = tmp_path / "nodes.toml"
    registry.write_text(f'[[nodes]]\nid = 9\nplant = "p"\nline = "l"\nmachine = "m9"\n'
                        f'key = "{KEY7.hex()}"\n')
    registry.chmod(0o644)
    (tmp_path / "afile").write_text("")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"""
[collector]
udp_listen = false
journal = "afile/journal.sqlite"
nodes_file = "nodes.toml"
[[serial]]
port = "{tmp_path}/ttyUSB-unplugged"
[influxdb]
url = "http://127.0.0.1:8086"
org = "o"
bucket = "b"
token_env = "LW_TOKEN_X"
[board]
listen = "127.0.0.1:8080"
operator_pin_env = "LW_PIN_X"
""")
    env = {k: v for k, v in os.environ.items() if k not in ("LW_TOKEN_X", "LW_PIN_X")}
    r = run_cli("collect", "--check", "--config", str(cfg), env=env)
    assert r.returncode == 1 and r.stderr == ""
    lines = r.stdout.splitlines()
    assert lines[:6] == [
        "not ready: 4 problems",
        (f"problem: {registry}: the node registry holds the nodes' keys but is open to group "
        f"or others (mode 0644): chmod 600 {registry}"),
        "problem: InfluxDB token: environment variable LW_TOKEN_X is not set",
        "problem: board operator PIN: environment variable LW_PIN_X is not set",
        (f"problem: journal {tmp_path}/afile/journal.sqlite: cannot be created: "
        f"{tmp_path}/afile is not a writable directory"),
        (f"warning: serial port {tmp_path}/ttyUSB-unplugged is not there now (the collector "
        "opens it when it appears)")]
    assert lines[6:8] == ["", f"config: {cfg}"]
    assert "  node 9: p / l / m9; ideal cycle unknown (no OEE); heartbeat 10 s; lamps default" \
        in lines
    assert KEY7.hex() not in r.stdout
    # the same PIN, set but short: a problem that says neither the PIN nor its length
    env.update(LW_TOKEN_X="t" * 40, LW_PIN_X="1234")
    registry.chmod(0o600)
    (tmp_path / "afile").unlink()
    r = run_cli("collect", "--check", "--config", str(cfg), env=env)
    assert r.returncode == 1
    assert r.stdout.splitlines()[:2] == [
        "not ready: 1 problem",
        ("problem: board operator PIN from environment variable LW_PIN_X is too short: use at "
        "least 6 digits")]
    # (the paths left out: pytest's numbered temporary directory may hold "40" or "1234")
    shown = r.stdout.replace(str(tmp_path), "<tmp>")
    assert "1234" not in shown and " 4 " not in shown and "40" not in shown
    env["LW_PIN_X"] = "246810"
    r = run_cli("collect", "--check", "--config", str(cfg), env=env)
    assert r.returncode == 0, r.stdout
    assert r.stdout.splitlines()[:3] == [
        "ready, with 1 warning",
        (f"warning: serial port {tmp_path}/ttyUSB-unplugged is not there now (the collector "
        "opens it when it appears)"), ""]


def test_check_of_a_journal_that_is_not_one(tmp_path):
    cfg = write_config(tmp_path, 4210)
    (tmp_path / "journal.sqlite").write_text("plain text, not SQLite")
    r = run_cli("collect", "--check", "--config", str(cfg))
    assert r.returncode == 1
    assert r.stdout.splitlines()[:2] == [
        "not ready: 1 problem",
        (f"problem: {tmp_path}/journal.sqlite is not a lampwatch journal (file is not a "
        "database)")]


def test_failed_commit_loses_no_count_when_the_node_resends(tmp_path, node_sock):
    """A commit that fails (the disk full) is not ACKed; the batch is kept and committed when
    there is space again, and the node's resends are ACKed then, never applied twice: its
    counts add up exactly, with the same deriver (never rebuilt), and no reject count is lost."""
    ct = CollectorThread(load_config(write_config(tmp_path))).start()
    try:
        codec = lwproto.Codec(7, KEY7)
        first = {s: heartbeat(s, codec, good=5 * s) for s in range(1, 4)}
        for f in first.values():
            node_sock.sendto(f, ct.udp_address)
        assert acked(node_sock, codec, want=set(first)) == set(first)
        deriver = ct.runtime.deriver
        db = ct.runtime.journal._db
        pages = ct.call(lambda: db.execute("PRAGMA page_count").fetchone()[0])
        ct.call(lambda: db.execute(f"PRAGMA max_page_count = {pages}"))  # the disk is full
        later = {s: heartbeat(s, codec, good=5 * s) for s in range(4, 400)}  # > a page
        forged = bytearray(heartbeat(400, codec))
        forged[-1] ^= 1  # a wrong tag: rejected, and counted while nothing can be stored
        for f in [*later.values(), bytes(forged)]:
            node_sock.sendto(f, ct.udp_address)
        got = acked(node_sock, codec, timeout_s=1.0)  # until the last page filled up
        assert len(got) < len(later) and ct.stats().commit_failures >= 1
        for _ in range(3):  # resends while the disk is still full: nothing applied twice
            node_sock.sendto(later[399], ct.udp_address)
        time.sleep(1.2)  # a tick retries, and fails again
        failures = ct.stats().commit_failures
        assert failures >= 2 and acked(node_sock, codec, timeout_s=0.2) == set()
        ct.call(lambda: db.execute("PRAGMA max_page_count = 1073741823"))  # space again
        for s, f in later.items():  # the node resends what was never ACKed
            if s not in got:
                node_sock.sendto(f, ct.udp_address)
        assert acked(node_sock, codec, want=set(later) - got) == set(later) - got
        assert ct.runtime.deriver is deriver  # kept, not rebuilt from the journal
        stats = ct.stats()
    finally:
        ct.stop()
    with Journal(tmp_path / "journal.sqlite") as j:
        counts = [json.loads(e.data) for e in j.events_after(0, 10**6) if e.kind == "count"]
        assert sorted(r.seq for r in j.frames_after(0, 10**6)) == list(range(1, 400))
        rejects = j.rejects()
    assert sum(c["good"] for c in counts) == 5 * 399
    assert counts[-1]["good_total"] == 5 * 399
    # Every reject counted while the disk was full reached the journal, and matches the stats.
    assert {k: n for k, (n, _) in rejects.items()} == stats.rejects
    assert sum(n for (_, reason), n in stats.rejects.items() if reason != "duplicate") == 1


def test_check_warns_of_a_collector_that_would_hear_nothing(tmp_path):
    from lampwatch.readiness import check

    cfg = parse_config({"collector": {"udp_listen": False, "journal": "j.sqlite"}},
                       tmp_path / "c.toml")
    r = check(cfg)
    assert (r.ready, r.verdict(), r.problems) == (True, "ready, with 2 warnings", [])
    assert r.warnings == [
        ("nothing to listen on (udp_listen is false and there is no [[serial]]): no frame "
        "will arrive"),
        "no nodes in the registry: every frame will be rejected as from an unknown node"]
