"""Derivation: lamp map, machine state and ordering, silence, counts, health, OEE, replay."""

import random
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lampwatch import oee
from lampwatch.derive import DeriveConfig, Deriver, Event, NodeConfig
from lampwatch.errors import ConfigError
from lampwatch.machine_state import LampMap
from lampwatch.protocol import (
    T_HEALTH,
    T_HEARTBEAT,
    T_HELLO,
    T_LAMP,
    Frame,
    Header,
    Health,
    Heartbeat,
    Hello,
    Lamp,
    LampEvent,
)

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc).timestamp()  # a Monday, 08:00 UTC
NODE, BOOT_A, BOOT_B = 7, 0xA0A0A0A0, 0xB0B0B0B0
G, Y, R = 0, 1, 2
OFF, ON, BLINK = 0, 1, 2
_TYPES = {Hello: T_HELLO, Lamp: T_LAMP, Heartbeat: T_HEARTBEAT, Health: T_HEALTH}


def frame(body, seq, up_ms, boot=BOOT_A, node=NODE):
    return Frame(Header(_TYPES[type(body)], node, boot, seq, up_ms), body, b"")


def hello(hb_ms=60_000, cause="power_on"):
    # A period long enough that the sparse frames of these tests are no silence (3 periods
    # without a frame make the machine UNKNOWN, at the next tick or the next frame).
    return Hello((0, 1, 0), cause, bytes.fromhex("a1b2c3d4"), False, False, 0b111, hb_ms)


def hb(good=0, ng=0, green=OFF, yellow=OFF, red=OFF):
    return Heartbeat(good, ng, (green, yellow, red, OFF, OFF))


def lamp(*events):
    return Lamp(tuple(LampEvent(ch, st, up) for ch, st, up in events))


def deriver(**kw):
    cfg = DeriveConfig(nodes={NODE: NodeConfig(NODE, "press", ideal_cycle_s=2.0,
                                               lamp_map=kw.pop("lamp_map", None))}, **kw)
    return Deriver(cfg)


def feed(d, body, seq, up_ms, delay_s=0.0, boot=BOOT_A, boot_wall=T0):
    """Send a frame built at uptime `up_ms` of a boot that began at `boot_wall`."""
    return d.on_frame(frame(body, seq, up_ms, boot), boot_wall + up_ms / 1000 + delay_s)


def states(events):
    return [(round(e.ts_s - T0, 6), e.data["state"]) for e in events if e.kind == "state"]


# --- lamp map -----------------------------------------------------------------------------

def test_default_map_priorities():
    m = LampMap()
    assert m.state([ON, OFF, OFF, OFF, OFF]) == ("RUN", None)
    assert m.state([ON, ON, OFF, OFF, OFF]) == ("IDLE", None)  # yellow beats green
    assert m.state([ON, ON, ON, OFF, OFF]) == ("STOP", None)  # red beats both
    assert m.state([BLINK, OFF, OFF, OFF, OFF]) == ("RUN", None)  # a plain rule: ON or BLINK
    assert m.state([OFF, OFF, OFF, OFF, OFF]) == ("OFF", None)
    assert m.state([OFF, OFF, OFF, ON, OFF]) == ("OFF", None)  # blue is not in the map


def test_blink_rule_beats_the_plain_rule_of_its_lamp():
    m = LampMap({"red": "STOP", "yellow": "IDLE", "green": "RUN", "blink:yellow": "STOP:setup"})
    assert m.state([ON, BLINK, OFF, OFF, OFF]) == ("STOP", "setup")
    assert m.state([ON, ON, OFF, OFF, OFF]) == ("IDLE", None)
    assert m.state([OFF, BLINK, ON, OFF, OFF]) == ("STOP", None)  # red still first


def test_on_only_rule_falls_through_when_blinking_and_none_key():
    m = LampMap({"on:green": "RUN", "blue": "idle", "none": "STOP"})
    assert m.state([ON, OFF, OFF, OFF, OFF]) == ("RUN", None)
    assert m.state([BLINK, OFF, OFF, ON, OFF]) == ("IDLE", None)  # no blink:green rule
    assert m.state([BLINK, OFF, OFF, OFF, OFF]) == ("STOP", None)  # nothing matched


@pytest.mark.parametrize("rules", [{"purple": "RUN"}, {"green": "GO"}, {"fast:green": "RUN"},
                                   {"green": "RUN:setup"}, {"red": "STOP:coffee"}])
def test_invalid_lamp_maps(rules):
    with pytest.raises(ConfigError):
        LampMap(rules)


# --- machine state ------------------------------------------------------------------------

def test_lamp_frames_use_the_time_each_state_began():
    d = deriver()
    out = feed(d, hello(), 0, 100)
    assert [e.kind for e in out] == ["hello"]
    assert out[0].data == {"boot_id": BOOT_A, "fw": "0.1.0", "reset_cause": "power_on",
                           "config_hash": "a1b2c3d4", "heartbeat_ms": 60_000, "lamp_mask": 7}
    out = feed(d, lamp((G, ON, 1500)), 1, 2000, delay_s=0.3)
    assert out == [Event(pytest.approx(T0 + 1.5), "lamp", NODE, "press",
                         {"lamp": "green", "state": "ON"}),
                   Event(pytest.approx(T0 + 1.5), "state", NODE, "press",
                         {"state": "RUN", "prev": None})]
    out = feed(d, lamp((Y, BLINK, 2500), (G, OFF, 2600)), 2, 3000)
    assert states(out) == [(2.5, "IDLE")]  # yellow beats green at once; green off changes nothing


