"""`lampwatch nodes`: rows and flags from (registry, journal facts, now) with exact values, then
one journal filled by a real collector from the unmodified firmware on a virtual node."""

import json
import socket
import sys
import time

from click.testing import CliRunner
from lampwatch.cli import cli
from lampwatch.config import Node, load_config
from lampwatch.journal import open_readonly
from lampwatch.node_files import example_config, firmware_dir
from lampwatch.registry import upsert_node
from lampwatch.report.nodes import (
    WEEK_S,
    JournalFacts,
    NodeFacts,
    NodeRow,
    UnknownSource,
    format_table,
    node_rows,
    read_facts,
    to_json,
)
from lampwatch.runtime import CollectorThread
from lampwatch.vnode import Scenario, VirtualNode

sys.path.insert(0, str(firmware_dir()))
import lwproto

NOW = 1_800_000_000.0
HOUR = 3600.0
KEY = bytes(range(16))


def reg(node_id, machine, commissioned=None, ideal=None):
    return Node(node_id, "karawang", "mill-1", machine, KEY, ideal, heartbeat_s=5.0,
                commissioned=commissioned)


def heard(node_id, last_rx, first_rx=None, **kw):
    return NodeFacts(node_id, first_rx_s=first_rx if first_rx else last_rx - HOUR,
                     last_rx_s=last_rx, **kw)


def row_flags(nodes, facts):
    return {r.node_id: list(r.flags) for r in node_rows(nodes, facts, NOW)[0]}


def test_never_heard_silent_uncommissioned_and_unregistered():
    nodes = {1: reg(1, "press-1", commissioned="2026-11-23T10:00:00+07:00"),
             2: reg(2, "press-2"), 3: reg(3, "press-3", commissioned="2026-11-20T09:00:00")}
    facts = JournalFacts({
        1: heard(1, NOW - 4.0, sources={"udp:10.0.0.1:4210"}),
        # silent: 3 heartbeat periods of its HELLO (2 s), not the registry's 5 s
        3: heard(3, NOW - 7.0, hello={"heartbeat_ms": 2000, "lamp_mask": 1}),
        9: heard(9, NOW - 30.0, machine="old-press")})
    assert row_flags(nodes, facts) == {
        1: [], 2: ["never heard", "never commissioned"], 3: ["silent"],
        9: ["not in the registry"]}
    rows = node_rows(nodes, facts, NOW)[0]
    assert (rows[3].machine, rows[3].registered) == ("old-press", False)


def test_a_wired_lamp_not_lit_in_a_week_is_flagged_once_watched_a_week():
    hello = {"heartbeat_ms": 5000, "lamp_mask": 0b10111, "fw": "0.1.0"}
    lamps = {"lamp_state": {"green": "OFF", "yellow": "OFF", "red": "ON"},
             "lamp_lit_s": {"green": NOW - 86400, "yellow": NOW - 8 * 86400,
                            "red": NOW - 10 * 86400}}
    facts = JournalFacts({1: heard(1, NOW - 1, NOW - WEEK_S - 1, hello=hello, **lamps)})
    # green lit yesterday; red lit for ten days and still on; blue is not wired
    assert row_flags({1: reg(1, "p", "2026-01-01")}, facts) == {1: [
        "yellow lamp not seen lit in a week", "white lamp not seen lit in a week"]}
    young = JournalFacts({1: heard(1, NOW - 1, NOW - 3 * 86400, hello=hello, **lamps)})
    assert row_flags({1: reg(1, "p", "2026-01-01")}, young) == {1: []}


