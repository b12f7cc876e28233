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
from lampwatch.upkeep import ROLLUP_EVERY_S, JournalUpkeep

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
    _assert_same_cells(inc, again)


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


# -- the collector's upkeep keeps the rollups in slices (host/upkeep.py, rollups.step) -------
MANY = 24
CUT = T0 + 20 * 3600  # the rollups are built up to here; the rest of the day is new
SLICED = ("rollup_minutes", "rollup_hours", "rollup_machines", "rollup_nodes", "rollup_meta")


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    """MANY machines x 1 day: the rollups built over its first 20 hours; the file, and the
    frames and events of the last 4 hours (all machines), not yet committed."""
    path = tmp_path_factory.mktemp("many") / "journal.sqlite"
    old, new = ([], []), ([], [])
    for i in range(MANY):
        frames, events = [], []
        bench._Machine(i, 7).day(T0, frames, events)
        for part, rows in ((0, frames), (1, events)):
            old[part].extend(r for r in rows if r[0] < CUT)
            new[part].extend(r for r in rows if r[0] >= CUT)
    with Journal(path, sync="normal") as j:
        j.commit(old[0], sorted(old[1], key=lambda e: e[0]))
        j.update_rollups()
    # a reason given later for a stop before CUT: that machine is rebuilt from its stop run
    # (no_order: a setup's end would set ng_gap of NG hours later, which cells built from
    # a later start do not see; only a startup window of hours would read that)
    new[1].append(_late_reason(path, "m020", CUT, CUT + 30.0))
    return path, new[0], sorted(new[1], key=lambda e: e[0])


def _late_reason(path, machine: str, before_s: float, ts_s: float) -> tuple:
    """A reason event at ts_s for the machine's last STOP before before_s."""
    db = sqlite3.connect(path)
    (ts,) = db.execute("SELECT ts_s FROM events WHERE machine = ? AND kind = 'state' AND "
                       "data LIKE '%\"state\":\"STOP\"%' AND ts_s < ? ORDER BY ts_s DESC "
                       "LIMIT 1", (machine, before_s)).fetchone()
    db.close()
    return (ts_s, "reason", None, machine,
            json.dumps({"reason": "no_order", "start_s": ts + 1, "end_s": None}))


def _copy(src, dst):
    """A copy of a journal (with what its WAL holds)."""
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)
    return dst


