"""`lampwatch demo`: the plant's scenarios and the live table exactly (pure), then the whole demo
as a subprocess: a short shift at high speed checked against the journal and `lampwatch oee
report`, Ctrl-C mid-run, and the InfluxDB path against a real VictoriaMetrics."""

import collections
import io
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pyte
import pytest
import rich.console
import servers
import tomllib
from lampwatch import oee
from lampwatch.cli import demo as demo_cli
from lampwatch.config import parse_config
from lampwatch.demo.config import calendar_doc, config_doc, first_shift_start, to_toml
from lampwatch.demo.plant import LAMP_MAP, MACHINES, build_plant
from lampwatch.demo.run import PlantClock, PlantRunner
from lampwatch.demo.table import Header, banner, format_header, hms, pct, rows, screen, to_text
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
    start = first_shift_start(at, tz, 8 * 3600 + 90, "06:00")
    assert datetime.fromtimestamp(start, ZoneInfo(tz)).isoformat() == "2026-03-02T06:00:00+07:00"
    at = datetime(2026, 3, 2, 13, 0, tzinfo=ZoneInfo(tz)).timestamp()
    start = first_shift_start(at, tz, 8 * 3600 + 90, "06:00")
    assert datetime.fromtimestamp(start, ZoneInfo(tz)).isoformat() == "2026-03-01T06:00:00+07:00"


@pytest.mark.parametrize("tz, now, want", [
    # the latest quarter hour that lets 8 h + 90 s end by now: the shift that just ended
    ("Asia/Jakarta", "2026-03-02T13:00:00", "2026-03-02T04:45:00+07:00"),
    ("Asia/Jakarta", "2026-03-02T14:58:30", "2026-03-02T06:45:00+07:00"),
    ("Asia/Kathmandu", "2026-03-02T14:58:30", "2026-03-02T06:45:00+05:45"),
    # after midnight the shift began yesterday evening
    ("Asia/Jakarta", "2026-03-02T02:10:00", "2026-03-01T18:00:00+07:00"),
])
def test_default_first_shift_is_the_one_that_just_ended(tz, now, want):
    at = datetime.fromisoformat(now).replace(tzinfo=ZoneInfo(tz)).timestamp()
    start = first_shift_start(at, tz, 8 * 3600 + 90)
    assert datetime.fromtimestamp(start, ZoneInfo(tz)).isoformat() == want


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
            for s in cfg.calendar.shifts] == [("A", "06:00", "07:00", tuple(range(7))),
                                              ("B", "07:00", "08:00", tuple(range(7)))]
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
    cells = rows(snaps, 3600.0, {"husker-1": "sack", "scale-1": "kg"}, ["husker-1", "scale-1"])
    # the plant row sums times and ideal output: A = 5400 / 6000 s covered planned time,
    # P = 4800 / 5400, Q = 4752 / 4800, OEE = 4752 / 6000; never an average of percentages
    assert to_text(screen([], [], cells)).splitlines()[1:] == [
        "machine    state               for   A%   P%   Q% OEE%    good    NG unit  cov%",
        "-------------------------------------------------------------------------------",
        "husker-1   STOP setup        10:00 83.3 80.0 98.0 65.3      98     2 sack   100",
        "scale-1    UNKNOWN           20:00  100  100  100  100   1,600     0 kg    66.7",
        "-------------------------------------------------------------------------------",
        "plant      0/2 RUN                 90.0 88.9 99.0 79.2       -     -       83.3"]


def test_table_before_a_shift_and_without_ideal_cycle():
    s = snap("grader-1", None, None, None, None, ideal_known=False)
    cells = rows({"grader-1": s}, 10.0)
    assert cells == [("grader-1", "-", "-", "-", "-", "-", "-", "0", "0", "", "-"),
                     ("plant", "0/1 RUN", "", "-", "-", "-", "-", "-", "-", "", "-")]
    assert (hms(3723), hms(59), hms(None), hms(36000 + 754)) == (
        "1:02:03", "0:59", "-", "10h12m")
    assert (pct(0.5), pct(0.9996), pct(0.99949), pct(None)) == ("50.0", "100", "99.9", "-")


