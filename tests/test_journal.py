"""Journal: schema per docs/architecture.md, batches in one transaction, survives SIGKILL."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import namedtuple

import pytest
from lampwatch.errors import SinkError
from lampwatch.journal import FrameRow, Journal, open_readonly

Event = namedtuple("Event", "ts_s kind node_id machine data")


def frame(seq, node=7, boot=1):
    return FrameRow(1000.0 + seq, "udp:127.0.0.1:5000", node, boot, seq, 3, seq * 1000,
                    bytes([seq % 256]) * 32)


def test_schema_is_the_documented_one(tmp_path):
    Journal(tmp_path / "j.sqlite").close()
    db = sqlite3.connect(tmp_path / "j.sqlite")
    cols = {t: [r[1] for r in db.execute(f"PRAGMA table_info({t})")]
            for t in ("frames", "events", "rejects", "cursors", "heard", "sources",
                      "rollup_minutes", "rollup_hours", "rollup_machines")}
    assert cols == {
        "frames": ["id", "rx_s", "source", "node_id", "boot_id", "seq", "type", "uptime_ms",
                   "raw"],
        "events": ["id", "ts_s", "kind", "node_id", "machine", "data"],
        "rejects": ["source", "reason", "node_id", "count", "last_s"],
        "cursors": ["name", "last_id"],
        "heard": ["node_id", "rx_s", "boot_id", "seq", "uptime_ms"],
        "sources": ["node_id", "source", "first_s", "last_s"],
        "rollup_minutes": ["machine", "minute_s", "class", "secs", "good", "ng", "rate",
                           "ng_gap", "qty_max", "mixed_rate"],
        "rollup_hours": ["machine", "hour_s", "class", "secs", "good", "ng", "rate", "ng_gap",
                         "qty_max", "mixed_rate"],
        "rollup_machines": ["machine", "from_s", "to_s", "built_id"],
    }
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index' "
                                     "AND sql IS NOT NULL")} == {
        "events_kind_ts", "events_machine_kind_ts", "events_node_kind", "events_state_machine"}


def test_last_heard_is_kept_with_the_frames_and_read_without_a_scan(tmp_path):
    with Journal(tmp_path / "j.sqlite") as j:
        # node 7: seq 3 arrives after seq 5 (a resend): rx is the newest, node time seq 5's
        j.commit([frame(4), frame(5)._replace(rx_s=1010.0), frame(3)._replace(rx_s=1020.0),
                  frame(9, node=8)])
        assert [tuple(h) for h in j.heard()] == [(7, 1020.0, 1, 5, 5000),
                                                (8, 1009.0, 1, 9, 9000)]
        j.commit([frame(0, boot=2)._replace(rx_s=1030.0)])  # node 7 rebooted
        assert tuple(j.heard()[0]) == (7, 1030.0, 2, 0, 0)
        j.commit([frame(1, boot=2)._replace(rx_s=1031.0)])
        assert [f.seq for f in j.node_tail(j.heard()[0], 1)] == [0, 1]
        assert j.last_time() == 1031.0


def test_received_at_gives_when_stored_frames_arrived(tmp_path):
    """What a restart asks of each node's frame _FULL_FRAMES before its last (runtime.replay):
    one missing is left out, and a recompute asks as of its time."""
    with Journal(tmp_path / "j.sqlite") as j:
        j.commit([frame(4), frame(5)._replace(rx_s=1010.0), frame(5, node=8)])
        asked = [(7, 1, 4), (7, 1, 5), (7, 1, 6), (8, 1, 5), (7, 2, 4)]
        assert j.received_at(asked) == {(7, 1, 4): 1004.0, (7, 1, 5): 1010.0,
                                        (8, 1, 5): 1005.0}
        assert j.received_at(asked, before_s=1006.0) == {(7, 1, 4): 1004.0,
                                                          (8, 1, 5): 1005.0}
        assert j.received_at([]) == {}


def test_a_schema_1_journal_gets_its_heard_table_from_its_frames(tmp_path):
    path = tmp_path / "old.sqlite"
    Journal(path).close()
    db = sqlite3.connect(path)
    db.execute("DROP TABLE heard")
    db.execute("PRAGMA user_version=1")
    db.executemany("INSERT INTO frames(rx_s, source, node_id, boot_id, seq, type, uptime_ms, "
                   "raw) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [tuple(frame(2)), tuple(frame(3))])
    db.commit()
    db.close()
    with Journal(path) as j:
        assert [tuple(h) for h in j.heard()] == [(7, 1003.0, 1, 3, 3000)]


def test_frames_events_rejects_in_one_commit(tmp_path):
    with Journal(tmp_path / "j.sqlite") as j:
        new = j.commit([frame(1), frame(2)],
                       [Event(5.5, "lamp", 7, "m7", {"lamp": "green", "state": "ON"}),
                        (6.0, "state", 7, "m7", '{"state":"RUN","prev":"IDLE"}')],
                       {("udp:1.2.3.4:5", "bad_tag"): (2, 9.0)})
        assert new == 2
        # Duplicates are skipped by the UNIQUE key and not counted as new.
        assert j.commit([frame(2), frame(3), frame(3)]) == 1
        j.commit(rejects={("udp:1.2.3.4:5", "bad_tag"): (1, 8.0),
                          ("serial:/dev/x", "bad_cobs"): (1, 10.0)})
        assert j.frame_count() == 3
        assert [f.seq for f in j.frames_after(0)] == [1, 2, 3]
        assert j.frames_after(0)[0] == (1, *frame(1))
        evs = j.events_after(0)
        assert [(e.id, e.ts_s, e.kind, e.machine) for e in evs] == [(1, 5.5, "lamp", "m7"),
                                                                     (2, 6.0, "state", "m7")]
        assert json.loads(evs[0].data) == {"lamp": "green", "state": "ON"}
        assert j.events_after(1) == evs[1:] and j.events_after(0, 1) == evs[:1]
        assert j.rejects() == {("udp:1.2.3.4:5", "bad_tag"): (3, 9.0),
                               ("serial:/dev/x", "bad_cobs"): (1, 10.0)}
        assert j.has_frame(7, 1, 2) and not j.has_frame(7, 2, 2)
        assert sorted(j.seqs_from(7, 1, 2)) == [2, 3]
        assert j.last_event_id() == 2


def test_failed_batch_stores_nothing(tmp_path):
    with Journal(tmp_path / "j.sqlite") as j:
        with pytest.raises(SinkError, match="write failed"):
            j.commit([frame(1)], [Event(1.0, "x", 1, "m", {"v": object()})])
        assert j.frame_count() == 0
        assert j.commit([frame(1)]) == 1


def test_cursors(tmp_path):
    with Journal(tmp_path / "j.sqlite") as j:
        assert j.get_cursor("influxdb") is None
        j.set_cursor("influxdb", 41)
        j.set_cursor("influxdb", 42)
        assert j.get_cursor("influxdb") == 42
    with Journal(tmp_path / "j.sqlite") as j:
        assert j.get_cursor("influxdb") == 42


def test_newer_schema_is_refused(tmp_path):
    db = sqlite3.connect(tmp_path / "j.sqlite")
    db.execute("PRAGMA user_version=99")
    db.close()
    with pytest.raises(SinkError, match="newer than this"):
        Journal(tmp_path / "j.sqlite")


def test_every_commit_survives_sigkill(tmp_path):
    """A writer killed mid-stream: every batch it reported committed is there after reopen."""
    path = tmp_path / "j.sqlite"
    code = textwrap.dedent(f"""
        import sys
        from lampwatch.journal import FrameRow, Journal
        j = Journal({str(path)!r}, sync="normal")
        for b in range(100000):
            rows = [FrameRow(0.0, "s", 1, 1, b * 10 + i, 3, 0, b"x") for i in range(10)]
            j.commit(rows, [(0.0, "count", 1, "m", {{"b": b}})])
            print(b, flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    done = -1
    deadline = time.monotonic() + 20
    while done < 200 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        done = int(line)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert done >= 200
    with Journal(path) as j:
        assert j.frame_count() >= (done + 1) * 10
        assert j.has_frame(1, 1, done * 10 + 9)
        assert len(j.events_after(0, 10**6)) >= done + 1
        # The journal keeps working after the crash.
        assert j.commit([FrameRow(0.0, "s", 2, 1, 0, 3, 0, b"y")]) == 1


# The schema of version 1 (before rejects had a node), as that lampwatch created it.
_V1 = """
CREATE TABLE frames(id INTEGER PRIMARY KEY, rx_s REAL, source TEXT, node_id INT,
    boot_id INT, seq INT, type INT, uptime_ms INT, raw BLOB, UNIQUE(node_id, boot_id, seq));
CREATE TABLE events(id INTEGER PRIMARY KEY, ts_s REAL, kind TEXT, node_id INT,
    machine TEXT, data TEXT);
CREATE TABLE rejects(source TEXT, reason TEXT, count INT, last_s REAL,
    PRIMARY KEY(source, reason));
CREATE TABLE cursors(name TEXT PRIMARY KEY, last_id INT);
INSERT INTO rejects VALUES ('udp:10.0.0.1', 'replay', 24, 50.0), ('udp:10.0.0.2', 'bad_tag', 3, 9.0);
INSERT INTO cursors VALUES ('influx', 17);
PRAGMA user_version = 1;
"""


def test_a_version_1_journal_reads_as_it_is_and_migrates_when_written(tmp_path):
    """Old rejects keep their counts with node 0 (not recorded then); a reader never changes
    the file; the first writer migrates it in one transaction and carries on counting."""
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(_V1)
    db.close()
    with open_readonly(path) as r:
        assert r.reject_counts() == [("udp:10.0.0.1", "replay", 0, 24, 50.0),
                                     ("udp:10.0.0.2", "bad_tag", 0, 3, 9.0)]
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 1
    with Journal(path) as j:
        j.commit(rejects={("udp:10.0.0.1", "replay", 7): (2, 60.0),
                          ("udp:10.0.0.1", "replay"): (1, 61.0)})
        assert j.get_cursor("influx") == 17
        assert j.rejects() == {("udp:10.0.0.1", "replay"): (27, 61.0),
                               ("udp:10.0.0.2", "bad_tag"): (3, 9.0)}
    with open_readonly(path) as r:
        assert r.reject_counts() == [("udp:10.0.0.1", "replay", 0, 25, 61.0),
                                     ("udp:10.0.0.1", "replay", 7, 2, 60.0),
                                     ("udp:10.0.0.2", "bad_tag", 0, 3, 9.0)]
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 6
    assert [r[1] for r in db.execute("PRAGMA table_info(config_versions)")] == [
        "version", "effective_from_s", "recorded_s", "hash", "settings", "summary"]
    assert [r[1] for r in db.execute("PRAGMA table_info(rejects)")] == [
        "source", "reason", "node_id", "count", "last_s"]
    assert [r[1] for r in db.execute("PRAGMA table_info(heard)")] == [
        "node_id", "rx_s", "boot_id", "seq", "uptime_ms"]


def _table_rows(path):
    db = sqlite3.connect(path)
    try:
        return {t: db.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall()
                for t in ("heard", "sources", "last_counts")}
    finally:
        db.close()


@pytest.mark.parametrize("fill", ["_FILL_HEARD", "_FILL_SOURCES", "_FILL_LAST_COUNTS"])
def test_an_upgrade_stopped_midway_leaves_the_journal_as_it_was_and_is_done_again(
        tmp_path, monkeypatch, fill):
    # Filling the tables an upgrade adds reads every frame and count event: minutes on a
    # year's journal, time enough to be stopped. Step by step, a table created but not filled
    # was taken as filled by the next start (no count maxima seeded: a late heartbeat then
    # counts twice). In one transaction the journal stays as it was until the upgrade is done.
    from lampwatch.journal import store

    path, clean = tmp_path / "j.sqlite", tmp_path / "clean.sqlite"
    with Journal(path) as j:
        j.commit([frame(s) for s in range(1, 6)] + [frame(4, node=8, boot=2)],
                 events=[Event(1000.0 + s, "count", node, f"m{node}",
                               {"boot_id": boot, "good": 1, "good_total": s, "ng": 0,
                                "ng_total": 0, "since_s": 999.0 + s})
                         for s, node, boot in ((1, 7, 1), (2, 7, 1), (3, 8, 2), (4, 7, 3))])
    want = _table_rows(path)
    assert all(want.values())  # each table has rows to lose
    db = sqlite3.connect(path)
    for table in ("heard", "sources", "last_counts"):
        db.execute(f"DROP TABLE {table}")
    db.execute("PRAGMA user_version=2")
    db.commit()
    db.close()
    clean.write_bytes(path.read_bytes())

    monkeypatch.setattr(store, fill, "SELECT json('stopped mid-upgrade')")
    with pytest.raises(SinkError, match="malformed JSON"):
        Journal(path)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 2
    assert not {"heard", "sources", "last_counts"} & {
        r[0] for r in db.execute("SELECT name FROM sqlite_master")}
    db.close()

    monkeypatch.undo()
    Journal(path).close()
    Journal(clean).close()
    assert _table_rows(path) == _table_rows(clean) == want