def test_blink_lamp_event_carries_the_frequency_the_node_measured():
    d = deriver()
    feed(d, hello(), 0, 0)
    body = Lamp((LampEvent(G, BLINK, 1000, 500), LampEvent(Y, BLINK, 1000),
                 LampEvent(R, BLINK, 1200, 3000)))
    out = feed(d, body, 1, 1500)
    assert [e.data for e in out if e.kind == "lamp"] == [
        {"lamp": "green", "state": "BLINK", "hz": 2.0},
        {"lamp": "yellow", "state": "BLINK"},  # an older node sends no period: no hz
        {"lamp": "red", "state": "BLINK", "hz": 0.333}]


def test_simultaneous_lamp_changes_make_one_state_change():
    d = deriver()
    feed(d, hello(), 0, 0)
    feed(d, lamp((G, ON, 1000)), 1, 1000)
    out = feed(d, lamp((G, OFF, 5000), (R, ON, 5000)), 2, 5000)
    assert [e.data for e in out if e.kind == "state"] == [{"state": "STOP", "prev": "RUN"}]


def test_heartbeat_repairs_a_lost_lamp_frame():
    d = deriver()
    feed(d, hello(), 0, 0)
    feed(d, lamp((G, ON, 1000)), 1, 1000)
    # the LAMP frame "green OFF, yellow ON at 4 s" (seq 2) was lost
    out = feed(d, hb(green=OFF, yellow=ON), 3, 10_000)
    assert [(e.kind, e.data.get("lamp"), e.data.get("repaired")) for e in out] == [
        ("lamp", "green", True), ("lamp", "yellow", True), ("state", None, None)]
    assert states(out) == [(10.0, "IDLE")]  # one change, no transient OFF
    # its retransmission arrives later: older than what the heartbeat applied, ignored
    assert feed(d, lamp((G, OFF, 4000), (Y, ON, 4000)), 2, 4000, delay_s=8.0) == []


def test_late_lamp_change_never_rewrites_the_past():
    d = deriver()
    feed(d, hello(), 0, 0)
    feed(d, lamp((G, ON, 1000)), 1, 1000)               # RUN at 1
    assert states(feed(d, lamp((R, ON, 8000)), 3, 8000)) == [(8.0, "STOP")]
    assert states(feed(d, lamp((R, OFF, 9000)), 4, 9000)) == [(9.0, "RUN")]
    # seq 2, "yellow ON at 5 s", arrives last: it takes effect no earlier than 9 s
    out = feed(d, lamp((Y, ON, 5000)), 2, 5000, delay_s=5.0)
    assert [(round(e.ts_s - T0, 6), e.kind) for e in out] == [(5.0, "lamp"), (9.0, "state")]
    assert states(out) == [(9.0, "IDLE")]
    # an older change of a lamp already changed later is ignored; a duplicate too
    assert feed(d, lamp((R, ON, 7000)), 5, 9500) == []
    assert feed(d, lamp((Y, ON, 5000)), 2, 5000, delay_s=6.0) == []


def test_silence_makes_unknown_from_the_last_heard_time_then_data_resumes():
    d = deriver()
    feed(d, hello(hb_ms=5000), 0, 0)
    feed(d, lamp((G, ON, 500)), 1, 500)
    feed(d, hb(5, 0, green=ON), 2, 5_000)
    feed(d, hb(9, 0, green=ON), 3, 10_000, delay_s=0.002)
    assert d.tick(T0 + 25.0) == []                       # 14.998 s < 3 periods of 5 s
    out = d.tick(T0 + 25.1)
    # from the moment the node became overdue: last heard (made at 10.0) + 3 periods
    assert states(out) == [(25.0, "UNKNOWN")]
    assert out[0].data == {"state": "UNKNOWN", "prev": "RUN"}
    assert d.tick(T0 + 30) == []                          # once
    # a late frame from before the silence does not end it, even one made after last
    # heard (resent from the node's outbox) but before it became overdue
    assert states(feed(d, hb(9, 0, green=ON), 4, 15_000, delay_s=20.0)) == []
    assert states(feed(d, hb(9, 0, green=ON), 5, 20_000, delay_s=15.0)) == []
    # Those came at 35 s: the node is back. A fresh frame (made at 50 s) comes next, the
    # outbox's older frames (a stop at 35 s, a heartbeat at 40 s) after it; all are applied
    # in the order they were made, once the node has had 20 s to resend (from 35 s on)
    assert states(feed(d, hb(19, 0, red=ON), 9, 50_000)) == []
    assert states(feed(d, lamp((G, OFF, 35_000), (R, ON, 35_000)), 7, 36_500, 15.0)) == []
    assert states(feed(d, hb(17, 0, red=ON), 8, 40_000, delay_s=12.0)) == []
    assert d.tick(T0 + 54.9) == []
    out = d.tick(T0 + 55.1)
    assert states(out) == [(35.0, "STOP")]
    assert [e.data for e in out if e.kind == "state"] == [{"state": "STOP", "prev": "UNKNOWN"}]
    assert states(feed(d, hb(19, 0, green=ON), 10, 55_000, delay_s=0.2)) == [(55.0, "RUN")]


