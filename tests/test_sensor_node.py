"""Pure firmware logic in CPython: classifier, uptime clock, edge ring, pulse counting,
RTC state block, outbox and config validation, with exact expected values."""

import json
import sys

import pytest
from lampwatch.node_files import firmware_dir

sys.path.insert(0, str(firmware_dir()))

import config
import lwproto
import nodestate
import outbox
import sensor_node as sn

OFF, ON, BLINK = sn.OFF, sn.ON, sn.BLINK
PERIOD = 1 << 30  # ESP32 ticks period (ticks_ms and ticks_us)


def ticks_diff(a, b):
    half = PERIOD // 2
    return ((a - b + half) & (PERIOD - 1)) - half


def square(freq_hz, duty, start_ms, end_ms):
    """Edges (lit, t_ms) of a lamp flashing at freq_hz from start_ms until end_ms (ms floats
    are kept: the classifier receives integers, as on the node)."""
    period = 1000.0 / freq_hz
    out = []
    k = 0
    while True:
        t = start_ms + k * period
        if t >= end_ms:
            break
        out.append((1, int(t)))
        out.append((0, int(t + duty * period)))
        k += 1
    return out


def classify(edges, until_ms, tick_ms=5, **kw):
    lc = sn.LampClassifier(**kw)
    i = 0
    t = 0
    while t <= until_ms:
        while i < len(edges) and edges[i][1] <= t:
            lc.edge(edges[i][0], edges[i][1])
            i += 1
        lc.tick(t)
        t += tick_ms
    return lc.changes


# --- classifier ------------------------------------------------------------------------------

@pytest.mark.parametrize("hz,duty", [(50, 0.5), (100, 0.5), (120, 0.5), (100, 0.1), (1000, 0.3)])
def test_flicker_reads_steady_on_with_the_first_edge_as_began(hz, duty):
    changes = classify(square(hz, duty, 1000, 6000), 9000)
    assert changes[0] == (ON, 1000)
    # the last light ends in the last period; OFF began at that fall
    last_fall = square(hz, duty, 1000, 6000)[-1][1]
    assert changes == [(ON, 1000), (OFF, last_fall)]


@pytest.mark.parametrize("hz", [0.4, 0.5, 1, 2, 5, 10, 15])
def test_flashing_in_range_reads_one_blink_state(hz):
    edges = square(hz, 0.5, 2000, 2000 + 12 * 1000 / hz)
    changes = classify(edges, int(edges[-1][1] + 3000))
    assert changes == [(BLINK, 2000), (OFF, edges[-1][1])]


@pytest.mark.parametrize("hz", [0.4, 0.5, 1, 2, 5, 10, 15])
def test_blink_period_is_measured_rise_to_rise_when_blink_is_confirmed(hz):
    lc = sn.LampClassifier()
    edges = square(hz, 0.5, 2000, 2000 + 12 * 1000 / hz)
    i = 0
    for t in range(0, int(edges[-1][1]) + 3000, 5):
        while i < len(edges) and edges[i][1] <= t:
            lc.edge(*edges[i])
            i += 1
        lc.tick(t)
        if lc.changes and lc.changes[0][0] == BLINK:
            break
    # edges are whole ms, as on the node: within 1 ms of the true period
    assert abs(lc.blink_ms - 1000 / hz) <= 1


def test_on_to_blink_measures_the_flashes_not_the_steady_light():
    lc = sn.LampClassifier()
    for lit, t in [(1, 0), (0, 3000)] + square(4, 0.5, 3250, 8000):
        lc.edge(lit, t)
        lc.tick(t)
    assert lc.changes[:2] == [(ON, 0), (BLINK, 3000)]
    assert lc.blink_ms == 250


def test_blink_is_confirmed_on_the_second_flash():
    edges = square(2, 0.5, 1000, 10000)  # 250 ms lit, 250 ms dark
    lc = sn.LampClassifier()
    for lit, t in edges[:2]:
        lc.edge(lit, t)
    lc.tick(1500 + 19)
    lc.edge(*edges[2])
    lc.tick(1500 + 19)
    assert lc.changes == []
    lc.tick(1500 + 20)  # the second flash has lasted glitch_ms
    assert lc.changes == [(BLINK, 1000)]


def test_too_slow_flashing_reads_as_on_off():
    # 0.3 Hz: 1667 ms phases are longer than max_phase_ms: each phase is a steady state
    edges = square(0.3, 0.5, 0, 6000)
    assert [s for s, _ in classify(edges, 9000)] == [ON, OFF, ON, OFF]


@pytest.mark.parametrize("width_ms", [1, 5, 10, 19])
def test_glitch_makes_no_state(width_ms):
    assert classify([(1, 3000), (0, 3000 + width_ms)], 8000) == []


