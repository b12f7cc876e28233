"""`lampwatch oee reconcile` (issue 18): a scenario plant's journal beside a logbook of the same
days. The plant runs through the collector's real path (tests/plantsim.py); the logbook is
written from what the machine really did, then three differences are planted in it. Each test
states the truth from the scenario and checks what reconcile says against it."""

from __future__ import annotations

import json
from datetime import date

import pytest
from click.testing import CliRunner
from lampwatch.cli import cli
from lampwatch.report.logbook import parse_logbook
from lampwatch.report.reconcile import Figures, ReconcileError, Tolerances, flags
from plantsim import DAY, G, H, M, Machine, Plant, R, Y, at

B = 3  # the blue lamp: planned maintenance
MON, TUE = DAY, DAY + 24 * H
SHIFTS = """
[[calendar.shifts]]
name = "pagi"
start = "06:00"
end = "10:00"
[[calendar.shifts]]
name = "siang"
start = "10:00"
end = "14:00"
[[calendar.shifts]]
name = "sore"
start = "14:00"
end = "18:00"
days = ["tue"]
"""
LAMP_MAP = 'red = "STOP", yellow = "STOP:setup", blue = "STOP:planned_maintenance", green = "RUN"'
IDEAL_S, SPEED, NG_EVERY = 2.0, 0.9, 50


def stop(start: str, end: str, lamp: int, day: float) -> list:
    """Green off and `lamp` on over [start, end) of `day`."""
    return [(at(start, day), {G: 0, lamp: 1}), (at(end, day), {lamp: 0, G: 1})]


# What the huller really did: on from 05:55 to 14:00 each day, green (running at 90 % of its
# ideal rate, one NG in 50) except
#   Mon pagi  06:00-06:20 setup (yellow); 08:00-08:40 a breakdown (red) nobody wrote down
#   Mon siang 11:00-11:30 a breakdown (red)
#   Tue pagi  06:00-06:20 setup (yellow)
#   Tue siang 12:00-12:30 planned maintenance (blue)
#   Tue sore  ran throughout (until 18:00), but its node was out of Wi-Fi reach 15:00-16:00
CHANGES = [(at("05:55", MON), {G: 1}), *stop("06:00", "06:20", Y, MON),
           *stop("08:00", "08:40", R, MON), *stop("11:00", "11:30", R, MON),
           (at("14:00", MON), {G: 0}),
           (at("05:55", TUE), {G: 1}), *stop("06:00", "06:20", Y, TUE),
           *stop("12:00", "12:30", B, TUE), (at("18:00", TUE), {G: 0})]
WIFI_GAP = (at("15:00", TUE), at("16:00", TUE))
# (date, shift, start, end, pm, setup, breakdown minutes) as they really were
TRUTH = [(MON, "pagi", "06:00", "10:00", 0, 20, 40), (MON, "siang", "10:00", "14:00", 0, 0, 30),
         (TUE, "pagi", "06:00", "10:00", 0, 20, 0), (TUE, "siang", "10:00", "14:00", 30, 0, 0),
         (TUE, "sore", "14:00", "18:00", 0, 0, 0)]


