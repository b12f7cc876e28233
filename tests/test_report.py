"""`lampwatch oee report`: a scripted shift through the deriver into a real journal, then
the report's A / P / Q / OEE, losses and coverage, the CLI, and its one-line errors."""

import csv
import io
import json
import subprocess
import sys
from datetime import datetime, timezone

import pytest
from click.testing import CliRunner
from lampwatch import oee
from lampwatch.cli import cli
from lampwatch.derive import DeriveConfig, Deriver, Event, NodeConfig
from lampwatch.journal import FrameRow, Journal
from lampwatch.protocol import T_HEARTBEAT, T_HELLO, T_LAMP, Frame, Header, Heartbeat, Hello, Lamp
from lampwatch.protocol import LampEvent as LE
from lampwatch.report.oee_report import (
    FORMATS,
    MachineSettings,
    ReportError,
    build_report,
    read_journal,
    shift_window,
)

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc).timestamp()  # shift A: 08:00-16:00 UTC
H, M = 3600, 60
CAL = oee.Calendar("UTC", (oee.Shift("A", "08:00", "16:00",
                                     breaks=(oee.Break("12:00", "12:30"),)),))
PRESS, MILL = 7, 8
G, Y, R = 0, 1, 2


def _state_at(spans, t):
    for a, b, lamps in spans:
        if a <= t < b:
            return lamps
    return (0, 0, 0, 0, 0)


# press lamps over the shift (seconds after 08:00): green RUN, red 09:00-09:20 (an operator
# will call it setup), yellow 10:00-10:02 (a 2 min minor stop), all off in the break
PRESS_SPANS = [(0, 1 * H, (1, 0, 0, 0, 0)), (1 * H, 1 * H + 20 * M, (0, 0, 1, 0, 0)),
               (1 * H + 20 * M, 2 * H, (1, 0, 0, 0, 0)), (2 * H, 2 * H + 2 * M, (0, 1, 0, 0, 0)),
               (2 * H + 2 * M, 4 * H, (1, 0, 0, 0, 0)), (4 * H, 4 * H + 30 * M, (0, 0, 0, 0, 0)),
               (4 * H + 30 * M, 9 * H, (1, 0, 0, 0, 0))]
SILENT = (6 * H, 6 * H + 30 * M)  # the press's node is off Wi-Fi 14:00-14:30: its
#                                   heartbeats then are lost (its outbox overflowed)
PRESS_RATE = (12 / 60, 1 / 60)  # GOOD, NG a second while RUN (13 a minute; ideal 4 s)
MILL_RATE = 10 / 60  # GOOD a second, RUN all day (its ideal: 6 s)


def press_run_s(t):
    """Seconds the press ran (green alone lit) between 08:00 and 08:00 + t."""
    return sum(max(0.0, min(t, b) - a) for a, b, lamps in PRESS_SPANS
               if lamps == (1, 0, 0, 0, 0) and a < t)


def press_made(t):
    """(good, ng) the press made by 08:00 + t: the node's cumulative counts."""
    run = press_run_s(t)
    return int(PRESS_RATE[0] * run + 1e-9), int(PRESS_RATE[1] * run + 1e-9)