def test_glitch_between_flashes_is_ignored_and_single_flash_is_nothing():
    assert classify([(1, 1000), (0, 1300)], 5000) == []
    edges = [(1, 1000), (0, 1300), (1, 1400), (0, 1405), (1, 1600), (0, 1900)]
    assert classify(edges, 5000) == [(BLINK, 1000), (OFF, 1900)]


def test_on_to_blink_begins_where_the_steady_light_ended():
    edges = [(1, 0), (0, 3000)] + square(2, 0.5, 3250, 8000)
    changes = classify(edges, 11000)
    assert changes[:2] == [(ON, 0), (BLINK, 3000)]


def test_blink_to_on_begins_at_the_rise_of_the_steady_light():
    edges = square(1, 0.5, 0, 4000) + [(1, 4000), (0, 9000)]
    assert classify(edges, 12000) == [(BLINK, 0), (ON, 4000), (OFF, 9000)]


def test_dropout_in_a_steady_light_is_no_change():
    edges = [(1, 0), (0, 3000), (1, 3200), (0, 8000)]
    assert classify(edges, 11000) == [(ON, 0), (OFF, 8000)]


def test_thresholds_are_configurable_and_checked():
    edges = square(2, 0.5, 0, 2000) + [(1, 2000)]
    assert classify(edges, 3000, max_phase_ms=200) == [(ON, 0), (OFF, 250), (ON, 500),
                                                       (OFF, 750), (ON, 1000), (OFF, 1250),
                                                       (ON, 1500), (OFF, 1750), (ON, 2000)]
    with pytest.raises(ValueError):
        sn.LampClassifier(flicker_gap_ms=30, glitch_ms=20)


def test_late_edges_are_classified_by_their_own_times():
    # the main loop stalled for 10 s: edges arrive in one batch, then a tick
    lc = sn.LampClassifier()
    for lit, t in [(1, 1000), (0, 4000)]:
        lc.edge(lit, t)
    lc.tick(11000)
    assert lc.changes == [(ON, 1000), (OFF, 4000)]


# --- uptime clock ----------------------------------------------------------------------------

def test_uptime_clock_counts_across_the_ticks_wrap():
    t = [PERIOD - 1000]
    clock = sn.UptimeClock(lambda: t[0], ticks_diff, start_ms=5_000_000_000)
    for _ in range(10):
        t[0] = (t[0] + 700) % PERIOD
        clock.now_ms()
    assert clock.now_ms() == 5_000_007_000
    t[0] = (t[0] - 5) % PERIOD  # out of order read: the clock never runs backwards
    assert clock.now_ms() == 5_000_007_000


def test_uptime_clock_over_many_wraps():
    t = [0]
    clock = sn.UptimeClock(lambda: t[0], ticks_diff)
    step = PERIOD // 3 - 1
    for _ in range(30):
        t[0] = (t[0] + step) % PERIOD
        clock.now_ms()
    assert clock.now_ms() == 30 * step


# --- edge ring -------------------------------------------------------------------------------

class FakePin:
    def __init__(self, v=0):
        self.v = v
        self.handler = None

    def value(self):
        return self.v

    def irq(self, handler=None, trigger=3):
        self.handler = handler


def test_ring_records_in_order_and_counts_overflow():
    now = [0]
    ring = sn.EdgeRing(lambda: now[0])
    tap = ring.tap(3)
    pin = FakePin(1)
    for i in range(70):
        now[0] = i
        pin.v = i & 1
        tap(pin)
    assert ring.dropped == 6
    got = []
    while (c := ring.pop()) >= 0:
        got.append((c >> 1, c & 1, ring.t))
    assert got == [(3, i & 1, i) for i in range(64)]
    # indices wrap around the 2x range: still consistent afterwards
    for i in range(200):
        tap(pin)
        assert ring.pop() >= 0
        assert ring.pop() == -1


# --- sensor node: polling safety net ---------------------------------------------------------

