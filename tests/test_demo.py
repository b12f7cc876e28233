"""`lampwatch demo`: the plant's scenarios and the live table exactly (pure), then the whole demo
as a subprocess: a short shift at high speed checked against the journal and `lampwatch oee
report`, Ctrl-C mid-run, and the InfluxDB path against a real VictoriaMetrics."""

import collections
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import servers
import tomllib
from lampwatch import oee
from lampwatch.config import parse_config
from lampwatch.demo.config import calendar_doc, config_doc, first_shift_start, to_toml
from lampwatch.demo.plant import LAMP_MAP, MACHINES, build_plant
from lampwatch.demo.table import Header, format_header, format_table, hms
from lampwatch.derive import MachineSnapshot
from lampwatch.machine_state import LampMap

victoria_metrics = servers.victoria_metrics

LAMPWATCH = [sys.executable, "-m", "lampwatch.cli"]
if (Path(sys.executable).parent / "lampwatch").exists():
    LAMPWATCH = [str(Path(sys.executable).parent / "lampwatch")]
MACHINE_NAMES = [m.machine for m in MACHINES]


# --- the plant (pure) ------------------------------------------------------------------

def test_default_plant_counts_and_units_exactly():
    plans = build_plant()
    # (a run after a setup makes its first unit in a whole cycle, not half of one)
    assert [(p.spec.machine, p.spec.unit, p.good, p.ng) for p in plans] == [
        ("husker-1", "sack", 485, 0), ("whitener-1", "batch", 245, 4),
        ("polisher-1", "batch", 245, 4), ("grader-1", "bin", 78, 6),
        ("packer-1", "pack", 4746, 39), ("scale-1", "kg", 15518, 400)]
    # the same arguments make the same plant; another seed moves the minor stops
    assert [p.lamp_changes for p in build_plant()] == [p.lamp_changes for p in plans]
    assert [p.lamp_changes for p in build_plant(seed=2)] != [p.lamp_changes for p in plans]


def test_every_machine_has_setup_runs_and_minor_stops_and_one_breakdown():
    lamp_map = LampMap(LAMP_MAP)
    names = ("green", "yellow", "red")
    for p in build_plant():
        lamps = {"green": 0, "yellow": 0, "red": 0}
        seen = set()
        for _, lamp, state in p.lamp_changes:
            lamps[lamp] = {"OFF": 0, "ON": 1, "BLINK": 2}[state]
            seen.add(lamp_map.state(tuple(lamps[n] for n in names) + (None, None)))
        assert {("STOP", "setup"), ("RUN", None), ("IDLE", None)} <= seen, p.spec.machine
        assert (("STOP", "breakdown") in seen) == (p.spec.machine == "polisher-1")
        first = p.lamp_changes[0]
        assert first == (30.0, "yellow", "BLINK")  # the shift opens with a setup
        assert p.scenario.duration_s == 30 + 8 * 3600 + 30


def test_flicker_wifi_outage_and_scale_bags():
    plans = {p.spec.machine: p for p in build_plant()}
    green = plans["whitener-1"].scenario.timelines["green"]
    assert ("square", 100.0, 0.5) in [mode for _, mode in green]  # 100 Hz flicker
    scale = plans["scale-1"]
    assert scale.outage == (30 + 300 * 60, 30 + 320 * 60)  # 20 minutes, from 11:00
    assert scale.scenario.faults == [(18_030_000_000, "wifi_down", 1_200_000_000)]
    assert [p.outage for p in plans.values()].count(None) == 5
    # the minor stop during the outage: its lamp changes happen while the node is offline
    assert [c for c in scale.lamp_changes if scale.outage[0] <= c[0] < scale.outage[1]] == [
        (18390.0, "green", "OFF"), (18390.0, "yellow", "ON"),
        (18570.0, "green", "ON"), (18570.0, "yellow", "OFF")]
    assert scale.ng % 50 == 0  # rejected bags of 50 kg