def test_what_a_node_back_from_silence_sent_is_drained_when_the_collector_stops():
    d = deriver()
    feed(d, hello(hb_ms=5000), 0, 0)
    feed(d, hb(0, 0, green=ON), 1, 5_000)
    assert states(d.tick(T0 + 30)) == [(20.0, "UNKNOWN")]  # heard at 5 s + 3 x 5 s
    # back at 40 s: held for its resends ...
    assert states(feed(d, lamp((G, OFF, 35_000), (R, ON, 35_000)), 3, 36_500, 3.5)) == []
    # ... and the collector stops before they could all come: applied now, not lost
    assert states(d.drain(T0 + 41)) == [(35.0, "STOP")]
    assert d.drain(T0 + 42) == []


def test_silence_period_from_config_until_a_hello():
    d = deriver(heartbeat_s=5.0)
    feed(d, hb(0, 0, green=ON), 1, 1_000)
    assert d.tick(T0 + 15.9) == []                        # 3 x 5 s
    assert states(d.tick(T0 + 16.1)) == [(16.0, "UNKNOWN")]


def test_blinking_yellow_as_setup_carries_the_reason():
    d = deriver(lamp_map={"red": "STOP", "blink:yellow": "STOP:setup", "yellow": "IDLE",
                          "green": "RUN"})
    feed(d, hello(), 0, 0)
    out = feed(d, lamp((Y, BLINK, 2000)), 1, 2000)
    assert [e.data for e in out if e.kind == "state"] == [
        {"state": "STOP", "prev": None, "reason": "setup"}]


# --- counts -------------------------------------------------------------------------------

def counts(events):
    return [(e.data["good"], e.data["ng"], e.data["good_total"], e.data["ng_total"],
             e.data["boot_id"]) for e in events if e.kind == "count"]


def test_counts_duplicates_reorder_and_reboot():
    d = deriver()
    feed(d, hello(), 0, 0)
    assert counts(feed(d, hb(10, 1), 1, 10_000)) == [(10, 1, 10, 1, BOOT_A)]
    assert feed(d, hb(10, 1), 1, 10_000) == []                            # duplicate
    assert counts(feed(d, hb(15, 1), 3, 30_000)) == [(5, 0, 15, 1, BOOT_A)]
    assert feed(d, hb(12, 1), 2, 20_000, delay_s=15) == []                # reordered, older
    # power loss: boot B starts at 0; its uptime 0 is wall T0 + 40
    feed(d, hello(), 0, 0, boot=BOOT_B, boot_wall=T0 + 40)
    assert counts(feed(d, hb(3, 0), 1, 1_000, boot=BOOT_B, boot_wall=T0 + 40)) == [
        (3, 0, 3, 0, BOOT_B)]
    # boot A's last heartbeat (built at 35 s) arrives after boot B's HELLO: it still counts,
    # for boot A, at its own time
    out = feed(d, hb(20, 2), 4, 35_000, delay_s=8)
    assert counts(out) == [(5, 1, 20, 2, BOOT_A)]
    assert out[0].ts_s == pytest.approx(T0 + 35)


def test_counts_wrap_modulo_2_32():
    d = deriver()
    assert counts(feed(d, hb(2**32 - 2, 0), 1, 1_000)) == [(2**32 - 2, 0, 2**32 - 2, 0, BOOT_A)]
    assert counts(feed(d, hb(3, 0), 2, 2_000)) == [(5, 0, 3, 0, BOOT_A)]  # 2 to wrap + 3


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=1, max_size=30), st.integers(0, 2**32 - 1),
       st.randoms(use_true_random=False))