def scripted_shift(journal_path):
    """Run both nodes through a Deriver into a real journal, as the collector would."""
    nodes = {PRESS: NodeConfig(PRESS, "press", 4.0), MILL: NodeConfig(MILL, "mill", 6.0)}
    d = Deriver(DeriveConfig(nodes=nodes, calendar=CAL))
    seqs = {PRESS: 0, MILL: 0}

    def send(j, node, body, up_s, delay=0.003):
        ftype = {Hello: T_HELLO, Lamp: T_LAMP, Heartbeat: T_HEARTBEAT}[type(body)]
        seq = seqs[node]
        seqs[node] += 1
        f = Frame(Header(ftype, node, 0xB007, seq, int(up_s * 1000)), body, b"")
        rx = T0 + up_s + delay
        events = d.on_frame(f, rx)
        j.commit([FrameRow(rx, "test", node, 0xB007, seq, ftype, int(up_s * 1000), b"")], events)

    final = []
    with Journal(journal_path, sync="normal") as j:
        for node in (PRESS, MILL):
            send(j, node, Hello((0, 1, 0), "power_on", b"\0\0\0\0", False, False, 7, 60_000), 0)
        send(j, PRESS, Lamp((LE(G, 1, 0),)), 0)
        send(j, MILL, Lamp((LE(G, 1, 0),)), 0)
        changes = [(a, lamps) for a, _, lamps in PRESS_SPANS[1:]]
        prev = PRESS_SPANS[0][2]
        for t in range(30, 8 * H + 31, 60):  # every minute at :30 a heartbeat, to 16:00:30
            while changes and changes[0][0] < t:
                at, lamps = changes.pop(0)
                evs = tuple(LE(ch, lamps[ch], at * 1000) for ch in range(3)
                            if lamps[ch] != prev[ch])
                send(j, PRESS, Lamp(evs), at)
                prev = lamps
            if not SILENT[0] <= t < SILENT[1]:
                send(j, PRESS, Heartbeat(*press_made(t), prev), t)
            send(j, MILL, Heartbeat(int(MILL_RATE * t + 1e-9), 0, (1, 0, 0, 0, 0)), t)
            if t == 6 * H + 30 * M + 90:
                # the operator's reason for the 09:00 stop, entered on the board at 14:31:30:
                # from a minute into the stop, open-ended (end_s null: the whole stop)
                j.commit(events=[Event(T0 + t, "reason", None, "press", {
                    "reason": "setup", "start_s": T0 + 1 * H + 60, "end_s": None,
                    "by": "board"})])
                d.add_reason(Event(T0 + t, "reason", None, "press", {
                    "reason": "setup", "start_s": T0 + 1 * H + 60, "end_s": None}))
            for tick in (t + 1, t + 31):
                events = d.tick(T0 + tick)
                final += [e for e in events if e.kind == "oee" and e.data["final"]]
                j.commit(events=events)
    return final


@pytest.fixture(scope="module")
def shift_journal(tmp_path_factory):
    path = tmp_path_factory.mktemp("journal") / "journal.sqlite"
    final = scripted_shift(path)
    return path, final


SETTINGS = {"press": MachineSettings(4.0, 60.0, "pcs"), "mill": MachineSettings(6.0, 60.0, "kg")}


def test_report_of_a_scripted_shift(shift_journal):
    path, _ = shift_journal
    events, last_rx = read_journal(path, T0, T0 + 8 * H)
    rep = build_report(events, last_rx, T0, T0 + 8 * H, calendar=CAL, settings=SETTINGS)
    assert [r.machine for r in rep.rows] == ["press", "mill"]  # the registry's (line) order
    rows = {r.machine: r.result for r in rep.rows}
    press, mill = rows["press"], rows["mill"]
    # planned: 8 h - 30 min break = 27000 s. press: last heard 13:59:30 (a heartbeat) + 3
    # heartbeat periods = 14:02:30 UNKNOWN, until its next data at 14:30:30: 1680 s
    assert press.planned_s == 27000
    assert press.unknown_s == pytest.approx(1680, abs=0.01)
    # run = 3600 + 2400 + 120 (minor) + 7080 + 5550 (12:30-14:02:30) + 5370 = 24120 s
    assert press.run_s == pytest.approx(24120, abs=0.01)
    assert press.setup_s == pytest.approx(1200, abs=0.01)  # the operator's reason
    # the node's times are 3 ms late (the fastest frame's delay cannot be observed), so
    # 3 ms of the break's OFF fall into planned time: a breakdown of 3 ms
    assert press.breakdown_s == pytest.approx(0.003, abs=1e-4)
    assert press.minor_stop_s == pytest.approx(120, abs=0.01)
    # Truth: the press made 12 GOOD + 1 NG a minute while it ran (green alone), also while
    # its node was off Wi-Fi: 25680 s of run in planned time (08:00-09:00, 09:20-10:00,
    # 10:02-12:00, 12:30-16:00). What it made in the 1680 s nobody saw is output in
    # unknown time; the rest is counted.
    made_good, made_ng = (press_made(8 * H)[i] - press_made(0)[i] for i in (0, 1))
    assert (made_good, made_ng) == (5136, 428)
    assert (press.unknown_good, press.unknown_ng) == (pytest.approx(336, abs=1),
                                                      pytest.approx(28, abs=1))
    # (to 0.01: the node's times are 3 ms late, so 3 ms of output slip past 16:00; NG are
    # whole units, and the one counted at 16:00:30 was made half in the shift)
    assert press.good + press.unknown_good == pytest.approx(made_good, abs=0.01)
    assert press.ng + press.unknown_ng == pytest.approx(made_ng, abs=0.51)
    covered = 27000 - 1680  # 25320 = run 24120 + setup 1200
    known = press.good + press.ng  # made in 24000 s of known run: 13/60 x 24000 = 5200
    assert known == pytest.approx(5200, abs=1)
    assert press.availability == pytest.approx(24120 / covered, rel=1e-6)
    assert press.performance == pytest.approx(4 * known / press.run_s, rel=1e-9)  # 0.8624
    assert press.performance == pytest.approx(4 * 5200 / 24120, abs=2e-4)
    assert press.quality == pytest.approx(made_good / (made_good + made_ng), abs=2e-4)
    assert press.oee == pytest.approx(press.availability * press.performance * press.quality)
    assert press.coverage == pytest.approx(1 - 1680 / 28800, rel=1e-6)
    assert press.reduced_speed_s == pytest.approx(24120 - 120 - 4 * known, abs=0.01)
    # mill: RUN all shift at exactly its ideal rate; what it made in the break is left out
    assert (mill.good, mill.excluded_good) == (pytest.approx(4500), pytest.approx(300))
    assert (mill.availability, mill.quality) == (pytest.approx(1.0), 1.0)
    assert mill.performance == pytest.approx(1.0)
    # plant: sums of times and ideal output, never averaged percentages
    plant = rep.plant.data()
    assert plant["availability"] == pytest.approx((24120 + 27000) / (covered + 27000),
                                                  rel=1e-6)
    # OEE = A x P x Q of the sums: ideal time of known output x quality / covered time;
    # quality ideal-time weighted, output in unknown time in it
    press_all = press.good + press.ng + press.unknown_good + press.unknown_ng
    quality = ((4 * (press.good + press.unknown_good) + 6 * mill.good)
               / (4 * press_all + 6 * mill.good))
    assert plant["quality"] == pytest.approx(quality, rel=1e-9)
    assert plant["oee"] == pytest.approx(
        (4 * known + 6 * mill.good) * quality
        / (press.covered_planned_s + mill.covered_planned_s), rel=1e-9)
    # pcs and kg are not added up
    assert plant["good"] is None and plant["output"] == {
        "kg": {"good": mill.good, "ng": 0.0}, "pcs": {"good": press.good, "ng": press.ng}}


