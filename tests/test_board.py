"""Andon board: the pure JSON view, and the HTTP server of a real running collector
(page, JSON, server-sent events, operator reasons into the journal and the OEE)."""

import http.client
import json
import logging
import math
import socket
import subprocess
import sys
import time
import urllib.parse

import pytest
from lampwatch import oee
from lampwatch.board.auth import HostCheck, PinGate, client_key
from lampwatch.board.limits import MAX_IDLE, viewer_slots
from lampwatch.board.refusals import Refusals
from lampwatch.board.view import LOW_COVERAGE, OperatorReason, board_view, fingerprint
from lampwatch.config import load_config
from lampwatch.derive import MachineSnapshot
from lampwatch.errors import ConfigError
from lampwatch.journal import Journal
from lampwatch.node_files import firmware_dir
from lampwatch.runtime import CollectorThread

sys.path.insert(0, str(firmware_dir()))
import lwproto

PIN = "471108"
PIN_ENV = "LW_TEST_BOARD_PIN"
KEYS = {node: bytes(range(16 * (node - 7), 16 * (node - 6))) for node in range(7, 16)}
G, Y, R = 0, 1, 2
OFF, ON, BLINK = 0, 1, 2
T0 = 1_772_438_400.0  # 2026-03-02 08:00 UTC


# --- helpers shared with test_board_browser.py ------------------------------------------

def board_config(tmp_path, machines=("press-07", "press-08"), pin=True, shift=None,
                 journal="journal.sqlite"):
    """A collector config: loopback UDP and board on free ports, one node per machine (ids
    from 7), a UTC shift (start, end). By default 24 h from 6 hours before now, so one is
    always running and has for hours: a node's counts reach back at its ideal cycle and its
    boot began before the test (docs/oee.md, "Where output goes"), and with a shift from
    00:00 UTC the figures depended on the time of day (5,400 parts reach back 3 hours)."""
    if shift is None:
        start = time.strftime("%H:%M", time.gmtime(time.time() - 6 * 3600))
        shift = (start, start)
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


def request(url, body=None, pin=None, content_type="application/json", method=None,
            origin=True, source="127.0.0.1", headers=None, full=False):
    """(status, parsed JSON or text) of one HTTP request; errors are answers too.

    A body is POSTed with the Origin a browser on the board's page sends (origin=False: none,
    or a string); `source` is the client's address (any 127.0.0.x on Linux loopback).
    full=True also returns the response headers.
    """
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=5, source_address=(source, 0))
    data, hdrs = None, dict(headers or {})
    if body is not None:
        if pin is not None:
            body = {**body, "pin": pin}
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        if content_type:
            hdrs["Content-Type"] = content_type
        if origin:
            hdrs["Origin"] = origin if isinstance(origin, str) else f"http://{u.netloc}"
    try:
        conn.request(method or ("POST" if data is not None else "GET"), u.path or "/", data,
                     hdrs)
        res = conn.getresponse()
        status, ctype, raw = res.status, res.getheader("Content-Type"), res.read()
    finally:
        conn.close()
    answer = json.loads(raw) if "json" in (ctype or "") else raw.decode()
    return (status, answer, res) if full else (status, answer)


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


# --- who may use the board (pure) ------------------------------------------------------------

def test_pin_backoff_is_per_address_and_doubles_after_three_free_tries():
    gate = PinGate("471108")
    waits = []
    for i in range(16):
        t = 1000.0 + 10_000 * i  # each try well after the last wait ended
        assert gate.wait_s("10.0.0.7", t) == 0
        assert gate.check("10.0.0.7", f"{i:06d}", t) is False
        waits.append(gate.wait_s("10.0.0.7", t))
    assert waits == [0, 0, 0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900, 900]
    assert gate.wait_s("10.0.0.8", 1000.0) == 0 and gate.check("10.0.0.8", "471108", 1000.0)
    t = 1000.0 + 10_000 * 16
    assert gate.check("10.0.0.7", "471108", t) is True  # the right PIN clears the record
    assert gate.check("10.0.0.7", "x", t) is False and gate.wait_s("10.0.0.7", t) == 0
    gate.check("10.0.0.9", "1", 0.0)
    for k in range(3):
        gate.check("10.0.0.9", "1", 0.0)
    assert gate.wait_s("10.0.0.9", 0.5) == 0.5
    assert gate.wait_s("10.0.0.9", 86_400.0 + 1) == 0  # forgotten a day after


