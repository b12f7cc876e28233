"""Retention and upkeep: old raw frames go in bounded batches, derived data and what live
operation needs stay; the collector's tick runs both; schema 3 -> 4; the report's queries
read by index; bench/report.py small."""

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from lampwatch.journal import FrameRow, Journal, open_readonly
from lampwatch.upkeep import JournalUpkeep

ROOT = Path(__file__).resolve().parent.parent
DAY = 86400.0


def frames(node, boot, seqs, t0, step=10.0):
    return [FrameRow(t0 + k * step, f"udp:10.0.0.{node}:5000", node, boot, seq, 3, seq * 1000,
                     bytes([seq % 256]) * 32) for k, seq in enumerate(seqs)]


def test_old_frames_go_in_batches_and_live_data_stays(tmp_path):
    path = tmp_path / "j.sqlite"
    with Journal(path) as j:
        # node 1: boot 1 long ago, then boot 2 (600 frames), also long ago (a year silent)
        j.commit(frames(1, 1, range(100), 1000.0))
        j.commit(frames(1, 2, range(600), 5000.0))
        # node 2: old frames and new ones of the same boot
        j.commit(frames(2, 7, range(600), 1000.0) + frames(2, 7, range(600, 630), 400 * DAY))
        j.commit(events=[(1000.0, "state", 1, "m1", '{"state":"RUN"}')])
        before = j.heard()
        cutoff = 100 * DAY
        done = [j.compact_frames(cutoff, batch=60) for _ in range(6)]
        # node 1: all of boot 1, boot 2 but its last 513; node 2: its old frames but the
        # 512 before its newest: 100 + 87 + 117, in batches
        assert done == [60, 60, 60, 60, 60, 4]
        assert j.compact_frames(cutoff, batch=60) == 0
        assert j.heard() == before  # last heard untouched
        # the tail of the boot each node was last heard from stays (its clock anchor)
        assert [f.seq for f in j.node_tail(before[0], 512)] == list(range(87, 600))
        assert j.frame_count() == 513 + 513
        # a deleted frame is still known as stored: sent again, it is never new
        assert j.has_frame(1, 1, 5) and j.has_frame(2, 7, 10) and j.has_frame(1, 2, 86)
        assert j.has_frame(2, 7, 117) and not j.has_frame(2, 7, 630)
        assert not j.has_frame(1, 3, 0)
        assert j.stored_frame(1, 1, 5) is None
        assert j.last_event_id() == 1  # derived data is kept
    with open_readonly(path) as r:  # the nodes view still knows when each was first heard
        assert sorted(r.frame_sources()) == [(1, "udp:10.0.0.1:5000", 1000.0, 10990.0),
                                             (2, "udp:10.0.0.2:5000", 1000.0,
                                              400 * DAY + 290.0)]


