"""The unmodified firmware on the virtual node (CPython engine), driven by scenario timelines;
every frame is decoded with lampwatch.protocol and checked exactly."""

import sys

import pytest
from lampwatch import protocol
from lampwatch.node_files import example_config, firmware_dir
from lampwatch.vnode import Scenario, VirtualNode, run_plant
from lampwatch.vnode import sim as simmod

sys.path.insert(0, str(firmware_dir()))

import nodestate

CONFIG = example_config()
KEY = bytes.fromhex(CONFIG["key"])
KEYS = {CONFIG["node_id"]: KEY}
GREEN, YELLOW, RED = 0, 1, 2
OFF, ON, BLINK = 0, 1, 2


def decoded(node, keys=KEYS):
    return [(f.t_s, protocol.decode(f.data, keys)) for f in node.frames]


def lamp_events(node):
    """Every lamp event the node sent, once each (retransmissions share a seq)."""
    seen = set()
    out = []
    for _, fr in decoded(node):
        key = (fr.header.boot_id, fr.header.seq)
        if fr.header.type == protocol.T_LAMP and key not in seen:
            seen.add(key)
            out += [(e.channel, e.state, e.uptime_ms) for e in fr.body.events]
    return out


def last(node, ftype):
    return [fr for _, fr in decoded(node) if fr.header.type == ftype][-1]


def test_lamps_and_counts_exactly():
    sc = (Scenario(duration_s=120)
          .lamp("red", 12.0, "on", flicker_hz=100)
          .lamp("green", 30.0, "blink", hz=2)
          .lamp("green", 60.0, "off")
          .lamp("red", 80.0, "off")
          .glitch("yellow", 20.0, 0.005)
          .pulses("good", 5.0, n=100, every_s=0.5, width_s=0.05)
          .pulses("ng", 7.0, n=10, every_s=3, width_s=0.05))
    node = VirtualNode(CONFIG, sc).run_until(120)
    assert lamp_events(node) == [(RED, ON, 12000), (GREEN, BLINK, 30000),
                                 (GREEN, OFF, 59750), (RED, OFF, 79995)]
    hb = last(node, protocol.T_HEARTBEAT).body
    assert (hb.good, hb.ng, hb.lamps) == (100, 10, (0, 0, 0, 0, 0))
    frames = decoded(node)
    hello = frames[0][1]
    assert hello.header.type == protocol.T_HELLO and hello.header.seq == 0
    assert (hello.body.reset_cause, hello.body.has_hw_counter, hello.body.lamp_mask,
            hello.body.heartbeat_ms) == ("power_on", True, 0b111, 5000)
    seqs = [fr.header.seq for _, fr in frames]
    assert seqs == list(range(len(seqs)))  # all ACKed at once: no retransmission
    assert node.app.outbox.items == []


def test_lamp_frame_leaves_as_soon_as_the_change_is_classified():
    sc = Scenario(duration_s=20).lamp("green", 5.0, "blink", hz=2)
    node = VirtualNode(CONFIG, sc).run_until(20)
    (t, fr), = [(t, fr) for t, fr in decoded(node) if fr.header.type == protocol.T_LAMP]
    # BLINK is certain once the second flash has lasted glitch_ms: 5.5 s + 20 ms, next poll
    assert fr.body.events[0].uptime_ms == 5000
    assert 5.520 <= t <= 5.526


def test_wifi_outage_queues_frames_and_delivers_them_after():
    sc = (Scenario(duration_s=200)
          .fault("wifi_down", 20.0, duration_s=60)
          .lamp("red", 30.0, "on").lamp("red", 50.0, "off")
          .pulses("good", 10.0, n=150, every_s=1.0))
    node = VirtualNode(CONFIG, sc).run_until(200)
    sent = decoded(node)
    during = [fr for t, fr in sent if 20.0 <= t < 80.0]
    assert during == []  # nothing leaves while the link is down
    assert lamp_events(node) == [(RED, ON, 30000), (RED, OFF, 50000)]
    health = last(node, protocol.T_HEALTH).body
    assert (health.reconnects, health.frames_dropped) == (1, 0)
    hb = last(node, protocol.T_HEARTBEAT).body
    assert hb.good == 150
    assert node.app.outbox.items == []
    # every uptime is monotonic over seq; frames queued offline went out right after
    after = [t for t, fr in sent if t >= 80.0]
    assert after and after[0] < 80.0 + 1.6 + 0.1  # reconnect time + a few passes


