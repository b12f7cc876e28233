"""What a restart reads of the journal besides the shift it rebuilds (schema 6), at a cost
that does not grow with the journal's history:
- the last_counts table: each node and boot's newest count event, kept as events are
  stored, so a restart reads one row a boot instead of every count event;
- each machine's last state before a time, by the index of state events in id order;
- the frames that rebuild the nodes, their ids gathered inside SQLite, not in Python;
- the events since the shift's start, read from the first id dated since then.

Each test checks them against what the reads a restart made before find (a scan of every
count or state event; the frame ids gathered in Python), written out here as the reference.
"""

import json
import random
import sqlite3
import tracemalloc

import pytest
from lampwatch.boot_counts import BOOTS_KEPT
from lampwatch.errors import SinkError
from lampwatch.journal import FrameRow, Journal
from lampwatch.journal.history import HistoryJournal
from lampwatch.journal.store import REPLAY_DATA

# The newest count event per (node, boot) by a scan of all of them: a count that names no
# node or no integer boot seeds nothing at a restart (Deriver._seed_counts), so none here.
_SCAN = ("SELECT id, ts_s, kind, node_id, machine, data FROM events WHERE id IN "
         "(SELECT max(id) FROM events WHERE kind = 'count' AND node_id IS NOT NULL AND "
         "json_valid(data) AND json_type(data, '$.boot_id') = 'integer' "
         "GROUP BY node_id, json_extract(data, '$.boot_id')) ORDER BY id")


def scanned(path):
    db = sqlite3.connect(path)
    try:
        return db.execute(_SCAN).fetchall()
    finally:
        db.close()


def count(ts, node, boot, good, *, text=False):
    data = {"boot_id": boot, "good": 1, "good_total": good, "ng": 0, "ng_total": 0,
            "since_s": ts - 1.0}
    if text:  # keys in another order: the table must not rely on the deriver's text
        data = json.dumps(dict(reversed(list(data.items()))))
    return (ts, "count", node, f"m{node}", data)


def random_events(rng, n, t0=1000.0, most_boots=3):
    """n events of 5 nodes, each of 1 to `most_boots` boots, in an order where an earlier
    boot's counts still arrive after a later boot's (a node's backlog), with other kinds in
    between."""
    boots = {node: rng.sample(range(1, 2 ** 32), rng.randint(1, most_boots))
             for node in range(1, 6)}
    out = []
    for k in range(n):
        node = rng.randint(1, 5)
        ts = t0 + k + rng.random()
        r = rng.random()
        if r < 0.7:
            out.append(count(ts, node, rng.choice(boots[node]), k, text=rng.random() < 0.2))
        elif r < 0.8:
            out.append((ts, "state", node, f"m{node}", {"state": "RUN", "prev": "IDLE"}))
        elif r < 0.85:  # counts the restart never seeds from
            out.append((ts, "count", node, f"m{node}", {"good": 1}))
        elif r < 0.9:
            out.append((ts, "count", None, None, {"boot_id": 5, "good": 1}))
        else:
            out.append((ts, "lamp", node, f"m{node}", {"lamp": "GREEN", "state": "ON"}))
    return out


def commit_in_batches(j, rng, events):
    k = 0
    while k < len(events):
        n = rng.randint(1, 40)
        j.commit(events=events[k:k + n])
        k += n


def query_plans(j, read):
    """The query plans (EXPLAIN QUERY PLAN's details) of what `read()` asks the journal;
    read() must return something true."""
    real, plans = j._db, []

    class Spy:
        def execute(self, sql, params=()):
            plans.extend(row[-1] for row in real.execute("EXPLAIN QUERY PLAN " + sql, params))
            return real.execute(sql, params)

    j._db = Spy()
    try:
        assert read()
    finally:
        j._db = real
    return plans


def test_the_table_holds_what_a_scan_of_every_count_finds(tmp_path):
    rng = random.Random(6)
    path = tmp_path / "j.sqlite"
    with Journal(path) as j:
        commit_in_batches(j, rng, random_events(rng, 3000))
        got = [tuple(e) for e in j.last_counts()]
    want = scanned(path)
    assert got == want
    assert len(want) >= 10  # several boots of each node, some counted after a later boot's