def test_addresses_are_counted_per_ipv4_and_per_ipv6_64():
    assert client_key("192.168.1.20") == "192.168.1.20"
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::2") == \
        "2001:db8:1:2::/64"
    assert client_key("::ffff:10.1.2.3") == "10.1.2.3"


def test_host_check_names_ip_literals_and_origins():
    check = HostCheck(["andon.plant.local"], "0.0.0.0")
    for host in ("andon.plant.local", "ANDON.plant.local.:8080", "10.0.0.5:8080", "[fe80::1]:80",
                 "localhost", "0.0.0.0:8080", socket.gethostname()):
        assert check.host_ok(host), host
    for host in ("evil.example", "andon.plant.local.evil.example", "10.0.0.5.nip.io", "", None):
        assert not check.host_ok(host), host
    assert check.origin_ok("http://10.0.0.5:8080", "10.0.0.5:8080")
    assert check.origin_ok("http://andon.plant.local", "andon.plant.local")
    assert not check.origin_ok("http://evil.example", "evil.example")  # a foreign Host
    assert not check.origin_ok("http://andon.plant.local", "10.0.0.5:8080")
    assert not check.origin_ok(None, "10.0.0.5:8080")


def test_an_address_that_causes_refusals_is_barred_for_a_while():
    now = [0.0]
    refusals = Refusals(clock=lambda: now[0])
    for _ in range(10):
        assert not refusals.barred("10.0.0.66")
        refusals.refused("10.0.0.66", 400, "junk")
    assert refusals.barred("10.0.0.66") and not refusals.barred("10.0.0.67")
    now[0] = 1.0
    assert not refusals.barred("10.0.0.66")  # a refusal a second comes back
    refusals.refused("10.0.0.66", 400, "junk")
    for _ in range(30):  # requests in flight when it ran dry: a debt, so a longer bar
        refusals.refused("10.0.0.66", 400, "junk")
    now[0] = 10.0
    assert refusals.barred("10.0.0.66")
    now[0] = 12.0
    assert not refusals.barred("10.0.0.66")


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


def test_api_board_after_a_commit_is_never_the_view_from_before_it(collector, monkeypatch):
    """Views may take only a share of the loop, so a slow one is not computed again at once.
    A page that loads the board once (its stream refused) still gets the lamp it was asked
    after: the request waits for the share, it is not answered with the older view."""
    board = collector.runtime.board
    real_view = board.view

    def slow_view():  # a plant whose view takes 200 ms: the next may come 1 s later
        time.sleep(0.2)
        return real_view()

    monkeypatch.setattr(board, "view", slow_view)
    node = Node(7, collector.udp_address)
    try:
        assert request(board.url + "api/board")[1]["machines"][0]["state"] == "UNKNOWN"
        node.lamp((G, ON))  # answered once the collector committed it
        t = time.monotonic()
        status, answer = request(board.url + "api/board")
        took = time.monotonic() - t
    finally:
        node.close()
    assert status == 200 and answer["machines"][0]["state"] == "RUN"
    assert took < 1.5  # at most the share's wait (1 s) and one view


class Events:
    """A live board viewer: GET /events over a real socket, read event by event."""

    def __init__(self, board, source="127.0.0.1"):
        self.conn = http.client.HTTPConnection(board.host, board.port, timeout=5,
                                               source_address=(source, 0))
        self.conn.request("GET", "/events", headers={"Accept": "text/event-stream"})
        self.res = self.conn.getresponse()

    def next(self):
        """The next event's JSON (None for an event without data, e.g. `retry:`)."""
        data = []
        while True:
            line = self.res.readline()
            assert line, "the event stream closed"
            if line == b"\n":
                return json.loads(b"".join(data)) if data else None
            if line.startswith(b"data: "):
                data.append(line[6:].rstrip(b"\n"))

    def close(self):
        self.conn.close()