def test_good_counter_stuck_while_the_machine_runs():
    cfg = {1: reg(1, "p", "2026-01-01", ideal=60.0)}  # stuck after max(10 min, 20 cycles)
    states = [(NOW - 5 * HOUR, "IDLE"), (NOW - 2 * HOUR, "RUN"), (NOW - HOUR, "STOP"),
              (NOW - 0.5 * HOUR, "RUN")]
    stuck = JournalFacts({1: heard(1, NOW - 1, states=states, last_good_s=NOW - 3 * HOUR)})
    assert row_flags(cfg, stuck) == {1: ["GOOD counter stuck: 90 min RUN without a part"]}
    # a part 15 min ago: 15 min RUN since, under 20 cycles of 60 s
    fine = JournalFacts({1: heard(1, NOW - 1, states=states, last_good_s=NOW - 15 * 60)})
    assert row_flags(cfg, fine) == {1: []}
    # an hour of RUN without a part today is suspect even if the machine stopped since
    stopped = JournalFacts({1: heard(1, NOW - 1, states=states[:3])})
    assert row_flags(cfg, stopped) == {1: ["GOOD counter stuck: 60 min RUN without a part"]}
    idle = JournalFacts({1: heard(1, NOW - 1, states=states[:1])})
    assert row_flags({1: reg(1, "p", "2026-01-01")}, idle) == {1: []}


def test_rejects_count_for_the_node_they_were_verified_as_others_by_source():
    """Two nodes behind one address (as in the demo): duplicates and replays go to the node
    the collector verified, never to an address; what named no such node is by source."""
    facts = JournalFacts(
        {1: heard(1, NOW - 1, sources={"udp:10.0.0.1:4210"}),
         2: heard(2, NOW - 1, sources={"udp:10.0.0.1:4211"})},
        [("serial:/dev/ttyUSB0", "bad_cobs", 0, 2, NOW - 50),
         ("udp:10.0.0.1", "bad_tag", 0, 3, NOW - 9),
         ("udp:10.0.0.1", "duplicate", 1, 24, NOW - 5),
         ("udp:10.0.0.1", "replay", 2, 4, NOW - 7), ("udp:10.0.0.7", "replay", 2, 1, NOW - 3),
         ("udp:10.0.0.1", "bad_body", 2, 1, NOW - 60),
         ("udp:10.0.0.66", "unknown_node", 0, 7, NOW - 120),
         ("udp:10.0.0.1", "replay", 0, 5, NOW - 99)])  # a version 1 journal's row: no node
    rows, unknown = node_rows({}, facts, NOW)
    assert [(r.frames_duplicate, r.frames_rejected, r.rejects, r.last_rejected_s)
            for r in rows] == [(24, 0, {}, None),
                               (0, 6, {"replay": 5, "bad_body": 1}, NOW - 3)]
    assert unknown == [UnknownSource("serial:/dev/ttyUSB0", {"bad_cobs": 2}, NOW - 50),
                       UnknownSource("udp:10.0.0.1", {"bad_tag": 3, "replay": 5}, NOW - 9),
                       UnknownSource("udp:10.0.0.66", {"unknown_node": 7}, NOW - 120)]


def test_a_silent_node_is_unknown_with_how_long():
    """Silent 17 hours after it last said RUN: UNKNOWN, not RUN, and since when."""
    states = [(NOW - 18 * HOUR, "RUN")]
    facts = JournalFacts({1: heard(1, NOW - 17 * HOUR, states=states,
                                   hello={"heartbeat_ms": 5000, "fw": "0.2.0"}),
                          2: heard(2, NOW - 14.0, states=states, last_good_s=NOW - 20,
                                   hello={"heartbeat_ms": 5000, "fw": "0.2.0"})})
    rows, _ = node_rows({1: reg(1, "press-1", "2026-01-01"), 2: reg(2, "press-2",
                                                                    "2026-01-01")}, facts, NOW)
    assert [(r.state, r.silent_s, r.flags) for r in rows] == [
        ("UNKNOWN", 17 * HOUR, ("silent",)), ("RUN", None, ())]  # 14 s < 3 x 5 s


