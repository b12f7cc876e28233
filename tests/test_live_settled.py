"""The running shift's OEE keeps the result of its settled past (host/live_oee.py): each
minute's figure must equal one evaluation of the whole shift from the same events, also
when events reach back into that past (a Wi-Fi gap's resends, an operator's reason, a count
faster than the ideal cycle), and the work per minute must stop growing with the shift."""

from __future__ import annotations

import random
import sys
from dataclasses import replace
from datetime import datetime, timezone

import pytest
from lampwatch import oee
from lampwatch.events import Event
from lampwatch.live_oee import OEESettings, ShiftOEE
from lampwatch.timeline import MachineTimeline, oee_data

M = "huller-1"
IDEAL = 2.0
SHIFT_START = datetime(2026, 12, 1, 6, 0, tzinfo=timezone.utc).timestamp()
CAL = oee.Calendar("UTC", (oee.Shift("A", "06:00", "14:00", breaks=(oee.Break("10:00", "10:30"),)),),
                   planned_stops=((SHIFT_START + 5 * 3600, SHIFT_START + 5 * 3600 + 900),))
SETTINGS = OEESettings(short_stop_s=120.0, startup_window_s=300.0)
SUMMED = [f for f in oee.OEEResult.__dataclass_fields__ if f not in ("machine", "start", "end")]
COUNTS = ("good", "ng", "startup_ng", "unknown_good", "unknown_ng", "excluded_good",
          "excluded_ng")


def state(ts, st, reason=None):
    return Event(ts, "state", 1, M, {"state": st} | ({"reason": reason} if reason else {}))


def count(ts, since, good, ng=0):
    return Event(ts, "count", 1, M, {"good": good, "ng": ng, "since_s": since})


def plan(seed: int) -> list[tuple[float, list[Event]]]:
    """(arrival time, events) of one machine's shift: 10 s heartbeats with their output,
    runs and stops of every length (some with a reason), a Wi-Fi gap whose events arrive
    15 min late, an operator's reason for an old stop, and a burst of output faster than
    the ideal cycle."""
    rng = random.Random(seed)
    out: list[tuple[float, list[Event]]] = []
    t, last_hb, st = SHIFT_START - 600, SHIFT_START - 600, "RUN"
    out.append((t, [state(t, "RUN")]))
    gap = (SHIFT_START + rng.uniform(1.5, 3) * 3600, rng.uniform(600, 1500))
    held: list[Event] = []
    while t < SHIFT_START + 8 * 3600 + 120:
        t += 10.0
        evs: list[Event] = []
        if rng.random() < 0.03:  # a state change, somewhere in the last 10 s
            new = rng.choice([s for s in ("RUN", "IDLE", "STOP", "UNKNOWN") if s != st])
            reason = rng.choice([None, None, "setup", "breakdown"]) if new == "STOP" else None
            evs.append(state(t - rng.uniform(0, 9), new, reason))
            st = new
        good = rng.choice([0, 3, 4, 5]) if st == "RUN" else 0
        if rng.random() < 0.01:
            good = 40  # faster than the ideal cycle: its output reaches back before `since`
        ng = 1 if rng.random() < 0.1 else 0
        if good or ng:
            evs.append(count(t, last_hb, good, ng))
        last_hb = t
        if gap[0] <= t < gap[0] + gap[1]:
            held += evs  # the node's outbox during the gap
            continue
        if held:
            out.append((t, held))
            held = []
        if evs:
            out.append((t, evs))
        if rng.random() < 0.002:  # an operator names an old stop
            out.append((t, [Event(t, "reason", 1, M, {"reason": "material",
                                                      "start_s": t - rng.uniform(600, 3600),
                                                      "end_s": None})]))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_live_equals_one_evaluation_of_the_whole_shift(seed):
    live = ShiftOEE(CAL, SETTINGS)
    inst = CAL.shift_at(SHIFT_START + 1)
    arrivals = plan(seed)
    i, settled_ends, tails = 0, set(), []
    for minute in range(1, 8 * 60 + 2):
        now = SHIFT_START + 60 * minute
        while i < len(arrivals) and arrivals[i][0] <= now:
            live.absorb(arrivals[i][1])
            i += 1
        got = live.evaluate(M, IDEAL, inst, now)
        end = min(now, inst.end)
        want = live.timeline(M).evaluate(IDEAL, CAL, inst.start, inst.end, until_s=end, now=end,
                                         short_stop_s=SETTINGS.short_stop_s,
                                         startup_window_s=SETTINGS.startup_window_s)
        for f in SUMMED:
            assert getattr(got, f) == pytest.approx(getattr(want, f), rel=1e-9, abs=1e-6), (
                minute, f)
        for f in COUNTS:  # whole counts stay whole: no count is split between the parts
            if getattr(want, f) == int(getattr(want, f)):
                assert getattr(got, f) == getattr(want, f), (minute, f)
        assert (got.start, got.end) == (want.start, want.end)
        kept = live._settled[M]
        settled_ends.add(kept.end)
        tails.append(len(live.timeline(M).counts))
    # The settled past really moved on, and what is evaluated each minute stayed bounded
    # while the shift's counts grew (~500): a few minutes' counts, except in the few minutes
    # where something reached back into it (the gap's resends, a reason) and it started over.
    assert len(settled_ends) > 40
    assert sorted(tails[-120:])[60] < 30
    assert sum(t > 100 for t in tails) <= 5
    # and the counts of the settled past are packed, not held as CountEvents
    tl = live.timeline(M)
    assert len(tl.all_counts()) > 400 and len(tl.counts) < 40


