"""OEE engine and work calendar: exact hand-computed values, errors, DST, roll-up, properties."""

import re
from datetime import date, datetime, timezone
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lampwatch.errors import OEEInputError
from lampwatch.oee import (
    Break,
    Calendar,
    CountEvent,
    OEEResult,
    Shift,
    StateInterval,
    evaluate,
    percent,
    ratios,
    rollup,
)

DOCS = Path(__file__).resolve().parent.parent / "docs" / "oee.md"
JAKARTA = Calendar("Asia/Jakarta",
                   [Shift("A", "06:00", "14:00", breaks=[Break("10:00", "10:30")])])
MON = date(2026, 11, 23)  # a Monday; Jakarta is UTC+7 all year


def at(cal, day, hm):
    """Epoch seconds of local wall time "HH:MM" on `day`."""
    return cal.at(day, int(hm[:2]) * 3600 + int(hm[3:]) * 60)


def timeline(cal, day, rows):
    return [StateInterval(at(cal, day, a), at(cal, day, b), s, r) for a, b, s, r in rows]


def counts(cal, day, rows):
    return [CountEvent(at(cal, day, t), k, q) for t, k, q in rows]


# The worked example of docs/oee.md.
EXAMPLE_STATES = [
    ("06:00", "06:20", "STOP", "setup"),
    ("06:20", "08:00", "RUN", None),
    ("08:00", "08:03", "IDLE", None),
    ("08:03", "09:00", "RUN", None),
    ("09:00", "09:45", "STOP", "breakdown"),
    ("09:45", "10:05", "RUN", None),
    ("10:05", "10:30", "IDLE", None),
    ("10:30", "11:00", "STOP", "planned_maintenance"),
    ("11:00", "13:00", "RUN", None),
    ("13:00", "13:10", "UNKNOWN", None),
    ("13:10", "14:00", "RUN", None),
]
EXAMPLE_COUNTS = [
    ("06:25", "NG", 4), ("07:59", "GOOD", 96), ("08:59", "GOOD", 54), ("09:50", "NG", 2),
    ("09:59", "GOOD", 13), ("10:10", "GOOD", 5), ("12:00", "NG", 6), ("12:59", "GOOD", 110),
    ("13:05", "GOOD", 3), ("13:59", "GOOD", 15),
]


def worked_example(**kw):
    shift = JAKARTA.shift_at(at(JAKARTA, MON, "09:00"))
    return evaluate(timeline(JAKARTA, MON, EXAMPLE_STATES), counts(JAKARTA, MON, EXAMPLE_COUNTS),
                    60, JAKARTA, shift.start, shift.end, short_stop_s=300,
                    startup_window_s=600, **kw)


def test_worked_example_exact_values():
    r = worked_example()  # the default policy: planned maintenance is an availability loss
    m = 60
    assert r.all_time_s == 480 * m
    assert r.planned_s == (480 - 30) * m  # less the break; the PM stays in
    assert r.unknown_planned_s == 10 * m and r.unknown_s == 10 * m
    assert r.covered_planned_s == 440 * m
    assert (r.setup_s, r.breakdown_s, r.minor_stop_s) == (20 * m, 45 * m, 3 * m)
    assert r.maintenance_s == 30 * m
    assert r.run_s == (100 + 57 + 15 + 120 + 50 + 3) * m  # RUN in planned time + minor stop
    assert r.run_outside_planned_s == 5 * m  # 10:00-10:05 ran into the break
    assert (r.good, r.ng, r.total) == (96 + 54 + 13 + 110 + 15, 4 + 2 + 6, 300)
    assert (r.unknown_good, r.unknown_ng) == (3, 0)  # 13:05, in the Wi-Fi gap
    assert (r.excluded_good, r.excluded_ng) == (5, 0)  # 10:10, in the break
    assert r.net_run_s == 300 * m and r.fully_productive_s == 288 * m
    assert r.startup_reject_s == (4 + 2) * m and r.process_defect_s == 6 * m
    assert r.startup_ng == 6
    assert r.reduced_speed_s == (345 - 3 - 300) * m
    assert r.availability == 345 / 440
    assert r.performance == 300 / 345
    assert r.quality == 291 / 303  # the 3 made in unknown time count in quality
    assert r.oee == pytest.approx(345 / 440 * 300 / 345 * 291 / 303, abs=1e-15)
    assert r.utilization == 450 / 480
    assert r.teep == pytest.approx(r.oee * 450 / 480, abs=1e-15)
    assert r.coverage == pytest.approx(470 / 480, abs=1e-15)
    assert r.planned_coverage == pytest.approx(440 / 450, abs=1e-15)
    assert r.losses == {"breakdown_s": 2700, "setup_s": 1200, "maintenance_s": 1800,
                        "minor_stop_s": 180, "reduced_speed_s": 2520, "process_defect_s": 360,
                        "startup_reject_s": 360}


