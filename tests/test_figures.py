"""The figures both sides trust (issue 13), as scenarios through the collector's real path.

Each test drives nodes that behave like the firmware (tests/plantsim.py: the firmware's codec
and outbox ring) through `CollectorRuntime` with an injected wall and monotonic clock, into
a real journal, and reads the figures through the real `lampwatch oee report`. Each states
what the machine really did and compares the figure with it.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner
from lampwatch.cli import cli
from lampwatch.cli import main as lampwatch_main
from lampwatch.events import Event
from lampwatch.influx.points import event_lines, placements_from
from lampwatch.journal import Journal
from plantsim import G, H, M, Machine, Plant, R, Y, at

REPO = Path(__file__).resolve().parent.parent
SHIFT_A = """
[[calendar.shifts]]
name = "A"
start = "06:00"
end = "14:00"
"""
GREEN, RED, YELLOW = {G: 1}, {R: 1}, {Y: 1}


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat()


def report(plant: Plant, start: float, end: float, *extra: str) -> dict:
    """`lampwatch oee report --config ... --format json` over [start, end)."""
    res = CliRunner().invoke(cli, ["oee", "report", "--config", str(plant.config_path),
                                   "--from", iso(start), "--to", iso(end), "--format", "json",
                                   *extra], standalone_mode=False)
    assert res.exception is None, res.output
    return json.loads(res.output)


def machine_row(rep: dict, name: str) -> dict:
    return next(m for m in rep["machines"] if m["machine"] == name)


def events(plant: Plant, kind: str | None = None) -> list[Event]:
    """The journal's events (of `kind`), in id order."""
    with Journal(plant.journal_path) as j:
        rows = j.events_after(0, limit=10_000_000)
    return [Event.from_row(r.ts_s, r.kind, r.node_id, r.machine, r.data) for r in rows
            if kind is None or r.kind == kind]


@pytest.fixture
def plant(tmp_path):
    made = []

    def make(nodes, shifts=SHIFT_A, oee=""):
        p = Plant(tmp_path, nodes, shifts, oee)
        made.append(p)
        return p
    yield make
    for p in made:
        p.close()


# --- a machine at its ideal rate across a 1 h gap: P = 100 % ------------------------------

def test_a_machine_at_its_ideal_rate_across_a_one_hour_wifi_gap_has_p_100(plant):
    # Truth: the press ran all shift, exactly at its ideal rate (2 s a unit: 14,400 units
    # in 06:00-14:00). Its node lost Wi-Fi 09:00-10:00; the collector ran throughout.
    p = plant({7: {"machine": "press", "ideal_s": 2.0}})
    truth = Machine([(at("05:00"), GREEN)], ideal_s=2.0)
    node = p.node(7, truth, boot_at=at("04:59"))
    node.link_down.append((at("09:00"), at("10:00")))
    p.start_collector()
    p.run(at("14:05"))
    rep = report(p, at("06:00"), at("14:00"))
    press = machine_row(rep, "press")
    assert truth.units(at("14:00")) - truth.units(at("06:00")) == 14_400
    # P on output made in known run time: exactly the ideal rate
    assert press["performance"] == pytest.approx(1.0, abs=2e-4)
    assert (press["availability"], press["quality"]) == (1.0, 1.0)
    assert press["oee"] == pytest.approx(1.0, abs=2e-4)
    # The gap is unknown time: from last heard + 30 s until the oldest heartbeat the node's
    # 48-frame outbox still held when the link came back (its newest 8 min)
    unknown_min = (1 - press["planned_coverage"]) * 480
    assert 45 < unknown_min < 60
    # every unit is counted: in known time, or as output in unknown time
    assert press["good"] + press["unknown_good"] == pytest.approx(14_400, abs=1)
    assert press["unknown_good"] == pytest.approx(unknown_min * 30, abs=16)


# --- a 2 h collector outage is UNKNOWN -----------------------------------------------------

def test_a_two_hour_collector_outage_is_unknown_not_the_last_state(plant):
    # Truth: the press ran all shift at 90 % of its ideal rate, one NG in 50. The collector
    # was down 09:00-11:00 (stopped, then started again on the same journal). The node kept
    # counting; its outbox kept its newest 48 frames (8 min of heartbeats) for the restart.
    p = plant({7: {"machine": "press", "ideal_s": 2.0}})
    truth = Machine([(at("05:00"), GREEN)], ideal_s=2.0, speed=0.9, ng_every=50)
    p.node(7, truth, boot_at=at("04:59"))
    p.start_collector()
    p.run(at("14:05"), outages=[(at("09:00"), at("11:00"))])
    assert p.lost > 0  # frames sent while it was down were lost and sent again
    rep = report(p, at("06:00"), at("14:00"))
    press = machine_row(rep, "press")
    # coverage about 75 %: the 2 h are unknown (less the outbox's last 8 min), not RUN
    assert press["planned_coverage"] == pytest.approx(0.75, abs=0.02)
    assert press["planned_coverage"] < 0.77
    unknown = [e for e in events(p, "state") if e.data["state"] == "UNKNOWN"]
    assert [round(e.ts_s - at("09:00")) for e in unknown] == [20]  # last heard 08:59:50 + 30 s
    # over the known time: A as it really was, P at its real speed, Q its real quality
    assert press["availability"] == 1.0
    assert press["performance"] == pytest.approx(0.9, abs=0.002)
    assert press["quality"] == pytest.approx(0.98, abs=0.001)
    made = sum(truth.counts(at("14:00"))) - sum(truth.counts(at("06:00")))
    assert sum(press[k] for k in ("good", "ng", "unknown_good", "unknown_ng")) == \
        pytest.approx(made, abs=2)