def _screen_at(minutes: float, behind_s: float = 0.0, long_values: bool = False) -> tuple:
    """The screen's parts (banner, header, cells), as the demo makes them, `minutes` into
    an 8-hour shift."""
    start = datetime(2026, 3, 2, 6, 0, tzinfo=ZoneInfo("Asia/Jakarta")).timestamp()
    now = start + minutes * 60
    big = 123456 if long_values else 7
    snaps = {}
    for i, m in enumerate(MACHINE_NAMES):
        r = oee.OEEResult(m, start, now, all_time_s=now - start, planned_s=now - start,
                          run_s=(now - start) * 0.9, net_run_s=(now - start) * 0.8,
                          fully_productive_s=(now - start) * 0.7, good=big * (i + 1), ng=i)
        state, reason = (("STOP", "planned_maintenance") if long_values and i == 2
                         else ("RUN", None))
        snaps[m] = snap(m, state, reason, start - (40000 if long_values else 0), r)
    head = Header("Asia/Jakarta", "A", start, start + 8 * 3600, 240.0, 238.4,
                  1234567 if long_values else 1234, resent=5, behind_s=behind_s)
    banner_lines = banner("rice-line-1 of demo-mill", 6, "127.0.0.1:55853", None,
                          "http://127.0.0.1:8080/", "127.0.0.1:8080", "123456",
                          "/very/long/path/" * 6 + "lampwatch-demo.sqlite",
                          "/tmp/lampwatch-demo.toml", None)
    units = dict(zip(MACHINE_NAMES, ("sack", "batch", "batch", "bin", "pack", "kg")))
    return banner_lines, format_header(head, now), rows(snaps, now, units, MACHINE_NAMES)


def test_the_screen_fits_80x24_with_stable_columns():
    """Rendered by rich's recording console at 80x24: within 80 columns and 24 lines, every
    column where it was, whatever the values (a long stop reason, 10 hours in a state,
    six-digit counts, a long path)."""
    texts = []
    for minutes, behind, long_values in ((0.5, 0.0, False), (200, 0.0, False),
                                         (479, 30.0, True)):
        console = rich.console.Console(record=True, width=80, height=24, file=io.StringIO(),
                                       color_system=None)
        console.print(screen(*_screen_at(minutes, behind, long_values)))
        text = console.export_text()
        lines = text.rstrip("\n").splitlines()
        assert len(lines) <= 24, text
        assert all(len(line) <= 80 for line in lines), text
        texts.append(lines)
    heading = [i for i, line in enumerate(texts[0]) if line.startswith("machine ")]
    assert len(heading) == 1
    for lines in texts:
        assert lines[heading[0]] == texts[0][heading[0]] or lines[heading[0] + 1] == \
            texts[0][heading[0]]  # one more header line (behind) moves the table down a line
    first, last = texts[0], texts[2]
    assert first[:8] == [
        "lampwatch demo: rice-line-1 of demo-mill, 6 virtual nodes on the real firmware",
        "collector: udp 127.0.0.1:55853",
        "board: http://127.0.0.1:8080/  (operator PIN 123456)",
        "journal: /very/long/path//very/long/path//very/long/path//very/long/path//very/…",
        "config: /tmp/lampwatch-demo.toml",
        "Ctrl-C stops; the journal stays for `lampwatch oee report`.",
        "",
        "2026-03-02 06:00:30 Asia/Jakarta  shift A 06:00-14:00, 0% done"]
    assert first[8] == "speed 240x (now 238x)  frames 1,234 (5 resent)"
    assert last[8:11] == [
        "speed 240x (now 238x)  frames 1,234,567 (5 resent)",
        "behind by 0:30: this machine runs the demo slower than 240x",
        "machine    state               for   A%   P%   Q% OEE%    good    NG unit  cov%"]
    assert last[14] == ("polisher-1 STOP planned_…   19h05m  100 88.9 87.5 77.8 370,368     2 "
                        "batch  100")
    # right-aligned numbers end under their heading's end, in every row of every render
    ends = [first[heading[0]].index(h) + len(h) - 1 for h in ("for", "OEE%", "good", "cov%")]
    for row in (first[heading[0] + 2], last[13], last[14], last[17]):
        assert all(row[e] != " " and row[e + 1:e + 2] in (" ", "") for e in ends), row


def test_the_live_screen_redraws_in_place_on_an_80x24_terminal():
    """The CLI's rich Live screen, fed 40 redraws, on a VT100 emulator (pyte) of 80x24:
    one heading on the screen, nothing scrolled off, the last values shown."""
    out = io.StringIO()
    console = rich.console.Console(file=out, width=80, height=24, force_terminal=True,
                                   color_system=None)
    screen80 = pyte.HistoryScreen(80, 24, history=1000)
    stream = pyte.Stream(screen80)
    with demo_cli._live_screen(console) as show:
        for k in range(40):
            show(*_screen_at(1 + k * 12, 30.0 if k % 3 == 0 else 0.0, k % 2 == 0))
    stream.feed(out.getvalue().replace("\n", "\r\n"))  # the tty's onlcr
    shown = [line.rstrip() for line in screen80.display]
    assert sum(1 for line in shown if line.startswith("machine ")) == 1, "\n".join(shown)
    assert not screen80.history.top, "the screen scrolled"
    assert shown[0].startswith("lampwatch demo: rice-line-1")
    assert any(line.startswith("2026-03-02 13:49:00 Asia/Jakarta") for line in shown), shown