def test_worked_example_with_planned_maintenance_as_a_planned_stop():
    r = worked_example(planned_maintenance="planned_stop")
    d = worked_example()
    assert r.planned_s == (480 - 30 - 30) * 60 and r.maintenance_s == 0
    assert r.covered_planned_s == 410 * 60
    assert r.availability == 345 / 410
    assert (r.performance, r.quality) == (d.performance, d.quality)  # the policy is A's only
    assert r.oee == pytest.approx(300 / 410 * 291 / 303, abs=1e-15)
    with pytest.raises(OEEInputError, match="planned maintenance policy must be one of"):
        worked_example(planned_maintenance="ignore")


def test_worked_example_matches_docs_table():
    text = DOCS.read_text(encoding="utf-8")
    block = text.split("<!-- worked-example:")[1].split("<!-- /worked-example -->")[0]
    rows = re.findall(r"^\| (\w+) \| ([-0-9.]+)", block, re.MULTILINE)
    assert len(rows) == 24
    data = worked_example().as_dict()
    for name, value in rows:
        assert round(data[name], 4) == float(value), name


def test_without_startup_window_all_ng_are_process_defects():
    r = worked_example()
    r0 = evaluate(timeline(JAKARTA, MON, EXAMPLE_STATES), counts(JAKARTA, MON, EXAMPLE_COUNTS),
                  60, JAKARTA, r.start, r.end)
    assert r0.startup_reject_s == 0 and r0.process_defect_s == 12 * 60
    assert r0.oee == r.oee


def test_startup_rejects_only_after_setup_or_breakdown_and_within_the_window():
    cal = Calendar("UTC", [Shift("A", "06:00", "14:00")])
    states = timeline(cal, MON, [("06:00", "07:00", "RUN", None),
                                 ("07:00", "07:30", "STOP", "setup"),
                                 ("07:30", "09:00", "RUN", None),
                                 ("09:00", "09:20", "STOP", None),  # long but no reason
                                 ("09:20", "14:00", "RUN", None)])
    cnts = counts(cal, MON, [
        ("07:10", "NG", 1),    # during the setup: process defect
        ("07:30", "NG", 2),    # the second the setup ends: startup
        ("07:39", "NG", 4),    # 9 min after: startup
        ("07:40", "NG", 8),    # exactly 10 min after: the window is over
        ("09:25", "NG", 16),   # after an unreasoned stop: process defect
    ])
    r = evaluate(states, cnts, 60, cal, at(cal, MON, "06:00"), at(cal, MON, "14:00"),
                 startup_window_s=600)
    assert r.startup_reject_s == (2 + 4) * 60
    assert r.process_defect_s == (1 + 8 + 16) * 60
    assert r.breakdown_s == 20 * 60  # the unreasoned 20 min stop is still a breakdown loss


def test_overlapping_intervals_error_names_local_time_and_states():
    states = timeline(JAKARTA, MON, [("06:00", "08:30", "RUN", None),
                                     ("08:00", "09:00", "STOP", None)])
    with pytest.raises(OEEInputError) as exc:
        evaluate(states, [], 60, JAKARTA, states[0].start, states[1].end)
    assert str(exc.value) == "state intervals overlap at 2026-11-23T08:00:00+07:00 (RUN and STOP)"


@pytest.mark.parametrize("states, cnts, ideal, message", [
    ([("08:00", "07:00", "RUN", None)], [], 60,
     "state interval ends before it starts at 2026-11-23T08:00:00+07:00 (RUN)"),
    ([("07:00", "08:00", "GREEN", None)], [], 60,
     "unknown state 'GREEN' at 2026-11-23T07:00:00+07:00"),
    ([("07:00", "08:00", "STOP", "lunch")], [], 60,
     ("unknown reason 'lunch' at 2026-11-23T07:00:00+07:00; expected one of setup, "
      "planned_maintenance, breakdown, no_order, material, other")),
    ([("07:00", "08:00", "RUN", "setup")], [], 60,
     "reason 'setup' given for a RUN interval at 2026-11-23T07:00:00+07:00"),
    ([], [("07:00", "GOOD", -1)], 60, "negative GOOD quantity -1 at 2026-11-23T07:00:00+07:00"),
    ([], [("07:00", "SCRAP", 1)], 60, "unknown count kind 'SCRAP' at 2026-11-23T07:00:00+07:00"),
    ([], [], 0, "ideal cycle time must be greater than 0 s, not 0"),
    ([], [], -2.5, "ideal cycle time must be greater than 0 s, not -2.5"),
    ([], [("07:00", "GOOD", float("nan"))], 60, "count quantity must be a finite number, not nan"),
])
def test_impossible_input_raises_named_error(states, cnts, ideal, message):
    with pytest.raises(OEEInputError) as exc:
        evaluate(timeline(JAKARTA, MON, states), counts(JAKARTA, MON, cnts), ideal, JAKARTA,
                 at(JAKARTA, MON, "06:00"), at(JAKARTA, MON, "14:00"))
    assert str(exc.value) == message


def test_oee_input_error_is_a_value_error():
    with pytest.raises(ValueError):
        Calendar("Mars/Olympus_Mons")