def make_node(lamp_pins, count_pins=()):
    now = {"us": 0}

    def tus():
        return now["us"] % PERIOD

    def tms():
        return (now["us"] // 1000) % PERIOD

    clock = sn.UptimeClock(tms, ticks_diff)
    lamps = [(ch, p, False) for ch, p in lamp_pins]
    counts = [(i, p, False, None) for i, p in count_pins]
    node = sn.SensorNode(clock, tus, ticks_diff, lamps, counts, 3,
                         {"min_pulse_ms": 5})
    return node, now


def test_safety_net_catches_an_edge_the_irq_path_lost():
    red = FakePin(0)
    node, now = make_node([(2, red)])
    now["us"] = 995_000
    node.service()
    now["us"] = 1_000_000
    red.v = 1  # no IRQ: the scheduler queue was full
    assert node.service() == []
    now["us"] = 1_005_000
    node.service()
    assert node.irq_resyncs == 1
    now["us"] = 3_000_000
    assert node.service() == [(2, ON, 1000)]


def test_service_reports_blink_with_its_period():
    green = FakePin(0)
    node, now = make_node([(0, green)])
    out = []
    for t_ms in range(0, 6000, 5):  # 2 Hz from 1 s to 4 s: 250 ms lit, 250 ms dark
        now["us"] = t_ms * 1000
        level = 1 if 1000 <= t_ms < 4000 and (t_ms - 1000) % 500 < 250 else 0
        if level != green.v:
            green.v = level
            green.handler(green)
        out += node.service()
    assert out == [(0, BLINK, 1000, 500), (0, OFF, 3750)]


def test_safety_net_does_not_double_count_a_late_irq():
    red = FakePin(0)
    node, now = make_node([(2, red)])
    now["us"] = 1_000_000
    red.v = 1
    node.service()  # the level differs once: maybe an IRQ is pending
    red.handler(red)  # ...and here it is
    now["us"] = 1_005_000
    node.service()
    assert node.irq_resyncs == 0
    now["us"] = 3_000_000
    assert node.service() == [(2, ON, 1000)]  # stamped by the IRQ, not the poll


def test_sensor_node_counts_pulses_from_irq_records():
    good = FakePin(0)
    node, now = make_node([], [(0, good)])
    edges = []
    for k in range(10):  # 20 ms pulses every 100 ms; pulse 4 lasts 3 ms: too short
        edges += [(100_000 * k + 1, 1), (100_000 * k + (3001 if k == 4 else 20001), 0)]
    for t in range(0, 1_005_000, 5000):  # a pass every 5 ms, handlers at the edges
        while edges and edges[0][0] <= t:
            now["us"], good.v = edges.pop(0)
            good.handler(good)
        now["us"] = t
        node.service()
    assert node.counts() == [9, 0]
    assert node.count_health() == (0, 1, 0)  # the short one is reported, not lost silently


# --- RTC block -------------------------------------------------------------------------------

def test_node_state_round_trip_and_integrity():
    st = nodestate.NodeState(0xDEADBEEF, 4711, 2**32 + 5, 300, 5_000_000_000,
                             lwproto.pack_lamps([1, 0, 2, 0, 0]),
                             (3, 1, 70000, 9, 12, 2**32 + 7, 4, 2))
    block = bytes(st.pack())
    assert len(block) == nodestate.SIZE
    back = nodestate.NodeState.load(block)
    assert (back.boot_id, back.next_seq, back.good, back.ng, back.uptime_ms, back.lamps,
            back.health) == (0xDEADBEEF, 4711, 5, 300, 5_000_000_000, 19,
                             (3, 1, 65535, 9, 12, 2**32 - 1, 4, 2))
    for i in range(len(block)):
        bad = bytearray(block)
        bad[i] ^= 0x01
        assert nodestate.NodeState.load(bytes(bad)) is None, i
    assert nodestate.NodeState.load(b"") is None
    assert nodestate.NodeState.load(bytes(64)) is None


# --- outbox ----------------------------------------------------------------------------------

def test_outbox_drops_health_then_heartbeats_then_oldest_lamp():
    ob = outbox.Outbox(capacity=4)
    ob.add(1, 0, lwproto.T_HELLO, b"h", 0)
    ob.add(1, 1, lwproto.T_LAMP, b"l1", 0)
    ob.add(1, 2, lwproto.T_HEALTH, b"x", 0)
    ob.add(1, 3, lwproto.T_HEARTBEAT, b"b1", 0)
    ob.add(1, 4, lwproto.T_HEARTBEAT, b"b2", 0)  # drops the HEALTH
    ob.add(1, 5, lwproto.T_LAMP, b"l2", 0)  # drops heartbeat 3 (superseded by 4)
    ob.add(1, 6, lwproto.T_LAMP, b"l3", 0)  # drops heartbeat 4 too: never a LAMP before it
    assert [it[1] for it in ob.items] == [0, 1, 5, 6]
    ob.add(1, 7, lwproto.T_HEARTBEAT, b"b3", 0)  # worth less than all queued: not kept
    ob.add(1, 8, lwproto.T_HEALTH, b"y", 0)
    assert [it[1] for it in ob.items] == [0, 1, 5, 6]
    assert (ob.dropped, ob.dropped_lamp) == (5, 0)
    ob.add(1, 9, lwproto.T_LAMP, b"l4", 0)  # only now does a LAMP frame go: the oldest
    assert [it[1] for it in ob.items] == [0, 5, 6, 9]
    assert (ob.dropped, ob.dropped_lamp) == (6, 1)


def test_outbox_leaves_a_frame_the_busy_link_refused_due():
    ob = outbox.Outbox(capacity=8, retry_ms=1000)
    for s in range(3):
        ob.add(9, s, lwproto.T_LAMP, bytes([s]), 0)
    sent = []

    def send(frame):  # a serial line that takes one frame per pass
        if sent and sent[-1][0] == t:
            return False
        sent.append((t, frame))
        return True

    for t in (0, 5, 10):
        ob.due(t, 4, send)
    assert sent == [(0, b"\x00"), (5, b"\x01"), (10, b"\x02")]
    assert ob.due(999, 4) == []


def test_outbox_retransmits_with_backoff_until_acked():
    ob = outbox.Outbox(capacity=8, retry_ms=1000, retry_max_ms=4000)
    for s in range(3):
        ob.add(9, s, lwproto.T_LAMP, bytes([s]), 0)
    assert ob.due(0, 2) == [b"\x00", b"\x01"]
    assert ob.due(0, 4) == [b"\x02"]
    assert ob.due(999, 4) == []
    assert len(ob.due(1000, 4)) == 3
    assert ob.due(2999, 4) == []
    assert len(ob.due(3000, 4)) == 3  # 2 s after the second send
    assert ob.ack(9, [0, 2]) == 2
    assert ob.ack(8, [1]) == 0  # another boot's ACK
    for t in (7000, 11000, 15000):
        assert ob.due(t, 4) == [b"\x01"]  # capped at retry_max_ms


# --- config ----------------------------------------------------------------------------------

EXAMPLE = (firmware_dir() / "config.example.json").read_text()


def test_example_config_is_valid():
    cfg, problems = config.parse(EXAMPLE)
    assert problems == []
    assert cfg["lamps"] == [(0, 34, True), (1, 35, True), (2, 36, True)]
    assert cfg["counts"] == [(0, 25, True), (1, 26, True)]


def test_config_reports_every_problem_on_its_own_line():
    text = ('{"node_id": 0, "key": "abc", "transport": "udp", "lamps": {"purple": 4, '
            '"red": {"pin": 7}, "green": {"pin": 25}}, "counts": {"good": 25}, '
            '"poll_ms": 500, "colour": 1}')
    _, problems = config.parse(text)
    assert problems == [
        "node_id must be an integer 1..65535 (got 0)",
        "key must be 32 or 64 hex digits (a 16- or 32-byte key)",
        "wifi.ssid is required for the udp transport",
        "collector.host is required for the udp transport",
        "lamps.purple: unknown input (use green, yellow, red, blue, white)",
        "lamps.red.pin: 7 is not a usable ESP32 input GPIO",
        "counts.good.pin: GPIO 25 is already used by lamps.green",
        "poll_ms must be a number from 1 to 50 (got 500)",
        "unknown setting 'colour'",
    ]
    assert config.parse("{")[1] == ["config.json is not valid JSON"]


def test_serial_link_settings_are_checked_against_the_console_and_the_inputs():
    cfg = json.loads(EXAMPLE)
    cfg.update(transport="serial", serial={"uart": 0, "tx": 34, "rx": 25, "baud": 12345})
    _, problems = config.parse(json.dumps(cfg))
    assert problems == [
        "serial.uart must be 1 or 2 (UART0 is the console; got 0)",
        ("serial.tx: 34 is not a usable ESP32 GPIO for a UART TX (not 1 / 3, the console; "
         "TX not 34-39)"),
        ("serial.baud must be one of 9600, 19200, 38400, 57600, 115200, 230400, 460800, "
         "921600 (got 12345)"),
        "counts.good.pin: GPIO 25 is already used by serial.rx",
    ]
    cfg["serial"] = {"uart": 1, "tx": 4, "rx": 5}
    parsed, problems = config.parse(json.dumps(cfg))
    assert problems == [] and parsed["serial"] == (1, 4, 5, 115200)


def test_collector_by_name_and_line_rate_are_checked():
    cfg = json.loads(EXAMPLE)
    cfg["collector"]["host"] = "collector.plant.local"
    parsed, problems = config.parse(json.dumps(cfg))
    assert problems == [] and parsed["collector"] == ("collector.plant.local", 4210)
    assert parsed["max_rate_hz"] == 50
    cfg["collector"]["host"] = "collector_1 .plant"
    cfg["max_rate_hz"] = 500
    _, problems = config.parse(json.dumps(cfg))
    assert problems == [
        "collector.host: 'collector_1 .plant' is neither an IPv4 address nor a host name",
        "max_rate_hz must be a number from 0.1 to 400 (got 500)"]