def test_live_final_oee_event_matches_the_report(shift_journal):
    path, final = shift_journal
    live = {e.machine: e.data for e in final}
    assert sorted(live) == ["mill", "press"] and len(final) == 2  # once per machine
    events, last_rx = read_journal(path, T0, T0 + 8 * H)
    rep = build_report(events, last_rx, T0, T0 + 8 * H, calendar=CAL, settings=SETTINGS)
    # the reason came before the shift ended: the live final has it too (a setup)
    assert live["press"]["losses"]["setup_s"] == pytest.approx(1200, abs=0.01)
    for row in rep.rows:
        for k in ("availability", "performance", "quality", "oee", "good", "unknown_good"):
            assert live[row.machine][k] == pytest.approx(row.data()[k], rel=1e-9), k
    assert live["mill"]["oee"] == pytest.approx(1.0)


def test_open_state_ends_at_last_heard_plus_timeout(tmp_path):
    # A collector that died at 10:00 never journaled UNKNOWN: the report must not run on.
    path = tmp_path / "j.sqlite"
    with Journal(path) as j:
        j.commit([FrameRow(T0 + 2 * H, "t", 7, 1, 5, T_HEARTBEAT, 0, b"")],
                 [Event(T0, "state", 7, "press", {"state": "RUN", "prev": None})])
    events, last_rx = read_journal(path, T0, T0 + 4 * H)
    rep = build_report(events, last_rx, T0, T0 + 4 * H,
                       settings={"press": MachineSettings(None, 10.0)})
    r = rep.rows[0].result
    assert r.run_s == pytest.approx(2 * H + 30)  # + 3 heartbeat periods of 10 s
    assert r.unknown_s == pytest.approx(2 * H - 30)
    assert rep.rows[0].data()["performance"] is None  # no ideal cycle time: unknown


def test_errors(tmp_path, shift_journal):
    with pytest.raises(ReportError, match="no journal at"):
        read_journal(tmp_path / "missing.sqlite", 0, 1)
    path, _ = shift_journal
    events, last_rx = read_journal(path, T0, T0 + H)
    with pytest.raises(ReportError, match=r"unknown machine 'lathe' \(known: mill, press\)"):
        build_report(events, last_rx, T0, T0 + H, machine="lathe")


def run_cli(*args):
    return CliRunner().invoke(cli, ["oee", "report", *args], standalone_mode=False)


