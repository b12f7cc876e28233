"""The journal's read-only opener and named queries: exact rows, one-line errors, any path,
what opening really leaves on disk, and commits of a live writer in another process."""

import hashlib
import os
import sqlite3
import subprocess
import sys

import pytest
from lampwatch.errors import JournalReadError, LampwatchError
from lampwatch.journal import FrameRow, Journal, StoredEvent, is_journal, open_readonly
from lampwatch.journal.store import SCHEMA_VERSION
from lampwatch.protocol import T_HEARTBEAT, T_HELLO, T_LAMP

UDP, SERIAL = "udp:10.0.0.7:4210", "serial:/dev/ttyUSB0"
HELLO1 = {"fw": "0.1.0", "heartbeat_ms": 1000, "lamp_mask": 1}
EVENTS = [  # ids 1..11, in this order
    (100.0, "hello", 7, "press", HELLO1),
    (110.0, "state", 7, "press", {"state": "RUN", "prev": None}),
    (120.0, "lamp", 7, "press", {"lamp": "green", "state": "ON"}),
    (130.0, "count", 7, "press", {"good": 2, "ng": 0}),
    (140.0, "health", 7, "press", {"rssi": -61}),
    (150.0, "lamp", 7, "press", {"lamp": "green", "state": "OFF"}),
    (160.0, "state", 7, "press", {"state": "STOP", "prev": "RUN"}),
    (170.0, "hello", 7, "press", {"fw": "0.2.0"}),
    (105.0, "state", 8, "mill", {"state": "RUN", "prev": None}),
    (180.0, "count", 7, "press", {"good": 0, "ng": 1}),
    (190.0, "reason", 7, "press", {"reason": "setup"}),
]
FRAMES = [FrameRow(100.5, UDP, 7, 1, 0, T_HELLO, 0, b""),
          FrameRow(101.0, UDP, 7, 1, 1, T_HEARTBEAT, 1000, b""),
          FrameRow(102.0, SERIAL, 8, 1, 0, T_HEARTBEAT, 0, b""),
          FrameRow(103.0, UDP, 7, 1, 2, T_LAMP, 3000, b"")]
REJECTS = {("udp:10.0.0.9", "bad_tag"): (3, 50.0), ("serial:/dev/ttyS1", "crc"): (1, 60.0)}


def make_journal(path):
    with Journal(path) as j:
        j.commit(FRAMES, EVENTS, REJECTS)
    return path


def files(folder):
    return sorted(os.listdir(folder))


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_named_queries_return_exactly_these_rows(tmp_path):
    with open_readonly(make_journal(tmp_path / "j.sqlite")) as r:
        assert r.last_event_id() == 11
        assert (r.last_hello(7), r.last_hello(8)) == ({"fw": "0.2.0"}, None)
        assert [r.hello_after(7, i) for i in (0, 1, 8)] == [HELLO1, {"fw": "0.2.0"}, None]
        assert [r.last_heartbeat_id(n) for n in (7, 8, 9)] == [2, 3, 0]
        assert r.node_events_after(7, 8) == [("count", {"good": 0, "ng": 1}),
                                             ("reason", {"reason": "setup"})]
        assert r.node_events_after(8, 0) == [("state", {"state": "RUN", "prev": None})]
        assert r.last_rx() == {7: 103.0, 8: 102.0}
        # [150, 175): state 160 and hello 170; the reason from 150 on; each machine's last
        # state before 150 (press: 110, mill: 105); not the counts at 130 and 180
        got = r.oee_events(150.0, 175.0)
        assert [e.id for e in got] == [2, 7, 8, 9, 11]
        assert got[0] == StoredEvent(2, 110.0, "state", 7, "press",
                                     '{"prev":null,"state":"RUN"}')
        assert sorted(r.frame_sources()) == [(7, UDP, 100.5, 103.0), (8, SERIAL, 102.0, 102.0)]
        assert sorted(r.last_hello_and_health(), key=lambda row: row[2]) == [
            (7, "press", "health", {"rssi": -61}), (7, "press", "hello", {"fw": "0.2.0"})]
        assert r.states_since(150.0) == [(7, 110.0, "RUN"), (7, 160.0, "STOP"),
                                         (8, 105.0, "RUN")]
        assert r.last_lamp_states() == [(7, "green", "OFF")]
        assert r.last_lit() == [(7, "green", 120.0)]
        assert r.last_good_part() == [(7, 130.0)]
        assert r.reject_counts() == [("serial:/dev/ttyS1", "crc", 0, 1, 60.0),
                                     ("udp:10.0.0.9", "bad_tag", 0, 3, 50.0)]


def test_an_empty_journal_answers_with_nothing(tmp_path):
    Journal(tmp_path / "j.sqlite").close()
    with open_readonly(tmp_path / "j.sqlite") as r:
        assert (r.last_event_id(), r.last_hello(7), r.last_rx(), r.oee_events(0, 1e10),
                r.reject_counts()) == (0, None, {}, [], [])


def test_a_missing_journal_is_one_line_and_creates_nothing(tmp_path):
    for path in (tmp_path / "none.sqlite", tmp_path / "no" / "dir" / "j.sqlite"):
        with pytest.raises(JournalReadError) as err:
            open_readonly(path)
        assert str(err.value) == f"no journal at {path}"
        assert not is_journal(path)
    assert isinstance(err.value, LampwatchError)
    assert files(tmp_path) == []