def test_a_pass_with_nothing_due_reads_a_few_rows_not_every_frame(tmp_path):
    """Retention runs every 10 minutes on the collector's tick: with nothing due it must not
    walk the frames (it did: 55-74 ms a pass in a 1,000-machine shift, growing with it)."""
    steps = {}
    for n in (2_000, 64_000):
        with Journal(tmp_path / f"j{n}.sqlite") as j:
            j.commit(frames(1, 1, range(n), 100 * DAY, step=0.1))
            ops = [0]
            # every 10 VM instructions (the list is bound now: B023)
            j._db.set_progress_handler(lambda ops=ops: ops.__setitem__(0, ops[0] + 1), 10)
            assert j.compact_frames(50 * DAY, batch=5000) == 0  # all newer than the cutoff
            steps[n] = ops[0]
            # and what is due is still found, with the tail of the node's boot kept
            ops[0] = 0
            assert j.compact_frames(100 * DAY + n * 0.05, batch=5000) == min(5000, n // 2)
            j._db.set_progress_handler(None, 0)
    # 32 x the frames: a few more bisection steps, not 32 x the work
    assert steps[64_000] < 2 * steps[2_000], steps


class _Journal:
    """Counts the upkeep's calls (the real journal's methods are tested above)."""

    rollups_pending = False  # each pass done in one slice

    def __init__(self, backlog):
        self.calls, self.backlog = [], backlog

    def update_rollups(self, *, short_stop_s, pm_policy, more):
        self.calls.append(("rollups", {"short_stop_s": short_stop_s, "pm_policy": pm_policy}))
        return 0

    def compact_frames(self, before_s, batch):
        n = min(batch, self.backlog)
        self.backlog -= n
        self.calls.append(("compact", before_s, n))
        return n


def test_upkeep_runs_when_due_and_works_off_a_backlog_one_batch_a_tick():
    j = _Journal(backlog=12)
    up = JournalUpkeep(j, retention_days=365, short_stop_s=120.0, pm_policy="planned_stop",
                       batch=5)
    for t in (0.0, 1.0, 2.0, 3.0, 30.0, 61.0, 700.0):
        up.tick(1e9 + t)
    cutoff = 1e9 - 365 * DAY
    assert j.calls == [
        ("rollups", {"short_stop_s": 120.0, "pm_policy": "planned_stop"}),
        ("compact", cutoff, 5), ("compact", cutoff + 1, 5), ("compact", cutoff + 2, 2),
        ("rollups", {"short_stop_s": 120.0, "pm_policy": "planned_stop"}),  # at 61 s
        ("rollups", {"short_stop_s": 120.0, "pm_policy": "planned_stop"}),  # at 700 s
        ("compact", cutoff + 700, 0)]  # ten minutes after the backlog was worked off
    assert up.compacted == 12


def test_the_rollups_slice_shrinks_by_what_the_tick_already_spent():
    """Points, the commit and the rollups must not add up in one tick: the rollups get the
    budget minus what the tick spent, but never less than a small slice (they progress)."""
    clock = [0.0]
    slices = []

    class Timed(_Journal):
        rollups_pending = True  # a pass with work left: every tick takes a slice

        def update_rollups(self, *, short_stop_s, pm_policy, more):
            t0 = clock[0]
            while more():
                clock[0] += 0.0005  # a piece of rollup work
            slices.append(round(clock[0] - t0, 4))
            return 0

    up = JournalUpkeep(Timed(0), retention_days=365, short_stop_s=120.0,
                       pm_policy="planned_stop", rollup_budget_s=0.02, clock=lambda: clock[0])
    for spent in (0.0, 0.005, 0.015, 0.05):
        up.tick(1e9, spent_s=spent)
    assert slices == [0.02, 0.015, 0.005, 0.002]


def test_a_schema_3_journal_gains_sources_and_builds_rollups_lazily(tmp_path):
    path = tmp_path / "j.sqlite"
    with Journal(path) as j:
        j.commit(frames(4, 1, range(5), 1000.0), [(1000.0, "state", 4, "m4", '{"state":"RUN"}'),
                                                  (1030.0, "state", 4, "m4",
                                                   '{"state":"STOP"}')])
    db = sqlite3.connect(path)
    for t in ("sources", "rollup_minutes", "rollup_hours", "rollup_machines", "rollup_nodes",
              "rollup_meta", "compacted"):
        db.execute(f"DROP TABLE {t}")
    for i in ("events_kind_ts", "events_machine_kind_ts", "events_node_kind"):
        db.execute(f"DROP INDEX {i}")
    db.execute("PRAGMA user_version = 3")
    db.commit()
    with open_readonly(path) as r:  # read as it is
        assert r.frame_sources() == [(4, "udp:10.0.0.4:5000", 1000.0, 1040.0)]
        assert r.rollup_machines() == {}
    with Journal(path) as j:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 6
        assert db.execute("SELECT * FROM sources").fetchall() == [
            (4, "udp:10.0.0.4:5000", 1000.0, 1040.0)]
        assert db.execute("SELECT count(*) FROM rollup_minutes").fetchone() == (0,)
        assert j.update_rollups() == 1  # built when the collector first keeps them
    assert db.execute("SELECT machine, from_s, to_s FROM rollup_machines").fetchall() == [
        ("m4", 960.0, 1020.0)]


@pytest.mark.parametrize("method, args", [
    ("machine_window", ("m1", 1000.0, 2000.0, 86400.0)),
    ("machine_last_ts", ("m1", 1000.0, 2000.0)),
    ("kind_between", ("clock", 1000.0, 2000.0)),
    ("clock_steps", (1000.0,)),
    ("states_since", (1000.0,)),
    ("last_hello_and_health", ()),
    ("last_lamp_states", ()),
    ("last_lit", ()),
    ("last_good_part", ()),
    ("machines", ()),
    ("rollup_stale", ()),
])
def test_the_report_and_nodes_queries_read_by_index(tmp_path, method, args):
    path = tmp_path / "j.sqlite"
    with Journal(path) as j:
        j.commit(frames(1, 1, range(3), 1000.0))
    with open_readonly(path) as r:
        plans = []
        real = r._db

        class Spy:
            def execute(self, sql, params=()):
                if sql.lstrip().upper().startswith(("SELECT", "WITH")):
                    plans.extend(row[-1] for row in real.execute(
                        "EXPLAIN QUERY PLAN " + sql, params))
                return real.execute(sql, params)

        r._db = Spy()
        getattr(r, method)(*args)
        r._db = real
    # no scan of the events, and no walk over all events of a machine or of a kind
    scans = [p for p in plans if "events" in p and (
        p.startswith("SCAN") or p.endswith(("(machine=?)", "(kind=?)")))]
    assert plans and not scans, plans


def test_bench_report_small_prints_its_figures_and_equals_the_event_report(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "report.py"), "--machines", "2",
                          "--days", "1", "--runs", "1", "--check",
                          "--journal", str(tmp_path / "b.sqlite")],
                         capture_output=True, text=True, timeout=300, check=True)
    figures = json.loads(out.stdout)
    assert figures["journal"]["machines"] == 2 and figures["journal"]["frames"] > 17000
    for key in ("import", "help"):
        assert figures["baseline"][key]["wall_s"] > 0 and figures["baseline"][key]["rss_mb"] > 0
    for key in ("report_shift", "report_whole"):
        assert figures[key]["wall_s"] > 0 and figures[key]["rss_mb"] > 0
    assert figures["check_max_diff_pp"] < 0.001
    assert isinstance(figures["meets"], bool)


def test_bench_restart_small_prints_its_figures(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "restart.py"), "--machines", "2",
                          "--days", "1,2", "--runs", "1", "--upgrade",
                          "--dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=300, check=True)
    figures = json.loads(out.stdout)
    one, two = figures["journals"]
    assert (one["days"], two["days"]) == (1, 2) and two["frames"] > one["frames"] > 17000
    for j in (one, two):
        # each node's one boot, each machine's state before shift C (the frames carry no
        # valid tag: the deriver takes none)
        assert j["last_counts"] == 2 and j["last_states"] == 2 and j["replayed_frames"] == 0
        assert j["replay_s"] > 0 and j["wall_s"] > 0 and j["rss_mb"] > 0
        assert j["before_schema_6"]["last_counts_by_grouping_s"] > 0
        assert j["before_schema_6"]["last_states_by_grouping_s"] > 0
    assert one["x_baseline"] == 1.0 and two["upgrade_from_schema_5_s"] > 0
    assert sorted(p.name for p in tmp_path.iterdir() if "schema5" in p.name) == []