def test_a_reason_for_an_old_stop_changes_the_settled_past():
    live = ShiftOEE(CAL, SETTINGS)
    inst = CAL.shift_at(SHIFT_START + 1)
    live.absorb([state(SHIFT_START, "RUN"), state(SHIFT_START + 600, "STOP"),
                 state(SHIFT_START + 1200, "RUN")])
    for k in range(1, 360):
        live.absorb([count(SHIFT_START + 10 * k, SHIFT_START + 10 * (k - 1), 2)])
    before = live.evaluate(M, IDEAL, inst, SHIFT_START + 3600)
    assert live._settled[M].end > SHIFT_START + 1200  # the stop is in the settled past
    assert before.breakdown_s == pytest.approx(600)
    live.absorb([Event(SHIFT_START + 3600, "reason", 1, M,
                       {"reason": "setup", "start_s": SHIFT_START + 700, "end_s": None})])
    after = live.evaluate(M, IDEAL, inst, SHIFT_START + 3600)
    assert (after.breakdown_s, after.setup_s) == (0.0, pytest.approx(600))


def test_a_round_of_points_and_the_finals_are_spread_over_ticks():
    """With more machines than PER_TICK, each tick evaluates PER_TICK of them: every machine
    still gets one point per round and exactly one final, and the next shift's points wait
    for the last final (oee events never go back in time)."""
    from lampwatch import live_oee

    cal = oee.Calendar("UTC", (oee.Shift("A", "06:00", "07:00"), oee.Shift("B", "07:00", "08:00")))
    live = ShiftOEE(cal, OEESettings(interval_s=60.0))
    n = 2 * live_oee.PER_TICK + 10
    machines = [(k, f"m{k}", 1.0) for k in range(1, n + 1)]
    points: dict[tuple[str, bool], list[tuple[str, float]]] = {}
    times = []
    for sec in range(3600 + 120):
        evs = live.tick(SHIFT_START + sec, machines, grace_s=11.0)
        for e in evs:
            points.setdefault((e.data["shift"], e.data["final"]), []).append((e.machine, e.ts_s))
            times.append(e.ts_s)
        assert len(evs) <= live_oee.PER_TICK
    first_round = [m for m, ts in points[("A", False)] if ts < SHIFT_START + 60]
    assert sorted(first_round) == sorted(m for _, m, _ in machines)  # 3 ticks, each once
    finals = points[("A", True)]
    assert sorted(m for m, _ in finals) == sorted(m for _, m, _ in machines)
    assert {ts for _, ts in finals} == {SHIFT_START + 3600}  # dated at the shift's end
    b_first = min(ts for _, ts in points[("B", False)])
    assert b_first >= SHIFT_START + 3600 + 11 + 2  # after the third tick of finals
    assert times == sorted(times)  # in the order they were made, never back in time