def test_cli_formats(shift_journal):
    path, _ = shift_journal
    base = ["--journal", str(path), "--from", "2026-03-02T08:00", "--to", "2026-03-02T16:00"]
    res = run_cli(*base, "--format", "json", "--machine", "press")
    assert res.exception is None, res.output
    data = json.loads(res.output)
    assert [m["machine"] for m in data["machines"]] == ["press"]
    # without a config: all 8 h planned (the break too), no ideal cycle -> P and OEE unknown
    assert data["machines"][0]["planned_s"] == 28800
    assert data["machines"][0]["performance"] is None
    assert data["from"] == "2026-03-02T08:00:00+00:00"
    res = run_cli(*base, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(res.output)))
    assert [r["machine"] for r in rows] == ["mill", "press", "all"]
    assert float(rows[1]["good"]) == pytest.approx(5136 - 336) and rows[1]["oee"] == ""
    res = run_cli(*base)
    assert "six big losses and planned maintenance (minutes)" in res.output
    assert res.output.splitlines()[3].split()[0] == "mill"


@pytest.mark.parametrize("args, message", [
    ([], "no journal at {missing}"),
    (["--day", "2026-13-40"], "day '2026-13-40' is not a date like 2026-03-02 (or 'today')"),
    (["--from", "yesterday"],
     "--from 'yesterday' is not a date or time like 2026-03-02 or 2026-03-02T06:00"),
])
def test_cli_one_line_errors(tmp_path, args, message):
    missing = str(tmp_path / "none.sqlite")
    out = subprocess.run([sys.executable, "-c", "from lampwatch.cli import main; main()",
                          "oee", "report", "--journal", missing, *args],
                         check=False, capture_output=True, text=True)
    assert out.returncode == 1
    assert out.stderr.splitlines() == ["lampwatch: " + message.format(missing=missing)]
    assert not (tmp_path / "none.sqlite").exists()  # a report never creates a journal


def test_cli_unknown_machine(shift_journal):
    path, _ = shift_journal
    out = subprocess.run([sys.executable, "-c", "from lampwatch.cli import main; main()",
                          "oee", "report", "--journal", str(path), "--day", "2026-03-02",
                          "--machine", "lathe"], check=False, capture_output=True, text=True)
    assert (out.returncode, out.stderr) == (
        1, "lampwatch: unknown machine 'lathe' (known: mill, press)\n")


def test_reasons_on_the_timeline():
    from lampwatch.timeline import MachineTimeline

    tl = MachineTimeline("press")
    for ts, state in ((0, "RUN"), (100, "IDLE"), (160, "STOP"), (400, "RUN"), (500, "STOP"),
                      (600, "RUN")):
        tl.add(Event(ts, "state", 7, "press", {"state": state}))
    tl.add(Event(700, "reason", None, "press", {"reason": "material", "start_s": 170,
                                                 "end_s": None}))       # whole stop 100-400
    tl.add(Event(710, "reason", None, "press", {"reason": "setup", "start_s": 300,
                                                 "end_s": 450}))        # overrides 300-400
    tl.add(Event(720, "reason", None, "press", {"reason": "other", "start_s": 50,
                                                 "end_s": 90}))         # RUN: no effect
    got = [(s.start, s.end, s.state, s.reason) for s in tl.intervals(700)]
    assert got == [(0, 100, "RUN", None), (100, 160, "IDLE", "material"),
                   (160, 300, "STOP", "material"), (300, 400, "STOP", "setup"),
                   (400, 500, "RUN", None), (500, 600, "STOP", None), (600, 700, "RUN", None)]


