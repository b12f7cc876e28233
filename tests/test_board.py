"""Andon board: the pure JSON view, and the HTTP server of a real running collector
(page, JSON, server-sent events, operator reasons into the journal and the OEE)."""

import json
import math
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from lampwatch import oee
from lampwatch.board.view import LOW_COVERAGE, OperatorReason, board_view, fingerprint
from lampwatch.config import load_config
from lampwatch.derive import MachineSnapshot
from lampwatch.journal import Journal
from lampwatch.node_files import firmware_dir
from lampwatch.runtime import CollectorThread

sys.path.insert(0, str(firmware_dir()))
import lwproto

PIN = "4711"
PIN_ENV = "LW_TEST_BOARD_PIN"
KEYS = {node: bytes(range(16 * (node - 7), 16 * (node - 6))) for node in range(7, 16)}
G, Y, R = 0, 1, 2
OFF, ON, BLINK = 0, 1, 2
T0 = 1_772_438_400.0  # 2026-03-02 08:00 UTC


# --- helpers shared with test_board_browser.py ------------------------------------------

def board_config(tmp_path, machines=("press-07", "press-08"), pin=True, shift=("00:00", "00:00"),
                 journal="journal.sqlite"):
    """A collector config: loopback UDP and board on free ports, one node per machine (ids
    from 7), a UTC shift (default 24 h, so one is always running)."""
    nodes = "".join(f"""
[[nodes]]
id = {7 + i}
plant = "cikarang"
line = "line-2"
machine = "{m}"
key = "{KEYS[7 + i].hex()}"
ideal_cycle_s = 2.0
""" for i, m in enumerate(machines))
    pin_line = f'operator_pin_env = "{PIN_ENV}"' if pin else ""
    path = tmp_path / "collector.toml"
    path.write_text(f"""
[collector]
udp_listen = "127.0.0.1:0"
journal = "{journal}"
journal_sync = "normal"

[board]
listen = "127.0.0.1:0"
{pin_line}

[calendar]
time_zone = "UTC"
[[calendar.shifts]]
name = "A"
start = "{shift[0]}"
end = "{shift[1]}"
{nodes}""")
    return path


class Node:
    """A node on a loopback UDP socket: real frames (firmware/lwproto.py), ACKs awaited."""

    def __init__(self, node_id, address, boot_age_s=600.0, heartbeat_ms=10_000):
        self.codec = lwproto.Codec(node_id, KEYS[node_id])
        self.address, self.boot, self.seq = address, 0x1000 + node_id, 0
        self.boot_wall = time.time() - boot_age_s
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(2.0)
        self.good = self.ng = 0
        self.lamps = [OFF] * 5
        self._send(self.codec.hello, (0, 1, 0), 1, b"\xa1\xb2\xc3\xd4", 0, 0b111, heartbeat_ms)

    def up_ms(self, at_s=None):
        return int(((time.time() if at_s is None else at_s) - self.boot_wall) * 1000)

    def _send(self, build, *args, at_s=None):
        seq, self.seq = self.seq, self.seq + 1
        self.sock.sendto(build(self.boot, seq, self.up_ms(at_s), *args), self.address)
        ack = self.sock.recv(64)
        assert self.codec.parse_ack(ack, self.boot) == [seq]

    def lamp(self, *changes, at_s=None):
        """Lamp changes (channel, state) that began at `at_s` (default now)."""
        up = self.up_ms(at_s)
        for ch, st in changes:
            self.lamps[ch] = st
        self._send(self.codec.lamp, [(ch, st, up) for ch, st in changes], at_s=at_s)

    def heartbeat(self, good=0, ng=0, at_s=None):
        self.good, self.ng = self.good + good, self.ng + ng
        self._send(self.codec.heartbeat, self.good, self.ng, self.lamps, at_s=at_s)

    def close(self):
        self.sock.close()


@pytest.fixture
def collector(tmp_path, monkeypatch):
    """A running collector with the board (operator PIN set) and two machines."""
    monkeypatch.setenv(PIN_ENV, PIN)
    ct = CollectorThread(load_config(board_config(tmp_path))).start()
    yield ct
    ct.stop()