@pytest.fixture(scope="module")
def huller(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reconcile")
    plant = Plant(tmp, {7: {"machine": "huller", "ideal_s": IDEAL_S, "lamp_map": LAMP_MAP}},
                  SHIFTS)
    truth = Machine(CHANGES, ideal_s=IDEAL_S, speed=SPEED, ng_every=NG_EVERY)
    node = plant.node(7, truth, boot_at=at("05:50", MON))
    node.link_down.append(WIFI_GAP)
    plant.start_collector()
    plant.run(at("14:05", MON))
    plant.run(at("05:50", TUE), dt=2.0)  # the night: lamps dark, heartbeats only
    plant.run(at("18:05", TUE))
    yield plant, truth, tmp
    plant.close()


def true_rows(truth: Machine) -> list[dict]:
    """The logbook a careful clerk would keep: every figure as it really was."""
    rows = []
    for day, shift, start, end, pm, setup, breakdown in TRUTH:
        a, b = at(start, day), at(end, day)
        good0, ng0 = truth.counts(a)
        good1, ng1 = truth.counts(b)
        rows.append({"period": f"{shift} {date.fromtimestamp(day + H)}",
                     "date": str(date.fromtimestamp(day + H)), "shift": shift,
                     "available_min": 240, "pm_min": pm, "setup_min": setup,
                     "breakdown_min": breakdown, "processed": (good1 + ng1) - (good0 + ng0),
                     "good": good1 - good0, "ideal_cycle_s": IDEAL_S,
                     "run_min": truth.run_s(a, b) / M})
    return rows


def write_logbook(path, rows) -> None:
    cols = ("period", "date", "shift", "available_min", "pm_min", "setup_min",
            "breakdown_min", "processed", "good", "ideal_cycle_s")
    path.write_text("\n".join([",".join(cols)] + [
        ",".join(str(r[c]) for c in cols) for r in rows]) + "\n")


def planted(truth: Machine) -> list[dict]:
    rows = true_rows(truth)
    rows[0]["breakdown_min"] = 0  # Mon pagi: the 40 min red stop is not in the logbook
    rows[2]["breakdown_min"] = 45  # Tue pagi: a breakdown while the lamp was green all along
    rows[3]["processed"] = round(rows[3]["processed"] * 1.05)  # Tue siang: output 5 % high
    rows[3]["good"] = round(rows[3]["good"] * 1.05)
    return rows


def run(*args: str) -> str:
    res = CliRunner().invoke(cli, ["oee", "reconcile", *args], standalone_mode=False)
    assert res.exception is None, res.output
    return res.output


def test_the_scenario_is_what_the_logbook_says(huller):
    # The truth the test's logbook is written from: run time is available less downtime.
    _, truth, _ = huller
    for r in true_rows(truth):
        down = r["pm_min"] + r["setup_min"] + r["breakdown_min"]
        assert r["run_min"] == pytest.approx(240 - down, abs=1e-9)
        assert r["processed"] == pytest.approx(r["run_min"] * M * SPEED / IDEAL_S, abs=1)


def test_every_planted_difference_is_flagged_and_nothing_else(huller):
    plant, truth, tmp = huller
    book = tmp / "planted.csv"
    rows = planted(truth)
    write_logbook(book, rows)
    rep = json.loads(run("--logbook", str(book), "--config", str(plant.config_path),
                         "--format", "json"))
    got = {(p["date"], p["shift"]): p for p in rep["periods"]}
    assert len(got) == 5 and all(p["matched"] for p in got.values())
    causes = {k: [f["cause"] for f in p["flags"]] for k, p in got.items()}
    assert causes == {("2026-03-02", "pagi"): ["unrecorded_stop"],
                      ("2026-03-02", "siang"): [],
                      ("2026-03-03", "pagi"): ["logbook_down_running"],
                      ("2026-03-03", "siang"): ["output_mismatch"],
                      ("2026-03-03", "sore"): ["sensor_gap"]}
    amount = {k: p["flags"][0]["amount"] for k, p in got.items() if p["flags"]}
    assert amount[("2026-03-02", "pagi")] == pytest.approx(40, abs=0.5)  # the red stop
    assert amount[("2026-03-03", "pagi")] == pytest.approx(45, abs=0.5)  # green all along
    assert amount[("2026-03-03", "siang")] == pytest.approx(1 / 1.05 - 1, abs=0.002)
    mon = got[("2026-03-02", "pagi")]
    assert mon["sensor"]["unrecorded_min"] == pytest.approx(40, abs=0.5)
    # the sensor's side is what the machine really did, shift by shift
    for (day, shift, start, end, pm, setup, breakdown), r in zip(TRUTH, true_rows(truth)):
        s = got[(r["date"], shift)]["sensor"]
        unknown_min = (1 - s["coverage"]) * 240
        assert s["run_min"] + unknown_min == pytest.approx(r["run_min"], abs=0.1)
        assert (s["pm_min"], s["setup_min"], s["breakdown_min"]) == pytest.approx(
            (pm, setup, breakdown), abs=0.1)
        assert s["good"] + s["ng"] == pytest.approx(r["processed"], abs=2)
        if shift == "sore":  # the gap: from last heard + 30 s until the outbox's oldest frame
            assert 45 < unknown_min < 60
            assert got[(r["date"], shift)]["flags"][0]["amount"] == pytest.approx(unknown_min)
        else:
            assert s["coverage"] == pytest.approx(1.0)
        assert s["availability"] == pytest.approx((r["run_min"] - unknown_min)
                                                  / (240 - unknown_min), abs=1e-3)


def test_a_true_logbook_agrees_everywhere(huller):
    plant, truth, tmp = huller
    book = tmp / "true.csv"
    write_logbook(book, true_rows(truth))
    rep = json.loads(run("--logbook", str(book), "--config", str(plant.config_path),
                         "--format", "json"))
    # only the Wi-Fi gap, which is the sensor's to own
    assert [[f["cause"] for f in p["flags"]] for p in rep["periods"]] == [
        [], [], [], [], ["sensor_gap"]]
    assert rep["unlogged"] == []


def test_the_table_fits_80_columns_in_both_languages(huller):
    plant, truth, tmp = huller
    book = tmp / "planted.csv"
    write_logbook(book, planted(truth))
    args = ("--logbook", str(book), "--config", str(plant.config_path))
    en, id_ = run(*args), run(*args, "--lang", "id")
    for text in (en, id_):
        assert max(map(len, text.splitlines())) <= 80, text
    assert "unrecorded stop: the sensor saw 40 min more downtime" in en
    assert "henti tak tercatat: sensor melihat 40 menit henti" in id_
    assert "Senin, 2 Mar 2026" in id_ and "Mon 2 Mar 2026" in en
    assert en.count("agrees within the tolerances") == 1
    assert "sensor gap: 5" in en  # 50-odd minutes of the sore shift unknown
    wide = run(*args, "--wide").splitlines()
    assert [line.split("  ")[-1].strip() for line in wide[-5:]] == [
        "unrecorded stop", "=", "logbook downtime, running", "output", "sensor gap"]
    assert wide[-5].split()[:8] == ["huller", "2026-03-02", "pagi", "2", "240/240", "220/180",
                                    "20/60", "40"]
    csv_text = run(*args, "--format", "csv")
    assert csv_text.splitlines()[1].endswith("unrecorded_stop:" + format(
        json.loads(run(*args, "--format", "json"))["periods"][0]["flags"][0]["amount"], ".4g"))


def test_shift_window_and_unmatched_rows_are_listed(huller):
    plant, truth, tmp = huller
    rows = true_rows(truth)
    rows[1]["shift"] = "malam"  # no such shift in the calendar
    book = tmp / "unmatched.csv"
    write_logbook(book, rows)
    out = " ".join(run("--logbook", str(book), "--config", str(plant.config_path)).split())
    assert "logbook row 3 (siang 2026-03-02) not matched: the calendar has no shift malam " \
           "on Mon 2 Mar 2026" in out
    assert "huller: shift siang on Mon 2 Mar 2026 has sensor data but no logbook row" in out
    rep = json.loads(run("--logbook", str(book), "--config", str(plant.config_path),
                         "--from", "2026-03-03", "--to", "2026-03-04", "--format", "json"))
    assert [(p["date"], p["shift"]) for p in rep["periods"]] == [
        ("2026-03-03", "pagi"), ("2026-03-03", "siang"), ("2026-03-03", "sore")]


def test_two_rows_for_one_shift_is_a_one_line_error(huller, tmp_path):
    plant, truth, _ = huller
    rows = true_rows(truth)
    book = tmp_path / "twice.csv"
    write_logbook(book, rows + rows[:1])
    res = CliRunner().invoke(cli, ["oee", "reconcile", "--logbook", str(book), "--config",
                                   str(plant.config_path)], standalone_mode=False)
    assert isinstance(res.exception, ReconcileError)
    assert str(res.exception) == "logbook rows 2 and 7 are both huller, shift pagi on 2026-03-02"


def test_bad_date_names_row_and_column():
    data = b"period,date,shift,available_min,pm_min,setup_min,breakdown_min,processed,good," \
           b"ideal_cycle_s\np1,02/03/2026,pagi,240,0,0,0,10,10,2\n"
    with pytest.raises(Exception, match=r"x.csv: row 2, column date: '02/03/2026' is not a "
                                        r"date like 2026-03-02"):
        parse_logbook(data, "x.csv")


# --- the flag rules on their own (exact figures) --------------------------------------------

def figs(run_min, pm=0.0, setup=0.0, breakdown=0.0, good=1000.0, ng=0.0, coverage=None,
         planned=240.0):
    return Figures(planned, run_min, pm, setup, breakdown, None, good, ng, coverage=coverage)


@pytest.mark.parametrize("log, sensor, expected", [
    (figs(220, setup=20), figs(221, setup=19, good=1015, coverage=1.0), []),
    (figs(220, setup=20), figs(200, setup=20, breakdown=20, coverage=1.0),
     [("unrecorded_stop", 20)]),
    (figs(200, breakdown=40), figs(240, coverage=1.0), [("logbook_down_running", 40)]),
    # the logbook's downtime the sensor did not see, but in time it knows nothing of: a gap
    (figs(200, breakdown=40), figs(200, coverage=200 / 240), [("sensor_gap", 40)]),
    (figs(240, good=1000), figs(240, good=970, ng=0, coverage=1.0),
     [("output_mismatch", -0.03)]),
    # the same output in total, but 2.5 % of the logbook's good counted as NG
    (figs(240, good=1000), figs(240, good=975, ng=25, coverage=1.0),
     [("output_mismatch", -0.025)]),
    (figs(240, good=1000), figs(240, good=980, ng=20, coverage=1.0), []),  # at tolerance
    (figs(240, planned=240), figs(210, planned=210, coverage=1.0), [("planned_time", 30)]),
])
def test_flag_rules(log, sensor, expected):
    got = [(f.cause, round(f.amount, 6)) for f in flags(log, sensor, Tolerances())]
    assert got == [(c, round(a, 6)) for c, a in expected]


def test_rows_that_cannot_be_matched_are_listed_with_the_reason():
    from lampwatch import oee
    from lampwatch.report.logbook import Period
    from lampwatch.report.oee_report import MachineSettings
    from lampwatch.report.reconcile import reconcile
    from lampwatch.report.reconcile_tables import format_table

    cal = oee.Calendar("UTC", (oee.Shift("pagi", "06:00", "10:00"),))
    day = date(2026, 3, 2)
    rows = [Period("Mon", 240, 0, 0, 0, 10, 10, 2.0, row=2),
            Period("Mon", 240, 0, 0, 0, 10, 10, 2.0, row=3, date=day, shift="malam"),
            Period("Mon", 240, 0, 0, 0, 10, 10, 2.0, row=4, date=day, shift="pagi",
                   machine="sorter")]
    rec = reconcile(rows, [], {}, calendar=cal, settings={"huller": MachineSettings(2.0)})
    assert [(m.period.row, m.machine, m.why) for m in rec.matches] == [
        (2, "huller", "no_columns"), (3, "huller", "no_shift"), (4, "sorter", "no_machine")]
    assert (rec.start, rec.end) == cal.day(day)  # the logbook's day, not 1970
    text = " ".join(format_table(rec).split())
    assert "Logbook and sensor, 2 Mar 2026 00:00 .. 3 Mar 2026 00:00" in text
    assert "no logbook period in this window" in text
    assert "logbook row 2 (Mon) not matched: it has no date and shift" in text
    assert "logbook row 4 (Mon) not matched: no machine sorter in the config" in text
    two = {"huller": MachineSettings(2.0), "sorter": MachineSettings(1.0)}
    with pytest.raises(ReconcileError, match="logbook row 2 names no machine and the config "
                                             "has 2 .huller, sorter.: add a machine column "
                                             "or give --machine"):
        reconcile(rows[:1], [], {}, calendar=cal, settings=two)
