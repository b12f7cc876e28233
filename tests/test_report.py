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
from lampwatch.report.oee_report import MachineSettings, ReportError, build_report, read_journal

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
               (4 * H + 30 * M, 8 * H + 1, (1, 0, 0, 0, 0))]
SILENT = (6 * H, 6 * H + 30 * M)  # the press's node is off Wi-Fi 14:00-14:30


def scripted_shift(journal_path):
    """Run both nodes through a Deriver into a real journal, as the collector would."""
    nodes = {PRESS: NodeConfig(PRESS, "press", 4.0), MILL: NodeConfig(MILL, "mill", 6.0)}
    d = Deriver(DeriveConfig(nodes=nodes, calendar=CAL))
    seqs = {PRESS: 0, MILL: 0}
    cum = {PRESS: [0, 0], MILL: [0, 0]}

    def send(j, node, body, up_s, delay=0.003):
        ftype = {Hello: T_HELLO, Lamp: T_LAMP, Heartbeat: T_HEARTBEAT}[type(body)]
        seq = seqs[node]
        seqs[node] += 1
        f = Frame(Header(ftype, node, 0xB007, seq, int(up_s * 1000)), body, b"")
        rx = T0 + up_s + delay
        events = d.on_frame(f, rx)
        j.commit([FrameRow(rx, "test", node, 0xB007, seq, ftype, int(up_s * 1000), b"")], events)

    with Journal(journal_path, sync="normal") as j:
        for node in (PRESS, MILL):
            send(j, node, Hello((0, 1, 0), "power_on", b"\0\0\0\0", False, False, 7, 60_000), 0)
        send(j, PRESS, Lamp((LE(G, 1, 0),)), 0)
        send(j, MILL, Lamp((LE(G, 1, 0),)), 0)
        changes = [(a, lamps) for a, _, lamps in PRESS_SPANS[1:]]
        prev = PRESS_SPANS[0][2]
        for t in range(30, 8 * H, 60):  # every minute at :30 a heartbeat; lamp frames between
            while changes and changes[0][0] < t:
                at, lamps = changes.pop(0)
                evs = tuple(LE(ch, lamps[ch], at * 1000) for ch in range(3)
                            if lamps[ch] != prev[ch])
                send(j, PRESS, Lamp(evs), at)
                prev = lamps
            if not SILENT[0] <= t < SILENT[1]:
                minute_run = _state_at(PRESS_SPANS, t - 30) == _state_at(PRESS_SPANS, t + 29) \
                    == (1, 0, 0, 0, 0)
                if minute_run:
                    cum[PRESS][0] += 12
                    cum[PRESS][1] += 1
                send(j, PRESS, Heartbeat(*cum[PRESS], prev), t)
            cum[MILL][0] += 10
            send(j, MILL, Heartbeat(*cum[MILL], (1, 0, 0, 0, 0)), t)
            j.commit(events=d.tick(T0 + t + 1))
        # the operator's reason for the 09:00 stop, entered on the board at 09:25: from a
        # minute into the stop, open-ended (end_s null: the whole stop)
        j.commit(events=[Event(T0 + 1 * H + 25 * M, "reason", None, "press", {
            "reason": "setup", "start_s": T0 + 1 * H + 60, "end_s": None, "by": "board"})])
        final = d.tick(T0 + 8 * H)
        j.commit(events=final)
    return cum, final


@pytest.fixture(scope="module")
def shift_journal(tmp_path_factory):
    path = tmp_path_factory.mktemp("journal") / "journal.sqlite"
    cum, final = scripted_shift(path)
    return path, cum, final


SETTINGS = {"press": MachineSettings(4.0, 60.0), "mill": MachineSettings(6.0, 60.0)}


