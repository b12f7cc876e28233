"""Rollups: the report read through them gives the figures of the report computed from the
events alone, on a generated plant journal (bench/report.py's) and the scripted shift."""

import json
import random
import sqlite3
import sys
import time
from pathlib import Path

import pytest
from lampwatch import oee
from lampwatch.journal import Journal
from lampwatch.report import oee_report as r
from lampwatch.report.oee_rollup import journal_report
from lampwatch.report.oee_tables import format_json

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import report as bench

DAY = 86400.0
T0 = bench.T0
SETTINGS = {f"m{i:03d}": r.MachineSettings(bench.IDEAL_S, 10.0, "pcs") for i in (1, 2, 3)}
THREE = oee.Calendar("UTC", tuple(oee.Shift(n, a, b) for n, a, b in bench.SHIFTS))
BREAKS = oee.Calendar("UTC", (
    oee.Shift("A", "06:00", "14:00", breaks=(oee.Break("10:00", "10:30"),)),
    oee.Shift("B", "14:00", "22:00", breaks=(oee.Break("18:00", "18:20"),))))
# a planned stop that starts inside a minute: the rollups cannot be used, events are
ODD_STOP = oee.Calendar("UTC", THREE.shifts, ((T0 + DAY + 3 * 3600 + 17.5, T0 + DAY + 5 * 3600),))


@pytest.fixture(scope="module")
def plant(tmp_path_factory):
    """3 machines x 2 days, written through the journal, rollups built by update_rollups."""
    path = tmp_path_factory.mktemp("plant") / "journal.sqlite"
    bench.build(path, 3, 2)
    return path


def both(path, start, end, *, calendar=THREE, settings=SETTINGS, now_s=None, **kw):
    now_s = now_s or time.time()
    events, rx = r.read_journal(path, start, end)
    ref = json.loads(format_json(r.build_report(events, rx, start, end, calendar=calendar,
                                                settings=settings, now_s=now_s, **kw)))
    got = json.loads(format_json(journal_report(path, start, end, calendar=calendar,
                                                settings=settings, now_s=now_s, **kw)))
    return ref, got


def assert_same(ref, got):
    assert bench.max_diff_pp(ref, got) < 0.001
    for a, b in zip(ref["machines"], got["machines"]):
        for key in ("good", "ng", "unknown_good", "unknown_ng", "excluded_good", "excluded_ng",
                    "startup_ng", "planned_s", "run_s", "unknown_s"):
            assert b[key] == pytest.approx(a[key], abs=1e-6), (a["machine"], key)
        for key, value in a["losses"].items():
            assert b["losses"][key] == pytest.approx(value, abs=1e-6), (a["machine"], key)
    assert ref["warnings"] == got["warnings"]


def test_rollups_cover_the_journal(plant):
    db = sqlite3.connect(plant)
    (n,) = db.execute("SELECT count(DISTINCT machine) FROM rollup_machines").fetchone()
    (secs,) = db.execute("SELECT sum(secs) FROM rollup_minutes WHERE machine = 'm001' AND "
                         "minute_s >= ? AND minute_s < ?", (T0 + 3600, T0 + 7200)).fetchone()
    (hour,) = db.execute("SELECT sum(secs) FROM rollup_hours WHERE machine = 'm001' AND "
                         "hour_s = ?", (T0 + 3600,)).fetchone()
    assert n == 3 and secs == pytest.approx(3600.0) and hour == pytest.approx(3600.0)


@pytest.mark.parametrize("calendar", [THREE, BREAKS, ODD_STOP, None],
                         ids=["3-shifts", "breaks", "odd-planned-stop", "all-day"])
def test_report_through_rollups_equals_the_event_computation(plant, calendar):
    rng = random.Random(14)
    windows = [(T0 + DAY + 6 * 3600, T0 + DAY + 14 * 3600), (T0, T0 + 2 * DAY),
               (T0 + 3600, T0 + 2 * DAY + 3600)]  # the last reaches past the journal's end
    windows += [tuple(sorted((T0 + rng.uniform(0, 2 * DAY), T0 + rng.uniform(0, 2 * DAY))))
                for _ in range(4)]
    for start, end in windows:
        assert_same(*both(plant, start, end, calendar=calendar))


@pytest.mark.parametrize("kw", [{"startup_window_s": 120.0}, {"short_stop_s": 60.0},
                                {"planned_maintenance": "planned_stop"}],
                         ids=["startup-window", "short-stop", "pm-planned-stop"])