def test_events_push_a_state_change_within_a_second(collector):
    node = Node(7, collector.udp_address)
    node.lamp((G, ON))
    sse = Events(collector.runtime.board)
    try:
        assert sse.res.status == 200
        assert sse.res.getheader("Content-Type") == "text/event-stream"
        first = None
        while first is None:
            first = sse.next()
        assert first["machines"][0]["state"] == "RUN"
        sent = time.monotonic()
        node.lamp((G, OFF), (R, ON))
        while True:
            ev = sse.next()
            if ev and ev["machines"][0]["state"] == "STOP":
                break
        latency = time.monotonic() - sent
        print(f"SSE: state change pushed {1000 * latency:.0f} ms after the frame was sent")
        assert latency < 1.0
        # Nothing changes: a keepalive refresh still comes within a few seconds.
        t = time.monotonic()
        ev = None
        while ev is None:
            ev = sse.next()
        assert time.monotonic() - t < 3.0 and ev["machines"][0]["state"] == "STOP"
    finally:
        sse.close()
        node.close()


def test_viewers_over_the_slots_get_503_with_retry_after(tmp_path, monkeypatch):
    monkeypatch.setenv(PIN_ENV, PIN)
    path = board_config(tmp_path)
    path.write_text(path.read_text().replace('[board]\n', '[board]\nsse_slots = 2\n'))
    ct = CollectorThread(load_config(path)).start()
    viewers = []
    try:
        board = ct.runtime.board
        viewers = [Events(board, f"127.0.0.{2 + i}") for i in range(2)]
        assert [v.res.status for v in viewers] == [200, 200]
        status, answer, res = request(board.url + "events", full=True)
        assert status == 503 and res.getheader("Retry-After") == "5"
        assert answer == {"error": "all 2 live board slots are taken"}
        assert request(board.url + "api/board")[0] == 200  # the rest of the board works
        viewers.pop().close()  # a screen goes away: its slot is free at once
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and board.viewers > 1:
            time.sleep(0.02)
        again = Events(board)
        viewers.append(again)
        assert again.res.status == 200 and again.next() is None  # `retry:` first, then data
        assert again.next()["machines"][0]["machine"] == "press-07"
    finally:
        for v in viewers:
            v.close()
        ct.stop()


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


NOW = object()  # stands for the time of the request in the cases below
_R = {"machine": "press-07", "reason": "setup"}


@pytest.mark.parametrize("body, message", [
    ({"machine": "press-07", "reason": "coffee"}, "reason must be one of setup, "),
    ({"machine": "press-99", "reason": "setup"}, "unknown machine 'press-99'"),
    ({"machine": "press-08", "reason": "setup"}, "press-08 is not stopped now: give start_s"),
    ({**_R, "start_s": "now"}, "start_s must be epoch"),
    ({**_R, "start_s": (NOW, 60), "end_s": (NOW, -60)}, "start_s is in the future"),
    ({**_R, "start_s": (NOW, -60), "end_s": (NOW, -60)}, "end_s must be after start_s"),
    ({**_R, "who": "me"}, "unknown field 'who'"),
    # wrong types
    ({"machine": ["press-07"], "reason": "setup"}, "machine must be a string"),
    ({"machine": "press-07", "reason": {"setup": 1}}, "reason must be one of"),
    ({**_R, "start_s": True}, "start_s must be epoch seconds"),
    ({**_R, "pin": 471108}, "pin must be a string"),
    ({**_R, "start_s": {"t": 1}}, "start_s must be epoch seconds"),
    # huge numbers and times out of range
    ({**_R, "start_s": 10 ** 400}, "start_s must be within 31 days before and 1 day after now"),
    (b'{"machine": "press-07", "reason": "setup", "start_s": 1e999}', "start_s must be within"),
    (b'{"machine": "press-07", "reason": "setup", "start_s": -1e999}', "start_s must be within"),
    (b'{"machine": "press-07", "reason": "setup", "start_s": NaN}', "not valid JSON"),
    (b'{"machine": "press-07", "reason": "setup", "end_s": Infinity}', "not valid JSON"),
    ({**_R, "start_s": 1e9}, "start_s must be within 31 days before"),
    ({**_R, "start_s": (NOW, -60), "end_s": 4e9}, "end_s must be within"),
    ({**_R, "start_s": -5}, "start_s must be within"),
    # deep JSON (json.loads recurses: this raised RecursionError, a 500 and a traceback)
    (b"[" * 2000 + b"]" * 2000, "the JSON nests deeper than 4 levels"),
    (b'{"machine": ' + b'{"a": ' * 500 + b"1" + b"}" * 501, "nests deeper than 4"),
    (b'{"machine": "[[[[[[[[\\"]]]]", "reason": "setup"}', "unknown machine"),  # in a string
    (b'"just a string"', "send a JSON object"),
    (b"\xff\xfe{}", "not valid JSON"),
])
def test_bad_reason_input_is_a_4xx_and_one_log_line(collector, caplog, body, message):
    if isinstance(body, dict):
        now = time.time()
        body = {k: now + v[1] if isinstance(v, tuple) else v for k, v in body.items()}
        body = json.dumps({"pin": PIN, **body}).encode()
    elif body.startswith(b'{"machine": "'):  # written out: not what json.dumps would send
        body = b'{"pin": "%s", %s' % (PIN.encode(), body[1:])
    caplog.set_level(logging.INFO)
    status, answer = request(collector.runtime.board_url + "api/reason", body)
    assert status == 400 and message in answer["error"] and "\n" not in answer["error"]
    lines = [r for r in caplog.records if r.name.startswith("lampwatch.board")]
    assert [r.getMessage() for r in lines] == [f"Andon board: 400 for 127.0.0.1: {answer['error']}"]
    assert all(r.exc_info is None for r in caplog.records)  # no traceback anywhere
    assert "Traceback" not in caplog.text and PIN not in caplog.text


