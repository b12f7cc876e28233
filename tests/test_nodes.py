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
from lampwatch.paths import FIRMWARE_DIR
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

sys.path.insert(0, str(FIRMWARE_DIR))
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


def test_rejects_go_to_the_node_of_their_source_or_are_listed_unknown():
    facts = JournalFacts(
        {1: heard(1, NOW - 1, sources={"udp:10.0.0.1:4210", "udp:10.0.0.1:4211"}),
         2: heard(2, NOW - 1, sources={"serial:/dev/ttyUSB0"}),
         3: heard(3, NOW - 1, sources={"serial:/dev/ttyUSB0"})},
        [("serial:/dev/ttyUSB0", "bad_cobs", 2, NOW - 50),
         ("udp:10.0.0.1", "bad_tag", 3, NOW - 9), ("udp:10.0.0.1", "replay", 4, NOW),
         ("udp:10.0.0.1", "unknown_node", 1, NOW - 9),
         ("udp:10.0.0.66", "unknown_node", 7, NOW - 120)])
    rows, unknown = node_rows({}, facts, NOW)
    # rejects count per UDP address (the collector's naming), accepted frames per port
    assert [r.frames_rejected for r in rows] == [7, 0, 0]
    assert unknown == [UnknownSource("serial:/dev/ttyUSB0", {"bad_cobs": 2}, NOW - 50),
                       UnknownSource("udp:10.0.0.1", {"unknown_node": 1}, NOW - 9),
                       UnknownSource("udp:10.0.0.66", {"unknown_node": 7}, NOW - 120)]


def test_row_fields_table_and_json_exactly():
    facts = JournalFacts({1: heard(
        1, NOW - 4.0, hello={"fw": "0.1.0", "heartbeat_ms": 5000, "lamp_mask": 7},
        health={"rssi": -67, "frames_dropped": 2, "clock_offset_ms": None},
        states=[(NOW - 60, "RUN")])},
        [("udp:10.0.0.66", "unknown_node", 7, NOW - 120)])
    nodes = {1: reg(1, "press-1", "2026-11-23T10:00:00+07:00"), 2: reg(2, "press-2")}
    rows, unknown = node_rows(nodes, facts, NOW)
    assert rows[0] == NodeRow(1, "press-1", True, "RUN", NOW - 4.0, "0.1.0", -67, None, None,
                              0, 2, "2026-11-23T10:00:00+07:00", ())
    assert format_table(rows, unknown, NOW).splitlines() == [
        "ID  MACHINE  STATE  LAST SEEN  FW     RSSI     CLOCK (boot at)  REJ/DROP  COMM.  FLAGS",
        "1   press-1  RUN    4 s ago    0.1.0  -67 dBm  -                0/2       yes    ok",
        ("2   press-2  -      never      -      -        -                0/-       no     "
         "never heard; never commissioned"),
        "",
        "Rejected frames from sources no accepted frame came from (node unknown):",
        "  udp:10.0.0.66: unknown_node 7 (last 2 min ago)"]
    js = to_json(rows, unknown, NOW)
    assert js["nodes"][1]["flags"] == ["never heard", "never commissioned"]
    assert js["unknown_sources"] == [{"source": "udp:10.0.0.66",
                                      "rejects": {"unknown_node": 7}, "last_s": NOW - 120}]


# --- a real journal -----------------------------------------------------------------------

def test_nodes_from_a_journal_filled_by_a_real_collector(tmp_path):
    config = dict(json.loads((FIRMWARE_DIR / "config.example.json").read_text()),
                  health_ms=5000, heartbeat_ms=1000, poll_ms=20)
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
        node_id, "husker-1", "RUN", "0.2.0", -61)
    assert (a["frames_rejected"], a["frames_dropped"], a["commissioned"]) == (0, 0, None)
    assert a["flags"] == ["never commissioned"]
    assert time.time() - a["last_seen_s"] < 30 and a["clock_uncertainty_ms"] is not None
    assert (b["node_id"], b["commissioned"], b["flags"]) == (
        13, "2026-11-20T09:00:00+07:00", ["never heard"])
    assert got["unknown_sources"] == [{"source": stranger_src, "rejects": {"unknown_node": 1},
                                       "last_s": got["unknown_sources"][0]["last_s"]}]
    table = CliRunner().invoke(cli, ["nodes", "--config", str(cfg_path)]).output
    assert table.splitlines()[1].split()[:4] == [str(node_id), "husker-1", "RUN", "0"]
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