def test_a_restart_reads_each_nodes_newest_boots_only(tmp_path):
    """A node powered up every day has hundreds of boots in a year's journal; its count
    maxima keep 4 live (boot_counts.BOOTS_KEPT), and a restart seeds no more."""
    rng = random.Random(8)
    path = tmp_path / "j.sqlite"
    with HistoryJournal(path) as j:
        commit_in_batches(j, rng, random_events(rng, 3000, most_boots=8))
        got = [tuple(e) for e in j.last_counts(per_node=BOOTS_KEPT)]
        # the recompute's read of the journal as it stood (here: all of it) is the same
        assert [tuple(e) for e in j.last_counts_before(1e12, BOOTS_KEPT)] == got
    every = scanned(path)
    want = [row for row in every
            if sorted((r[0] for r in every if r[3] == row[3]), reverse=True).index(row[0])
            < BOOTS_KEPT]
    assert got == want
    boots = {n: sum(r[3] == n for r in every) for n in {r[3] for r in every}}
    assert max(boots.values()) > BOOTS_KEPT  # some node lost its oldest boots, none all
    assert {n: sum(r[3] == n for r in want) for n in boots} == {
        n: min(b, BOOTS_KEPT) for n, b in boots.items()}


def test_an_older_journal_gains_the_table_and_the_index_from_its_events(tmp_path):
    rng = random.Random(7)
    path = tmp_path / "j.sqlite"
    with Journal(path) as j:
        commit_in_batches(j, rng, random_events(rng, 1000))
    db = sqlite3.connect(path)
    db.execute("DROP TABLE last_counts")
    db.execute("DROP INDEX events_state_machine")
    db.execute("PRAGMA user_version=5")
    db.commit()
    db.close()
    with Journal(path) as j:
        assert [tuple(e) for e in j.last_counts()] == scanned(path)
        commit_in_batches(j, rng, random_events(rng, 500, t0=5000.0))
        assert [tuple(e) for e in j.last_counts()] == scanned(path)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 6
    assert [r[1] for r in db.execute("PRAGMA table_info(last_counts)")] == [
        "node_id", "boot_id", "event_id"]
    assert db.execute("SELECT sql FROM sqlite_master WHERE name = 'events_state_machine'"
                      ).fetchone() == (("CREATE INDEX events_state_machine ON events(machine) "
                                        "WHERE kind = 'state'"),)


def test_a_recompute_leaves_the_table_as_a_scan_would_find_it(tmp_path):
    path = tmp_path / "j.sqlite"
    with HistoryJournal(path) as j:
        j.commit(events=[count(1000.0, 1, 11, 5), count(1000.0, 2, 21, 5),
                         count(2000.0, 1, 11, 9), count(2000.0, 2, 21, 9),
                         count(2000.0, 3, 31, 4), count(1500.0, 2, 22, 3)])
        # From 1800 on: node 1 derived again, node 2 and node 3 not (taken out of the
        # config): node 2's boot 21 falls back to its count at 1000, node 3's boot is gone.
        with j.recompute_transaction(1800.0) as add:
            add([count(2000.0, 1, 11, 10)])
        got = [(e.node_id, json.loads(e.data)["boot_id"], json.loads(e.data)["good_total"])
               for e in j.last_counts()]
    assert sorted(got) == [(1, 11, 10), (2, 21, 5), (2, 22, 3)]
    assert [tuple(e) for e in Journal(path).last_counts()] == scanned(path)


def test_a_failed_commit_leaves_the_table_as_it_was(tmp_path):
    path = tmp_path / "j.sqlite"
    with Journal(path) as j:
        j.commit(events=[count(1000.0, 1, 11, 5)])
        before = j.last_counts()
        with pytest.raises(SinkError):  # the second event's data is no JSON
            j.commit(events=[count(1001.0, 1, 11, 6), (1002.0, "count", 1, "m1", {1j})])
        assert j.last_counts() == before == [tuple(e) for e in scanned(path)]


def test_the_restart_read_walks_the_table_not_the_events(tmp_path):
    path = tmp_path / "j.sqlite"
    with Journal(path) as j:
        j.commit(events=[count(1000.0 + k, k % 3, 7, k) for k in range(30)])
        plans = query_plans(j, lambda: len(j.last_counts()) == 3)
    assert any(p.startswith("SCAN l") for p in plans), plans
    assert not [p for p in plans if p.startswith("SCAN e")], plans


# The last state per machine dated before a time, by a grouping of every state event.
_SCAN_STATES = ("SELECT id, ts_s, kind, node_id, machine, data FROM events WHERE id IN "
                "(SELECT max(id) FROM events WHERE kind = 'state' AND ts_s < ? "
                "GROUP BY machine) ORDER BY id")