@pytest.mark.parametrize("make, message", [
    (lambda: Calendar("Mars/Olympus_Mons"), "unknown time zone 'Mars/Olympus_Mons'"),
    (lambda: Calendar("UTC", [Shift("A", "06:00", "14:00", breaks=[Break("05:00", "05:30")])]),
     "break 05:00-05:30 is outside shift 'A' 06:00-14:00"),
    (lambda: Calendar("UTC", [Shift("A", "6 am", "14:00")]),
     "shift 'A' start '6 am' is not a wall time like '06:00'"),
    (lambda: Calendar("UTC", [Shift("A", "06:00", "14:00", weekdays=(7,))]),
     "shift 'A' weekdays must be 0 (Mon) to 6 (Sun)"),
    (lambda: Calendar("UTC", planned_stops=[(100.0, 50.0)]),
     "planned stop ends before it starts at 1970-01-01T00:01:40+00:00"),
    (lambda: ratios(600, 60, 50, 51), "good output exceeds total output (51 > 50)"),
    (lambda: ratios(600, 601, 50, 40), "run time 601 exceeds planned production time 600"),
    (lambda: ratios(-1, 0, 0, 0), "planned time must not be negative (-1)"),
])
def test_impossible_calendar_and_totals_raise(make, message):
    with pytest.raises(OEEInputError) as exc:
        make()
    assert str(exc.value) == message


def test_shift_crossing_midnight_with_break_after_midnight():
    cal = Calendar("Asia/Jakarta",
                   [Shift("night", "22:00", "06:00", breaks=[Break("02:00", "02:30")])])
    night = cal.shifts_between(at(cal, MON, "00:00"), at(cal, MON, "23:59"))
    # Sunday's night shift reaches into Monday; Monday's starts at 22:00.
    assert [(i.name, i.day) for i in night] == [("night", date(2026, 11, 22)), ("night", MON)]
    inst = night[1]
    assert inst.end - inst.start == 8 * 3600
    assert inst.breaks == ((at(cal, date(2026, 11, 24), "02:00"),
                            at(cal, date(2026, 11, 24), "02:30")),)
    assert cal.shift_at(at(cal, date(2026, 11, 24), "05:59")) == inst
    assert cal.shift_at(at(cal, MON, "12:00")) is None
    # RUN all night except a 45 min breakdown after the break.
    tue = date(2026, 11, 24)
    states = [StateInterval(inst.start, at(cal, tue, "02:30"), "RUN"),
              StateInterval(at(cal, tue, "02:30"), at(cal, tue, "03:15"), "STOP", "breakdown"),
              StateInterval(at(cal, tue, "03:15"), inst.end, "RUN")]
    r = evaluate(states, [CountEvent(at(cal, tue, "05:00"), "GOOD", 400)], 30, cal,
                 inst.start, inst.end)
    # planned = 480 - 30 break = 450 min; run = 450 - 45 = 405 min; 30 min of RUN in the break.
    assert (r.planned_s, r.run_s, r.run_outside_planned_s) == (450 * 60, 405 * 60, 30 * 60)
    assert r.oee == 400 * 30 / (450 * 60)  # = 12000 / 27000


BERLIN = Calendar("Europe/Berlin", [Shift("night", "22:00", "06:00")])


@pytest.mark.parametrize("start_day, hours", [
    (date(2026, 3, 28), 7),   # clocks go 02:00 -> 03:00 on 2026-03-29
    (date(2026, 10, 24), 9),  # clocks go 03:00 -> 02:00 on 2026-10-25
    (date(2026, 10, 17), 8),
])
def test_dst_night_shift_lasts_the_real_elapsed_time(start_day, hours):
    (inst,) = [i for i in BERLIN.shifts_between(*BERLIN.day(start_day)) if i.day == start_day]
    assert inst.end - inst.start == hours * 3600
    states = [StateInterval(inst.start, inst.end, "RUN")]
    # Ideal 2 s: 1800 pieces per real hour would be 100 %; the machine makes 1500 an hour.
    r = evaluate(states, [CountEvent(inst.start + 60, "GOOD", 1500 * hours)], 2, BERLIN,
                 inst.start, inst.end)
    assert (r.all_time_s, r.planned_s, r.run_s) == (hours * 3600,) * 3
    assert r.performance == 1500 * hours * 2 / (hours * 3600)  # 3000 s of work per 3600 s
    assert r.oee == pytest.approx(3000 / 3600, abs=1e-15)