def test_report_of_a_scripted_shift(shift_journal):
    path, cum, _ = shift_journal
    # press produced 12 good + 1 NG in each of 398 fully running minutes:
    # 60 (08-09) + 40 (09:20-10) + 118 (10:02-12) + 90 (12:30-14) + 90 (14:30-16)
    assert cum[PRESS] == [12 * 398, 398]
    events, last_rx = read_journal(path, T0, T0 + 8 * H)
    rep = build_report(events, last_rx, T0, T0 + 8 * H, calendar=CAL, settings=SETTINGS)
    assert [r.machine for r in rep.rows] == ["press", "mill"]  # the registry's (line) order
    rows = {r.machine: r.result for r in rep.rows}
    press, mill = rows["press"], rows["mill"]
    # planned: 8 h - 30 min break = 27000 s. press: last heard 13:59:30 (heartbeat), back
    # 14:30:30 -> 1860 s UNKNOWN; run = 3600 + 2400 + 120 (minor) + 7080 + 5370 + 5370 = 23940
    assert press.planned_s == 27000
    assert press.unknown_s == pytest.approx(1860, abs=0.01)
    assert press.run_s == pytest.approx(23940, abs=0.01)
    assert press.setup_s == pytest.approx(1200, abs=0.01)  # the operator's reason
    # the node's times are 3 ms late (the fastest frame's delay cannot be observed), so
    # 3 ms of the break's OFF fall into planned time: a breakdown of 3 ms
    assert press.breakdown_s == pytest.approx(0.003, abs=1e-4)
    assert press.minor_stop_s == pytest.approx(120, abs=0.01)
    assert (press.good, press.ng) == (4776, 398)
    covered = 27000 - 1860  # 25140 = run 23940 + setup 1200
    assert press.availability == pytest.approx(23940 / covered, rel=1e-6)
    assert press.performance == pytest.approx(4 * 5174 / 23940, rel=1e-6)  # 20696 / 23940
    assert press.quality == pytest.approx(4776 / 5174)
    assert press.oee == pytest.approx(4 * 4776 / covered, rel=1e-6)  # 19104 / 25140
    assert press.coverage == pytest.approx(1 - 1860 / 28800, rel=1e-6)
    assert press.reduced_speed_s == pytest.approx(23940 - 120 - 20696, abs=0.01)  # 3124
    assert press.process_defect_s == pytest.approx(4 * 398)
    # mill: RUN all shift, 10 good a minute; the 30 heartbeats in the break are excluded
    assert (mill.good, mill.excluded_good) == (4500, 300)
    assert (mill.availability, mill.quality) == (pytest.approx(1.0), 1.0)
    assert mill.performance == pytest.approx(6 * 4500 / 27000)
    # plant: sums of times and ideal output, never averaged percentages
    plant = rep.plant.result
    assert plant.availability == pytest.approx((23940 + 27000) / (covered + 27000), rel=1e-6)
    assert plant.oee == pytest.approx((19104 + 27000) / (covered + 27000), rel=1e-6)


def test_live_final_oee_event_matches_the_report(shift_journal):
    _, _, final = shift_journal
    # the live deriver had no reason yet at shift end: the stop was still a breakdown there
    live = {e.machine: e.data for e in final if e.kind == "oee"}
    assert live["press"]["final"] is True
    assert live["press"]["losses"]["breakdown_s"] == pytest.approx(1200, abs=0.01)
    assert live["press"]["availability"] == pytest.approx(23940 / 25140, rel=1e-6)
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
    path, _, _ = shift_journal
    events, last_rx = read_journal(path, T0, T0 + H)
    with pytest.raises(ReportError, match=r"unknown machine 'lathe' \(known: mill, press\)"):
        build_report(events, last_rx, T0, T0 + H, machine="lathe")


def run_cli(*args):
    return CliRunner().invoke(cli, ["oee", "report", *args], standalone_mode=False)


def test_cli_formats(shift_journal):
    path, _, _ = shift_journal
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
    assert rows[1]["good"] == "4776.0" and rows[1]["oee"] == ""
    res = run_cli(*base)
    assert "six big losses (minutes)" in res.output
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
    path, _, _ = shift_journal
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
    from lampwatch.report.oee_report import Report, Row, format_table

    names = ("zeta-husker", "alpha-packing-line-bagger-7", "mill")
    results = [result(n, g, ng) for n, g, ng in zip(names, (1234567, 4747, 12), (4321, 39, 0))]
    rows = [Row(r.machine, r, True) for r in results]
    rep = Report(T0, T0 + 8 * H, CAL, rows, Row("all", oee.rollup(results, "all"), True))
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
        "six big losses (minutes)",
        "machine         breakdown  setup  minor stops  speed loss  defects  startup",
        "zeta-husker          30.0    0.0          0.0        60.0     60.0      0.0",
        "alpha-packing…       30.0    0.0          0.0        60.0     60.0      0.0",
        "mill                 30.0    0.0          0.0        60.0     60.0      0.0",
        "all                  90.0    0.0          0.0       180.0    180.0      0.0"]
    assert max(map(len, text.splitlines())) <= 80
    wide = format_table(rep, wide=True)
    assert "alpha-packing-line-bagger-7" in wide and "process defects" in wide
    assert wide.splitlines()[2].split() == ["machine", "A", "P", "Q", "OEE", "good", "NG",
                                            "planned", "h", "run", "h", "unknown", "h",
                                            "coverage"]