def request(url, body=None, pin=None, content_type="application/json", method=None):
    """(status, parsed JSON or text) of one HTTP request; errors are answers too."""
    data = None
    if body is not None:
        if pin is not None:
            body = {**body, "pin": pin}
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if content_type and data is not None:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=5) as res:
            status, ctype, raw = res.status, res.headers["Content-Type"], res.read()
    except urllib.error.HTTPError as exc:
        status, ctype, raw = exc.code, exc.headers["Content-Type"], exc.read()
    return status, json.loads(raw) if "json" in (ctype or "") else raw.decode()


# --- the pure view -----------------------------------------------------------------------

def snap(machine, state, since_s, result=None, lamps=None, silent=False, heard=T0,
         reason=None, known=True):
    lamps = {"green": "OFF", "yellow": "OFF", "red": "OFF", "blue": None, "white": None,
             **(lamps or {})}
    return MachineSnapshot(machine, 7, state, reason, since_s, lamps, heard, silent,
                           "A" if result else None, result, known, None)


# Shift so far 08:00-09:00, ideal cycle 2 s. Press: 40% of the hour known (1000 s run, 200 s
# setup, 240 s breakdown, 400 good + 50 NG); mill: all known (3300 s run, 1500 + 100).
PRESS = oee.OEEResult("press", T0, T0 + 3600, all_time_s=3600, planned_s=3600, unknown_s=2160,
                      unknown_planned_s=2160, run_s=1000, breakdown_s=240, setup_s=200,
                      net_run_s=900, fully_productive_s=800, good=400, ng=50)
MILL = oee.OEEResult("mill", T0, T0 + 3600, all_time_s=3600, planned_s=3600, run_s=3300,
                     breakdown_s=300, net_run_s=3200, fully_productive_s=3000, good=1500, ng=100)


def test_machine_tile_state_time_ratios_counts_and_coverage():
    view = board_view({"press": snap("press", "STOP", T0 + 3000, PRESS, {"red": "ON"})},
                      T0 + 3600)
    m = view["machines"][0]
    assert (m["machine"], m["state"], m["in_state_s"], m["since_s"]) == (
        "press", "STOP", 600.0, T0 + 3000)
    assert m["lamps"] == {"green": "OFF", "yellow": "OFF", "red": "ON"}  # absent lamps dropped
    assert m["blink"] is False and m["can_reason"] is True
    assert m["availability"] == pytest.approx(1000 / 1440)
    assert m["performance"] == pytest.approx(0.9)
    assert m["quality"] == pytest.approx(800 / 900)
    assert m["oee"] == pytest.approx(800 / 1440)
    assert (m["good"], m["ng"]) == (400, 50)
    assert m["coverage"] == pytest.approx(0.4)
    assert m["low_coverage"] is True and 0.4 < LOW_COVERAGE
    assert m["warnings"] == ["coverage 40%"]
    assert m["losses"]["setup_s"] == 200 and m["losses"]["breakdown_s"] == 240
    json.dumps(view)  # JSON-ready as it is


def test_blinking_lamp_silent_node_and_never_heard_machine():
    view = board_view({
        "a": snap("a", "IDLE", T0, lamps={"yellow": "BLINK"}),
        "b": snap("b", "UNKNOWN", T0, silent=True),
        "c": snap("c", None, None, silent=True, heard=None, lamps={"green": None}),
        "d": snap("d", None, None),
    }, T0 + 60)
    a, b, c, d = view["machines"]
    assert (d["state"], d["warnings"]) == ("UNKNOWN", ["no lamp state yet"])
    assert a["blink"] is True and a["warnings"] == []
    assert (b["state"], b["silent"], b["warnings"], b["can_reason"]) == (
        "UNKNOWN", True, ["node silent"], False)
    assert (c["state"], c["in_state_s"], c["warnings"]) == ("UNKNOWN", None, ["no data yet"])
    assert c["availability"] is None and c["oee"] is None and c["coverage"] is None


def test_unknown_ideal_cycle_hides_performance_and_oee():
    m = board_view({"mill": snap("mill", "RUN", T0, MILL, known=False)}, T0 + 3600)
    tile, plant = m["machines"][0], m["plant"]
    assert tile["availability"] == pytest.approx(3300 / 3600)
    assert tile["performance"] is None and tile["oee"] is None
    assert plant["performance"] is None and plant["oee"] is None
    assert plant["availability"] == pytest.approx(3300 / 3600)