def test_a_stop_inside_a_collector_outage_is_placed_where_it_happened(plant):
    # Truth: as above, but the press broke down 09:30-10:30 (green off, red on), inside the
    # collector's outage 09:00-11:00: A = 420 / 480. The node's outbox kept both lamp
    # changes (it drops heartbeats first); resent at the restart they end UNKNOWN at 09:30.
    p = plant({7: {"machine": "press", "ideal_s": 2.0}})
    truth = Machine([(at("05:00"), GREEN), (at("09:30"), {G: 0, R: 1}),
                     (at("10:30"), {G: 1, R: 0})], ideal_s=2.0, speed=0.9)
    p.node(7, truth, boot_at=at("04:59"))
    p.start_collector()
    p.run(at("14:05"), outages=[(at("09:00"), at("11:00"))])
    press = machine_row(report(p, at("06:00"), at("14:00")), "press")
    assert press["losses"]["breakdown_s"] == pytest.approx(3600, abs=1)
    unknown_s = 30 * M - 20  # 09:00:20 until the resent stop at 09:30
    assert press["planned_coverage"] == pytest.approx(1 - unknown_s / (8 * H), abs=1e-4)
    known = 8 * H - unknown_s
    assert press["availability"] == pytest.approx((known - 3600) / known, abs=1e-4)
    assert press["performance"] == pytest.approx(0.9, abs=0.002)
    states = [(e.data["state"], iso(e.ts_s)[11:19]) for e in events(p, "state")
              if e.ts_s >= at("09:00")]
    assert states == [("UNKNOWN", "09:00:20"), ("STOP", "09:30:00"), ("RUN", "10:30:00")]


# --- lamp changes: the all-off moment between two lamps is no stop -------------------------

def test_a_half_second_lamp_change_gap_is_no_breakdown(plant):
    # Truth: the press ran, except: 07:00-07:10 and 12:00-12:07 broke down (red), 10:00-10:02
    # waited for material (yellow), 11:00-11:03 was switched off (all dark). Its tower lamp
    # changes colour through 0.45 s with every lamp off; at 09:00 green blinked off 0.4 s.
    p = plant({7: {"machine": "press", "ideal_s": 2.0,
                   "lamp_map": 'red = "STOP:breakdown", yellow = "IDLE", green = "RUN"'}})
    gap = 0.45
    changes = [(at("05:00"), GREEN)]
    for start, end, lamp in (("07:00", "07:10", R), ("10:00", "10:02", Y), ("12:00", "12:07", R)):
        changes += [(at(start), {G: 0}), (at(start) + gap, {lamp: 1}),
                    (at(end), {lamp: 0}), (at(end) + gap, {G: 1})]
    changes += [(at("09:00"), {G: 0}), (at("09:00") + 0.4, {G: 1}),
                (at("11:00"), {G: 0}), (at("11:03"), {G: 1})]
    truth = Machine(changes, ideal_s=2.0, speed=0.9)
    p.node(7, truth, boot_at=at("04:59"))
    p.start_collector()
    p.run(at("14:05"))
    press = machine_row(report(p, at("06:00"), at("14:00")), "press")
    losses = press["losses"]
    # the stops began when green went off and ended when their lamp went off
    assert losses["breakdown_s"] == pytest.approx(600 + 420, abs=0.01)
    assert losses["minor_stop_s"] == pytest.approx(120 + 180, abs=0.01)  # idle, switched off
    # A: only the 17 min of real breakdowns are lost
    assert press["availability"] == pytest.approx((8 * H - 1020) / (8 * H), abs=1e-6)
    states = [(e.data["state"], iso(e.ts_s)[11:21]) for e in events(p, "state")
              if e.ts_s >= at("06:00")]
    assert states == [("STOP", "07:00:00.0"), ("RUN", "07:10:00.0"), ("IDLE", "10:00:00.0"),
                      ("RUN", "10:02:00.0"), ("OFF", "11:00:00.0"), ("RUN", "11:03:00.0"),
                      ("STOP", "12:00:00.0"), ("RUN", "12:07:00.0")]
    assert all(e.data.get("reason") == "breakdown" for e in events(p, "state")
               if e.data["state"] == "STOP")


# --- host clock steps: nothing twice, nothing back in time, one final point per shift -------

SHIFTS_AB = SHIFT_A + """
[[calendar.shifts]]
name = "B"
start = "14:00"
end = "16:00"
"""
FIGURES = ("availability", "performance", "quality", "oee", "coverage", "planned_coverage")


