"""`lampwatch commission`: pure steps and report with exact values, then the real thing: a
collector on loopback, the unmodified firmware on a virtual node switching its lamps and
making parts in real time, and the command answered from stdin."""

import json
import threading
from datetime import datetime, timezone

import pytest
from click.testing import CliRunner
from lampwatch.cli import cli
from lampwatch.config import load_config
from lampwatch.flash import commission as cm
from lampwatch.node_files import example_config
from lampwatch.registry import read_nodes, update_node, upsert_node
from lampwatch.runtime import CollectorThread
from lampwatch.vnode import Scenario, VirtualNode

BASE = example_config()
NODE = BASE["node_id"]
CONFIG = dict(BASE, lamps={"green": {"pin": 34, "active_low": True}}, heartbeat_ms=1000,
              poll_ms=10)
WHO = "Ana (technician), Budi (production lead)"


# --- pure parts ---------------------------------------------------------------------------

def test_plan_is_on_blink_off_per_lamp_then_parts():
    steps = cm.plan_steps(["green", "red"], 3)
    assert [(s.input, s.want) for s in steps] == [
        ("green", "ON"), ("green", "BLINK"), ("green", "OFF"),
        ("red", "ON"), ("red", "BLINK"), ("red", "OFF"), ("good", 3), ("ng", 3)]
    assert steps[1].prompt() == "Make the GREEN lamp BLINK, then press Enter"
    assert steps[6].prompt() == "Make 3 GOOD part(s), then press Enter"
    assert cm.plan_steps(["green"], 0)[-1] == cm.Step("green", "OFF")
    assert cm.lamps_from_mask(0b10101) == ["green", "red", "white"]


def test_lamp_and_count_observations():
    events = [("lamp", {"lamp": "red", "state": "BLINK", "hz": 1.0}),
              ("count", {"good": 2, "ng": 1}), ("state", {"state": "RUN"}),
              ("lamp", {"lamp": "green", "state": "BLINK", "hz": 2.004}),
              ("count", {"good": 1, "ng": 0})]
    assert cm.lamp_seen(cm.Step("green", "BLINK"), events) == (True, 2.004)
    assert cm.lamp_seen(cm.Step("green", "ON"), events) == (False, None)
    assert cm.parts_counted(cm.Step("good", 3), events) == 3
    assert cm.parts_counted(cm.Step("ng", 3), events) == 1


class FakeWatch:
    """Journal answers scripted per poll: (events after the mark, last heartbeat id)."""

    def __init__(self, polls):
        self.polls = list(polls)
        self.current = ([], 0)

    def last_event_id(self):
        return 0

    def last_heartbeat_id(self):
        if self.polls:
            self.current = self.polls.pop(0)
        return self.current[1]

    def events_after(self, mark):
        return self.current[0]


class ScriptUI:
    def __init__(self, answers):
        self.answers, self.said, self.asked = list(answers), [], []

    def ask(self, text):
        self.asked.append(text)
        return self.answers.pop(0) if self.answers else None

    def say(self, text):
        self.said.append(text)


def _clock():
    t = [100.0]
    return (lambda: t[0]), (lambda s: t.__setitem__(0, t[0] + s))


def test_a_miss_can_be_retried_then_seen():
    clock, sleep = _clock()
    seen = [("lamp", {"lamp": "green", "state": "ON"})]
    watch = FakeWatch([([], 1)] * 7 + [(seen, 1)])
    ui = ScriptUI(["", "r", ""])
    r = cm.run_check(cm.Step("green", "ON"), watch, ui, 1.0, clock, sleep)
    assert (r.passed, r.attempts, r.after_s) == (True, 2, 0.2)
    assert ui.said == ["  green ON: NOT seen ✗", "  green ON: seen ✓ (after 0.2 s)"]


def test_parts_settle_on_the_next_heartbeat_and_extra_counts_fail():
    clock, sleep = _clock()
    three = [("count", {"good": 3, "ng": 0})]
    bounce = three + [("count", {"good": 3, "ng": 0})]
    watch = FakeWatch([([], 1), (three, 2), (three, 2), (bounce, 3)])
    r = cm.run_check(cm.Step("good", 3), watch, ScriptUI([""]), 5.0, clock, sleep)
    assert (r.passed, r.counted) == (False, 6)  # contact bounce: 6 counted for 3 parts
    watch = FakeWatch([([], 1), (three, 2), (three, 3)])
    r = cm.run_check(cm.Step("good", 3), watch, ScriptUI([""]), 5.0, clock, sleep)
    assert (r.passed, r.counted, r.after_s) == (True, 3, 0.2)