def test_dst_day_lengths_and_skipped_wall_time():
    assert BERLIN.day(date(2026, 3, 29))[1] - BERLIN.day(date(2026, 3, 29))[0] == 23 * 3600
    assert BERLIN.day(date(2026, 10, 25))[1] - BERLIN.day(date(2026, 10, 25))[0] == 25 * 3600
    week = BERLIN.week(date(2026, 10, 28))  # Monday 26 Oct .. Monday 2 Nov, no change inside
    assert week[1] - week[0] == 7 * 24 * 3600
    assert datetime.fromtimestamp(week[0], BERLIN.zone).isoformat() == "2026-10-26T00:00:00+01:00"
    # 02:30 does not exist on 2026-03-29: it is moved forward to 03:30 CEST = 01:30 UTC.
    early = Calendar("Europe/Berlin", [Shift("early", "02:30", "10:00")])
    (inst,) = early.shifts_between(*early.day(date(2026, 3, 29)))
    assert inst.start == datetime(2026, 3, 29, 1, 30, tzinfo=timezone.utc).timestamp()
    # A repeated wall time (02:30 on 2026-10-25) means the first one, 02:30 CEST = 00:30 UTC.
    (inst,) = early.shifts_between(*early.day(date(2026, 10, 25)))
    assert inst.start == datetime(2026, 10, 25, 0, 30, tzinfo=timezone.utc).timestamp()


def test_per_weekday_shifts():
    cal = Calendar("Asia/Jakarta", [Shift("day", "07:00", "15:00", weekdays=(0, 1, 2, 3)),
                                    Shift("day", "07:00", "11:30", weekdays=(4,))])
    week = cal.shifts_between(*cal.week(MON))
    assert [(i.day.isoformat(), (i.end - i.start) / 3600) for i in week] == [
        ("2026-11-23", 8), ("2026-11-24", 8), ("2026-11-25", 8), ("2026-11-26", 8),
        ("2026-11-27", 4.5)]


def test_running_shift_evaluated_up_to_now():
    states = timeline(JAKARTA, MON, [("06:00", "08:00", "RUN", None),
                                     ("08:00", "09:00", "STOP", "breakdown")])
    cnts = counts(JAKARTA, MON, [("07:30", "GOOD", 98), ("08:30", "NG", 2),
                                 ("09:10", "GOOD", 50)])  # 09:10 is after now
    now = at(JAKARTA, MON, "09:00")
    r = evaluate(states, cnts, 60, JAKARTA, at(JAKARTA, MON, "06:00"), at(JAKARTA, MON, "14:00"),
                 now=now)
    assert (r.end, r.all_time_s, r.planned_s) == (now, 180 * 60, 180 * 60)
    assert r.availability == 120 / 180
    assert r.performance == 100 / 120  # 100 pieces x 1 ideal min in 120 run min
    assert r.quality == 98 / 100
    assert r.oee == 98 / 180
    assert r.coverage == 1
    # Before the shift started: an empty window with every ratio None.
    early = evaluate(states, cnts, 60, JAKARTA, r.start, r.start + 8 * 3600, now=r.start - 60)
    assert early.all_time_s == 0 and early.oee is None and early.teep is None


def test_unknown_time_is_neither_run_nor_stop():
    # 480 min shift without breaks: RUN 4 h, no report for 2 h (a gap), UNKNOWN 1 h, RUN 1 h.
    cal = Calendar("Asia/Jakarta", [Shift("A", "06:00", "14:00")])
    states = timeline(cal, MON, [("06:00", "10:00", "RUN", None),
                                 ("12:00", "13:00", "UNKNOWN", None),
                                 ("13:00", "14:00", "RUN", None)])
    cnts = counts(cal, MON, [("09:00", "GOOD", 240), ("11:00", "GOOD", 100),
                             ("13:30", "GOOD", 50), ("13:31", "NG", 10)])
    r = evaluate(states, cnts, 60, cal, at(cal, MON, "06:00"), at(cal, MON, "14:00"))
    assert (r.planned_s, r.unknown_planned_s, r.run_s) == (480 * 60, 180 * 60, 300 * 60)
    assert r.coverage == r.planned_coverage == 300 / 480
    assert r.availability == 1.0  # over the covered 300 min, not 300 / 480
    assert (r.good, r.ng, r.excluded_good) == (290, 10, 0)
    assert (r.unknown_good, r.unknown_ng) == (100, 0)  # 11:00 was in the gap
    # P over known output and known run time; Q over all output
    assert r.performance == 300 / 300 and r.quality == 390 / 400
    assert r.oee == pytest.approx(390 / 400, abs=1e-15)
    assert r.teep == pytest.approx(390 / 400 * 480 / 480, abs=1e-15)
    # All planned time unknown: ratios None, coverage 0.
    blind = evaluate([], [], 60, cal, at(cal, MON, "06:00"), at(cal, MON, "14:00"))
    assert blind.planned_coverage == 0 and blind.availability is None and blind.oee is None