def test_table_fits_80_columns_in_line_order_with_separators():
    """Machines in the registry's order (not by name), counts with thousands separators,
    a long machine name cut to fit 80 columns; --wide has it all."""
    def result(name, good, ng):
        return oee.OEEResult(name, T0, T0 + 8 * H, all_time_s=8 * H, planned_s=8 * H,
                             unknown_s=600, unknown_planned_s=600, run_s=7 * H,
                             breakdown_s=1800, net_run_s=6 * H, fully_productive_s=5 * H,
                             good=good, ng=ng)
    from lampwatch.report.oee_report import Plant, Report, Row, format_table

    names = ("zeta-husker", "alpha-packing-line-bagger-7", "mill")
    results = [result(n, g, ng) for n, g, ng in zip(names, (1234567, 4747, 12), (4321, 39, 0))]
    rows = [Row(r.machine, r, True, "pcs") for r in results]
    rep = Report(T0, T0 + 8 * H, CAL, rows, Plant(rows))
    text = format_table(rep)
    assert text.splitlines() == [
        "OEE 2026-03-02T08:00:00+00:00 .. 2026-03-02T16:00:00+00:00",
        "",
        "machine             A      P      Q    OEE       good     NG  coverage",
        "zeta-husker     93.3%  85.7%  83.3%  66.7%  1,234,567  4,321     97.9%",
        "alpha-packing…  93.3%  85.7%  83.3%  66.7%      4,747     39     97.9%",
        "mill            93.3%  85.7%  83.3%  66.7%         12      0     97.9%",
        "all             93.3%  85.7%  83.3%  66.7%  1,239,326  4,360     97.9%",
        "",
        "six big losses and planned maintenance (minutes)",
        "machine         breakdown  setup   PM  minor  speed  defects  startup",
        "zeta-husker          30.0    0.0  0.0    0.0   60.0     60.0      0.0",
        "alpha-packing…       30.0    0.0  0.0    0.0   60.0     60.0      0.0",
        "mill                 30.0    0.0  0.0    0.0   60.0     60.0      0.0",
        "all                  90.0    0.0  0.0    0.0  180.0    180.0      0.0",
        "PM: planned maintenance; minor: minor stops; speed: reduced speed"]
    assert max(map(len, text.splitlines())) <= 80
    wide = format_table(rep, wide=True)
    assert "alpha-packing-line-bagger-7" in wide and "process defects" in wide
    assert wide.splitlines()[2].split() == ["machine", "A", "P", "Q", "OEE", "good", "NG",
                                            "planned", "h", "run", "h", "unknown", "h",
                                            "coverage"]


# --- the report's edge cases (issue 13) -----------------------------------------------------

def test_plant_row_over_machines_with_an_ideal_cycle_and_losses_that_add_up(shift_journal):
    path, _ = shift_journal
    events, last_rx = read_journal(path, T0, T0 + 8 * H)
    settings = {"press": MachineSettings(4.0, 60.0, "pcs"), "mill": MachineSettings(None, 60.0)}
    rep = build_report(events, last_rx, T0, T0 + 8 * H, calendar=CAL, settings=settings)
    press = next(r for r in rep.rows if r.machine == "press").data()
    plant = rep.plant.data()
    # P, Q, OEE of the plant are the press's: the mill has no ideal time to weigh by
    assert plant["left_out"] == ["mill"]
    for k in ("performance", "quality", "oee"):
        assert plant[k] == pytest.approx(press[k], rel=1e-12), k
    # availability over both machines
    assert plant["availability"] == pytest.approx(
        (press["run_s"] + 27000) / (27000 - 1680 + 27000), rel=1e-6)
    # every loss column of the plant row is the sum of the machines' shown values
    rows = [r.data()["losses"] for r in rep.rows]
    for k, total in plant["losses"].items():
        assert total == pytest.approx(sum(r[k] for r in rows if r[k] is not None)), k
    text = FORMATS["table"](rep)
    assert "plant P, Q, OEE: without mill (no ideal_cycle_s)" in text
    loss_rows = text.split("(minutes)\n")[1].splitlines()[1:4]
    cells = [line.split()[1:] for line in loss_rows]
    for col in range(7):
        shown = [float(c[col]) for c in cells[:2] if c[col] != "-"]
        assert float(cells[2][col]) == pytest.approx(sum(shown), abs=0.11), col


def test_startup_window_counts_startup_rejects(shift_journal):
    path, _ = shift_journal
    events, last_rx = read_journal(path, T0, T0 + 8 * H)
    rep = build_report(events, last_rx, T0, T0 + 8 * H, calendar=CAL, settings=SETTINGS,
                       startup_window_s=600)
    press = next(r.result for r in rep.rows if r.machine == "press")
    # the setup ended at 09:20; the press makes 1 NG a minute: 10 in the 10 min after it
    assert press.startup_ng == pytest.approx(10, abs=1)
    assert press.startup_reject_s == pytest.approx(4 * press.startup_ng)
    off = build_report(events, last_rx, T0, T0 + 8 * H, calendar=CAL, settings=SETTINGS)
    assert next(r.result for r in off.rows if r.machine == "press").startup_ng == 0