def test_long_outage_overflows_the_ring_and_keeps_lamp_events():
    cfg = dict(CONFIG, unacked_max=16)
    sc = Scenario(duration_s=500).fault("wifi_down", 10.0, duration_s=300)
    for k in range(6):
        sc.lamp("yellow", 20.0 + 40 * k, "on").lamp("yellow", 40.0 + 40 * k, "off")
    node = VirtualNode(cfg, sc).run_until(500)
    assert len(lamp_events(node)) == 12
    health = last(node, protocol.T_HEALTH).body
    assert health.frames_dropped > 30  # superseded heartbeats and health frames
    assert node.app.outbox.dropped_lamp == 0


def test_watchdog_reset_continues_the_boot():
    sc = (Scenario(duration_s=60)
          .pulses("good", 1.0, n=20, every_s=1.0)
          .lamp("green", 5.0, "on")
          .fault("stall", 25.0, duration_s=30)  # the loop hangs; the watchdog bites at 8 s
          .pulses("ng", 40.0, n=5, every_s=1.0))
    node = VirtualNode(CONFIG, sc).run_until(60)
    frames = decoded(node)
    hellos = [fr for _, fr in frames if fr.header.type == protocol.T_HELLO]
    assert [h.body.reset_cause for h in hellos] == ["power_on", "watchdog"]
    assert hellos[0].header.boot_id == hellos[1].header.boot_id
    seqs = [fr.header.seq for _, fr in frames]
    assert len(set(seqs)) == len(seqs)  # no (boot, seq) reused
    assert seqs == sorted(seqs)
    hb = last(node, protocol.T_HEARTBEAT).body
    assert (hb.good, hb.ng, hb.lamps[GREEN]) == (20, 5, ON)
    # the lamp was ON before the reset and still is: no new event after the reboot
    assert lamp_events(node) == [(GREEN, ON, 5000)]
    boots = node.stats()["boots"]
    assert [c for _, c in boots] == [simmod.PWRON_RESET, simmod.WDT_RESET]
    assert boots[1][0] == pytest.approx(33.0e6 + 0.6e6, abs=0.01e6)
    # uptime continues from the last saved value (at most 1 s old), never backwards
    ups = [fr.header.uptime_ms for _, fr in frames]
    assert ups == sorted(ups)


def test_power_loss_starts_a_new_boot():
    sc = (Scenario(duration_s=40)
          .pulses("good", 1.0, n=10, every_s=1.0)
          .fault("power_loss", 15.0, duration_s=5)
          .pulses("good", 25.0, n=3, every_s=1.0))
    node = VirtualNode(CONFIG, sc).run_until(40)
    frames = decoded(node)
    hellos = [fr for _, fr in frames if fr.header.type == protocol.T_HELLO]
    assert [h.body.reset_cause for h in hellos] == ["power_on", "power_on"]
    assert hellos[0].header.boot_id != hellos[1].header.boot_id
    assert hellos[1].header.seq == 0 and hellos[1].header.uptime_ms == 600
    hb = last(node, protocol.T_HEARTBEAT)
    assert (hb.header.boot_id, hb.body.good) == (hellos[1].header.boot_id, 3)


def test_sequence_exhaustion_starts_a_new_boot():
    sc = Scenario(duration_s=40).pulses("good", 22.0, n=5, every_s=1.0)
    node = VirtualNode(CONFIG, sc)
    st = nodestate.NodeState(0x12345678, next_seq=0xFFFFFC, good=7, uptime_ms=1000)
    node.sim.rtc_mem = bytes(st.pack())  # as if a watchdog reset came after 16.7 M frames
    node.run_until(40)
    frames = decoded(node)
    old = [fr for _, fr in frames if fr.header.boot_id == 0x12345678]
    assert [fr.header.seq for fr in old] == [0xFFFFFC, 0xFFFFFD, 0xFFFFFE, 0xFFFFFF]
    new = [fr for _, fr in frames if fr.header.boot_id != 0x12345678]
    assert new[0].header.type == protocol.T_HELLO and new[0].header.seq == 0
    assert new[0].body.reset_cause == "unknown"
    assert last(node, protocol.T_HEARTBEAT).body.good == 5  # counts restarted at 0