def test_header_says_when_the_demo_runs_behind():
    start = datetime(2026, 3, 2, 6, 0, tzinfo=ZoneInfo("Asia/Jakarta")).timestamp()
    on_time = Header("Asia/Jakarta", "A", start, start + 8 * 3600, 240.0, 238.4, 10,
                     behind_s=1.9)
    assert len(format_header(on_time, start + 60)) == 2
    late = Header("Asia/Jakarta", "A", start, start + 8 * 3600, 240.0, 55.0, 10, behind_s=75)
    assert format_header(late, start + 60) == [
        "2026-03-02 06:01:00 Asia/Jakarta  shift A 06:00-14:00, 0% done",
        "speed 240x (now 55x)  frames 10",
        "behind by 1:15: this machine runs the demo slower than 240x"]


def test_the_plant_runner_knows_when_it_is_late():
    """Nodes slower than the asked speed (each slice takes 20 ms of CPU, the schedule gives
    it 10): the runner runs on as fast as it can and says how late it is."""
    class SlowNode:
        def run_until(self, t):
            time.sleep(0.02)

    clock = PlantClock(0.0)
    runner = PlantRunner([SlowNode()], clock, end_s=60.0, speed=200.0, stop=threading.Event())
    assert runner.slice_s == 2.0  # 10 ms of real time per slice at 200x
    runner.start()
    runner.join(10)
    assert not runner.is_alive() and runner.error is None
    # 30 slices of >= 20 ms: >= 0.6 s for what should take 0.3 s
    assert runner.behind_s() >= 0.25
    fast = PlantRunner([], PlantClock(0.0), end_s=60.0, speed=200.0, stop=threading.Event())
    fast.start()
    fast.join(10)
    assert fast.behind_s() < 0.1



def test_nodes_waiting_for_their_acks_wait_side_by_side():
    """Six nodes each waiting 2 ms a slice for ACKs (real time, as for the collector's
    commit), on a schedule of 10 ms a slice: one after another (12 ms) the demo would fall
    behind by 2 ms a slice; side by side it keeps up. And every node runs every slice, each
    slice to its end before the next begins."""
    ran: list[tuple[int, float]] = []

    class WaitingNode:
        def __init__(self, n):
            self.n = n

        def run_until(self, t):
            time.sleep(0.002)
            ran.append((self.n, t))

    runner = PlantRunner([WaitingNode(n) for n in range(6)], PlantClock(0.0), end_s=240.0,
                         speed=200.0, stop=threading.Event())
    assert runner.slice_s == 2.0  # 10 ms of real time per slice at 200x
    runner.start()
    runner.join(10)
    assert not runner.is_alive() and runner.error is None
    # 120 slices: 1.2 s on schedule; one node after another >= 1.44 s, 0.24 s behind
    assert runner.behind_s() < 0.1
    assert sorted(ran) == sorted((n, 2.0 * k) for n in range(6) for k in range(1, 121))
    assert [t for _, t in ran] == sorted(t for _, t in ran)  # no slice before the last ended


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
                      str(journal), "--board", "127.0.0.1:0", "--operator-pin", "432109")
    wall = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    out = r.stdout
    print(f"\none simulated hour in {wall:.1f} s:",
          next(x for x in out.splitlines() if x.startswith("the shift ended")))
    assert re.search(r"board: http://127\.0\.0\.1:\d+/ +\(operator PIN 432109\)", out)
    for m in MACHINE_NAMES:
        assert re.search(rf"^{m} ", out, re.MULTILINE), m
    assert "the shift ended" in out
    # no machine runs six nodes at 100000x: the end says by how much it fell behind
    assert re.search(r"^that is \d+x, behind the asked 100000x \(\d+ s\): this machine was "
                     r"too busy to keep up$", out, re.MULTILINE), out

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
        # the report sums the journal's per-minute rollups (each count's output split by
        # minute), the live deriver its counts: the same output, summed in another order
        assert (row["good"], row["ng"]) == pytest.approx((live["good"], live["ng"]),
                                                         rel=1e-12, abs=1e-9)
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
    assert format_header(h, start + 4.24 * 3600) == [
        "2026-03-02 10:14:24 Asia/Jakarta  shift A 06:00-14:00, 53% done",
        "speed 240x (now 238x)  frames 1,234 (5 resent)"]
    after = format_header(h, start + 9 * 3600)  # past the end: the progress stays at 100%
    assert "shift A 06:00-14:00, 100% done" in after[0]