@pytest.mark.parametrize("content, why", [
    (b"not a journal\n" * 100, r"is not a lampwatch journal \(file is not a database\)"),
    (b"", r"is not a lampwatch journal \(no table frames, events, rejects\)"),
])
def test_a_file_that_is_not_a_journal_is_refused_untouched(tmp_path, content, why):
    path = tmp_path / "plant.sqlite"
    path.write_bytes(content)
    with pytest.raises(JournalReadError, match=why) as err:
        open_readonly(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)
    assert not is_journal(path)
    assert path.read_bytes() == content and files(tmp_path) == ["plant.sqlite"]


def test_other_databases_and_newer_schemas_are_refused(tmp_path):
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE frames(x)")
    with pytest.raises(JournalReadError, match=r"\(no table events, rejects\)$"):
        open_readonly(other)
    newer = make_journal(tmp_path / "newer.sqlite")
    with sqlite3.connect(newer) as db:
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(JournalReadError, match=f"has schema {SCHEMA_VERSION + 1}, newer"):
        open_readonly(newer)


def test_a_query_sqlite_cannot_answer_is_a_journal_read_error(tmp_path):
    odd = tmp_path / "odd.sqlite"
    with sqlite3.connect(odd) as db:
        db.executescript("CREATE TABLE frames(x); CREATE TABLE events(x); "
                         "CREATE TABLE rejects(x);")
    with open_readonly(odd) as r, pytest.raises(
            JournalReadError, match=f"^cannot read the journal {odd}: no such column: id$"):
        r.last_event_id()


@pytest.mark.parametrize("name", ["a b", "a#b", "a?b", "a%41b", "plant 1#line?2%20x"])
def test_any_path_opens_the_right_file(tmp_path, name):
    path = tmp_path / name / f"{name}.sqlite"
    path.parent.mkdir()
    make_journal(path)
    with open_readonly(path) as r:
        assert r.last_event_id() == 11
    assert is_journal(path)
    if set(name) & set("#?%"):  # the old unescaped URI opened another path, or none
        with pytest.raises(sqlite3.OperationalError):
            sqlite3.connect(f"file:{path}?mode=ro", uri=True).execute(
                "SELECT count(*) FROM events").fetchone()


def test_reading_never_changes_the_database(tmp_path):
    path = make_journal(tmp_path / "j.sqlite")
    # The writer closed cleanly and removed its -wal and -shm.
    assert files(tmp_path) == ["j.sqlite"]
    before, mtime = digest(path), path.stat().st_mtime_ns
    with open_readonly(path) as r:
        assert r.last_event_id() == 11
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            r._db.execute("CREATE TABLE x(a)")  # the connection itself cannot write
    assert (digest(path), path.stat().st_mtime_ns) == (before, mtime)
    # The truth of SQLite: a WAL reader needs the -shm, so on a journal nobody writes it
    # creates an empty -wal and the -shm, and a read-only connection leaves them.
    assert files(tmp_path) == ["j.sqlite", "j.sqlite-shm", "j.sqlite-wal"]
    assert (tmp_path / "j.sqlite-wal").stat().st_size == 0
    # The next writer takes them over and removes them when it closes.
    with Journal(path) as j:
        j.commit(events=[(200.0, "state", 7, "press", {"state": "RUN"})])
    assert files(tmp_path) == ["j.sqlite"]


def test_reading_beside_a_running_writer_adds_no_file(tmp_path):
    path = tmp_path / "j.sqlite"
    with Journal(path) as j:
        j.commit(FRAMES, EVENTS)
        present = files(tmp_path)
        assert present == ["j.sqlite", "j.sqlite-shm", "j.sqlite-wal"]
        with open_readonly(path) as r:
            assert r.last_event_id() == 11
        assert files(tmp_path) == present
        assert j.commit(events=[EVENTS[0]]) == 0 and j.last_event_id() == 12


WRITER = """
import sys
from lampwatch.journal import Journal
with Journal(sys.argv[1], sync="normal") as j:
    print("open", flush=True)
    for line in sys.stdin:
        j.commit(events=[(float(line), "state", 7, "press", {"state": "RUN"})])
        print("committed", flush=True)
"""


def test_a_reader_sees_each_commit_of_a_live_writer_in_another_process(tmp_path):
    path = tmp_path / "live journal #1.sqlite"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert writer.stdout.readline() == "open\n"
        with open_readonly(path) as r:  # one connection, as commission's watch keeps
            assert r.last_event_id() == 0
            for n in (1, 2, 3):
                writer.stdin.write(f"{1000 + n}\n")
                writer.stdin.flush()
                assert writer.stdout.readline() == "committed\n"
                assert r.last_event_id() == n
                assert r.states_since(1000.0)[-1] == (7, 1000.0 + n, "RUN")
        writer.stdin.close()
        assert writer.wait(timeout=30) == 0
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()


def test_last_heard_of_a_journal_not_yet_reopened_by_a_new_collector(tmp_path):
    # schema 1 (no heard table): the reader finds each node's newest frame itself
    path = make_journal(tmp_path / "j.sqlite")
    db = sqlite3.connect(path)
    db.execute("DROP TABLE heard")
    db.execute("PRAGMA user_version=1")
    db.commit()
    db.close()
    with open_readonly(path) as r:
        assert r.last_rx() == {7: 103.0, 8: 102.0}
        assert r.last_heard()[7].seq == 2