def test_plant_rolls_up_summed_times_and_counts_never_averaged_percentages():
    view = board_view({"press": snap("press", "STOP", T0, PRESS),
                       "mill": snap("mill", "RUN", T0, MILL),
                       "saw": snap("saw", "IDLE", T0), "drill": snap("drill", "OFF", T0),
                       "lathe": snap("lathe", "UNKNOWN", T0, silent=True),
                       "mixer": snap("mixer", "RUN", T0)}, T0 + 3600, operator=True)
    p = view["plant"]
    assert (p["machines"], p["running"], p["idle"], p["stopped"], p["off"], p["unknown"]) == (
        6, 2, 1, 1, 1, 1)
    assert p["availability"] == pytest.approx(4300 / 5040)
    assert p["performance"] == pytest.approx(4100 / 4300)
    assert p["quality"] == pytest.approx(3800 / 4100)
    assert p["oee"] == pytest.approx(3800 / 5040)  # 75.4%; the average of 55.6% and 83.3% is 69.4%
    assert not math.isclose(p["oee"], (PRESS.oee + MILL.oee) / 2, rel_tol=0.05)
    assert (p["good"], p["ng"]) == (1900, 150)
    assert p["coverage"] == pytest.approx(1 - 2160 / 7200)
    assert (view["shift"], view["operator"]) == ("A", True)
    assert view["reasons"] == list(oee.REASONS)


def test_operator_reason_shows_on_the_stop_it_was_given_for_only():
    r = OperatorReason("breakdown", T0 + 10)
    stopped = snap("press", "STOP", T0 + 10, reason="setup")
    assert board_view({"press": stopped}, T0 + 60,
                      reasons={"press": r})["machines"][0]["reason"] == "breakdown"
    # A later stop (new since) falls back to the lamp map's reason; running shows none.
    later = snap("press", "STOP", T0 + 100, reason="setup")
    assert board_view({"press": later}, T0 + 160,
                      reasons={"press": r})["machines"][0]["reason"] == "setup"
    running = snap("press", "RUN", T0 + 100)
    assert board_view({"press": running}, T0 + 160,
                      reasons={"press": r})["machines"][0]["reason"] is None
    bounded = OperatorReason("material", T0, T0 + 50)
    assert board_view({"press": stopped}, T0 + 40,
                      reasons={"press": bounded})["machines"][0]["reason"] == "material"


def test_fingerprint_ignores_time_but_not_state_lamps_or_counts():
    a = board_view({"press": snap("press", "RUN", T0, PRESS, {"green": "ON"})}, T0 + 10)
    b = board_view({"press": snap("press", "RUN", T0, PRESS, {"green": "ON"})}, T0 + 99)
    c = board_view({"press": snap("press", "RUN", T0, PRESS, {"green": "BLINK"})}, T0 + 99)
    d = board_view({"press": snap("press", "STOP", T0 + 50, PRESS, {"green": "ON"})}, T0 + 99)
    assert fingerprint(a) == fingerprint(b)
    assert len({fingerprint(a), fingerprint(c), fingerprint(d)}) == 3


# --- HTTP against a running collector --------------------------------------------------------

def test_page_and_static_files_are_served_with_no_external_references(collector):
    url = collector.runtime.board_url
    assert url.startswith("http://127.0.0.1:") and not url.endswith(":0/")
    status, page = request(url)
    assert status == 200 and "<main id=\"tiles\">" in page
    for name in ("board.css", "board.js"):
        status, text = request(url + name)
        assert status == 200 and len(text) > 1000
        page += text
    # No CDN, no external fonts: nothing but this server is ever asked for anything.
    assert "http://" not in page and "https://" not in page and "//cdn" not in page
    assert request(url + "nope")[0] == 404
    assert request(url + "api/board", {"x": 1})[0] == 405