def test_reason_post_must_be_json(collector):
    url = collector.runtime.board_url + "api/reason"
    form = f"machine=press-07&reason=setup&pin={PIN}".encode()
    status, answer = request(url, form, content_type="application/x-www-form-urlencoded")
    assert (status, answer["error"]) == (400, "send JSON (Content-Type: application/json)")
    assert request(url, b"{not json", pin=None)[0] == 400


def test_wrong_pins_from_one_address_do_not_stop_the_right_pin_from_another(collector, caplog):
    node = Node(7, collector.udp_address)
    try:
        node.lamp((R, ON), at_s=time.time() - 30)
    finally:
        node.close()
    caplog.set_level(logging.INFO)
    url = collector.runtime.board_url + "api/reason"
    body = {"machine": "press-07", "reason": "setup"}
    guesses = [request(url, body, pin=f"{i:06d}", source="127.0.0.2") for i in range(8)]
    # Three free tries, then a wait that doubles with every wrong PIN: tries while waiting
    # are refused unchecked (429, with Retry-After).
    assert [s for s, _ in guesses[:4]] == [403] * 4
    assert [s for s, _ in guesses[4:]] == [429] * 4
    assert guesses[-1][1]["error"].startswith("too many wrong PINs from this address: wait ")
    status, _, res = request(url, body, pin=PIN, source="127.0.0.2", full=True)
    assert status == 429 and int(res.getheader("Retry-After")) >= 1  # the guesser waits
    status, answer = request(url, body, pin=PIN, source="127.0.0.3")  # an operator elsewhere
    assert status == 200 and answer["reason"] == "setup"
    time.sleep(1.1)  # the guesser's wait is over: the right PIN works for it too
    assert request(url, {**body, "reason": "material"}, pin=PIN, source="127.0.0.2")[0] == 200
    # Nothing in the log says a PIN, wrong or right, nor its length.
    assert PIN not in caplog.text and "000003" not in caplog.text
    assert "digit" not in caplog.text and "length" not in caplog.text


def test_a_foreign_host_is_refused_while_ip_addresses_and_own_names_work(collector):
    board = collector.runtime.board
    url = board.url
    for host in ("evil.example", f"evil.example:{board.port}", "127.0.0.1.evil.example", ""):
        status, answer = request(url + "api/board", headers={"Host": host})
        assert status == 421 and "Host" in answer["error"], host
    assert request(url, headers={"Host": "evil.example"})[0] == 421  # the page too
    for host in (f"127.0.0.1:{board.port}", "127.0.0.1", f"localhost:{board.port}",
                 f"[::1]:{board.port}", f"192.168.10.5:{board.port}",
                 f"{socket.gethostname()}:{board.port}"):
        assert request(url + "api/board", headers={"Host": host})[0] == 200, host
    assert url.startswith("http://127.0.0.1:")
    assert request(url)[0] == 200  # http://<ip>:<port>/ as a browser sends it