def test_a_shorter_shift_scales_the_plan():
    plans = {p.spec.machine: p for p in build_plant(3600)}
    assert plans["scale-1"].outage == (30 + 300 * 7.5, 30 + 320 * 7.5)
    assert (plans["packer-1"].good, plans["packer-1"].ng) == (589, 4)
    two = {p.spec.machine: p for p in build_plant(3600, shifts=2)}
    assert two["packer-1"].scenario.duration_s == 30 + 7200 + 30
    assert 2 * 589 - 30 < two["packer-1"].good < 2 * 589 + 30


# --- the config it writes (pure) ---------------------------------------------------------

def test_first_shift_start_is_the_last_finished_shift():
    tz = "Asia/Jakarta"
    at = datetime(2026, 3, 2, 15, 0, tzinfo=ZoneInfo(tz)).timestamp()
    start = first_shift_start(at, tz, 8 * 3600 + 90)
    assert datetime.fromtimestamp(start, ZoneInfo(tz)).isoformat() == "2026-03-02T06:00:00+07:00"
    at = datetime(2026, 3, 2, 13, 0, tzinfo=ZoneInfo(tz)).timestamp()
    start = first_shift_start(at, tz, 8 * 3600 + 90)
    assert datetime.fromtimestamp(start, ZoneInfo(tz)).isoformat() == "2026-03-01T06:00:00+07:00"


def test_config_round_trips_through_toml_and_the_config_parser():
    plans = build_plant(3600)
    start = datetime(2026, 3, 2, 6, 0, tzinfo=ZoneInfo("Asia/Jakarta")).timestamp()
    keys = {p.spec.node_id: f"{p.spec.node_id:032x}" for p in plans}
    doc = config_doc(plans, keys, calendar_doc(start, "Asia/Jakarta", 3600, 2), "demo.sqlite",
                     {"listen": "127.0.0.1:0"}, {"url": "http://127.0.0.1:1", "org": "o",
                                                  "bucket": "b"})
    text = to_toml(doc, "# demo")
    assert tomllib.loads(text) == doc
    cfg = parse_config(tomllib.loads(text), Path("/tmp/x/demo.toml"))
    assert cfg.journal_path == Path("/tmp/x/demo.sqlite")
    assert [(s.name, f"{s.start:%H:%M}", f"{s.end:%H:%M}", s.weekdays)
            for s in cfg.calendar.shifts] == [("A", "06:00", "07:00", (0,)),
                                              ("B", "07:00", "08:00", (0,))]
    scale = cfg.nodes[106]
    assert (scale.machine, scale.unit, scale.ideal_cycle_s, scale.heartbeat_s) == (
        "scale-1", "kg", 1.5, 5.0)
    assert dict(scale.lamp_map) == LAMP_MAP
    assert cfg.board_listen == ("127.0.0.1", 0)


# --- the live table (pure) ---------------------------------------------------------------

def snap(machine, state, reason, since, result, ideal_known=True):
    return MachineSnapshot(machine, 1, state, reason, since, {}, since, False, "A", result,
                           ideal_known, None)


def test_table_rows_and_a_rollup_from_summed_times():
    a = oee.OEEResult("husker-1", 0, 3600, all_time_s=3600, planned_s=3600, run_s=3000,
                      setup_s=600, net_run_s=2400, fully_productive_s=2352, good=98, ng=2)
    b = oee.OEEResult("scale-1", 0, 3600, all_time_s=3600, planned_s=3600, unknown_s=1200,
                      unknown_planned_s=1200, run_s=2400, net_run_s=2400,
                      fully_productive_s=2400, good=1600, ng=0)
    snaps = {"husker-1": snap("husker-1", "STOP", "setup", 3000.0, a),
             "scale-1": snap("scale-1", "UNKNOWN", None, 2400.0, b)}
    lines = format_table(snaps, 3600.0, {"husker-1": "sack", "scale-1": "kg"},
                         ["husker-1", "scale-1"])
    # the plant row sums times and ideal output: A = 5400 / 6000 s covered planned time,
    # P = 4800 / 5400, Q = 4752 / 4800, OEE = 4752 / 6000; never an average of percentages
    assert lines == [
        "machine   state       in state       A       P       Q     OEE   good  NG  unit  coverage",
        "-----------------------------------------------------------------------------------------",
        "husker-1  STOP setup     10:00   83.3%   80.0%   98.0%   65.3%     98   2  sack    100.0%",
        "scale-1   UNKNOWN        20:00  100.0%  100.0%  100.0%  100.0%  1,600   0  kg       66.7%",
        "-----------------------------------------------------------------------------------------",
        "plant     0/2 RUN                90.0%   88.9%   99.0%   79.2%      -   -           83.3%"]