def random_states(rng, n, t0=1000.0):
    """n events: state changes of 4 machines from 6 nodes (a node moved to another machine
    half-way, one machine served by two), one in seven dated up to 2,000 s before the
    ones already stored (a node back from silence), states naming no machine, counts."""
    machine_of = {1: "m1", 2: "m2", 3: "m3", 4: "m3", 5: "m4", 6: "m1"}
    out = []
    for k in range(n):
        node = rng.randint(1, 6)
        if k == n // 2:
            machine_of[6] = "m2"
        ts = t0 + k * 10 + rng.random() - (rng.uniform(0, 2000) if rng.random() < 1 / 7 else 0)
        r = rng.random()
        if r < 0.7:
            out.append((ts, "state", node, machine_of[node],
                        {"state": rng.choice(["RUN", "IDLE", "STOP"]), "prev": "RUN"}))
        elif r < 0.75:
            out.append((ts, "state", node, None, {"state": "UNKNOWN", "prev": "RUN"}))
        else:
            out.append(count(ts, node, 3, k))
    return out


def test_each_machines_last_state_before_a_time_is_what_a_grouping_finds(tmp_path):
    rng = random.Random(9)
    path = tmp_path / "j.sqlite"
    with Journal(path) as j:
        commit_in_batches(j, rng, random_states(rng, 4000))
        db = sqlite3.connect(path)
        differs = 0
        for before in [500.0, 1000.0, 1234.5, 8000.0, 20_000.0, 39_000.0, 60_000.0]:
            want = db.execute(_SCAN_STATES, (before,)).fetchall()
            assert [tuple(e) for e in j.last_before("state", before)] == want, before
            # the data has late states: by date, another state would be the last
            by_date = db.execute(
                "SELECT machine, max(ts_s) FROM events WHERE kind = 'state' AND ts_s < ? "
                "GROUP BY machine", (before,)).fetchall()
            differs += sorted(by_date, key=str) != sorted(((r[4], r[1]) for r in want), key=str)
        db.close()
    assert differs >= 2


def test_the_last_states_are_read_by_the_state_index_not_a_scan(tmp_path):
    rng = random.Random(10)
    path = tmp_path / "j.sqlite"
    with Journal(path) as j:
        commit_in_batches(j, rng, random_states(rng, 300))
        plans = query_plans(j, lambda: j.last_before("state", 2000.0))
    on_events = [p for p in plans if "events" in p]
    assert on_events and all("events_state_machine" in p for p in on_events), plans
    assert not [p for p in plans if p.startswith("SCAN events")], plans


def frame_rows(rng, nodes, per_node, t0=1000.0):
    """Frames of `nodes` nodes in arrival order: each node's boot 1, then boot 2 (a reboot a
    third of the way); one frame in ten arrives up to 50 frames late (a resend)."""
    made = []
    for node in range(1, nodes + 1):
        for k in range(per_node):
            boot, seq = (1, k) if k < per_node // 3 else (2, k - per_node // 3)
            late = rng.uniform(0, 50) if rng.random() < 0.1 else 0.0
            made.append((k * nodes + node + late, node, boot, seq))
    made.sort()
    return [FrameRow(t0 + i * 0.01, f"udp:10.0.0.{node}:5000", node, boot, seq, 3, seq * 1000,
                     bytes([node, seq % 256]) * 16)
            for i, (_, node, boot, seq) in enumerate(made)]


def old_replay_frames(path, heard, tail, since_s, before_s=None):
    """The frames a restart read before: the ids gathered in Python, then read by id."""
    db = sqlite3.connect(path)
    ids = set()
    if before_s is None:
        ids.update(r[0] for r in db.execute("SELECT id FROM frames WHERE rx_s >= ?",
                                            (since_s,)))
    else:
        ids.update(r[0] for r in db.execute("SELECT id FROM frames WHERE rx_s >= ? AND "
                                            "rx_s < ?", (since_s, before_s)))
    for h in heard:
        ids.update(r[0] for r in db.execute(
            "SELECT id FROM frames WHERE node_id = ? AND boot_id = ? AND seq >= ? AND rx_s < ?",
            (h.node_id, h.boot_id, h.seq - tail, 1e300 if before_s is None else before_s)))
    rows = [db.execute("SELECT rx_s, raw FROM frames WHERE id = ?", (i,)).fetchone()
            for i in sorted(ids)]
    db.close()
    return rows