def test_report_json_and_markdown_exactly():
    t0 = datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc)
    t1 = datetime(2026, 11, 23, 10, 5, tzinfo=timezone.utc)
    results = [cm.CheckResult(cm.Step("green", "ON"), True, 1, 1.2),
               cm.CheckResult(cm.Step("green", "BLINK"), True, 1, 0.8, hz=2.0),
               cm.CheckResult(cm.Step("green", "OFF"), False, 2),
               cm.CheckResult(cm.Step("good", 3), True, 1, 2.0, counted=3)]
    hello = {"fw": "0.1.0", "config_hash": "a1b2c3d4", "boot_id": 3735928559, "lamp_mask": 1}
    rep = cm.build_report(cm.Session(12, "husker-1", "karawang", "mill-1", hello, WHO, t0, t1,
                                     30.0, results))
    assert rep == {
        "node_id": 12, "machine": "husker-1", "plant": "karawang", "line": "mill-1",
        "firmware": "0.1.0", "config_hash": "a1b2c3d4", "boot_id": 3735928559,
        "result": "FAILED", "checked_by": WHO, "started": "2026-11-23T10:00:00+00:00",
        "finished": "2026-11-23T10:05:00+00:00", "timeout_s": 30.0,
        "inputs": [
            {"input": "green", "kind": "lamp", "result": "fail", "checks": [
                {"check": "ON", "result": "pass", "attempts": 1, "after_s": 1.2},
                {"check": "BLINK", "result": "pass", "attempts": 1, "after_s": 0.8, "hz": 2.0},
                {"check": "OFF", "result": "fail", "attempts": 2, "after_s": None}]},
            {"input": "good", "kind": "count", "result": "pass", "checks": [
                {"check": "3 parts", "result": "pass", "attempts": 1, "after_s": 2.0,
                 "expected": 3, "counted": 3}]}]}
    md = cm.render_markdown(rep)
    assert "**Result: FAILED**" in md
    assert "| machine | karawang / mill-1 / husker-1 |" in md
    assert "| firmware | 0.1.0 (config a1b2c3d4, boot 0xdeadbeef) |" in md
    assert "| green | BLINK | pass | 2.00 Hz, after 0.8 s | 1 |" in md
    assert "| green | OFF | fail | - | 2 |" in md
    assert "| good | 3 parts | pass | counted 3 of 3, after 2.0 s | 1 |" in md


# --- the real thing -----------------------------------------------------------------------

@pytest.fixture
def plant(tmp_path):
    registry = tmp_path / "nodes.toml"
    upsert_node(registry, {"id": NODE, "plant": "karawang", "line": "mill-1",
                           "machine": "husker-1", "key": CONFIG["key"]})
    cfg_path = tmp_path / "collector.toml"
    cfg_path.write_text('[collector]\nudp_listen = "127.0.0.1:0"\njournal = "journal.sqlite"\n'
                        'journal_sync = "normal"\nnodes_file = "nodes.toml"\n')
    ct = CollectorThread(load_config(cfg_path)).start()
    yield ct, cfg_path, registry
    ct.stop()


def _run_node(ct, scenario):
    node = VirtualNode(CONFIG, scenario, collector=ct.udp_address, speed=1.0)
    thread = threading.Thread(target=node.run_until, args=(scenario.duration_s,), daemon=True)
    thread.start()
    return node, thread


def _commission(cfg_path, tmp_path, *args, answers):
    return CliRunner().invoke(cli, ["commission", str(NODE), "--config", str(cfg_path),
                                    "--out", str(tmp_path / "commissioning"), *args],
                              input=answers)


def _strip(rep):
    """The report without what differs run to run (times, latencies)."""
    for inp in rep["inputs"]:
        for c in inp["checks"]:
            assert c.pop("after_s") is None or c["result"] == "pass"
    return {k: v for k, v in rep.items() if k not in ("started", "finished", "boot_id")}