@pytest.mark.parametrize("rows, minor, breakdown", [
    ([("08:00", "08:04", "IDLE", None)], 4, 0),                      # < 5 min: minor stop
    ([("08:00", "08:05", "IDLE", None)], 0, 5),                      # = threshold: availability
    ([("08:00", "08:02", "IDLE", None), ("08:02", "08:06", "STOP", None)], 0, 6),  # one stop
    ([("08:00", "08:02", "IDLE", None), ("08:03", "08:06", "STOP", None)], 5, 0),  # two stops
    ([("08:00", "08:02", "STOP", "breakdown")], 0, 2),               # reason: never minor
    ([("08:00", "08:04", "OFF", "material")], 4, 0),
    ([("08:00", "08:20", "STOP", "material")], 0, 20),
])
def test_short_stop_threshold(rows, minor, breakdown):
    cal = Calendar("Asia/Jakarta", [Shift("A", "06:00", "14:00")])
    stops = timeline(cal, MON, rows)
    run = [StateInterval(at(cal, MON, "06:00"), stops[0].start, "RUN"),
           StateInterval(stops[-1].end, at(cal, MON, "14:00"), "RUN")]
    gaps = [StateInterval(a.end, b.start, "RUN") for a, b in pairwise(stops)
            if b.start > a.end]
    r = evaluate(run + gaps + stops, [], 60, cal, at(cal, MON, "06:00"), at(cal, MON, "14:00"))
    assert (r.minor_stop_s, r.breakdown_s) == (minor * 60, breakdown * 60)
    assert r.run_s == (480 - breakdown) * 60


def test_stop_is_judged_on_its_whole_length_not_the_window_part():
    cal = Calendar("UTC", [Shift("A", "00:00", "00:00")])  # 24 h
    states = timeline(cal, MON, [("07:00", "08:03", "RUN", None),
                                 ("08:03", "08:06", "IDLE", None),  # 3 min: minor
                                 ("08:06", "08:08", "RUN", None),
                                 ("08:08", "08:58", "STOP", None),  # 50 min: breakdown
                                 ("08:58", "10:00", "RUN", None)])
    # The window 08:05-08:10 holds 1 min of the 3 min idle and 2 min of the 50 min stop.
    r = evaluate(states, [], 60, cal, at(cal, MON, "08:05"), at(cal, MON, "08:10"))
    assert (r.minor_stop_s, r.breakdown_s) == (60, 120)


def test_planned_stop_window_and_no_order_leave_planned_time():
    cal = Calendar("Asia/Jakarta", [Shift("A", "06:00", "14:00")],
                   planned_stops=[(at(JAKARTA, MON, "12:00"), at(JAKARTA, MON, "13:00"))])
    states = timeline(cal, MON, [("06:00", "07:00", "IDLE", "no_order"),
                                 ("07:00", "14:00", "RUN", None)])
    r = evaluate(states, counts(cal, MON, [("12:30", "GOOD", 10), ("06:30", "GOOD", 1),
                                           ("08:00", "GOOD", 300)]),
                 60, cal, at(cal, MON, "06:00"), at(cal, MON, "14:00"))
    assert r.planned_s == (480 - 60 - 60) * 60 and r.run_s == 360 * 60
    assert r.run_outside_planned_s == 60 * 60  # ran through the planned stop window
    assert (r.good, r.excluded_good) == (300, 11)
    assert r.utilization == 360 / 480


def test_zero_cases():
    cal = Calendar("Asia/Jakarta", [Shift("A", "06:00", "14:00")])
    a, b = at(cal, MON, "06:00"), at(cal, MON, "14:00")
    down = evaluate([StateInterval(a, b, "STOP", "breakdown")], [], 60, cal, a, b)
    assert (down.availability, down.performance, down.quality, down.oee) == (0, None, None, 0)
    idle = evaluate([StateInterval(a, b, "RUN")], [], 60, cal, a, b)
    assert (idle.availability, idle.performance, idle.quality, idle.oee) == (1, 0, None, 0)
    off_shift = evaluate([StateInterval(b, b + 3600, "RUN")], [], 60, cal, b, b + 3600)
    assert off_shift.planned_s == 0 and off_shift.utilization == 0
    assert (off_shift.availability, off_shift.oee, off_shift.teep) == (None, None, None)
    assert rollup([]).oee is None and rollup([]).all_time_s == 0


def test_performance_above_one_is_kept_not_clamped():
    cal = Calendar("UTC", [Shift("A", "06:00", "07:00")])
    a, b = at(cal, MON, "06:00"), at(cal, MON, "07:00")
    r = evaluate([StateInterval(a, b, "RUN")], [CountEvent(a + 10, "GOOD", 80)], 60, cal, a, b)
    assert r.performance == 80 / 60 and r.oee == 80 / 60
    assert r.reduced_speed_s == -20 * 60