def test_the_replayed_frames_are_the_nodes_tails_and_the_recent_ones_in_id_order(tmp_path):
    rng = random.Random(11)
    path = tmp_path / "j.sqlite"
    with HistoryJournal(path) as j:
        rows = frame_rows(rng, 20, 300)
        for k in range(0, len(rows), 97):
            j.commit(rows[k:k + 97])
        heard = j.heard()
        for tail, since in [(50, 1055.0), (512, 1e12), (0, 1000.0), (7, 1059.9)]:
            got = list(j.replay_frames(heard, tail, since))
            assert got == old_replay_frames(path, heard, tail, since), (tail, since)
        # the journal as it stood at 1030 (a recompute): its tails and frames before then
        before = j.heard_before(1030.0)
        got = list(j.replay_frames(before, 40, 1020.0, before_s=1030.0))
        assert got == old_replay_frames(path, before, 40, 1020.0, 1030.0)
        assert len(got) > 200 and max(r[0] for r in got) < 1030.0


def test_the_replayed_frames_ids_are_not_held_in_python(tmp_path):
    """200 nodes x 512 frames: their ids as a Python set and sorted list took ~8 MB."""
    path = tmp_path / "j.sqlite"
    with Journal(path) as j:
        for seq in range(600):
            j.commit([FrameRow(1000.0 + seq + n / 1000, "udp:10.0.0.1:5000", n, 1, seq, 3,
                               seq * 1000, b"x" * 40) for n in range(1, 201)])
        tracemalloc.start()
        try:
            n = sum(1 for _ in j.replay_frames(j.heard(), 512, 1e12))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert n == 200 * 513
        assert peak < 1 * 2**20, peak


def test_the_replayed_events_are_every_one_dated_since_a_time_read_from_the_first(tmp_path):
    """Events of several kinds, dated out of order (one in seven up to 2,000 s early, one
    far in the future, one without a kind): the restart reads every event dated at or
    after the time, in id order, and its scan starts at the first such id."""
    rng = random.Random(12)
    path = tmp_path / "j.sqlite"
    with Journal(path) as j:
        events = random_states(rng, 3000) + random_events(rng, 2000, t0=31_000.0)
        events.insert(100, (90_000.0, "health", 1, "m1", {"rssi": -60}))
        events.insert(200, (35_000.0, None, 1, "m1", {}))
        commit_in_batches(j, rng, events)
        db = sqlite3.connect(path)
        for since in [0.0, 20_000.0, 31_500.0, 32_999.0, 40_000.0, 89_999.0, 95_000.0]:
            want = db.execute(f"SELECT id, ts_s, kind, node_id, machine, {REPLAY_DATA} FROM "
                              "events WHERE ts_s >= ? ORDER BY id", (since,)).fetchall()
            assert [tuple(e) for e in j.replay_events(since)] == want, since
        db.close()


def sqlite_steps(j, read):
    """How many SQLite VM instructions `read()` takes (the rows it visits, roughly)."""
    steps = [0]

    def count():
        steps[0] += 1

    j._db.set_progress_handler(count, 1)
    try:
        read()
    finally:
        j._db.set_progress_handler(None, 1)
    return steps[0]


def test_the_replayed_events_cost_what_came_since_not_the_history(tmp_path):
    """The same 300 events of the last hour after no history and after 30,000 events: the
    read visits about as much (it scanned the last 5 million events by id)."""
    rng = random.Random(13)
    recent = random_events(rng, 300, t0=100_000.0)
    steps = []
    for history in (0, 30_000):
        with Journal(tmp_path / f"j{history}.sqlite") as j:
            commit_in_batches(j, rng, random_events(rng, history) if history else [])
            commit_in_batches(j, rng, recent)
            steps.append(sqlite_steps(j, lambda j=j: list(j.replay_events(100_000.0))))
            assert len(list(j.replay_events(100_000.0))) == 300
    assert steps[1] < 1.5 * steps[0] + 2000, steps


def test_the_last_counts_and_states_cost_the_same_after_a_long_history(tmp_path):
    """Five nodes and machines after 2,000 and after 40,000 events: the reads visit about as
    much (the groupings of every count and every state visited them all)."""
    rng = random.Random(14)
    steps = []
    for n in (2000, 40_000):
        with Journal(tmp_path / f"j{n}.sqlite") as j:
            commit_in_batches(j, rng, random_states(rng, n))
            steps.append(sqlite_steps(j, lambda j=j, n=n: (
                j.last_counts(per_node=BOOTS_KEPT), j.last_before("state", n * 10.0))))
    assert steps[1] < 1.5 * steps[0] + 2000, steps