def test_commission_passes_a_working_node_and_marks_it(plant, tmp_path):
    ct, cfg_path, registry = plant
    # Each action comes after the step before it has been seen (ON is confirmed 1.5 s after
    # the edge, OFF 1.5 s after the last flash), so the steps follow the node in order.
    sc = (Scenario(duration_s=17).lamp("green", 2.0, "on").lamp("green", 5.0, "blink", hz=2)
          .lamp("green", 8.0, "off")
          .pulses("good", 10.5, n=3, every_s=0.3, width_s=0.05)
          .pulses("ng", 14.0, n=3, every_s=0.3, width_s=0.05))
    node, thread = _run_node(ct, sc)
    try:
        result = _commission(cfg_path, tmp_path, "--checked-by", WHO, "--timeout", "6",
                             answers="\n" * 5)
    finally:
        thread.join(20)
        node.close()
    assert result.exit_code == 0, result.output
    assert "green BLINK: seen ✓ at 2.00 Hz" in result.output
    (js,) = (tmp_path / "commissioning").glob("husker-1-node12-*.json")
    rep = json.loads(js.read_text())
    blink = rep["inputs"][0]["checks"][1]
    assert blink["hz"] == pytest.approx(2.0, abs=0.01)  # 500 +- 1 ms
    blink["hz"] = 2.0
    assert _strip(rep) == {
        "node_id": NODE, "machine": "husker-1", "plant": "karawang", "line": "mill-1",
        "firmware": "0.3.0", "config_hash": rep["config_hash"], "result": "PASSED",
        "checked_by": WHO, "timeout_s": 6.0,
        "inputs": [
            {"input": "green", "kind": "lamp", "result": "pass", "checks": [
                {"check": "ON", "result": "pass", "attempts": 1},
                {"check": "BLINK", "result": "pass", "attempts": 1, "hz": 2.0},
                {"check": "OFF", "result": "pass", "attempts": 1}]},
            {"input": "good", "kind": "count", "result": "pass", "checks": [
                {"check": "3 parts", "result": "pass", "attempts": 1, "expected": 3,
                 "counted": 3}]},
            {"input": "ng", "kind": "count", "result": "pass", "checks": [
                {"check": "3 parts", "result": "pass", "attempts": 1, "expected": 3,
                 "counted": 3}]}]}
    assert len(rep["config_hash"]) == 8
    assert "**Result: PASSED**" in js.with_suffix(".md").read_text()
    (entry,) = read_nodes(registry)
    assert entry["commissioned_by"] == WHO and isinstance(entry["commissioned"], datetime)
    assert load_config(cfg_path).nodes[NODE].commissioned is not None


def test_a_lamp_never_switched_fails_and_is_not_commissioned(plant, tmp_path):
    ct, cfg_path, registry = plant
    # accepted once before: a failed re-check withdraws that
    update_node(registry, NODE, commissioned="2026-01-05T09:00:00+07:00",
                commissioned_by="earlier check")
    node, thread = _run_node(ct, Scenario(duration_s=8))  # the node is up, nothing happens
    try:
        # ON missed, retried, missed, skipped; BLINK and OFF missed and skipped (EOF)
        result = _commission(cfg_path, tmp_path, "--checked-by", WHO, "--timeout", "0.8",
                             "--lamps", "yellow", "--parts", "0", answers="\nr\n\ns\n\ns\n")
    finally:
        thread.join(10)
        node.close()
    assert result.exit_code == 1
    assert isinstance(result.exception, cm.CommissionFailed)
    assert "yellow ON, yellow BLINK, yellow OFF" in str(result.exception)
    assert "its earlier commissioning is withdrawn" in str(result.exception)
    (js,) = (tmp_path / "commissioning").glob("husker-1-node12-*.json")
    rep = _strip(json.loads(js.read_text()))
    assert rep["result"] == "FAILED"
    assert rep["inputs"] == [{"input": "yellow", "kind": "lamp", "result": "fail", "checks": [
        {"check": "ON", "result": "fail", "attempts": 2},
        {"check": "BLINK", "result": "fail", "attempts": 1, "hz": None},
        {"check": "OFF", "result": "fail", "attempts": 1}]}]
    assert not {"commissioned", "commissioned_by"} & set(read_nodes(registry)[0])