def test_counts_never_double_under_duplicates_and_reorders(steps, start, rnd):
    cums = []
    total = start
    for s in steps:
        total += s
        cums.append(total % 2**32)
    sent = [(seq, c) for seq, c in enumerate(cums, 1)]
    arrivals = sent + rnd.sample(sent, k=len(sent) // 2)  # duplicates
    rnd.shuffle(arrivals)
    arrivals.append(sent[-1])
    d = deriver()
    d.on_frame(frame(hb(start % 2**32, 0), 0, 0), T0)  # the boot's first heartbeat
    got = 0
    for seq, c in arrivals:
        got += sum(e.data["good"] for e in d.on_frame(frame(hb(c, 0), seq, seq * 1000), T0 + seq)
                   if e.kind == "count")
    assert got == sum(steps)


# --- health -------------------------------------------------------------------------------

def test_health_event_carries_the_clock_figures():
    d = deriver()
    feed(d, hello(), 0, 0, delay_s=0.004)
    feed(d, hb(), 1, 1_000, delay_s=0.010)
    out = feed(d, Health(-67, 81234, 2, 0, 1, 0, 3), 2, 2_000, delay_s=0.020)
    data = out[0].data
    assert out[0].kind == "health" and out[0].ts_s == pytest.approx(T0 + 2.004)
    # offset = T0 + 4 ms (the fastest frame); gaps 0, 6, 16 ms -> uncertainty 6 ms
    assert data["clock_offset_ms"] == pytest.approx(T0 * 1000 + 4, abs=1e-3)
    assert data["clock_uncertainty_ms"] == pytest.approx(6.0, abs=1e-3)
    assert {k: data[k] for k in ("rssi", "free_heap", "reconnects", "frames_dropped",
                                 "irq_resyncs", "events_dropped", "unacked")} == {
        "rssi": -67, "free_heap": 81234, "reconnects": 2, "frames_dropped": 0,
        "irq_resyncs": 1, "events_dropped": 0, "unacked": 3}


def test_health_and_snapshot_date_the_nodes_boot_on_utc_with_a_real_monotonic_clock():
    """The anchor runs on the host's monotonic clock (zero: the host's boot); the figures a
    person reads (`lampwatch nodes`: booted at) are on UTC."""
    from lampwatch.hostclock import HostClock

    clocks = {"mono": 5_000.0}  # the host booted 5000 s ago; the node 2 s ago
    host = HostClock(lambda: clocks["mono"] + (T0 - 5_002.0), lambda: clocks["mono"])
    d = Deriver(DeriveConfig(nodes={NODE: NodeConfig(NODE, "press")}), host=host)
    for body, seq, up_ms in ((hello(), 0, 2_000), (hb(), 1, 3_000),
                             (Health(-67, 81234, 2, 0, 1, 0, 3), 2, 4_000)):
        clocks["mono"] = 5_000.0 + (up_ms - 2_000) / 1000 + 0.004
        out = d.on_frame(frame(body, seq, up_ms), host.now())
    health = next(e for e in out if e.kind == "health")
    assert health.data["clock_offset_ms"] == pytest.approx((T0 - 4.0) * 1000 + 4, abs=1e-3)
    snap = d.snapshot(host.now())["press"]
    assert snap.clock.offset_ms == pytest.approx((T0 - 4.0) * 1000 + 4, abs=1e-3)


# --- running-shift OEE, snapshot, replay --------------------------------------------------

CAL = oee.Calendar("UTC", (oee.Shift("A", "08:00", "09:00"),))


def shift_script():
    """(body, seq, up_ms) of a 1 h shift; the node booted at 08:00:00 (hb period 10 min)."""
    return [(hello(hb_ms=600_000), 0, 0), (lamp((G, ON, 0)), 1, 0),
            (hb(800, 20, green=ON), 2, 1_799_000),
            (lamp((G, OFF, 1_800_000), (R, ON, 1_800_000)), 3, 1_800_000),
            (lamp((R, OFF, 2_400_000), (G, ON, 2_400_000)), 4, 2_400_000),
            (hb(1100, 20, green=ON), 5, 3_540_000)]


def test_running_shift_oee_every_minute_and_final_at_shift_end():
    d = deriver(calendar=CAL)
    script = shift_script()
    for body, seq, up in script[:2]:
        feed(d, body, seq, up)
    first = d.tick(T0 + 60)
    assert [(e.kind, e.data["final"], e.data["shift"]) for e in first] == [("oee", False, "A")]
    assert first[0].data["availability"] == 1.0  # 60 s run of 60 s planned
    assert d.tick(T0 + 90) == []
    assert len(d.tick(T0 + 120)) == 1
    for body, seq, up in script[2:]:
        feed(d, body, seq, up)
    # the final point waits one heartbeat period (600 s) + 1 s after the end, for a
    # heartbeat whose output began in the shift; it is dated at the end
    assert d.tick(T0 + 3600) == [] and d.tick(T0 + 4200) == []
    final = [e for e in d.tick(T0 + 4201) if e.kind == "oee"]
    assert len(final) == 1 and final[0].data["final"] is True and final[0].ts_s == T0 + 3600
    f = final[0].data
    # run 1800 + 1200 = 3000 s of 3600 planned; the 600 s stop is a breakdown (>= 300 s)
    assert f["availability"] == pytest.approx(3000 / 3600)
    # 1100 good + 20 NG at 2 s ideal = 2240 s of ideal time in 3000 s of run time
    assert f["performance"] == pytest.approx(2240 / 3000)
    assert f["quality"] == pytest.approx(1100 / 1120)
    assert f["oee"] == pytest.approx(2200 / 3600)
    assert f["coverage"] == 1.0
    assert f["losses"]["breakdown_s"] == 600.0
    assert f["losses"]["reduced_speed_s"] == pytest.approx(3000 - 2240)
    assert f["losses"]["process_defect_s"] == pytest.approx(40.0)  # 20 NG x 2 s
    assert d.tick(T0 + 4300) == []                         # between shifts: nothing


def test_snapshot_for_the_board():
    d = deriver(calendar=CAL)
    for body, seq, up in shift_script()[:4]:
        feed(d, body, seq, up)
    snap = d.snapshot(T0 + 1900)["press"]
    assert (snap.state, snap.since_s, snap.shift, snap.silent) == ("STOP", T0 + 1800, "A", False)
    # the heartbeat's lamp byte made the unlit lamps known too
    assert snap.lamps == {"green": "OFF", "yellow": "OFF", "red": "ON", "blue": "OFF",
                          "white": "OFF"}
    assert (snap.good, snap.ng, snap.coverage) == (800, 20, 1.0)
    assert snap.last_heard_s == pytest.approx(T0 + 1800)
    # the stop is 100 s old: so far a minor stop (< 300 s), a performance loss
    assert snap.oee_data()["availability"] == 1.0
    assert snap.oee_data()["losses"]["minor_stop_s"] == pytest.approx(100.0)
    assert d.snapshot(T0 + 3601 + 1800 * 3)["press"].silent


def test_replay_rebuilds_state_without_events_and_continues_identically():
    live = deriver(calendar=CAL)
    script = shift_script()
    frames, events = [], []
    for body, seq, up in script[:4]:
        f = frame(body, seq, up)
        frames.append((f, T0 + up / 1000 + random.Random(seq).uniform(0, 0.05)))
        events += live.on_frame(*frames[-1])
    events += live.tick(T0 + 1900)
    again = deriver(calendar=CAL)
    again.replay(frames, events)
    assert again.snapshot(T0 + 1900) == live.snapshot(T0 + 1900)
    for body, seq, up in script[4:]:
        f = frame(body, seq, up)
        assert again.on_frame(f, T0 + up / 1000) == live.on_frame(f, T0 + up / 1000)
    assert again.tick(T0 + 3600) == live.tick(T0 + 3600)


def test_replay_keeps_a_journaled_unknown():
    live = deriver()
    frames = [(frame(hello(hb_ms=1000), 0, 0), T0), (frame(hb(5, 0, green=ON), 1, 1000), T0 + 1)]
    events = [e for f in frames for e in live.on_frame(*f)] + live.tick(T0 + 10)
    assert states(events) == [(1.0, "RUN"), (4.0, "UNKNOWN")]  # heard at 1 + 3 x 1 s
    again = deriver()
    again.replay(frames, events)
    assert again.tick(T0 + 11) == []                       # not emitted twice
    assert again.snapshot(T0 + 11)["press"].state == "UNKNOWN"
    # counts are not counted again after a replay that starts mid-boot
    partial = deriver()
    partial.replay([], events)
    assert counts(partial.on_frame(frame(hb(7, 0, green=ON), 2, 2000), T0 + 2)) == [
        (2, 0, 7, 0, BOOT_A)]


def test_replay_keeps_the_heartbeat_period_a_hello_announced_long_ago():
    """A node announced a 60 s heartbeat (its config says none: 10 s by default) two hours
    before the restart; the replay's frames are only its last ones. The period came back
    only if the hello was within a second of the node's last frame, so after every restart
    such a node went UNKNOWN 30 s after each heartbeat."""
    live = deriver()
    frames = [(frame(hello(hb_ms=60_000), 0, 0), T0)]
    frames += [(frame(hb(k, 0, green=ON), k, k * 60_000), T0 + k * 60) for k in range(1, 121)]
    events = [e for f in frames for e in live.on_frame(*f)]
    assert [e.kind for e in events].count("hello") == 1
    last = T0 + 120 * 60
    assert states(live.tick(last + 100)) == []  # 100 s < 3 x 60 s
    again = deriver()
    again.replay(frames[-50:], events)  # its last frames (the journal's tail) and the events
    assert states(again.tick(last + 100)) == []
    assert states(again.tick(last + 181)) == [(180.0 + 120 * 60, "UNKNOWN")]


def test_live_count_timeline_coalesces_per_minute_and_state():
    from lampwatch.timeline import MachineTimeline

    tl = MachineTimeline("press", coalesce_s=60)
    evs = [(600, "state", {"state": "RUN"}), (610, "count", {"good": 3, "ng": 1}),
           (650, "count", {"good": 2, "ng": 0}), (655, "state", {"state": "IDLE"}),
           (659, "count", {"good": 1, "ng": 0}), (661, "count", {"good": 4, "ng": 2})]
    for ts, kind, data in evs:
        tl.add(Event(ts, kind, NODE, "press", data))
    # 610 + 650 merge (same minute 600-660, no state change); 659 follows the IDLE change;
    # 661 is the next minute
    assert [(c.ts, c.kind, c.qty) for c in tl.counts] == [
        (650, "GOOD", 5.0), (610, "NG", 1.0), (659, "GOOD", 1.0), (661, "GOOD", 4.0),
        (661, "NG", 2.0)]



def test_state_changes_late_or_at_the_same_time_keep_their_order_and_take_a_few_bytes_each():
    import tracemalloc

    from lampwatch.timeline import MachineTimeline

    tl = MachineTimeline("press")
    for ts, state, reason in [(600, "RUN", None), (700, "STOP", "setup"), (700, "IDLE", None),
                              (650, "STOP", "breakdown"), (650, "RUN", None)]:
        tl.add(Event(ts, "state", NODE, "press", {"state": state, "reason": reason}))
    # a late change goes in at its time, after those of the same time taken before it
    assert [(s.start, s.end, s.state, s.reason) for s in tl.intervals(800)] == [
        (600, 650, "RUN", None), (650, 700, "RUN", None), (700, 800, "IDLE", None)]
    assert tl.intervals_since(660, 800)[0][0].start == 650 and tl.last_change_s == 700

    # A shift of a plant's machines holds millions of changes: kept as columns, each one
    # takes a double and a byte (a tuple per change took ~140 B)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        big = MachineTimeline("press")
        for i in range(20_000):
            big.add(Event(1000.0 + i, "state", NODE, "press",
                          {"state": ("RUN", "STOP")[i % 2], "reason": "setup"}))
        per_change = (tracemalloc.get_traced_memory()[0] - before) / 20_000
    finally:
        tracemalloc.stop()
    assert per_change < 12, per_change
    assert big.intervals(30_000)[1].reason == "setup" and big.intervals(30_000)[0].reason is None


def test_a_machines_timeline_with_its_first_state_and_count_takes_under_650_bytes():
    # The live OEE keeps one per machine for the running shift (10,000 in a large plant):
    # slots, the counts' three doubles in one array, no list until the first reason (~840
    # bytes before, measured by this test).
    import tracemalloc

    from lampwatch.timeline import MachineTimeline

    names = [f"m{i}" for i in range(2000)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tls = [MachineTimeline(name, coalesce_s=60.0) for name in names]
        for tl in tls:
            tl.add(Event(1000.0, "state", NODE, tl.machine, {"state": "RUN", "reason": None}))
            tl.add(Event(1001.0, "count", NODE, tl.machine, {"good": 2, "ng": 1,
                                                              "since_s": 999.0}))
        per_machine = (tracemalloc.get_traced_memory()[0] - before) / len(tls)
    finally:
        tracemalloc.stop()
    assert per_machine < 650, per_machine
    assert [(c.ts, c.kind, c.qty, c.start) for c in tls[0].all_counts()] == [
        (1001.0, "GOOD", 2.0, 999.0), (1001.0, "NG", 1.0, 999.0)]


# --- a heartbeat's lamp byte vs LAMP frames: ordered by seq, not by time ------------------

def lamp_events(events):
    return [(round(e.ts_s - T0, 6), e.data["lamp"], e.data["state"], e.data.get("repaired", False))
            for e in events if e.kind == "lamp"]


def changeover(d):
    """Green ON (RUN), then at 60 s yellow BLINK and green OFF (IDLE); heartbeats agree
    (the 2 s heartbeats between the frames shown are left out: a 20 s period here)."""
    feed(d, hello(hb_ms=20_000), 0, 0)
    feed(d, lamp((G, ON, 1_000)), 1, 2_500)
    feed(d, hb(10, 0, green=ON), 2, 2_600)
    feed(d, lamp((Y, BLINK, 60_000), (G, OFF, 60_000)), 3, 61_520)
    feed(d, hb(20, 0, yellow=BLINK), 4, 62_600)
    assert d.snapshot(T0 + 63)["press"].state == "IDLE"


def test_a_late_heartbeat_does_not_undo_newer_lamp_frames():
    d = deriver()
    changeover(d)
    # yellow goes OFF at 79.5 s and green ON at 80.0 s; ON / OFF take 1.5 s to classify, so
    # heartbeat 5, built at 80.6 s, still says yellow BLINK. It is delayed past LAMP 6 and 7.
    out = feed(d, lamp((Y, OFF, 79_500)), 6, 81_020)
    out += feed(d, lamp((G, ON, 80_000)), 7, 81_520)
    assert lamp_events(out) == [(79.5, "yellow", "OFF", False), (80.0, "green", "ON", False)]
    # the 0.5 s with every lamp off is the change itself (< lamp_change_s), not an OFF stop:
    # RUN from the moment yellow went off
    assert states(out) == [(79.5, "RUN")]
    late = feed(d, hb(25, 1, yellow=BLINK), 5, 80_600, delay_s=1.5)
    # its counts still apply; its stale lamp byte changes nothing
    assert [e.kind for e in late] == ["count"]
    assert counts(late) == [(5, 1, 25, 1, BOOT_A)]
    assert d.snapshot(T0 + 82.2)["press"].lamps["yellow"] == "OFF"
    # the next heartbeat agrees with the LAMP frames: nothing to flip back
    assert [e.kind for e in feed(d, hb(30, 1, green=ON), 8, 82_600)] == ["count"]
    assert d.snapshot(T0 + 83)["press"].state == "RUN"


def test_a_heartbeat_newer_than_every_lamp_frame_still_repairs_a_lost_one():
    d = deriver()
    changeover(d)
    feed(d, lamp((Y, OFF, 79_500)), 6, 81_020)
    feed(d, hb(25, 0, yellow=BLINK), 5, 80_600, delay_s=1.5)  # stale: ignored
    # LAMP 7 (green ON at 80.0 s) is lost; heartbeat 8 (seq above every lamp frame applied)
    # carries green ON and repairs it, at its own time
    out = feed(d, hb(30, 0, green=ON), 8, 82_600)
    assert lamp_events(out) == [(82.6, "green", "ON", True)]
    assert states(out) == [(82.6, "RUN")]
    # LAMP 7's retransmission arrives: older than the repair, superseded; no double event
    assert feed(d, lamp((G, ON, 80_000)), 7, 81_520, delay_s=3.0) == []
    # a later heartbeat of the same boot that disagrees repairs again (seq 9 > 8)
    out = feed(d, hb(35, 0, red=ON), 9, 84_600)
    assert lamp_events(out) == [(84.6, "green", "OFF", True), (84.6, "red", "ON", True)]
    assert states(out) == [(84.6, "STOP")]


def test_a_late_lamp_frame_applies_at_its_own_time_and_keeps_the_highest_seq():
    d = deriver()
    changeover(d)
    # Built: LAMP 5 (yellow OFF at 79.5 s) at 81.02 s, heartbeat 6 at 81.3 s (yellow OFF, green
    # not yet classified: OFF), LAMP 7 (green ON at 80.0 s) at 81.52 s. Arrived: 7, 5, 6.
    out = feed(d, lamp((G, ON, 80_000)), 7, 81_520)
    assert lamp_events(out) == [(80.0, "green", "ON", False)] and states(out) == []  # IDLE
    out = feed(d, lamp((Y, OFF, 79_500)), 5, 81_020, delay_s=1.0)
    # the late change keeps the time it began (the lamp timeline is exact); the machine state
    # settles with the lamps as now known, no earlier than the last state emitted (60 s)
    assert lamp_events(out) == [(79.5, "yellow", "OFF", False)]
    assert states(out) == [(79.5, "RUN")]
    # heartbeat 6 is newer than LAMP 5 but older than LAMP 7: the highest lamp seq applied
    # (7), not the last one (5), makes it stale; otherwise it would turn green OFF again
    assert [e.kind for e in feed(d, hb(25, 0, yellow=OFF), 6, 81_300, delay_s=1.0)] == [
        "count"]
    assert d.snapshot(T0 + 82.5)["press"].lamps["green"] == "ON"
    # a late LAMP frame whose change a newer heartbeat already repaired changes nothing
    out = feed(d, hb(30, 0, red=ON), 9, 84_600)   # LAMP 8 (red ON, green OFF at 83 s) lost
    assert lamp_events(out) == [(84.6, "green", "OFF", True), (84.6, "red", "ON", True)]
    assert feed(d, lamp((G, OFF, 83_000), (R, ON, 83_000)), 8, 84_520, delay_s=0.5) == []
    snap = d.snapshot(T0 + 85)["press"]
    assert (snap.state, snap.lamps["red"], snap.lamps["green"]) == ("STOP", "ON", "OFF")


def test_lamp_seq_is_per_boot_and_goes_on_across_a_soft_reset():
    d = deriver()
    changeover(d)
    feed(d, lamp((Y, OFF, 79_500), (G, ON, 79_500)), 6, 81_020)
    # a soft reset keeps the boot id and seq: a heartbeat built before LAMP 6 stays stale
    feed(d, hello(hb_ms=2000, cause="soft"), 7, 90_000)
    assert [e.kind for e in feed(d, hb(25, 0, yellow=BLINK), 5, 80_600, delay_s=10)] == [
        "count"]
    out = feed(d, hb(30, 0, red=ON), 8, 95_000)                 # newer: repairs
    assert lamp_events(out) == [(95.0, "green", "OFF", True), (95.0, "red", "ON", True)]
    # power loss: a new boot id starts seq at 0; its heartbeats repair from the start
    feed(d, hello(hb_ms=2000), 0, 0, boot=BOOT_B, boot_wall=T0 + 100)
    out = feed(d, hb(0, 0, green=ON), 1, 2_000, boot=BOOT_B, boot_wall=T0 + 100)
    assert lamp_events(out) == [(102.0, "green", "ON", True), (102.0, "red", "OFF", True)]
    assert states(out) == [(102.0, "RUN")]


@pytest.mark.parametrize("seed", range(10))
def test_lamp_seq_keeps_the_newest_seq_of_the_first_seen_boots_only(seed):
    # A node's lamp seqs are one flat list (boot, seq, ...); the rule, as a dict in the order
    # the boots were first seen: a frame is the newest of its boot if its seq is higher, and
    # a new boot makes room by dropping the first seen when _BOOTS_KEPT are kept.
    from lampwatch.derive import _BOOTS_KEPT
    rng = random.Random(seed)
    boots = rng.sample(range(1, 2 ** 32), 7)
    seqs, model = [], {}
    for _ in range(500):
        boot, seq = rng.choice(boots[:rng.randint(1, 7)]), rng.randrange(60)
        last = model.get(boot)
        newest = last is None or seq > last
        if last is None and len(model) >= _BOOTS_KEPT:
            del model[next(iter(model))]
        if newest:
            model[boot] = seq
        assert Deriver._newest_lamp_frame(seqs, boot, seq) == newest
        assert seqs == [x for item in model.items() for x in item]


def test_a_node_keeps_one_int_for_its_boot_id():
    # The decoder makes a new int for each frame's boot id; the clock, the counts and the
    # lamp seqs keep the first one they are given, so a node would hold three copies (32
    # bytes each at 32 bits): they share the clock's.
    d = deriver()
    for body, seq, up in [(hello(), 0, 0), (hb(green=ON), 1, 1_000),
                          (lamp((G, OFF, 1_500)), 2, 1_600), (hb(), 3, 2_000)]:
        boot = int(str(BOOT_A))  # a fresh int object, equal to the others
        d.on_frame(Frame(Header(_TYPES[type(body)], NODE, boot, seq, up), body, b""),
                   T0 + up / 1000)
    node = d._nodes[NODE]
    assert node.clock.boot == BOOT_A
    assert node.counts[0] is node.clock.boot and node.lamp_seq[0] is node.clock.boot


def test_replay_ignores_the_same_stale_heartbeats_as_the_live_deriver():
    script = [(hello(hb_ms=2000), 0, 0, 0.0), (lamp((G, ON, 1_000)), 1, 2_500, 0.0),
              (hb(10, 0, green=ON), 2, 2_600, 0.0),
              (lamp((Y, BLINK, 60_000), (G, OFF, 60_000)), 3, 61_520, 0.0),
              (hb(20, 0, yellow=BLINK), 4, 62_600, 0.0),
              (lamp((Y, OFF, 79_500)), 6, 81_020, 0.0),
              (lamp((G, ON, 80_000)), 7, 81_520, 0.0),
              (hb(25, 0, yellow=BLINK), 5, 80_600, 1.5)]                 # late and stale
    live, frames, events = deriver(), [], []
    for body, seq, up, delay in script:             # journal order = arrival order
        frames.append((frame(body, seq, up), T0 + up / 1000 + delay))
        events += live.on_frame(*frames[-1])
    again = deriver()
    again.replay(frames, events)
    assert again.snapshot(T0 + 82.2) == live.snapshot(T0 + 82.2)
    assert again.snapshot(T0 + 82.2)["press"].lamps["green"] == "ON"
    for f in [frame(hb(28, 0, yellow=BLINK), 5, 80_600),           # resent again: stale
              frame(hb(30, 0, green=ON), 8, 82_600), frame(lamp((R, ON, 90_000)), 9, 91_520)]:
        rx = T0 + f.header.uptime_ms / 1000 + 2.0
        assert again.on_frame(f, rx) == live.on_frame(f, rx)


# --- the deriver interface ----------------------------------------------------------------

def test_every_deriver_implements_the_whole_protocol_with_its_signatures():
    import inspect

    from lampwatch.derive import DeriverProtocol, NullDeriver

    members = [n for n, v in vars(DeriverProtocol).items()
               if callable(v) and not n.startswith("_")]
    assert set(members) == {"on_frame", "tick", "snapshot", "replay", "add_reason", "drain"}
    for impl in (Deriver, NullDeriver):
        for name in members:
            want = inspect.signature(getattr(DeriverProtocol, name))
            got = inspect.signature(getattr(impl, name))
            assert list(got.parameters) == list(want.parameters), (impl.__name__, name)
    null = NullDeriver()
    assert null.on_frame(None, 0.0) == [] and null.tick(0.0) == [] and null.snapshot(0.0) == {}
    assert null.drain(0.0) == []


def test_the_final_points_grace_follows_each_nodes_period_as_hellos_change_it():
    # kept between ticks: it must change with a HELLO's period and with a node added
    d = deriver()
    assert d._final_grace_s() == 10.0 + 1.0  # the configured default period
    feed(d, hello(hb_ms=60_000), 0, 0)
    assert d._final_grace_s() == 60.0 + 1.0
    feed(d, hello(hb_ms=2_000), 0, 0, boot=BOOT_B, boot_wall=T0 + 100)
    assert d._final_grace_s() == 2.0 + 1.0
    d.on_frame(frame(hello(hb_ms=30_000), 0, 0, node=NODE + 1), T0 + 200)  # a node not configured
    assert d._final_grace_s() == 30.0 + 1.0


# --- memory per node ----------------------------------------------------------------------

def test_a_node_the_deriver_tracks_takes_under_2_6_kb():
    # A collector derives for every node it knows (10,000 in a large plant): each node's
    # anchor, machine tracker, count maxima and lamp seqs, with its window of clock samples
    # full. Per boot, they keep flat lists and slots rather than a dict each (3.0 KB a node
    # before, measured by this test; 2.4 KB now).
    import gc
    import tracemalloc

    n = 500
    cfg = DeriveConfig(nodes={i: NodeConfig(i, f"m{i}", ideal_cycle_s=2.0)
                              for i in range(1, n + 1)})
    bodies = [hb(k, 0, green=ON) for k in range(200)]  # shared, as decoded frames' lamps are
    frames = [[frame(body, k, 10_000 * k, node=i) for i in range(1, n + 1)]
              for k, body in enumerate(bodies)]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        d = Deriver(cfg)
        for i in range(1, n + 1):
            d.on_frame(frame(hello(hb_ms=10_000), 0, 100, node=i), T0 + 0.1)
            d.on_frame(frame(lamp((G, ON, 1_000)), 1, 2_500, node=i), T0 + 2.5)
        for k in range(2, 200):  # 33 minutes: every anchor's window of buckets full
            for f in frames[k]:
                d.on_frame(f, T0 + 10 * k + 0.002 * (k % 3))
            if k % 10 == 0:
                d.tick(T0 + 10 * k)
        gc.collect()
        per_node = (tracemalloc.get_traced_memory()[0] - before) / n
    finally:
        tracemalloc.stop()
    assert per_node < 2600, per_node
    snap = d.snapshot(T0 + 2000)
    assert len(snap) == n and snap["m1"].state == "RUN" and not snap["m1"].silent