def test_what_the_nodes_own_health_says_is_shown_under_it():
    """Firmware 0.3+ HEALTH: LAMP frames dropped, short pulses rejected, parts inferred across
    a stall, edges the IRQ path missed (zero says nothing)."""
    health = {"rssi": -60, "frames_dropped": 2, "lamp_frames_dropped": 1, "short_pulses": 12,
              "inferred_parts": 3, "edges_missed": 0}
    facts = JournalFacts({1: heard(1, NOW - 4.0, health=health, states=[(NOW - 60, "RUN")],
                                   hello={"fw": "0.3.0", "heartbeat_ms": 5000})})
    rows, unknown = node_rows({1: reg(1, "press-1", "2026-11-23")}, facts, NOW)
    r = rows[0]
    assert (r.lamp_frames_dropped, r.short_pulses, r.inferred_parts, r.edges_missed) \
        == (1, 12, 3, 0)
    assert r.flags == ("1 LAMP frames dropped: lamp history has gaps",
                       "12 count pulses rejected as too short",
                       "3 parts counted across a stall by the line-rate rule")
    lines = format_table(rows, unknown, NOW).splitlines()
    assert all(len(line) <= 80 for line in lines)
    under = " ".join(line.strip() for line in lines[4:lines.index("", 4)])
    assert under == "; ".join(r.flags)


def test_row_fields_table_and_json_exactly():
    facts = JournalFacts({
        1: heard(1, NOW - 4.0, hello={"fw": "0.1.0", "heartbeat_ms": 5000, "lamp_mask": 7},
                 health={"rssi": -67, "frames_dropped": 2, "clock_offset_ms": 1_799_990_000_000,
                         "clock_uncertainty_ms": 40},
                 states=[(NOW - 60, "RUN")]),
        3: heard(3, NOW - 17 * HOUR, hello={"fw": "0.1.0", "heartbeat_ms": 5000},
                 health={"rssi": -80, "frames_dropped": 0, "clock_offset_ms": 1_799_940_000_000,
                         "clock_uncertainty_ms": 1500}, states=[(NOW - 20 * HOUR, "RUN")])},
        [("udp:10.0.0.66", "unknown_node", 0, 7, NOW - 120),
         ("udp:10.0.0.1", "duplicate", 1, 1234, NOW - 30),
         ("udp:10.0.0.1", "replay", 3, 2, NOW - 18 * HOUR)])
    nodes = {1: reg(1, "press-1", "2026-11-23T10:00:00+07:00"), 2: reg(2, "press-2"),
             3: reg(3, "a-machine-with-a-long-name", "2026-11-23T10:00:00+07:00")}
    rows, unknown = node_rows(nodes, facts, NOW)
    assert rows[0] == NodeRow(1, "press-1", True, "RUN", NOW - 4.0, "0.1.0", -67,
                              1_799_990_000_000, 40, 0, 2, "2026-11-23T10:00:00+07:00", (),
                              None, 1234, {}, None)
    # NOW is 2027-01-15 08:00:00 UTC: 15:00 in Jakarta
    text = format_table(rows, unknown, NOW, "Asia/Jakarta")
    assert text.splitlines() == [
        "3 nodes; times in plant time, Asia/Jakarta; now 01-15 15:00",
        "",
        "ID  MACHINE       STATE        FW     dBm  BOOTED (±)          DUP  REJ  DROP",
        " 1  press-1       RUN          0.1.0  -67  01-15 12:13 ±40ms  1234    0     2",
        " 2  press-2       -            -        -  -                     0    0     -",
        "    never heard; never commissioned",
        " 3  a-machine-w…  UNKNOWN 17h  0.1.0  -80  01-14 22:20 ±2s       0    2     0",
        "    silent since 01-14 22:00 (17h); rejected: replay 2 (last 01-14 21:00)",
        "",
        "DUP: its resends of frames stored already (harmless); REJ: replays and forgeries",
        "",
        "Rejected frames that name no node they could be verified as, by source:",
        "  udp:10.0.0.66: unknown_node 7 (last 01-15 14:58)"]
    assert max(len(line) for line in text.splitlines()) <= 80
    js = to_json(rows, unknown, NOW)
    assert js["nodes"][1]["flags"] == ["never heard", "never commissioned"]
    assert (js["nodes"][2]["state"], js["nodes"][2]["silent_s"], js["nodes"][2]["rejects"],
            js["nodes"][2]["machine"]) == ("UNKNOWN", 17 * HOUR, {"replay": 2},
                                           "a-machine-with-a-long-name")
    assert js["unknown_sources"] == [{"source": "udp:10.0.0.66",
                                      "rejects": {"unknown_node": 7}, "last_s": NOW - 120}]


# --- a real journal -----------------------------------------------------------------------