def test_rollup_machines_with_different_cycle_times():
    cal = Calendar("Asia/Jakarta", [Shift("A", "06:00", "14:00")])
    a, b = at(cal, MON, "06:00"), at(cal, MON, "14:00")
    x = evaluate(timeline(cal, MON, [("06:00", "12:40", "RUN", None),
                                     ("12:40", "14:00", "STOP", "breakdown")]),
                 counts(cal, MON, [("10:00", "GOOD", 690), ("10:00", "NG", 10)]),
                 30, cal, a, b, machine="press")
    y = evaluate(timeline(cal, MON, [("06:00", "08:00", "STOP", "planned_maintenance"),
                                     ("08:00", "13:00", "RUN", None),
                                     ("13:00", "14:00", "STOP", "breakdown")]),
                 counts(cal, MON, [("10:00", "GOOD", 130), ("10:00", "NG", 10)]),
                 120, cal, a, b, machine="oven", planned_maintenance="planned_stop")
    r = rollup([x, y], machine="line 1")
    # planned 480 + 360 = 840 min (the oven's 2 h of PM are planned downtime here);
    # run 400 + 300 = 700 min;
    # ideal total 700 x 30 s + 140 x 120 s = 21000 + 16800 s = 630 min;
    # ideal good 690 x 30 s + 130 x 120 s = 20700 + 15600 s = 605 min.
    assert (r.machine, r.planned_s, r.run_s) == ("line 1", 840 * 60, 700 * 60)
    assert (r.net_run_s, r.fully_productive_s) == (630 * 60, 605 * 60)
    assert r.availability == 700 / 840
    assert r.performance == 630 / 700
    assert r.quality == 605 / 630
    assert r.oee == 605 / 840  # 0.7202, not the mean of 0.7188 and 0.7222 (0.7205)
    assert r.oee != pytest.approx((x.oee + y.oee) / 2, abs=1e-4)
    assert (r.good, r.ng, r.all_time_s) == (820, 20, 2 * 480 * 60)


def test_rollup_of_shifts_equals_the_day():
    cal = Calendar("Asia/Jakarta", [Shift("1", "06:00", "14:00"), Shift("2", "14:00", "22:00"),
                                    Shift("3", "22:00", "06:00")])
    states = timeline(cal, MON, [("00:00", "09:00", "RUN", None),
                                 ("09:00", "09:02", "IDLE", None),
                                 ("09:02", "13:50", "RUN", None),
                                 ("13:50", "14:20", "STOP", "setup"),  # crosses a shift change
                                 ("14:20", "23:59", "RUN", None)])
    cnts = counts(cal, MON, [(f"{h:02d}:30", "GOOD", 50) for h in range(24)]
                  + [("14:25", "NG", 3)])
    day = cal.day(MON)
    parts = [evaluate(states, cnts, 60, cal, max(i.start, day[0]), min(i.end, day[1]),
                      startup_window_s=600)
             for i in cal.shifts_between(*day)]
    whole = evaluate(states, cnts, 60, cal, *day, startup_window_s=600)
    assert len(parts) == 4  # Sunday's night shift tail, 1, 2, and Monday's night shift head
    total = rollup(parts)
    for name in OEEResult.__dataclass_fields__:
        if name != "machine":
            assert getattr(total, name) == pytest.approx(getattr(whole, name)), name
    assert whole.startup_reject_s == 3 * 60 and whole.setup_s == 30 * 60


# ---- properties --------------------------------------------------------------------------

STATE_CHOICES = [("RUN", None), ("IDLE", None), ("STOP", None), ("OFF", None),
                 ("STOP", "breakdown"), ("STOP", "setup"), ("IDLE", "material"),
                 ("OFF", "planned_maintenance"), ("IDLE", "no_order")]
CAL = Calendar("Asia/Jakarta", [Shift("A", "06:00", "14:00", breaks=[Break("10:00", "10:30")]),
                                Shift("B", "22:00", "04:00")],
               planned_stops=[(at(JAKARTA, MON, "12:00"), at(JAKARTA, MON, "12:45"))])
T0 = at(JAKARTA, MON, "04:00")


@st.composite
def machine_day(draw, unknown=False):
    choices = STATE_CHOICES + ([("UNKNOWN", None)] * 2 if unknown else [])
    durations = draw(st.lists(st.integers(1, 180), min_size=1, max_size=40))
    states, t = [], T0
    for minutes in durations:
        state, reason = draw(st.sampled_from(choices))
        if draw(st.booleans()) and unknown:
            t += 60 * draw(st.integers(1, 30))  # a gap: no report
        states.append(StateInterval(t, t + minutes * 60, state, reason))
        t = states[-1].end
    events = [CountEvent(T0 + draw(st.integers(0, int(t - T0))), kind,
                         draw(st.integers(0, 40)) / 2)
              for kind in draw(st.lists(st.sampled_from(["GOOD", "NG"]), max_size=30))]
    ideal = draw(st.sampled_from([0.5, 2, 7.5, 60, 90]))
    return states, events, ideal, T0, t