def test_api_board_shows_live_state_counts_and_shift(collector):
    nodes = {7: Node(7, collector.udp_address), 8: Node(8, collector.udp_address)}
    try:
        nodes[7].lamp((G, ON))
        nodes[7].heartbeat(good=12, ng=1)
        nodes[8].lamp((Y, BLINK))
        status, board = request(collector.runtime.board_url + "api/board")
    finally:
        for n in nodes.values():
            n.close()
    assert status == 200
    m7, m8 = board["machines"]
    assert (m7["machine"], m7["state"], m7["good"], m7["ng"], m7["silent"]) == (
        "press-07", "RUN", 12, 1, False)
    assert (m8["state"], m8["blink"], m8["lamps"]["yellow"]) == ("IDLE", True, "BLINK")
    assert (board["shift"], board["operator"]) == ("A", True)
    assert (board["plant"]["running"], board["plant"]["idle"]) == (1, 1)
    assert 0 < m7["availability"] <= 1 and m7["coverage"] < LOW_COVERAGE  # most of the day dark


def read_event(sock, buf):
    """The next server-sent event's JSON (and the rest of the buffer)."""
    while b"\n\n" not in buf:
        chunk = sock.recv(65536)
        assert chunk, "the event stream closed"
        buf += chunk
    block, buf = buf.split(b"\n\n", 1)
    data = [line[6:] for line in block.split(b"\n") if line.startswith(b"data: ")]
    return (json.loads(b"".join(data)) if data else None), buf


def test_events_push_a_state_change_within_a_second(collector):
    host, port = collector.runtime.board.host, collector.runtime.board.port
    node = Node(7, collector.udp_address)
    sse = socket.create_connection((host, port), timeout=5)
    try:
        node.lamp((G, ON))
        sse.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
        head, buf = b"", b""
        while b"\r\n\r\n" not in head:
            head += sse.recv(4096)
        head, buf = head.split(b"\r\n\r\n", 1)
        assert b"200 OK" in head and b"text/event-stream" in head
        first = None
        while first is None:
            first, buf = read_event(sse, buf)
        assert first["machines"][0]["state"] == "RUN"
        sent = time.monotonic()
        node.lamp((G, OFF), (R, ON))
        while True:
            ev, buf = read_event(sse, buf)
            if ev and ev["machines"][0]["state"] == "STOP":
                break
        latency = time.monotonic() - sent
        print(f"SSE: state change pushed {1000 * latency:.0f} ms after the frame was sent")
        assert latency < 1.0
        # Nothing changes: a keepalive refresh still comes within a few seconds.
        t = time.monotonic()
        ev = None
        while ev is None:
            ev, buf = read_event(sse, buf)
        assert time.monotonic() - t < 3.0 and ev["machines"][0]["state"] == "STOP"
    finally:
        sse.close()
        node.close()


def test_reason_needs_the_pin_lands_in_the_journal_and_changes_the_losses(collector, tmp_path):
    url = collector.runtime.board_url + "api/reason"
    node = Node(7, collector.udp_address)
    try:
        node.lamp((R, ON), at_s=time.time() - 30)
        node.heartbeat()
    finally:
        node.close()
    before = collector.snapshot()["press-07"].oee_data()["losses"]
    assert before["minor_stop_s"] > 25 and before["setup_s"] == 0  # a short unexplained stop
    body = {"machine": "press-07", "reason": "setup"}
    assert request(url, body) == (403, {"error": "wrong PIN"})
    assert request(url, body, pin="0000") == (403, {"error": "wrong PIN"})
    status, answer = request(url, body, pin=PIN)
    assert status == 200 and answer["ok"] is True and answer["end_s"] is None
    since = collector.snapshot()["press-07"].since_s
    assert answer["start_s"] == since  # the current stop, from its beginning
    after = collector.snapshot()["press-07"].oee_data()["losses"]
    assert after["minor_stop_s"] == 0 and after["setup_s"] > 25
    with Journal(tmp_path / "journal.sqlite") as j:
        reasons = [e for e in j.events_after(0) if e.kind == "reason"]
    assert [(e.machine, e.node_id, json.loads(e.data)) for e in reasons] == [
        ("press-07", 7, {"reason": "setup", "start_s": since, "end_s": None, "by": "board"})]
    _, board = request(collector.runtime.board_url + "api/board")
    assert board["machines"][0]["reason"] == "setup"
    # `lampwatch oee report` reads the same journal and honours the board's reason.
    out = subprocess.run([sys.executable, "-c", "from lampwatch.cli import main; main()", "oee",
                          "report", "--config", str(tmp_path / "collector.toml"), "--shift",
                          "current", "--format", "json"], capture_output=True, text=True,
                         check=True)
    row = json.loads(out.stdout)["machines"][0]
    assert row["machine"] == "press-07"
    assert row["losses"]["setup_s"] > 25 and row["losses"]["minor_stop_s"] == 0