def test_queue_and_ring_overflow_keep_lamps_and_counts_exact_and_are_reported():
    sc = (Scenario(duration_s=70)
          .lamp("red", 2.0, "on", flicker_hz=100)
          .lamp("yellow", 2.0, "on", flicker_hz=120)
          .lamp("green", 10.0, "blink", hz=5)
          .lamp("green", 40.0, "off")
          .pulses("good", 1.0, n=2000, every_s=0.025, width_s=0.010)
          .gc_pauses(every_s=0.5, pause_s=0.045))
    for k in range(10):  # the main loop held up while IRQs go on: the edge ring overflows
        sc.fault("busy", 12.2 + 4 * k, duration_s=0.4)
    node = VirtualNode(CONFIG, sc).run_until(70)
    assert node.stats()["irq_dropped"] > 1000  # the scheduler queue overflowed in each GC
    assert [(c, s) for c, s, _ in lamp_events(node)] == [
        (YELLOW, ON), (RED, ON), (GREEN, BLINK), (GREEN, OFF)]
    assert last(node, protocol.T_HEARTBEAT).body.good == sc.expected_pulses("good") == 2000
    health = last(node, protocol.T_HEALTH).body
    assert health.events_dropped > 100  # records lost to the full ring, and said so
    assert health.inferred_parts > 0  # parts a GC hid, counted by the line-rate rule


def test_safety_net_catches_a_lamp_edge_whose_record_was_lost():
    sc = (Scenario(duration_s=14)
          .lamp("red", 2.0, "on", flicker_hz=100)  # 200 records/s fill the 64-record ring
          .lamp("yellow", 10.35, "on")  # while the ring is full: this record is lost
          .fault("busy", 10.0, duration_s=0.4))
    node = VirtualNode(CONFIG, sc).run_until(14)
    events = lamp_events(node)
    assert [(c, s) for c, s, _ in events] == [(RED, ON), (YELLOW, ON)]
    # seen by polling once the loop runs again (10.4 s), confirmed on the next pass
    assert 10_350 <= events[1][2] <= 10_405
    health = last(node, protocol.T_HEALTH).body if any(
        fr.header.type == protocol.T_HEALTH for _, fr in decoded(node)) else None
    assert node.app.sensor.irq_resyncs == 1
    assert node.app.sensor.events_dropped > 0
    assert health is None or health.irq_resyncs == 1


def test_without_a_hardware_counter_irqs_and_polling_count():
    sc = (Scenario(duration_s=40)
          .pulses("good", 1.0, n=300, every_s=0.1, width_s=0.03)
          .pulses("ng", 1.0, n=100, every_s=0.3, width_s=0.002)  # too short: not parts
          .gc_pauses(every_s=1.0, pause_s=0.02))
    node = VirtualNode(CONFIG, sc, has_counter=False).run_until(40)
    hello = decoded(node)[0][1]
    assert hello.body.has_hw_counter is False
    hb = last(node, protocol.T_HEARTBEAT).body
    assert (hb.good, hb.ng) == (300, 0)


def test_16_bit_hardware_counter_is_extended():
    # 33,000 pulses are 66,000 edges on a counter of both edges: past a 16-bit unit's wrap
    cfg = dict(CONFIG, max_rate_hz=250)
    sc = Scenario(duration_s=140).pulses("good", 1.0, n=33000, every_s=0.004, width_s=0.002)
    node = VirtualNode(cfg, sc, counter_raw16=True).run_until(140)
    assert last(node, protocol.T_HEARTBEAT).body.good == 33000
    good = node.app.sensor.counters[0]
    assert (good.e, good.missed, good.pc.short) == (66000, 0, 0)