def test_table_before_a_shift_and_without_ideal_cycle():
    s = snap("grader-1", None, None, None, None, ideal_known=False)
    lines = format_table({"grader-1": s}, 10.0)
    assert lines[2].split() == ["grader-1", "-", "-", "-", "-", "-", "-", "0", "0", "-"]
    assert lines[-1].split() == ["plant", "0/1", "RUN", "-", "-", "-", "-", "-", "-", "-"]
    assert (hms(3723), hms(59), hms(None), oee.percent(0.5), oee.percent(None)) == (
        "1:02:03", "0:59", "-", "50.0%", "-")


# --- the whole demo, as a subprocess -----------------------------------------------------

def journal_figures(path):
    db = sqlite3.connect(path)
    counts = collections.Counter()
    states, lamps, finals = set(), collections.defaultdict(list), {}
    for kind, machine, data in db.execute("SELECT kind, machine, data FROM events ORDER BY id"):
        d = json.loads(data)
        if kind == "count":
            counts[machine, "good"] += d["good"]
            counts[machine, "ng"] += d["ng"]
        elif kind == "state":
            states.add((machine, d["state"], d.get("reason")))
        elif kind == "lamp":
            lamps[machine].append((d["lamp"], d["state"]))
        elif kind == "oee" and d["final"]:
            finals[machine] = d
    db.close()
    return counts, states, lamps, finals


def run_lampwatch(*args, env=None, timeout=300):
    return subprocess.run([*LAMPWATCH, *args], capture_output=True, text=True, timeout=timeout,
                          env=env, check=False)


def test_a_short_shift_end_to_end(tmp_path):
    journal = tmp_path / "demo.sqlite"
    t0 = time.monotonic()
    r = run_lampwatch("demo", "--speed", "100000", "--shift-hours", "1", "--journal",
                      str(journal), "--board", "127.0.0.1:0", "--operator-pin", "4321")
    wall = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    out = r.stdout
    print(f"\none simulated hour in {wall:.1f} s:",
          next(x for x in out.splitlines() if x.startswith("the shift ended")))
    assert re.search(r"board: http://127\.0\.0\.1:\d+/ +\(operator PIN 4321\)", out)
    for m in MACHINE_NAMES:
        assert re.search(rf"^{m} ", out, re.MULTILINE), m
    assert "the shift ended" in out

    counts, states, lamps, finals = journal_figures(journal)
    for p in build_plant(3600):
        m = p.spec.machine
        assert (counts[m, "good"], counts[m, "ng"]) == (p.good, p.ng), m
        # every lamp change arrived, the scale's too although it was offline for a while
        for lamp in ("green", "yellow", "red"):
            assert [s for x, s in lamps[m] if x == lamp] == [
                s for _, x, s in p.lamp_changes if x == lamp], (m, lamp)
        assert {(m, "RUN", None), (m, "IDLE", None), (m, "STOP", "setup")} <= states, m
    assert ("polisher-1", "STOP", "breakdown") in states
    assert set(finals) == set(MACHINE_NAMES)  # the shift's final OEE, live

    # the report the demo printed is `lampwatch oee report` on the journal, to the character
    command = out.strip().splitlines()[-1].split()
    assert command[:3] == ["lampwatch", "oee", "report"]
    rep = run_lampwatch(*command[1:])
    assert rep.returncode == 0, rep.stderr
    assert rep.stdout.strip() in out
    data = json.loads(run_lampwatch(*command[1:], "--format", "json").stdout)
    for row in data["machines"]:
        live = finals[row["machine"]]
        assert (row["good"], row["ng"]) == (live["good"], live["ng"])
        for k in ("availability", "performance", "quality", "oee"):
            assert row[k] == pytest.approx(live[k], abs=0.005), (row["machine"], k)
    assert data["plant"]["coverage"] > 0.99

    # a second run replaces the first run's journal
    again = run_lampwatch("demo", "--speed", "100000", "--shift-hours", "0.25", "--journal",
                          str(journal), "--board", "off")
    assert again.returncode == 0, again.stderr
    counts, *_ = journal_figures(journal)
    assert counts["packer-1", "good"] == build_plant(900)[4].good