def test_performance_above_one_is_a_warning(shift_journal):
    path, _ = shift_journal
    events, last_rx = read_journal(path, T0, T0 + 8 * H)
    slow = {"press": MachineSettings(4.0, 60.0), "mill": MachineSettings(7.0, 60.0)}
    rep = build_report(events, last_rx, T0, T0 + 8 * H, calendar=CAL, settings=slow)
    assert rep.warnings == [
        ("mill: performance 116.7% is above 100%: its ideal_cycle_s is too slow, or its counts "
        "are doubled"),
        ("all: performance 102.3% is above 100%: its ideal_cycle_s is too slow, or its counts "
        "are doubled")]
    assert "warning: mill: performance 116.7% is above 100%" in FORMATS["table"](rep)


def test_no_performance_over_one_from_a_partial_cycle_early_in_the_shift(shift_journal):
    path, _ = shift_journal
    events, last_rx = read_journal(path, T0, T0 + 8 * H)
    for now in (T0 + 31, T0 + 45, T0 + 95):  # the mill runs at exactly its ideal rate
        rep = build_report(events, last_rx, T0, T0 + 8 * H, calendar=CAL, settings=SETTINGS,
                           now_s=now)
        mill = next(r.result for r in rep.rows if r.machine == "mill")
        assert mill.performance == pytest.approx(1.0, abs=1e-9), now


CONFIG = """
[collector]
udp_listen = false
journal = "{journal}"
[[nodes]]
id = 7
plant = "p"
line = "l"
machine = "press"
key = "{key}"
ideal_cycle_s = 4.0
heartbeat_s = 60
unit = "pcs"
[[nodes]]
id = 8
plant = "p"
line = "l"
machine = "mill"
key = "{key}"
ideal_cycle_s = 6.0
heartbeat_s = 60
unit = "kg"
[calendar]
time_zone = "UTC"
[[calendar.shifts]]
name = "A"
start = "08:00"
end = "16:00"
breaks = [{{ start = "12:00", end = "12:30" }}]
"""


def test_cli_day_coverage_is_against_planned_time_and_counts_outside_it_are_shown(
        shift_journal, tmp_path):
    path, _ = shift_journal
    cfg = tmp_path / "c.toml"
    cfg.write_text(CONFIG.format(journal=path, key="00" * 16))
    res = run_cli("--config", str(cfg), "--day", "2026-03-02")
    assert res.exception is None, res.output
    lines = res.output.splitlines()
    mill = next(x for x in lines if x.startswith("mill "))
    # 7.5 h planned, all of it seen: 100 %, not 7.5 / 24 (the node was not heard all day)
    assert mill.split()[-1] == "100.0%"
    # outside planned time: the break, and after 16:00 (the 16:00:30 heartbeat's other half)
    assert "mill: counted outside planned time: 305 good, 0 NG (left out)" in lines
    assert "press: counted outside planned time: 6 good, 0.5 NG (left out)" in lines
    assert "press: output in unknown time: 336 good, 28 NG (in Q, not in P)" in lines
    assert "plant output: 4,800 good, 399.5 NG pcs; 4,500 good, 0 NG kg" in lines  # line order


@pytest.mark.parametrize("now, which, window", [
    # at 02:00 the night shift that began at 22:00 yesterday is "today's night shift"
    ("2026-03-03T02:00", "N", ("2026-03-02T22:00", "2026-03-03T06:00")),
    ("2026-03-03T02:00", "current", ("2026-03-02T22:00", "2026-03-03T06:00")),
    ("2026-03-03T02:00", "today", ("2026-03-02T06:00", "2026-03-03T06:00")),
    # after it ended, N is still the last one, until tonight's begins
    ("2026-03-03T07:00", "N", ("2026-03-02T22:00", "2026-03-03T06:00")),
    ("2026-03-03T07:00", "today", ("2026-03-03T06:00", "2026-03-04T06:00")),
    ("2026-03-03T23:00", "N", ("2026-03-03T22:00", "2026-03-04T06:00")),
    # A at 10:00 is today's; B has not begun today: yesterday's
    ("2026-03-03T10:00", "A", ("2026-03-03T06:00", "2026-03-03T14:00")),
    ("2026-03-03T10:00", "B", ("2026-03-02T14:00", "2026-03-02T22:00")),
])
def test_shift_window_at_any_hour(now, which, window):
    cal = oee.Calendar("UTC", (oee.Shift("A", "06:00", "14:00"), oee.Shift("B", "14:00", "22:00"),
                               oee.Shift("N", "22:00", "06:00")))
    ts = datetime.fromisoformat(now).replace(tzinfo=timezone.utc).timestamp()
    got = shift_window(which, cal, ts)
    assert tuple(datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M")
                 for t in got) == window
    with pytest.raises(ReportError, match="no shift 'X' has started in the last week"):
        shift_window("X", cal, ts)