def test_a_ticks_evaluations_are_bounded_by_what_they_read(monkeypatch):
    """Busy machines (a lamp change every 20 s) cost ~75 units an evaluation, and 100 of
    them took a tick up to 74 ms (ingest waits meanwhile): a tick now evaluates only as
    many as UNITS_PER_TICK allows (at least one). The rest get their points at the next
    ticks, each still one a round, and the figures do not depend on it: the finals equal,
    to the last bit, those of a run without the bound."""
    from lampwatch import live_oee

    cal = oee.Calendar("UTC", (oee.Shift("A", "06:00", "07:00"),))
    machines = [(k, f"m{k}", IDEAL) for k in range(1, 21)]

    def run(units: float) -> tuple[list[int], dict]:
        monkeypatch.setattr(live_oee, "UNITS_PER_TICK", units)
        live = ShiftOEE(cal, OEESettings(interval_s=60.0, short_stop_s=30.0))
        per_tick, finals = [], {}
        for sec in range(1, 3600 + 300):
            t = SHIFT_START + sec
            if sec <= 3600:
                for k, name, _ in machines:
                    evs = [Event(t, "count", k, name, {"good": 1, "ng": 0, "since_s": t - 1})]
                    if (sec + k) % 20 == 0:
                        st = ("RUN", "IDLE")[(sec + k) // 20 % 2]
                        evs.append(Event(t - 0.5, "state", k, name, {"state": st}))
                    live.absorb(evs)
            points = live.tick(t, machines, grace_s=11.0)
            per_tick.append(sum(not e.data["final"] for e in points))
            finals.update((e.machine, e.data) for e in points if e.data["final"])
        return per_tick, finals

    bounded, finals = run(300)
    unbounded, want = run(float("inf"))
    assert max(unbounded) == len(machines)  # each round in one tick
    assert 1 <= max(bounded[900:]) < len(machines) // 2  # once views are full: spread
    assert sum(bounded) >= 50 * len(machines)  # still about a point a minute each
    assert len(finals) == len(machines) and finals == want


def test_a_restart_mid_shift_catches_up_within_each_ticks_steps_to_the_exact_figures():
    """A collector started 5 h into a shift must walk every machine's settled past again.
    No tick takes more than STEPS_PER_TICK steps of it (a restart must not stop ingest);
    a machine not caught up gets its point at a later tick, and every point is the figure
    a collector that ran all along gives, to the last bit (a journal's recompute agrees)."""
    from lampwatch import live_oee

    inst = CAL.shift_at(SHIFT_START + 1)
    machines = [(k, f"m{k}", IDEAL) for k in range(1, 41)]
    per_machine = {name: [e for e in plan_of(k, name)
                          if e.ts_s <= SHIFT_START + 5 * 3600 - 30]
                   for k, name, _ in machines}
    restarted = ShiftOEE(CAL, SETTINGS)
    for evs in per_machine.values():
        restarted.absorb(evs)
    restarted.resume(SHIFT_START + 5 * 3600 - 30, 0.0)
    points, ticks = {}, 0
    while len(points) < len(machines) and ticks < 120:
        for e in restarted.tick(SHIFT_START + 5 * 3600 + ticks, machines):
            points.setdefault(e.machine, e)
        ticks += 1
        assert 0 <= restarted._steps <= live_oee.STEPS_PER_TICK  # (what the tick left)
    # 40 machines x ~37 steps (5 h of 8-minute steps): the first round took several ticks
    steps = len(machines) * (5 * 3600 // live_oee._STEP_S - 1)
    assert len(points) == len(machines) and ticks >= steps // live_oee.STEPS_PER_TICK > 3
    for _, name, _ in machines:
        all_along = ShiftOEE(CAL, SETTINGS)  # evaluated every minute since the shift began
        all_along.absorb(per_machine[name])
        for minute in range(1, 5 * 60):
            all_along.evaluate(name, IDEAL, inst, SHIFT_START + 60 * minute)
        want = oee_data(all_along.evaluate(name, IDEAL, inst, points[name].ts_s), True)
        assert {f: points[name].data[f] for f in want} == want, name


def test_a_restarts_replayed_counts_stay_packed_also_after_the_boards_view():
    """A restart 5 h into a shift replays every machine's counts (1,000 machines: 355,000).
    They stay packed (~25 B each, not ~150 as CountEvents), also after the board's first
    view; that view has the figures of the whole shift, and being watched changes no point
    the ticks make."""
    import gc
    import tracemalloc

    inst = CAL.shift_at(SHIFT_START + 1)
    now = SHIFT_START + 5 * 3600
    machines = [(k, f"m{k}", IDEAL) for k in range(1, 11)]
    events = [e for k, name, _ in machines for e in plan_of(k, name) if e.ts_s <= now - 30]
    watched, unwatched = ShiftOEE(CAL, SETTINGS), ShiftOEE(CAL, SETTINGS)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        watched.absorb(events)
        watched.resume(now - 30, 0.0)
        replayed = tracemalloc.get_traced_memory()[0] - base
        view = watched.glance([(name, ideal) for _, name, ideal in machines], inst, now)
        gc.collect()
        viewed = tracemalloc.get_traced_memory()[0] - base - sys.getsizeof(view)
    finally:
        tracemalloc.stop()
    n = sum(len(watched.timeline(name).all_counts()) for _, name, _ in machines)
    assert n > 10 * 250
    assert replayed < 40 * n and viewed < 45 * n, (replayed / n, viewed / n)
    unwatched.absorb(events)
    unwatched.resume(now - 30, 0.0)
    for _, name, _ in machines:
        want = watched.timeline(name).evaluate(IDEAL, CAL, inst.start, inst.end, until_s=now,
                                               now=now, short_stop_s=SETTINGS.short_stop_s,
                                               startup_window_s=SETTINGS.startup_window_s)
        for f in SUMMED:
            assert getattr(view[name], f) == pytest.approx(getattr(want, f), rel=1e-9,
                                                           abs=1e-6), (name, f)
    points = {id(watched): [], id(unwatched): []}
    for tick in range(60):
        for live in (watched, unwatched):
            points[id(live)] += [(e.ts_s, e.machine, e.data)
                                 for e in live.tick(now + tick, machines)]
        if tick % 3 == 0:  # the board keeps looking while the ticks catch up
            watched.glance([(name, ideal) for _, name, ideal in machines], inst, now + tick)
    assert {m for _, m, _ in points[id(watched)]} == {name for _, name, _ in machines}
    assert points[id(watched)] == points[id(unwatched)]


def test_ticks_far_apart_still_give_every_machine_its_points():
    """The demo runs the collector at 240x: its 1 s ticks are 4 minutes of shift apart.
    Each machine walks its settled past once, then keeps up: all get a point each round."""
    machines = [(k, f"m{k}", IDEAL) for k in range(1, 7)]
    live = ShiftOEE(CAL, SETTINGS)
    for k, name, _ in machines:
        live.absorb(plan_of(k, name))
    got: dict[str, int] = {}
    for tick in range(1, 8 * 15):  # 8 hours in 4-minute ticks
        for e in live.tick(SHIFT_START + 240 * tick, machines):
            got[e.machine] = got.get(e.machine, 0) + 1
    assert got == {name: 8 * 15 - 1 for _, name, _ in machines}


def plan_of(seed: int, machine: str) -> list[Event]:
    """plan(seed)'s events, in arrival order, for `machine`."""
    return [replace(e, machine=machine) for _, evs in plan(seed) for e in evs]


def test_pruning_keeps_the_packed_counts_of_the_kept_hour():
    """At a shift change the timeline forgets what is older than an hour before the new
    shift, packed counts included, without unpacking the shift's counts first."""
    live = ShiftOEE(CAL, SETTINGS)
    inst = CAL.shift_at(SHIFT_START + 1)
    live.absorb([state(SHIFT_START, "RUN")])
    for k in range(1, 8 * 360):
        live.absorb([count(SHIFT_START + 10 * k, SHIFT_START + 10 * (k - 1), 2)])
        if k % 6 == 0:
            live.evaluate(M, IDEAL, inst, SHIFT_START + 10 * k)
    tl = live.timeline(M)
    before = tl.all_counts()
    assert len(tl.counts) < 40 and len(before) > 900  # ~2 a minute (merged), nearly all packed
    assert sum(c.qty for c in before) == 2 * (8 * 360 - 1)
    cut = SHIFT_START + 7 * 3600
    tl.prune(cut)
    assert tl.all_counts() == [c for c in before if c.ts >= cut]
    assert sum(c.qty for c in tl.all_counts()) > 2 * 350


@pytest.mark.parametrize("seed", range(3))
def test_the_figure_does_not_depend_on_when_it_was_evaluated_before(seed):
    """A journal imported or recomputed must give the live figures to the last bit: the
    settled past ends, and is summed, at the same places whatever the evaluation schedule."""
    inst = CAL.shift_at(SHIFT_START + 1)
    arrivals = plan(seed)
    results = {}
    for every in (1, 7, 60):  # minutes between evaluations
        live, i = ShiftOEE(CAL, SETTINGS), 0
        for minute in range(1, 8 * 60 + 2):
            now = SHIFT_START + 60 * minute
            while i < len(arrivals) and arrivals[i][0] <= now:
                live.absorb(arrivals[i][1])
                i += 1
            if minute % every == 0 or minute % 60 == 0:
                got = live.evaluate(M, IDEAL, inst, now)
                if minute % 60 == 0:
                    results.setdefault(minute, []).append(got)
    for minute, (a, *others) in results.items():
        assert all(o == a for o in others), minute  # every field, exactly


def _heartbeats(live: ShiftOEE, t0: float, n: int, stop: str = "IDLE",
                also: MachineTimeline | None = None) -> float:
    """`n` heartbeats of a machine counting every 10 s from `t0`, changing between RUN and
    `stop` every 4 minutes, a tick a minute (also into `also`, never pruned); returns the
    last one's time."""
    for k in range(1, n + 1):
        t = t0 + 10 * k
        evs = [count(t, t - 10, 3)] + ([state(t - 5, ("RUN", stop)[k // 24 % 2])]
                                       if k % 24 == 0 else [])
        live.absorb(evs)
        for ev in evs if also is not None else ():
            also.add(ev)
        if k % 6 == 0:  # a tick a minute (the collector ticks every second)
            live.tick(t, [(1, M, IDEAL)])
    return t0 + 10 * n


def _same_as_unpruned(live: ShiftOEE, everything: MachineTimeline, cal: oee.Calendar,
                      now: float) -> None:
    """The live figure of the shift running at `now` equals one evaluation of all events."""
    inst = cal.shift_at(now)
    got = live.evaluate(M, IDEAL, inst, now)
    want = everything.evaluate(IDEAL, cal, inst.start, inst.end, until_s=now, now=now,
                               short_stop_s=SETTINGS.short_stop_s,
                               startup_window_s=SETTINGS.startup_window_s)
    for f in SUMMED:
        assert getattr(got, f) == pytest.approx(getattr(want, f), rel=1e-9, abs=1e-6), f
    assert got.good == want.good > 0


def test_between_shifts_the_timelines_keep_the_last_hours_states_and_no_older_count():
    """A collector with no shift running kept every state change and count it took, for
    ever: 12 hours between shifts now leave the state changes of about the last hour and a
    quarter and the counts since the last prune (what a shift starting now would read)."""
    sunday = oee.Calendar("UTC", (oee.Shift("S", "06:00", "14:00", weekdays=(6,)),))
    assert datetime.fromtimestamp(SHIFT_START, timezone.utc).weekday() == 1  # a Tuesday
    live = ShiftOEE(sunday, SETTINGS)
    now = _heartbeats(live, SHIFT_START, 12 * 360)
    tl = live.timeline(M)
    kept = tl.all_counts()
    # counts: only those since the last round (a shift yet to come starts after it); a
    # round a quarter of an hour after the one before
    assert kept and min(c.ts for c in kept) >= now - 900 - 60
    assert len(kept) <= 2 * 17  # one GOOD a minute (coalesced)
    starts = [s.start for s in tl.intervals(now)]
    assert len(starts) <= 20 and starts[0] >= now - 3600 - 900 - 240  # the one in effect then


def test_a_shift_keeps_no_count_from_before_it():
    """A count dated before a shift's start has all its output before it (host/losses.py
    lays output back from a count's time), so the shift never reads it: an hour of them was
    kept through every shift. The state changes of that hour stay (the state in effect at
    the start, a stop run going on, where a later count's output lies)."""
    live = ShiftOEE(CAL, SETTINGS)
    everything = MachineTimeline(M, coalesce_s=60.0)
    # 04:00 to 07:00, the shift from 06:00
    now = _heartbeats(live, SHIFT_START - 7200, 3 * 360, "STOP", everything)
    tl = live.timeline(M)
    assert min(c.ts for c in tl.all_counts()) >= SHIFT_START
    assert tl.intervals(now)[0].start <= SHIFT_START - 3600 + 240  # the states of the hour
    _same_as_unpruned(live, everything, CAL, now)


@pytest.mark.parametrize("calendar", [None, oee.Calendar("UTC", ())], ids=["none", "no shifts"])
def test_without_shifts_no_timeline_is_kept(calendar):
    """With no shift to evaluate, nothing reads a timeline: kept, they were most of what a
    collector held per node in the steady state (its last 75 minutes)."""
    live = ShiftOEE(calendar, SETTINGS)
    _heartbeats(live, SHIFT_START, 2 * 360)
    assert live.timelines == {}
    live.expect(M)  # a configured machine (the deriver's nodes)
    assert live.timelines == {}
    assert not live.keeps and ShiftOEE(CAL, SETTINGS).keeps


def test_a_shift_after_an_idle_gap_has_the_figures_of_all_its_events():
    """Pruned while no shift ran: the next shift still sees the state in effect at its
    start and every count whose output reaches into it."""
    cal = oee.Calendar("UTC", (oee.Shift("A", "06:00", "14:00"),))
    live = ShiftOEE(cal, SETTINGS)
    everything = MachineTimeline(M, coalesce_s=60.0)
    t0 = SHIFT_START - 10 * 3600  # 20:00 the evening before: 10 idle hours
    # until 13:59, the shift still running
    now = _heartbeats(live, t0, 18 * 360 - 6, "STOP", everything)
    assert now == SHIFT_START + 8 * 3600 - 60
    assert min(c.ts for c in live.timeline(M).all_counts()) > t0 + 3600  # it did prune
    _same_as_unpruned(live, everything, cal, now)


def test_the_live_timelines_hold_no_count_objects_between_evaluations():
    """A machine's counts merge per minute, one heartbeat after another. A new CountEvent per
    heartbeat lived a second or two: long enough to reach the garbage collector's oldest
    generation, whose full pass (~50 ms at 10,000 nodes, stopping ingest) it set off every
    ~10 s. The timelines keep counts as columns, and make CountEvents only when read."""
    import gc

    live = ShiftOEE(CAL, SETTINGS)
    inst = CAL.shift_at(SHIFT_START + 1)
    names = [f"m{k}" for k in range(200)]
    live.absorb([replace(state(SHIFT_START, "RUN"), machine=n) for n in names])
    for k in range(1, 13):  # two minutes of 10 s heartbeats
        ts = SHIFT_START + 10 * k
        live.absorb([replace(count(ts, ts - 10, 3, k % 2), machine=n) for n in names])
    gc.collect()
    held = [o for o in gc.get_objects() if type(o) is oee.CountEvent]
    assert not held, f"{len(held)} CountEvents held"
    for n in names[:5]:  # still there when read, merged per minute
        got = live.evaluate(n, IDEAL, inst, SHIFT_START + 130)
        assert (got.good, got.ng) == (36, 6)
        # per minute a GOOD and an NG; a heartbeat whose span straddles a minute's edge
        # (at 1:00, at 2:00) stays apart
        assert [(c.ts - SHIFT_START, c.kind, c.qty) for c in live.timeline(n).all_counts()] == [
            (50, "GOOD", 15), (50, "NG", 3), (60, "GOOD", 3), (110, "GOOD", 15),
            (110, "NG", 3), (120, "GOOD", 3)]