def test_configured_host_names_are_answered(tmp_path, monkeypatch):
    monkeypatch.setenv(PIN_ENV, PIN)
    path = board_config(tmp_path)
    path.write_text(path.read_text().replace('[board]\n', '[board]\nhosts = ["andon.plant"]\n'))
    ct = CollectorThread(load_config(path)).start()
    try:
        url = ct.runtime.board_url
        assert request(url + "api/board", headers={"Host": "ANDON.plant:8080"})[0] == 200
        assert request(url + "api/board", headers={"Host": "andon.plant.evil"})[0] == 421
    finally:
        ct.stop()


def test_a_reason_must_come_from_the_boards_own_origin(collector):
    url = collector.runtime.board_url + "api/reason"
    body = {"machine": "press-07", "reason": "setup"}
    port = collector.runtime.board.port
    for origin in (False, "http://evil.example", "null", f"http://evil.example:{port}",
                   f"https://127.0.0.1:{port}", "http://127.0.0.1:1"):
        status, answer = request(url, body, pin=PIN, origin=origin)
        assert (status, answer["error"]) == (
            403, "the request must come from the board's own page (Origin)"), origin


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


def test_live_slots_are_sized_from_the_open_file_limit():
    assert viewer_slots(None, 4096) == 1000  # the unit's LimitNOFILE: the most by default
    assert viewer_slots(None, 1024) == 448
    assert viewer_slots(40, 1024) == 40
    with pytest.raises(ConfigError, match=r"^the board needs an open-file limit of at least "
                       r"577 \(systemd: LimitNOFILE\); it is 400$"):
        viewer_slots(None, 400)
    with pytest.raises(ConfigError, match="board.sse_slots = 2000 needs an open-file limit"):
        viewer_slots(2000, 1024)


def test_start_up_refuses_more_live_slots_than_the_open_file_limit_allows(tmp_path):
    path = board_config(tmp_path, pin=False)
    path.write_text(path.read_text().replace("[board]\n", "[board]\nsse_slots = 100000\n"))
    r = subprocess.run([sys.executable, "-c", "from lampwatch.cli import main; main()",
                        "collect", "--config", str(path)], capture_output=True, text=True,
                       timeout=60, check=False)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.splitlines()[-1].startswith(
        "lampwatch: board.sse_slots = 100000 needs an open-file limit of at least 100576")


def test_collect_check_prints_the_board_line(tmp_path):
    cfg = board_config(tmp_path, pin=False)
    out = subprocess.run([sys.executable, "-c", "from lampwatch.cli import main; main()",
                          "collect", "--check", "--config", str(cfg), "--board",
                          "0.0.0.0:8088"], capture_output=True, text=True, check=True).stdout
    assert "board: http://0.0.0.0:8088/; read-only (no operator PIN)" in out.splitlines()


def raw(board, data, source="127.0.0.1"):
    """Send raw bytes to the board; its whole answer (it closes after a refusal), or None
    when it reset the connection (it refuses a request after reading 16 KiB of it at
    most: what was sent beyond that is never read)."""
    with socket.create_connection((board.host, board.port), 5, (source, 0)) as s:
        out = b""
        try:
            s.sendall(data)
            while chunk := s.recv(65536):
                out += chunk
        except ConnectionResetError:
            return None
    return out