@settings(max_examples=150, deadline=None)
@given(machine_day())
def test_property_full_coverage(day):
    states, events, ideal, a, b = day
    r = evaluate(states, events, ideal, CAL, a, b, short_stop_s=600, startup_window_s=300)
    assert r.coverage == 1 and r.unknown_planned_s == 0
    if r.planned_s:
        assert r.oee == pytest.approx(r.good * ideal / r.planned_s)
        assert 0 <= r.availability <= 1
    if r.quality is not None:
        assert 0 <= r.quality <= 1
    if None not in (r.availability, r.performance, r.quality):
        assert r.availability * r.performance * r.quality == pytest.approx(r.oee)
    in_window = [e for e in events if a <= e.ts < b]
    assert r.good + r.excluded_good == pytest.approx(
        sum(e.qty for e in in_window if e.kind == "GOOD"))
    # The loss tree adds up.
    assert r.planned_s == pytest.approx(r.breakdown_s + r.setup_s + r.maintenance_s + r.run_s)
    assert r.run_s == pytest.approx(r.minor_stop_s + r.reduced_speed_s + r.net_run_s)
    assert r.net_run_s == pytest.approx(
        r.process_defect_s + r.startup_reject_s + r.fully_productive_s)


@settings(max_examples=150, deadline=None)
@given(machine_day(unknown=True), st.floats(0, 1))
def test_property_split_window_rolls_up_to_the_whole(day, cut):
    states, events, ideal, a, b = day
    m = a + round((b - a) * cut)
    kw = {"short_stop_s": 600, "startup_window_s": 300}
    whole = evaluate(states, events, ideal, CAL, a, b, **kw)
    total = rollup([evaluate(states, events, ideal, CAL, a, m, **kw),
                    evaluate(states, events, ideal, CAL, m, b, **kw)])
    for name in OEEResult.__dataclass_fields__:
        if name != "machine":
            assert getattr(total, name) == pytest.approx(getattr(whole, name), abs=1e-6), name
    for name in ("availability", "performance", "quality", "oee", "planned_coverage"):
        expected = getattr(whole, name)
        got = getattr(total, name)
        assert got == expected if expected is None else got == pytest.approx(expected), name