@pytest.mark.parametrize("body, message", [
    ({"machine": "press-07", "reason": "coffee"}, "reason must be one of setup, "),
    ({"machine": "press-99", "reason": "setup"}, "unknown machine 'press-99'"),
    ({"machine": "press-08", "reason": "setup"}, "press-08 is not stopped now: give start_s"),
    ({"machine": "press-07", "reason": "setup", "start_s": "now"}, "start_s must be epoch"),
    ({"machine": "press-07", "reason": "setup", "start_s": 2e9, "end_s": 1e9},
     "start_s is in the future"),
    ({"machine": "press-07", "reason": "setup", "start_s": 1e9, "end_s": 1e9},
     "end_s must be after start_s"),
    ({"machine": "press-07", "reason": "setup", "who": "me"}, "unknown field 'who'"),
])
def test_bad_reason_input_is_a_400_with_a_one_line_error(collector, body, message):
    status, answer = request(collector.runtime.board_url + "api/reason", body, pin=PIN)
    assert status == 400 and message in answer["error"] and "\n" not in answer["error"]


def test_reason_post_must_be_json(collector):
    url = collector.runtime.board_url + "api/reason"
    form = f"machine=press-07&reason=setup&pin={PIN}".encode()
    status, answer = request(url, form, content_type="application/x-www-form-urlencoded")
    assert (status, answer["error"]) == (400, "send JSON (Content-Type: application/json)")
    assert request(url, b"{not json", pin=None)[0] == 400


def test_wrong_pins_lock_reason_entry(collector):
    url = collector.runtime.board_url + "api/reason"
    body = {"machine": "press-07", "reason": "setup"}
    assert [request(url, body, pin=f"{i:04d}")[0] for i in range(5)] == [403] * 5
    assert request(url, body, pin=PIN)[0] == 429  # even the right PIN, for a while


def test_without_a_pin_the_board_is_read_only(tmp_path):
    ct = CollectorThread(load_config(board_config(tmp_path, pin=False))).start()
    try:
        url = ct.runtime.board_url
        _, board = request(url + "api/board")
        assert board["operator"] is False
        status, answer = request(url + "api/reason", {"machine": "press-07", "reason": "setup"},
                                 pin="anything")
        assert status == 403 and "read-only" in answer["error"]
    finally:
        ct.stop()
    assert ct.runtime.board_url is None  # stopped with the collector


def test_collect_check_prints_the_board_line(tmp_path):
    cfg = board_config(tmp_path, pin=False)
    out = subprocess.run([sys.executable, "-c", "from lampwatch.cli import main; main()",
                          "collect", "--check", "--config", str(cfg), "--board",
                          "0.0.0.0:8088"], capture_output=True, text=True, check=True).stdout
    assert "board: http://0.0.0.0:8088/; read-only (no operator PIN)" in out.splitlines()


def raw(board, data):
    """Send raw bytes to the board; its whole answer."""
    with socket.create_connection((board.host, board.port), timeout=5) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def test_oversized_and_malformed_requests_get_a_400_and_the_board_carries_on(collector):
    board = collector.runtime.board
    big = json.dumps({"machine": "press-07", "reason": "setup", "pin": "x" * 5000}).encode()
    answer = raw(board, b"POST /api/reason HTTP/1.1\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(big) + big)
    assert answer.startswith(b"HTTP/1.1 400 ") and b"at most 4096 bytes" in answer
    answer = raw(board, b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ") and b"request too long" in answer
    assert raw(board, b"HELLO\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert request(collector.runtime.board_url + "api/board")[0] == 200