def _tables(path) -> dict:
    db = sqlite3.connect(path)
    try:
        return {t: db.execute(f"SELECT * FROM {t} ORDER BY 1, 2, 3" if t != "rollup_meta" else
                              f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in SLICED}
    finally:
        db.close()


def _up_to_date(path, tmp_path, name, **kw) -> tuple[dict, dict]:
    """The tables of a copy of `path` brought up to date in one call (update_rollups), and
    then rebuilt from all its events (rebuild_rollups)."""
    ref = _copy(path, tmp_path / f"{name}.sqlite")
    with Journal(ref) as j:
        j.update_rollups(**kw)
    once = _tables(ref)
    with Journal(ref) as j:
        j.rebuild_rollups()
    return once, _tables(ref)


_NG_GAP = 4  # of a row's figures (after machine, minute, class)


def _assert_same_cells(got: dict, want: dict) -> None:
    """Row by row equal; the figures to 1e-9 (sums taken from other starts may round
    otherwise), but ng_gap: a build that starts later reads fewer states and claims no
    more distance from a startup end than it saw (host/rollup.py), so `got`'s may be
    smaller than a rebuild's, never larger."""
    for table, rows in want.items():
        assert len(got[table]) == len(rows), table
        for x, y in zip(got[table], rows):
            assert x[:3] == y[:3], table
            a, b = ([-1.0 if v is None else v for v in r[3:]] for r in (x, y))
            if table not in ("rollup_minutes", "rollup_hours"):
                assert a == pytest.approx(b, rel=1e-9, abs=1e-9), (table, x, y)
                continue
            assert a[:_NG_GAP] + a[_NG_GAP + 1:] == pytest.approx(
                b[:_NG_GAP] + b[_NG_GAP + 1:], rel=1e-9, abs=1e-9), (table, x, y)
            assert (a[_NG_GAP] <= b[_NG_GAP] + 1e-9 if b[_NG_GAP] >= 0
                    else a[_NG_GAP] < 0), (table, x, y)


def _setup(many, tmp_path, **kw):
    """A copy of the `many` journal with the last hours committed, the tables one update
    gives it (checked against a rebuild), and a Journal and JournalUpkeep (budget 0: one
    piece of work a tick) on it."""
    base, frames, events = many
    path = _copy(base, tmp_path / "j.sqlite")
    with Journal(path) as j:
        j.commit(frames, events)
    once, rebuilt = _up_to_date(path, tmp_path, "ref", **kw)
    _assert_same_cells(once, rebuilt)
    j = Journal(path, sync="normal")
    return path, once, j, _upkeep(j, **kw)


def _upkeep(j, clock=time.perf_counter, budget=0.0, short_stop_s=oee.DEFAULT_SHORT_STOP_S,
            pm_policy=oee.DEFAULT_PM_POLICY):
    return JournalUpkeep(j, retention_days=3650, short_stop_s=short_stop_s, pm_policy=pm_policy,
                         rollup_budget_s=budget, clock=clock)


def _tick_until(up, now: float, done) -> float:
    """Ticks 1 s apart from `now` until done() (asked after each); returns the next tick's
    time."""
    for _ in range(5000):
        up.tick(now)
        now += 1.0
        if done():
            return now
    pytest.fail("the upkeep never got there")


def _catch_up(up, j, now: float) -> float:
    """Ticks until the pass under way is done, and the next one (a minute later: it takes
    what came meanwhile); returns the next tick's time."""
    now = _tick_until(up, now, lambda: not j.rollups_pending)
    return _tick_until(up, now + ROLLUP_EVERY_S, lambda: not j.rollups_pending)


def test_sliced_upkeep_ends_with_the_cells_of_a_rebuild(many, tmp_path):
    # while the slices go on, the collector commits more: every 10 ticks five minutes more,
    # and at the first of them a reason for a stop long before (the pass under way rebuilds
    # m021 after that: from where its cells end, without that stop)
    base, frames, events = many
    path = _copy(base, tmp_path / "j.sqlite")
    t = CUT + 3 * 3600
    with Journal(path) as j:
        j.commit([f for f in frames if f[0] < t], [e for e in events if e[0] < t])
    j = Journal(path, sync="normal")
    up = _upkeep(j, budget=0.0)
    now, ticks, rolled_at_reason = t, 0, None
    while t < T0 + DAY:
        up.tick(now)
        now, ticks = now + 1.0, ticks + 1
        if ticks % 10 == 0:
            late = [e for e in events if t <= e[0] < t + 300]
            if rolled_at_reason is None:
                late.append(_late_reason(path, "m021", CUT - 3600, t))
                rolled_at_reason = (up.rolled, j.rollups_pending)
            j.commit([f for f in frames if t <= f[0] < t + 300], late)
            t += 300
    assert rolled_at_reason[0] < 20 and rolled_at_reason[1]  # the first pass, before m021
    assert up.rolled > MANY  # passes were under way while events came
    _catch_up(up, j, now)
    j.close()
    _assert_same_cells(_tables(path), _up_to_date(path, tmp_path, "ref")[1])


class FakeClock:
    """A perf clock that moves only by the work done: 3 ms a machine, 1 ms a scan."""

    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_a_tick_does_its_budget_and_at_most_one_machine_more(many, tmp_path, monkeypatch):
    from lampwatch.journal import rollups
    clock = FakeClock()
    build, changes = rollups._build_machine, rollups._changes

    def timed_build(*a, **kw):
        clock.t += 0.003
        return build(*a, **kw)

    def timed_changes(*a, **kw):
        clock.t += 0.001
        return changes(*a, **kw)
    path, ref, j, _ = _setup(many, tmp_path)
    monkeypatch.setattr(rollups, "_build_machine", timed_build)
    monkeypatch.setattr(rollups, "_changes", timed_changes)
    monkeypatch.setattr(rollups, "SCAN_CHUNK", 2000)  # the new events take several scans
    up = _upkeep(j, clock=clock, budget=0.010)
    per_tick, now = [], CUT + DAY
    while (not per_tick or j.rollups_pending) and len(per_tick) < 1000:
        before, rolled = clock.t, up.rolled
        up.tick(now)
        per_tick.append((round(clock.t - before, 6), up.rolled - rolled))
        now += 1.0
    j.close()
    assert sum(n for _, n in per_tick) == MANY  # each machine once
    assert len(per_tick) > 5
    for spent, machines in per_tick[:-1]:  # the last one stops when the pass is done
        assert 0.010 <= spent <= 0.010 + 0.003 and machines <= 4, per_tick
    assert per_tick[-1][0] <= 0.013 and per_tick[-1][1] <= 4
    assert _tables(path) == ref


def _reports_equal(path, **kw):
    for start, end in ((T0, T0 + DAY), (T0 + 3600.5, CUT + 7200.25)):
        assert_same(*both(path, start, end, now_s=T0 + DAY, **kw))


def test_a_report_while_some_machines_are_rolled_up_equals_the_events(many, tmp_path):
    from lampwatch.journal import open_readonly
    from lampwatch.report.oee_rollup import _usable_cells
    path, ref, j, up = _setup(many, tmp_path)
    judged = {"short_stop_s": oee.DEFAULT_SHORT_STOP_S,
              "planned_maintenance": oee.DEFAULT_PM_POLICY}
    now = _tick_until(up, CUT + DAY, lambda: up.rolled >= MANY // 2)
    assert j.rollups_pending and up.rolled == MANY // 2  # one piece of work a tick
    names = [f"m{i:03d}" for i in range(1, MANY + 1)]
    done, left = names[:MANY // 2], names[MANY // 2:]  # a pass takes them in this order
    # m020's reason changes its cells before CUT: a report must not use them
    with open_readonly(path) as r:
        assert sorted(r.rollup_stale()) == left
        cells = _usable_cells(r, judged)
    assert all(cells[m][1] >= CUT + 3 * 3600 for m in done)  # what the pass built is used
    assert all(cells[m][1] <= CUT for m in left)
    _reports_equal(path)
    _catch_up(up, j, now)
    j.close()
    assert _tables(path) == ref


def test_a_restart_in_the_middle_goes_on_and_builds_no_machine_twice(many, tmp_path):
    path, ref, j, up = _setup(many, tmp_path)
    now = _tick_until(up, CUT + DAY, lambda: up.rolled >= 7)
    assert j.rollups_pending and up.rolled == 7
    j.close()  # the collector stops; the pass in memory is lost
    with Journal(path, sync="normal") as j:
        assert not j.rollups_pending
        up = _upkeep(j)
        _tick_until(up, now, lambda: not j.rollups_pending)
        assert up.rolled == MANY - 7  # the 7 machines rebuilt before are not rebuilt again
    assert _tables(path) == ref


def test_a_new_short_stop_threshold_rebuilds_everything_in_slices(many, tmp_path):
    path, ref, j, up = _setup(many, tmp_path, short_stop_s=120.0)
    now = _tick_until(up, CUT + DAY, lambda: up.rolled >= 5)
    assert j.rollups_pending
    _reports_equal(path, short_stop_s=120.0)  # 5 machines from cells, the others from events
    _catch_up(up, j, now)
    j.close()
    assert up.rolled == MANY  # every machine once
    assert _tables(path) == ref


def test_an_incremental_build_after_a_setup_still_finds_its_startup_rejects(tmp_path):
    """Cells built from after a short stop that followed a setup do not read the setup; they
    must not claim its NG are far from any startup end (a report with a startup window then
    judges those NG from events)."""
    path, t = tmp_path / "j.sqlite", T0 + 7 * 3600
    settings = {"mx": r.MachineSettings(2.0, 10.0, "pcs")}

    def state(ts, st, reason=None):
        return (ts, "state", 1, "mx", json.dumps({"state": st} | ({"reason": reason}
                                                                   if reason else {})))

    def count(ts, good, ng=0):
        return (ts, "count", 1, "mx", json.dumps({"good": good, "ng": ng, "since_s": ts - 10}))

    first = [state(t, "RUN"), state(t + 600, "STOP", "setup"), state(t + 900, "RUN"),
             state(t + 1020, "IDLE"), state(t + 1050, "RUN")]
    first += [count(ts, 3) for ts in range(int(t) + 10, int(t) + 600, 10)]
    first += [count(ts, 3) for ts in (*range(int(t) + 910, int(t) + 1020, 10), t + 1060,
                                       t + 1070, t + 1080, t + 1090)]  # cells up to 1080
    later = [count(t + 1100, 2, 1)] + [count(ts, 3) for ts in range(int(t) + 1110, int(t) + 1500,
                                                                      10)]
    with Journal(path, sync="normal") as j:
        j.commit(events=sorted(first))
        j.update_rollups()
        j.commit(events=later)
        j.update_rollups()
    ref, got = both(path, t, t + 1800, settings=settings, now_s=t + 3600,
                    startup_window_s=600.0)
    assert ref["machines"][0]["startup_ng"] == 1  # the NG 200 s after the setup ended
    assert_same(ref, got)