def test_host_clock_steps_back_and_forward(plant):
    # Truth: the press ran all day at 90 % of its ideal rate. The host's wall clock went
    # back 1 h at 09:00 (true time) and forward 1 h at 11:00, back 1 h at 14:10, just after
    # shift A ended, and forward 1 h at 15:40. The monotonic clock went on.
    p = plant({7: {"machine": "press", "ideal_s": 2.0}}, shifts=SHIFTS_AB)
    truth = Machine([(at("05:00"), GREEN)], ideal_s=2.0, speed=0.9)
    node = p.node(7, truth, boot_at=at("04:59"))
    p.start_collector()
    p.run(at("17:00"), steps=[(at("09:00"), -H), (at("11:00"), H), (at("14:10"), -H),
                              (at("15:40"), H)])
    with Journal(p.journal_path) as j:
        frames = j.frames_after(0, limit=1_000_000)
    # every frame the node sent is in the journal, once
    assert sorted(f.seq for f in frames) == node.built
    assert all(a.rx_s <= b.rx_s for a, b in itertools.pairwise(frames))  # receive time too
    evs = events(p)
    # no event goes back in time: states, counts, OEE points and clock steps each in order
    for kind in ("state", "count", "oee", "clock"):
        times = [e.ts_s for e in evs if e.kind == kind]
        assert times == sorted(times), kind
    steps = [(e.data["step_s"], iso(e.ts_s)[11:19]) for e in evs if e.kind == "clock"]
    assert steps == [(-3600, "09:00:00"), (3600, "10:00:00"), (-3600, "14:10:00"),
                     (3600, "14:40:00")]  # event time: paused 1 h, then jumped the hour
    # no count lost or doubled, none re-stamped out of order (above)
    assert sum(e.data["good"] for e in evs if e.kind == "count") == truth.units(at("17:00"))
    # every figure of every live point in 0..1, and one final point per shift
    oee_events = [e for e in evs if e.kind == "oee"]
    for e in oee_events:
        for k in FIGURES:
            assert e.data[k] is None or 0 <= e.data[k] <= 1, (iso(e.ts_s), k, e.data[k])
    finals = Counter((e.data["shift"], e.data["shift_start_s"]) for e in oee_events
                     if e.data["final"])
    assert finals == {("A", at("06:00")): 1, ("B", at("14:00")): 1}
    # ... also in the line protocol the forwarder writes to InfluxDB: one final point per
    # shift, and no point that another overwrites with a different value
    lines = event_lines([e for e in evs], placements_from(p.config.nodes.values()))
    final_lines = [x for x in lines if x.startswith("oee,") and "final=true" in x]
    assert len(final_lines) == 2
    by_key = defaultdict(set)
    for x in lines:
        series, fields, ts = x.rsplit(" ", 2)
        by_key[series, ts].add(fields)
    assert all(len(v) == 1 for v in by_key.values())
    # the report of shift A: in 0..1, P the press's real speed over the time it is known
    rep = report(p, at("06:00"), at("14:00"))
    press = machine_row(rep, "press")
    for k in FIGURES:
        assert 0 <= press[k] <= 1, k
    assert press["availability"] == 1.0
    assert press["performance"] == pytest.approx(0.9, abs=0.005)
    # the skipped hour (10:00-11:00 on the wall clock) is unknown time
    assert press["planned_coverage"] == pytest.approx(7 / 8, abs=0.002)
    # the hour the clock stood still (09:00-10:00 true time: 1620 units) is output in unknown
    # time, with at most two heartbeats' output (10 s: 4.5 units) around each step
    assert 1620 <= press["unknown_good"] <= 1620 + 2 * 2 * 4.5


# --- the source study's logbook: its own figures, with the default policy -------------------

def calc(capsys, *args: str) -> dict:
    """The TOTAL of `lampwatch oee calc --json ARGS`, through the CLI's entry point."""
    try:
        lampwatch_main(["oee", "calc", "--json", *args])
    except SystemExit as exc:
        assert exc.code in (0, None)
    return json.loads(capsys.readouterr().out)["total"]


def test_the_studys_logbook_gives_its_figures_with_the_default_policy(capsys):
    # Truth: the study (12 weeks of a rice-milling unit) reports 65,880 min available,
    # 1,905 PM, 1,890 setup, 960 breakdown, and A 92.78 %, P 87.12 %, Q 70.54 %, OEE 57.02 %,
    # counting planned maintenance against availability.
    study = str(REPO / "examples" / "logbook-study.csv")
    total = calc(capsys, study)
    assert total == {"period": "TOTAL", "run_min": 65880 - 1905 - 1890 - 960,
                     "availability": 0.9278, "performance": 0.8712, "quality": 0.7054,
                     "oee": 0.5702}
    # docs/oee.md shows the same
    docs = (REPO / "docs" / "oee.md").read_text(encoding="utf-8")
    block = docs.split("<!-- study-example:")[1].split("<!-- /study-example -->")[0]
    line = next(x for x in block.splitlines() if x.startswith('"total": '))
    assert json.loads("{" + line + "}")["total"] == total
    # the other policy gives what the engine gave before it was a stated choice
    assert calc(capsys, "--pm", "planned-stop", study)["availability"] == 0.9555