def test_other_judgements_give_the_same_figures(plant, kw):
    assert_same(*both(plant, T0 + DAY, T0 + 2 * DAY, **kw))


@pytest.mark.parametrize("ideal", [2.0, 6.0, None], ids=["fast", "slower-than-made", "none"])
def test_any_ideal_cycle_gives_the_same_figures(plant, ideal):
    # 6 s: parts are made faster than the ideal, so most counts reach back over earlier
    # production, across stops, the window's edges and breaks
    settings = {m: r.MachineSettings(ideal, 10.0, "pcs") for m in SETTINGS}
    for calendar in (THREE, BREAKS):
        assert_same(*both(plant, T0 + DAY + 6 * 3600 + 30, T0 + DAY + 22 * 3600,
                          calendar=calendar, settings=settings))


def test_one_machine_and_a_window_before_the_journal(plant):
    assert_same(*both(plant, T0 + DAY, T0 + 1.5 * DAY, machine="m002"))
    assert_same(*both(plant, T0 - DAY, T0 + 600))
    with pytest.raises(r.ReportError, match="unknown machine 'm9'"):
        journal_report(plant, T0, T0 + DAY, machine="m9")


def test_incremental_rollups_equal_a_rebuild_and_stale_cells_are_not_used(tmp_path):
    path = tmp_path / "j.sqlite"
    bench.build(path, 2, 1)
    # a second day written after the rollups were built, then brought up incrementally
    ms = [bench._Machine(i, 1) for i in range(2)]
    with Journal(path, sync="normal") as j:
        for d in range(2):
            for m in ms:
                frames, events = [], []
                m.day(T0 + d * DAY, frames, events)
                if d == 1:
                    j.commit(frames, sorted(events, key=lambda e: e[0]))
        # not yet updated: the report must not use cells the new events change
        assert_same(*both(path, T0, T0 + 2 * DAY))
        assert j.update_rollups() == 2
    db = sqlite3.connect(path)
    dump = "SELECT * FROM {} ORDER BY 1, 2, 3"
    inc = {t: db.execute(dump.format(t)).fetchall() for t in ("rollup_minutes", "rollup_hours")}
    assert_same(*both(path, T0, T0 + 2 * DAY))
    with Journal(path) as j:
        j.rebuild_rollups()
    again = {t: db.execute(dump.format(t)).fetchall() for t in inc}
    for table, rows in inc.items():
        assert len(again[table]) == len(rows)
        for x, y in zip(rows, again[table]):
            assert x[:3] == y[:3]
            assert [-1.0 if v is None else v for v in x[3:]] == pytest.approx(
                [-1.0 if v is None else v for v in y[3:]], rel=1e-9, abs=1e-9)


def test_rebuild_from_a_time_and_a_reason_entered_later(plant, tmp_path):
    path = tmp_path / "j.sqlite"
    path.write_bytes(plant.read_bytes())
    db = sqlite3.connect(path)
    (ts,) = db.execute("SELECT ts_s FROM events WHERE machine = 'm001' AND "
                          "kind = 'state' AND data LIKE '%\"state\":\"STOP\"%' AND ts_s > ? "
                          "ORDER BY ts_s LIMIT 1", (T0 + DAY,)).fetchone()
    db.close()
    with Journal(path) as j:  # an operator calls that stop a setup, a day later
        j.commit(events=[(T0 + 2 * DAY - 60.0, "reason", None, "m001",
                          json.dumps({"reason": "setup", "start_s": ts + 1, "end_s": None}))])
        assert_same(*both(path, T0 + DAY, T0 + 2 * DAY, startup_window_s=0.0))
        j.update_rollups()
        assert_same(*both(path, T0 + DAY, T0 + 2 * DAY))
        j.rebuild_rollups(from_s=T0 + DAY)
        assert_same(*both(path, T0, T0 + 2 * DAY))


def test_the_scripted_shift(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_report import CAL, scripted_shift
    from test_report import SETTINGS as S
    from test_report import T0 as S0

    path = tmp_path / "j.sqlite"
    scripted_shift(path)
    with Journal(path) as j:
        j.update_rollups()
    for start, end in ((S0, S0 + 8 * 3600), (S0 + 1234.5, S0 + 5 * 3600)):
        for kw in ({}, {"startup_window_s": 300.0}):
            assert_same(*both(path, start, end, calendar=CAL, settings=S, now_s=S0 + 36000,
                              **kw))