def test_ctrl_c_stops_cleanly_and_leaves_a_usable_journal(tmp_path):
    journal = tmp_path / "demo.sqlite"
    proc = subprocess.Popen([*LAMPWATCH, "demo", "--journal", str(journal), "--board", "off"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = ""
        while "plant " not in first:  # the first table: the shift has begun
            first = proc.stdout.readline()
            assert first or proc.poll() is None, proc.stderr.read()
        time.sleep(2.0)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in out + err and err == ""
    assert "\nstopped: " in out
    command = out.strip().splitlines()[-1].split()
    rep = run_lampwatch(*command[1:], "--format", "json")
    assert rep.returncode == 0, rep.stderr
    data = json.loads(rep.stdout)
    assert sorted(r["machine"] for r in data["machines"]) == sorted(MACHINE_NAMES)
    assert data["plant"]["planned_s"] > 0


def test_user_errors_are_one_line(tmp_path):
    other = tmp_path / "plant.sqlite"
    other.write_text("not a demo journal")
    r = run_lampwatch("demo", "--journal", str(other), "--board", "off")
    assert r.returncode == 1
    assert r.stderr == (f"lampwatch: {other} exists and is not a previous demo's journal: "
                        "choose another --journal\n")
    env = {k: v for k, v in os.environ.items() if k != "LAMPWATCH_INFLUX_TOKEN"}
    r = run_lampwatch("demo", "--journal", str(tmp_path / "d.sqlite"), "--board", "off",
                      "--influx-url", "http://127.0.0.1:9", env=env)
    assert r.returncode == 1
    assert r.stderr == ("lampwatch: InfluxDB token: environment variable "
                        "LAMPWATCH_INFLUX_TOKEN is not set\n")
    r = run_lampwatch("demo", "--shift-hours", "0.001", "--journal", str(tmp_path / "e.sqlite"))
    assert r.returncode == 1 and r.stderr.startswith("lampwatch: --shift-hours must be")


def test_influx_url_writes_points(tmp_path, victoria_metrics):
    env = dict(os.environ, LAMPWATCH_INFLUX_TOKEN="not-checked-by-victoria-metrics")
    r = run_lampwatch("demo", "--speed", "100000", "--shift-hours", "0.25", "--journal",
                      str(tmp_path / "demo.sqlite"), "--board", "off", "--influx-url",
                      victoria_metrics.url, env=env)
    assert r.returncode == 0, r.stderr
    machines = collections.Counter()
    for item in victoria_metrics.export():
        if item["metric"].get("plant") == "demo-mill":
            machines[item["metric"].get("machine")] += len(item["values"])
    assert set(MACHINE_NAMES) <= set(machines), machines


def test_header_exact():
    start = datetime(2026, 3, 2, 6, 0, tzinfo=ZoneInfo("Asia/Jakarta")).timestamp()
    h = Header("Asia/Jakarta", "A", start, start + 8 * 3600, 240.0, 238.4, 1234, resent=5)
    assert format_header(h, start + 4.24 * 3600) == (
        "simulated 2026-03-02 10:14:24 Asia/Jakarta | shift A 06:00-14:00 53% done | "
        "speed 240x (now 238x) | frames 1,234 (5 resent)")
    after = format_header(h, start + 9 * 3600)  # past the end: the progress stays at 100%
    assert "shift A 06:00-14:00 100% done" in after