def test_nodes_from_a_journal_filled_by_a_real_collector(tmp_path):
    config = dict(example_config(), health_ms=5000, heartbeat_ms=1000, poll_ms=20)
    node_id = config["node_id"]
    upsert_node(tmp_path / "nodes.toml", {"id": node_id, "plant": "karawang", "line": "mill-1",
                                          "machine": "husker-1", "key": config["key"]})
    upsert_node(tmp_path / "nodes.toml", {"id": 13, "plant": "karawang", "line": "mill-1",
                                          "machine": "husker-2", "key": KEY.hex(),
                                          "commissioned": "2026-11-20T09:00:00+07:00"})
    cfg_path = tmp_path / "collector.toml"
    cfg_path.write_text('[collector]\nudp_listen = "127.0.0.1:0"\njournal = "journal.sqlite"\n'
                        'journal_sync = "normal"\nnodes_file = "nodes.toml"\n')
    ct = CollectorThread(load_config(cfg_path)).start()
    try:
        sc = (Scenario(duration_s=12).lamp("green", 1.0, "on")
              .pulses("good", 2.0, n=20, every_s=0.2, width_s=0.05))
        with VirtualNode(config, sc, collector=ct.udp_address) as node:
            node.run_until(12)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
            stranger.bind(("127.0.0.1", 0))
            stranger.sendto(lwproto.Codec(99, KEY).heartbeat(1, 0, 0, 0, 0, [0] * 5),
                            ct.udp_address)
            stranger_src = "udp:127.0.0.1"  # rejects count per address
            deadline = time.time() + 5
            while not ct.stats().rejects and time.time() < deadline:
                time.sleep(0.05)
    finally:
        ct.stop()  # commits the last frames, events and reject counts
    with open_readonly(tmp_path / "journal.sqlite") as journal:
        facts = read_facts(journal, time.time())
    assert facts.nodes[node_id].lamp_state == {"green": "ON"}
    result = CliRunner().invoke(cli, ["nodes", "--config", str(cfg_path), "--format", "json"])
    assert result.exit_code == 0, result.output
    got = json.loads(result.output)
    a, b = got["nodes"]
    assert (a["node_id"], a["machine"], a["state"], a["firmware"], a["rssi"]) == (
        node_id, "husker-1", "RUN", "0.3.0", -61)
    assert (a["frames_rejected"], a["frames_dropped"], a["commissioned"]) == (0, 0, None)
    assert a["flags"] == ["never commissioned"]
    assert time.time() - a["last_seen_s"] < 30 and a["clock_uncertainty_ms"] is not None
    assert (b["node_id"], b["commissioned"], b["flags"]) == (
        13, "2026-11-20T09:00:00+07:00", ["never heard"])
    assert got["unknown_sources"] == [{"source": stranger_src, "rejects": {"unknown_node": 1},
                                       "last_s": got["unknown_sources"][0]["last_s"]}]
    table = CliRunner().invoke(cli, ["nodes", "--config", str(cfg_path)]).output
    assert table.splitlines()[3].split()[:4] == [str(node_id), "husker-1", "RUN", "0.3.0"]
    assert f"{stranger_src}: unknown_node 1" in table


def test_host_clock_steps_of_the_last_week_are_listed(tmp_path):
    from datetime import datetime

    from lampwatch.journal import Journal
    from lampwatch.report.nodes import clock_step_lines

    now = time.time()
    with Journal(tmp_path / "j.sqlite") as j:
        j.commit(events=[(now - 8 * 86400, "clock", None, None, {"step_s": 60.0}),
                         (now - 3600, "clock", None, None, {"step_s": -3600.0}),
                         (now - 60, "clock", None, None, {"step_s": 1.5})])
    with open_readonly(tmp_path / "j.sqlite") as journal:
        facts = read_facts(journal, now)
    at = [datetime.fromtimestamp(now - s).strftime("%m-%d %H:%M:%S") for s in (3600, 60)]
    assert clock_step_lines(facts) == [
        f"Host clock stepped back by 3600 s at {at[0]} (event time stood still)",
        f"Host clock stepped forward by 1.5 s at {at[1]} (event time jumped)"]