def test_oversized_and_malformed_requests_get_a_4xx_and_the_board_carries_on(collector, caplog):
    caplog.set_level(logging.INFO)
    board = collector.runtime.board
    head = f"Host: 127.0.0.1:{board.port}\r\nOrigin: http://127.0.0.1:{board.port}\r\n"
    big = json.dumps({"machine": "press-07", "reason": "setup", "pin": "x" * 5000}).encode()
    answer = raw(board, b"POST /api/reason HTTP/1.1\r\n" + head.encode() +
                 b"Connection: close\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(big) + big)
    assert answer.startswith(b"HTTP/1.1 413 ") and b"at most 4096 bytes" in answer
    answer = raw(board, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n")
    assert answer.startswith(b"HTTP/1.0 400 ") and b"longer than 8190 bytes" in answer
    answer = raw(board, b"GET / HTTP/1.1\r\n" + b"X-Big: " + b"b" * 9000 + b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.0 400 ") and b"longer than 8190 bytes" in answer
    for junk in (b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\n\r\n",
                 b"GET / HTTP/1.1\r\nX-Big: " + b"b" * 65536 + b"\r\n\r\n"):
        answer = raw(board, junk)  # refused after 16 KiB: the 400, or a reset if still sending
        assert answer is None or (answer.startswith(b"HTTP/1.0 400 ") and
                                  b"longer than 8190 bytes" in answer)
    many = b"".join(b"X-%d: 1\r\n" % i for i in range(40))
    answer = raw(board, b"GET / HTTP/1.1\r\n" + head.encode() + many + b"\r\n")
    assert answer.startswith(b"HTTP/1.0 400 ") and b"Too many headers" in answer
    assert raw(board, b"HELLO\r\n\r\n").startswith(b"HTTP/1.0 400 ")
    post = b"POST /api/reason HTTP/1.1\r\n" + head.encode() + b"Content-Type: application/json\r\n"
    for framing in (b"Transfer-Encoding: chunked\r\n\r\nzz471108\r\n{}\r\n0\r\n\r\n",
                    b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
                    b"Content-Length: -1\r\n\r\n{}"):
        # (from another address: ten refusals in a second would bar this one)
        assert raw(board, post + framing, "127.0.0.9").startswith(b"HTTP/1.0 400 "), framing
    assert request(collector.runtime.board_url + "api/board")[0] == 200
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("lampwatch.board")]
    assert len(lines) == 10 and all(line.startswith("Andon board: 4") for line in lines)
    assert not any("barred" in line or "held" in line for line in lines)
    assert "471108" not in caplog.text  # what a client sent is not quoted in the log
    assert "Traceback" not in caplog.text and all(r.exc_info is None for r in caplog.records)


def test_a_flood_of_idle_connections_closes_the_flooders_own_not_others(collector):
    board = collector.runtime.board
    mine = socket.create_connection((board.host, board.port), 5, ("127.0.0.3", 0))
    flood = []
    try:
        mine.sendall(f"GET /api/board HTTP/1.1\r\nHost: 127.0.0.1:{board.port}\r\n\r\n"
                     .encode())
        first = mine.recv(65536)
        assert first.startswith(b"HTTP/1.1 200 ")  # now idle, kept alive
        for _ in range(3 * MAX_IDLE):
            flood.append(socket.create_connection((board.host, board.port), 5,
                                                  ("127.0.0.2", 0)))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and board.conns.closed_idle < 2 * MAX_IDLE:
            time.sleep(0.05)
        assert board.conns.closed_idle >= 2 * MAX_IDLE and board.conns.idle <= MAX_IDLE
        closed = 0
        for s in flood:
            s.settimeout(0.01)
            try:
                closed += s.recv(1) == b""
            except TimeoutError:
                pass
            except ConnectionResetError:
                closed += 1
        assert closed >= 2 * MAX_IDLE  # the flooder's oldest went
        # The other address's idle connection was never touched: it still answers.
        mine.sendall(f"GET /api/board HTTP/1.1\r\nHost: 127.0.0.1:{board.port}\r\n\r\n"
                     .encode())
        assert mine.recv(65536).startswith(b"HTTP/1.1 200 ")
    finally:
        mine.close()
        for s in flood:
            s.close()


def test_a_client_that_never_finishes_its_headers_is_closed(collector):
    board = collector.runtime.board
    with socket.create_connection((board.host, board.port), timeout=15) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        t = time.monotonic()
        for _ in range(30):  # a header line every half second, never the blank line
            try:
                s.sendall(b"X-Slow: 1\r\n")
            except OSError:
                break
            time.sleep(0.5)
            s.settimeout(0.01)
            try:
                if s.recv(1) == b"":
                    break
            except TimeoutError:
                pass
        closed_after = time.monotonic() - t
    assert closed_after < 12  # limits.KEEPALIVE_S from the connection's start