def test_invalid_config_refuses_to_run_with_one_line_per_problem():
    cfg = dict(CONFIG, node_id=0, poll_ms=0)
    node = VirtualNode(cfg, Scenario(duration_s=5)).run_until(5)
    assert node.frames == []
    assert node.console == [
        "lampwatch: config.json: node_id must be an integer 1..65535 (got 0)",
        "lampwatch: config.json: poll_ms must be a number from 1 to 50 (got 0)",
        "lampwatch: not starting; fix config.json and reset",
    ]


def test_nodes_are_isolated_in_one_process_and_inject_works():
    nodes = []
    for i in range(3):
        cfg = dict(CONFIG, node_id=20 + i)
        sc = Scenario(duration_s=30).pulses("good", 1.0, n=10 * (i + 1), every_s=0.5)
        nodes.append(VirtualNode(cfg, sc, seed=100 + i))
    run_plant(nodes, 16.0)  # the last pulses end at 15.5 s (a rebooting node counts nothing)
    nodes[1].inject("watchdog")
    run_plant(nodes, 30.0)
    for i, node in enumerate(nodes):
        frames = decoded(node, {20 + i: KEY})
        assert {fr.header.node_id for _, fr in frames} == {20 + i}
        assert last_of(frames, protocol.T_HEARTBEAT).body.good == 10 * (i + 1)
    causes = [[fr.body.reset_cause for _, fr in decoded(n, {n.config["node_id"]: KEY})
               if fr.header.type == protocol.T_HELLO] for n in nodes]
    assert causes == [["power_on"], ["power_on", "watchdog"], ["power_on"]]
    assert len({n.app.state.boot_id for n in nodes}) == 3


def last_of(frames, ftype):
    return [fr for _, fr in frames if fr.header.type == ftype][-1]


def test_same_seed_same_bytes():
    sc = Scenario(duration_s=20).lamp("red", 3.0, "blink", hz=1).pulses("ng", 2.0, n=5,
                                                                        every_s=1.0)
    a = VirtualNode(CONFIG, sc, seed=7).run_until(20)
    b = VirtualNode(CONFIG, sc, seed=7).run_until(20)
    assert [f.data for f in a.frames] == [f.data for f in b.frames]


def test_soft_reset_continues_the_boot_and_keeps_every_count():
    sc = (Scenario(duration_s=60)
          .pulses("good", 1.0, n=20, every_s=1.0)  # 1..20 s
          .pulses("ng", 2.0, n=3, every_s=5.0)  # 2, 7, 12 s
          .fault("soft_reset", 25.0)  # reboots in 0.6 s; no pulse falls into it
          .pulses("good", 30.0, n=15, every_s=1.0)
          .pulses("ng", 31.0, n=2, every_s=5.0))
    node = VirtualNode(CONFIG, sc).run_until(60)
    frames = decoded(node)
    hellos = [fr for _, fr in frames if fr.header.type == protocol.T_HELLO]
    assert [h.body.reset_cause for h in hellos] == ["power_on", "soft"]
    assert hellos[0].header.boot_id == hellos[1].header.boot_id  # RTC memory kept the boot
    assert [c for _, c in node.stats()["boots"]] == [simmod.PWRON_RESET, simmod.SOFT_RESET]
    beats = [fr for _, fr in frames if fr.header.type == protocol.T_HEARTBEAT]
    before = [b.body for b in beats if b.header.seq < hellos[1].header.seq]
    after = [b.body for b in beats if b.header.seq > hellos[1].header.seq]
    assert (before[-1].good, before[-1].ng) == (20, 3)
    # cumulative per boot: the counts go on from the RTC memory, never back to zero
    assert after and min(b.good for b in after) >= 20 and min(b.ng for b in after) >= 3
    assert (after[-1].good, after[-1].ng) == (35, 5)
    assert (sc.expected_pulses("good"), sc.expected_pulses("ng")) == (35, 5)
    seqs = [fr.header.seq for _, fr in frames]
    assert seqs == sorted(set(seqs))  # the sequence continues too: no (boot, seq) reused