@settings(max_examples=100, deadline=None)
@given(machine_day(unknown=True), st.data())
def test_property_splitting_an_interval_changes_nothing(day, data):
    states, events, ideal, a, b = day
    i = data.draw(st.integers(0, len(states) - 1))
    s = states[i]
    if s.end - s.start < 120:
        return
    mid = s.start + 60 * data.draw(st.integers(1, int((s.end - s.start) // 60) - 1))
    split = states[:i] + [StateInterval(s.start, mid, s.state, s.reason),
                          StateInterval(mid, s.end, s.state, s.reason)] + states[i + 1:]
    kw = {"short_stop_s": 600, "startup_window_s": 300}
    assert evaluate(split, events, ideal, CAL, a, b, **kw) == evaluate(
        states, events, ideal, CAL, a, b, **kw)


# ---- where output goes: counts that carry the span they were made in ---------------------

def heartbeats(states, ideal, rate, every_s, start, end):
    """Count events of a node that heartbeats every `every_s` over [start, end), for a machine
    making `rate` ideal speeds (1.0: one unit per ideal cycle) whenever it is RUN or UNKNOWN
    (the truth in unknown time: it ran). Each carries the span since the previous one."""
    def made(a, b):
        return sum(max(0.0, min(b, s.end) - max(a, s.start)) for s in states
                   if s.state in ("RUN", "UNKNOWN")) * rate / ideal
    out, t = [], start
    while t + every_s <= end:
        out.append(CountEvent(t + every_s, "GOOD", made(t, t + every_s), start=t))
        t += every_s
    return out


def test_a_machine_at_its_ideal_rate_across_a_gap_has_performance_one():
    cal = Calendar("UTC", [Shift("A", "06:00", "14:00")])
    a, b = at(cal, MON, "06:00"), at(cal, MON, "14:00")
    states = timeline(cal, MON, [("05:00", "09:00", "RUN", None),
                                 ("09:00", "10:00", "UNKNOWN", None),
                                 ("10:00", "15:00", "RUN", None)])
    # The node's heartbeats in the gap never arrived: the one at 10:10 carries 70 min of
    # output (one piece a minute) since 09:00.
    cnts = [c for c in heartbeats(states, 60, 1.0, 600, a - 3600, b + 3600)
            if not at(cal, MON, "09:00") < c.ts <= at(cal, MON, "10:00")]
    gap = next(c for c in cnts if c.ts == at(cal, MON, "10:10"))
    cnts[cnts.index(gap)] = CountEvent(gap.ts, "GOOD", 70.0, start=at(cal, MON, "09:00"))
    r = evaluate(states, cnts, 60, cal, a, b)
    assert r.good == pytest.approx(7 * 60) and r.unknown_good == pytest.approx(60)
    assert r.performance == pytest.approx(1.0, abs=1e-12)  # not 480 / 420 = 114 %
    assert (r.availability, r.quality, r.planned_coverage) == (1.0, 1.0, 7 / 8)
    # as points at the heartbeats' times the gap's output is credited to the run after it:
    # 470 pieces in the window (06:00's made before it, 14:00's not in it) over 420 min
    points = [CountEvent(c.ts, c.kind, c.qty) for c in cnts]
    assert evaluate(states, points, 60, cal, a, b).performance == pytest.approx(470 / 420)


def test_a_partial_cycle_early_in_a_shift_does_not_lift_performance_over_one():
    cal = Calendar("UTC", [Shift("A", "06:00", "14:00")])
    a = at(cal, MON, "06:00")
    states = [StateInterval(a - 3600, a + 3600, "RUN")]
    # one piece a minute (its ideal), each done at :50; heartbeats every 10 s
    cnts = [CountEvent(t, "GOOD", 1.0, start=t - 10) for t in range(int(a) - 590, int(a) + 55, 10)
            if (t - int(a)) % 60 == 50]  # what has arrived 55 s into the shift
    r = evaluate(states, cnts, 60, cal, a, a + 28800, now=a + 55)
    # 55 s into the shift one piece is done, 50 s of it made in the shift
    assert r.good == pytest.approx(50 / 60)
    assert r.performance == pytest.approx(50 / 55)  # as points: 60 / 55 = 109 %
    assert evaluate(states, [CountEvent(c.ts, c.kind, c.qty) for c in cnts], 60, cal, a,
                    a + 28800, now=a + 55).performance == pytest.approx(60 / 55)


def test_a_span_across_a_break_leaves_the_break_share_out():
    cal = JAKARTA  # break 10:00-10:30
    a, b = at(cal, MON, "06:00"), at(cal, MON, "14:00")
    states = [StateInterval(a, b, "RUN")]
    c = CountEvent(at(cal, MON, "10:10"), "GOOD", 40.0, start=at(cal, MON, "09:50"))
    r = evaluate(states, [c], 30, cal, a, b)
    assert (r.good, r.excluded_good) == (pytest.approx(20), pytest.approx(20))
    # stopped over the whole span (from 09:40): the output was made in the run before it,
    # as far back as its ideal time needs (40 x 30 s: 09:20-09:40), none in the break
    stopped = [StateInterval(a, at(cal, MON, "09:40"), "RUN"),
               StateInterval(at(cal, MON, "09:40"), b, "IDLE", "material")]
    r = evaluate(stopped, [c], 30, cal, a, b)
    assert (r.good, r.excluded_good) == (pytest.approx(40), 0)
    # without its span, a point at its time: in the break
    point = CountEvent(c.ts, "GOOD", 40.0)
    assert evaluate(stopped, [point], 30, cal, a, b).excluded_good == 40


@st.composite
def machine_truth(draw):
    durations = draw(st.lists(st.integers(1, 90), min_size=1, max_size=16))
    choices = [("RUN", None)] * 3 + [("IDLE", None), ("STOP", "breakdown"),
                                     ("UNKNOWN", None), ("OFF", "planned_maintenance")]
    states, t = [], T0
    for minutes in durations:
        state, reason = draw(st.sampled_from(choices))
        if draw(st.integers(0, 4)) == 0:
            t += 60 * draw(st.integers(1, 30))  # a gap: no report
        states.append(StateInterval(t, t + minutes * 60, state, reason))
        t = states[-1].end
    ideal = draw(st.sampled_from([0.9, 2, 60]))
    rate = draw(st.sampled_from([1.0, 0.8, 0.35]))
    every_s = draw(st.sampled_from([20, 60, 600]))
    cnts = heartbeats(states, ideal, rate, every_s, T0, t)
    cut = T0 + draw(st.integers(0, int(t - T0)))
    return states, cnts, ideal, cut, t


@settings(max_examples=100, deadline=None)
@given(machine_truth())
def test_property_no_performance_over_one_at_or_below_the_ideal_rate(truth):
    # Gaps, unknown time, breaks, planned stops and window edges anywhere: a machine that
    # never beats its ideal cycle never shows P above 100 %, and no output is lost.
    states, cnts, ideal, cut, end = truth
    for a, b in ((T0, cut), (cut, end), (T0, end)):
        r = evaluate(states, cnts, ideal, CAL, a, b)
        if r.performance is not None:
            assert r.performance <= 1 + 1e-9
    whole = [evaluate(states, cnts, ideal, CAL, a, b) for a, b in ((T0, cut), (cut, end))]
    total = sum(c.qty for c in cnts)
    placed = sum(x.good + x.unknown_good + x.excluded_good for x in whole)
    assert placed == pytest.approx(total, rel=1e-9, abs=1e-6)


# --- percent: how every Python table and message writes a ratio ---------------------------

def test_percent_exact():
    assert [percent(v) for v in (0.8754, 0.5, 1.0, 0.0, 1.234, None)] == [
        "87.5%", "50.0%", "100.0%", "0.0%", "123.4%", "-"]
    assert (percent(0.53, 0), percent(0.004, 0), percent(None, 0)) == ("53%", "0%", "-")


@given(st.floats(min_value=0, max_value=2, allow_nan=False))
@settings(max_examples=300, deadline=None)
def test_percent_writes_what_the_replaced_formatters_wrote(x):
    # The demo header used format's '%' type, the tables f"{100 * v:.1f}%" or v * 100.
    assert percent(x, 0) == f"{x:.0%}"
    assert percent(x) == f"{x:.1%}" == f"{x * 100:.1f}%"
