"""The durable local journal (SQLite, WAL): accepted frames, derived events, rejects, cursors.

Schema and meaning are in docs/architecture.md. One Journal object is one connection and
belongs to one thread; other threads (forwarder, board) open their own Journal on the same
file, which WAL lets them read while the collector writes; readers that never write open it
with reader.open_readonly.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from ..errors import SinkError
from . import retention, rollups
from .retention import RETENTION_SCHEMA
from .rollups import ROLLUP_SCHEMA

__all__ = ["FrameRow", "Heard", "Journal", "StoredEvent", "StoredFrame", "event_row",
           "heard_takes", "note_counts"]

log = logging.getLogger(__name__)

# 3: rejects has node_id (0: the frame names no node it could be verified as) and the heard
# table (when each node was last heard). 4 (issue 14): the indexes the report and the nodes
# view read by, the sources table, and the per-minute rollups (journal/rollups.py). A journal
# of schema 1 to 3 is brought up to it when a writer opens it (by what its tables hold), and
# read as it is by open_readonly.
# 5: the config_versions table (each configuration the journal was derived under; issue 14,
# host/journal/history.py), added to a journal of any older schema.
# 6: the last_counts table (each node and boot's newest count event) and an index of the
# state events (the table filled from the events once). Journal._upgrade does every step
# in one transaction.
SCHEMA_VERSION = 6
# SQLite's page cache for the collector's connection, in KiB (its default: 2,000). The
# collector mostly appends: what it touches again soon is each B-tree's interior pages and
# newest leaves. The leaves of the indexes ordered by node or machine (a frame's node, boot
# and seq; an event's machine or node) are each touched about once per frame of that node,
# too many at a plant's scale to stay cached at a size that fits a small box. The default
# cache held such leaves: at 10,000 nodes x 1 frame/s, 1.3-1.5 MB more RSS and no measured
# speed, nor at 1,000 nodes as fast as ACKs come (bench/ingest.py, the thirteenth session).
_CACHE_KIB = 512
# --- schema 4 (issue 14): indexes, sources, rollups ------------------------------------------
# Every query of the report, the nodes view and retention reads by one of these indexes
# (tests/test_journal_plan.py checks each query's plan). The frames get none: ingest pays
# nothing more per frame, and retention walks them by id (journal/retention.py).
_SCHEMA_4 = """
CREATE INDEX IF NOT EXISTS events_kind_ts ON events(kind, ts_s);
CREATE INDEX IF NOT EXISTS events_machine_kind_ts ON events(machine, kind, ts_s);
CREATE INDEX IF NOT EXISTS events_node_kind ON events(node_id, kind);
CREATE TABLE IF NOT EXISTS sources(node_id INT, source TEXT, first_s REAL, last_s REAL,
    PRIMARY KEY(node_id, source));
""" + ROLLUP_SCHEMA + RETENTION_SCHEMA
# A journal without the sources table: filled from its frames, once.
_FILL_SOURCES = ("INSERT OR IGNORE INTO sources(node_id, source, first_s, last_s) "
                 "SELECT node_id, source, min(rx_s), max(rx_s) FROM frames "
                 "GROUP BY node_id, source")
_UPSERT_SOURCE = ("INSERT INTO sources(node_id, source, first_s, last_s) VALUES (?, ?, ?, ?) "
                  "ON CONFLICT(node_id, source) DO UPDATE SET "
                  "first_s = min(first_s, excluded.first_s), last_s = max(last_s, excluded.last_s)")
# --- end of schema 4 --------------------------------------------------------------------------
_SCHEMA = """
CREATE TABLE IF NOT EXISTS frames(id INTEGER PRIMARY KEY, rx_s REAL, source TEXT, node_id INT,
    boot_id INT, seq INT, type INT, uptime_ms INT, raw BLOB, UNIQUE(node_id, boot_id, seq));
CREATE TABLE IF NOT EXISTS events(id INTEGER PRIMARY KEY, ts_s REAL, kind TEXT, node_id INT,
    machine TEXT, data TEXT);
CREATE TABLE IF NOT EXISTS rejects(source TEXT, reason TEXT, node_id INT NOT NULL DEFAULT 0,
    count INT, last_s REAL, PRIMARY KEY(source, reason, node_id));
CREATE TABLE IF NOT EXISTS cursors(name TEXT PRIMARY KEY, last_id INT);
CREATE TABLE IF NOT EXISTS heard(node_id INTEGER PRIMARY KEY, rx_s REAL, boot_id INT, seq INT,
    uptime_ms INT);
""" + _SCHEMA_4
# A journal without the heard table: filled from each node's newest frame.
_FILL_HEARD = ("INSERT OR IGNORE INTO heard(node_id, rx_s, boot_id, seq, uptime_ms) "
               "SELECT node_id, rx_s, boot_id, seq, uptime_ms FROM frames WHERE id IN "
               "(SELECT max(id) FROM frames GROUP BY node_id)")
_INSERT_FRAME = ("INSERT OR IGNORE INTO frames(rx_s, source, node_id, boot_id, seq, type, "
                 "uptime_ms, raw) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
_INSERT_EVENT = "INSERT INTO events(ts_s, kind, node_id, machine, data) VALUES (?, ?, ?, ?, ?)"
_UPSERT_REJECT = ("INSERT INTO rejects(source, reason, node_id, count, last_s) "
                  "VALUES (?, ?, ?, ?, ?) ON CONFLICT(source, reason, node_id) DO UPDATE SET "
                  "count = count + excluded.count, last_s = max(last_s, excluded.last_s)")
# A rejects table without node_id gains it (old rows: 0, no verified node), in one
# transaction, so a crash leaves either table whole.
_MIGRATE_1_TO_2 = """
CREATE TABLE rejects_v2(source TEXT, reason TEXT, node_id INT NOT NULL DEFAULT 0, count INT,
    last_s REAL, PRIMARY KEY(source, reason, node_id));
INSERT INTO rejects_v2(source, reason, node_id, count, last_s)
    SELECT source, reason, 0, count, last_s FROM rejects;
DROP TABLE rejects;
ALTER TABLE rejects_v2 RENAME TO rejects;
"""
# A node's last heard: the newest receive time; the node time (boot, seq, uptime) of its
# newest frame by seq within the boot last heard from (a new boot replaces it).
_UPSERT_HEARD = ("INSERT INTO heard(node_id, rx_s, boot_id, seq, uptime_ms) VALUES "
                 "(?, ?, ?, ?, ?) ON CONFLICT(node_id) DO UPDATE SET "
                 "rx_s = max(rx_s, excluded.rx_s), "
                 "uptime_ms = CASE WHEN excluded.boot_id != boot_id OR excluded.seq > seq "
                 "THEN excluded.uptime_ms ELSE uptime_ms END, "
                 "seq = CASE WHEN excluded.boot_id != boot_id OR excluded.seq > seq "
                 "THEN excluded.seq ELSE seq END, boot_id = excluded.boot_id")


# One encoder for all events: json.dumps with options would build a new one per call.
_to_json = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode
# The `count` event, one per heartbeat and most of all events, as a format string: for five
# plain ints and a finite float it is the very text _to_json makes (keys sorted, compact,
# the float as repr), at a fifth the cost.
_COUNT_JSON = ('{"boot_id":%d,"good":%d,"good_total":%d,"ng":%d,"ng_total":%d,'
               '"since_s":%r}')


def _data_json(kind: str, data: Any) -> str:
    if kind == "count" and type(data) is dict and len(data) == 6:
        try:
            b, g, gt, n, nt, since = (data["boot_id"], data["good"], data["good_total"],
                                      data["ng"], data["ng_total"], data["since_s"])
        except KeyError:
            pass
        else:
            if (type(b) is type(g) is type(gt) is type(n) is type(nt) is int  # not bool
                    and type(since) is float and math.isfinite(since)):
                return _COUNT_JSON % (b, g, gt, n, nt, since)
    return _to_json(data)


# Schema 5 (issue 14): one row per configuration the journal was derived under. `settings`
# is host/config_versions.py's document (no keys or secrets), `hash` its short name,
# `summary` what changed from the version before. The version valid at time t is the last
# recorded (highest version) of those with effective_from_s <= t (history/versions.py).
_SCHEMA_5 = """
CREATE TABLE IF NOT EXISTS config_versions(version INTEGER PRIMARY KEY,
    effective_from_s REAL NOT NULL, recorded_s REAL NOT NULL, hash TEXT NOT NULL,
    settings TEXT NOT NULL, summary TEXT NOT NULL);
"""


# Schema 6 (issue 14): the id of each (node, boot)'s newest count event (newest by id:
# arrival order), kept in the transaction that stores the events. A restart seeds the count
# maxima of each node's newest boots from these events (runtime.replay), so per-boot totals
# never count twice; found by grouping all count events, that read grew with the journal's
# history (2.4 s for the 0.9 M of 5 hours at 1,000 nodes; by that rate over an hour for a
# year).
# And an index of the state events by machine in id order (a state change every few
# minutes a machine: it costs the count events nothing): a restart finds each machine's
# last state before the shift it rebuilds by walking back from its newest, not by grouping
# every state in the journal (0.15 s for the 5-hour journal above).
_LAST_COUNTS_TABLE = """
CREATE TABLE IF NOT EXISTS last_counts(node_id INT, boot_id INT, event_id INT,
    PRIMARY KEY(node_id, boot_id)) WITHOUT ROWID;
"""
_STATE_INDEX = """
CREATE INDEX IF NOT EXISTS events_state_machine ON events(machine) WHERE kind = 'state';
"""
_SCHEMA_6 = _LAST_COUNTS_TABLE + _STATE_INDEX
# A journal without the table: filled from its count events, once (as the restart read
# them before; a count without an integer boot id seeds nothing, so it is left out).
_FILL_LAST_COUNTS = (
    "INSERT OR REPLACE INTO last_counts(node_id, boot_id, event_id) "
    "SELECT node_id, boot_id, max(id) FROM (SELECT id, node_id, "
    "CASE WHEN json_valid(data) AND json_type(data, '$.boot_id') = 'integer' "
    "THEN json_extract(data, '$.boot_id') END AS boot_id FROM events "
    "WHERE kind = 'count' AND node_id IS NOT NULL) "
    "WHERE boot_id IS NOT NULL GROUP BY node_id, boot_id")
_UPSERT_LAST_COUNT = ("INSERT INTO last_counts(node_id, boot_id, event_id) VALUES (?, ?, ?) "
                      "ON CONFLICT(node_id, boot_id) DO UPDATE SET event_id = excluded.event_id")


_BOOT_KEY = '{"boot_id":'


def _boot_of(data: str) -> int | None:
    """The integer boot id of a count event's JSON text, or None. The deriver's text starts
    with it (_COUNT_JSON: keys sorted), so most are read without parsing."""
    if data.startswith(_BOOT_KEY):
        end = data.find(",", 11)
        if end > 11:
            try:
                return int(data[11:end])
            except ValueError:
                pass
    try:
        boot = json.loads(data).get("boot_id")
    except (ValueError, AttributeError):
        return None
    return boot if type(boot) is int else None


def note_counts(db: sqlite3.Connection, rows: Sequence[tuple]) -> None:
    """Keep last_counts for `rows`, just inserted into events (in this transaction, by one
    executemany: their ids are the last len(rows) ids, as SQLite gives each new row the
    largest id so far plus one)."""
    newest: dict[tuple[int, int], int] = {}
    first = None
    for k, row in enumerate(rows):
        if row[1] == "count" and type(row[2]) is int:  # (a count without a node seeds none)
            boot = _boot_of(row[4])
            if boot is not None:
                if first is None:
                    last = db.execute("SELECT last_insert_rowid()").fetchone()[0]
                    first = last - len(rows) + 1
                newest[(row[2], boot)] = first + k
    if newest:
        db.executemany(_UPSERT_LAST_COUNT, [(n, b, i) for (n, b), i in newest.items()])


class FrameRow(NamedTuple):
    """A frame to append: what the collector accepted, with its receive time and source."""

    rx_s: float
    source: str
    node_id: int
    boot_id: int
    seq: int
    type: int
    uptime_ms: int
    raw: bytes


class StoredFrame(NamedTuple):
    id: int
    rx_s: float
    source: str
    node_id: int
    boot_id: int
    seq: int
    type: int
    uptime_ms: int
    raw: bytes


class Heard(NamedTuple):
    """When a node was last heard: the newest receive time (event time, epoch s), and the
    node time of its newest frame (boot, seq, uptime) to find its last frames by."""

    node_id: int
    rx_s: float
    boot_id: int
    seq: int
    uptime_ms: int


# What a restart reads of an event (runtime.replay, Deriver.replay): the data of states,
# counts, reasons, hellos and final oee points; '{}' for the rest (the running shift's
# points, lamps, health: only their times count), so they cost neither memory nor parsing.
REPLAY_DATA = ("CASE WHEN kind IN ('state', 'count', 'reason', 'hello') OR (kind = 'oee' AND "
               "json_extract(data, '$.final')) THEN data ELSE '{}' END")


class StoredEvent(NamedTuple):
    """An event row; `data` is the JSON text as stored (json.loads it)."""

    id: int
    ts_s: float
    kind: str
    node_id: int | None
    machine: str | None
    data: str


def event_row(ev: Any) -> tuple:
    """An Event (attributes ts_s, kind, node_id, machine, data) or a 5-tuple, as a row.

    Raises TypeError or ValueError if it cannot be stored (data not JSON-serialisable).
    """
    if type(ev) is tuple:  # exactly a tuple: a NamedTuple event goes the general way
        if type(ev[4]) is str and type(ev[0]) is float:
            return ev  # a row already (the collector converts events as they are derived)
        ts_s, kind, node_id, machine, data = ev
    elif isinstance(ev, tuple) and not hasattr(ev, "ts_s"):
        ts_s, kind, node_id, machine, data = ev
    else:
        ts_s, kind, node_id, machine, data = ev.ts_s, ev.kind, ev.node_id, ev.machine, ev.data
    if not isinstance(data, str):
        data = _data_json(kind, data)
    return (float(ts_s), kind, node_id, machine, data)


def _always() -> bool:
    return True


def heard_takes(kept_boot: int, kept_seq: int, boot_id: int, seq: int) -> bool:
    """The rule of _UPSERT_HEARD: does a frame (boot_id, seq) that arrived after the one a
    node's `heard` row keeps set its boot, seq and uptime? Yes if of another boot, or a
    higher seq of that boot (the newest seq of the boot last heard from)."""
    return boot_id != kept_boot or seq > kept_seq


def _heard_rows(frames: Sequence[FrameRow | tuple]) -> list[tuple]:
    """Per node of `frames`: (node_id, newest rx_s, boot_id, seq, uptime_ms) by the rule of
    _UPSERT_HEARD (heard_takes)."""
    newest: dict[int, tuple] = {}  # node -> its frame that sets boot, seq, uptime
    rx: dict[int, float] = {}
    for f in frames:
        node = f[2]
        prev = newest.get(node)
        if prev is None or heard_takes(prev[3], prev[4], f[3], f[4]):
            newest[node] = f
        if f[0] > rx.get(node, -math.inf):
            rx[node] = f[0]
    return [(node, rx[node], f[3], f[4], f[6]) for node, f in newest.items()]


def _source_rows(frames: Sequence[FrameRow | tuple]) -> list[tuple]:
    """(node_id, source, first rx_s, last rx_s) per node and source of `frames`."""
    out: dict[tuple, list] = {}
    for f in frames:
        span = out.get((f[2], f[1]))
        if span is None:
            out[(f[2], f[1])] = [f[0], f[0]]
        elif f[0] < span[0]:
            span[0] = f[0]
        elif f[0] > span[1]:
            span[1] = f[0]
    return [(node, src, a, b) for (node, src), (a, b) in out.items()]


class Journal:
    """The journal file, created on first open; reopening after a crash recovers the WAL.

    Args:
        path: the SQLite file (its directory is created if missing).
        sync: "full" (a commit survives a power cut) or "normal" (survives a process crash).
    Raises:
        SinkError: the file cannot be opened or is not a lampwatch journal.
    """

    def __init__(self, path: str | os.PathLike, *, sync: str = "full"):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Autocommit mode: transactions are opened explicitly, so a batch is one commit.
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=10.0)
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise SinkError(f"journal {self.path} has schema {version}, newer than this "
                                f"lampwatch ({SCHEMA_VERSION})")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if sync == 'full' else 'NORMAL'}")
            self._db.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
            self._upgrade()
        except (sqlite3.Error, OSError) as exc:
            raise SinkError(f"cannot open journal {self.path}: {exc}") from None
        self._rollup_pass: rollups.Pass | None = None  # update_rollups' pass under way

    def _upgrade(self) -> None:
        """Create the schema, or bring an older journal to it by what its tables hold, in one
        transaction: a writer stopped or failing mid-way (filling the tables of schemas 3 to 6
        reads every frame and count event: 11 s for 7 days of 100 machines, minutes for a
        year) leaves the journal as it was, and the next start does it all again. Step by step,
        a table created but not yet filled was taken as filled by the next start: a restart
        would then seed no count maxima, and a late heartbeat would count twice."""
        db = self._db
        had = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        columns = [row[1] for row in db.execute("PRAGMA table_info(rejects)")]
        per_node = bool(columns) and "node_id" not in columns  # schema 1: rejects per node
        script = ["BEGIN IMMEDIATE;", _MIGRATE_1_TO_2 if per_node else "", _SCHEMA, _SCHEMA_5,
                  _LAST_COUNTS_TABLE]
        # the fills of schemas 3, 4 and 6 (rollups are built lazily, by rollups.py)
        script += [fill + ";" for table, fill in (("heard", _FILL_HEARD),
                                                  ("sources", _FILL_SOURCES),
                                                  ("last_counts", _FILL_LAST_COUNTS))
                   if table not in had]
        # The state index last: built before the fill in the same transaction, it slowed the
        # fill's read of the events by a third (14.0 s against 10.3 on bench/restart.py's
        # 7-day journal, ad hoc, 2026-12-02).
        script += [_STATE_INDEX, f"PRAGMA user_version={SCHEMA_VERSION};", "COMMIT;"]
        try:
            db.executescript("\n".join(script))
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        if per_node:
            log.info("journal %s: rejects now counted per node", self.path)

    def close(self) -> None:
        self._db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------------
    def commit(self, frames: Sequence[FrameRow | tuple] = (), events: Iterable[Any] = (),
               rejects: Mapping[tuple[str, str], tuple[int, float]] | None = None) -> int:
        """Append frames, events and reject counts in one transaction, and in the same one
        update when each node of `frames` was last heard (the `heard` table).

        A frame whose (node_id, boot_id, seq) is already stored is skipped (the UNIQUE key is
        the dedupe of last resort). Events are stored in the order given.
        Args:
            frames: FrameRow tuples. events: Event objects or (ts_s, kind, node_id, machine,
                data) tuples; data a dict (stored as JSON) or JSON text.
            rejects: (source, reason, node id) -> (count to add, last time seen); node id 0
                when the frame names no node it was verified as ((source, reason) keys: 0).
        Returns:
            How many of `frames` were new.
        Raises:
            SinkError: nothing of this batch was stored (disk full, I/O error, ...).
        """
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                before = db.total_changes
                if frames:
                    db.executemany(_INSERT_FRAME, frames)
                new = db.total_changes - before
                rows = [event_row(e) for e in events]
                if rows:
                    db.executemany(_INSERT_EVENT, rows)
                    note_counts(db, rows)  # schema 6
                if rejects:
                    db.executemany(_UPSERT_REJECT, [(*k, 0, n, t) if len(k) == 2 else
                                                    (*k, n, t) for k, (n, t)
                                                    in rejects.items()])
                if frames:
                    db.executemany(_UPSERT_HEARD, _heard_rows(frames))
                    db.executemany(_UPSERT_SOURCE, _source_rows(frames))  # schema 4
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except (sqlite3.Error, ValueError, TypeError) as exc:
            raise SinkError(f"journal {self.path}: write failed: {exc}") from None
        return new

    # -- rollups (schema 4; journal/rollups.py) ----------------------------------------------
    def update_rollups(self, *, short_stop_s: float | None = None,
                       pm_policy: str | None = None,
                       more: Callable[[], bool] | None = None) -> int:
        """Bring the per-minute rollups up to the newest event (cheap when done every
        minute); a new short-stop threshold or PM policy rebuilds them. Returns how many
        machines were rebuilt. Raises SinkError if the journal cannot be written.

        With `more`, one slice of it in one transaction: work (a scan of new events, one
        machine's rebuild) goes on while more() says so, and the pass goes on at the next
        call while `rollups_pending` (journal/rollups.step). A slice that fails drops the
        pass: the next call begins one where the stored built ids say.
        """
        pending, self._rollup_pass = self._rollup_pass, None
        self._rollup_pass, n = self._in_transaction(
            rollups.step, "cannot update the rollups", pending, more or _always,
            short_stop_s=short_stop_s, pm_policy=pm_policy)
        return n

    @property
    def rollups_pending(self) -> bool:
        """Whether a pass of update_rollups(more=...) is under way."""
        return self._rollup_pass is not None

    def rebuild_rollups(self, from_s: float | None = None) -> int:
        """Rebuild the rollups from the events, from `from_s` on (None: all of them), in one
        call, as `journal recompute` does after the events were derived again."""
        return self._in_transaction(rollups.rebuild, "cannot update the rollups", from_s)
    # -- end of rollups -------------------------------------------------------------------------

    # -- retention (schema 4; journal/retention.py) ---------------------------------------------
    def compact_frames(self, before_s: float, batch: int = 5000) -> int:
        """Delete up to `batch` raw frames received before `before_s`, in one transaction
        (derived data, last heard and each node's last frames stay). Returns how many.
        Raises SinkError if the journal cannot be written."""
        return self._in_transaction(retention.compact, "cannot delete old frames", before_s,
                                    batch)

    def _in_transaction(self, fn, what: str, *args, **kw) -> Any:
        """fn(db, *args, **kw) in one write transaction; SinkError "<what>" if it fails."""
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                n = fn(db, *args, **kw)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise SinkError(f"journal {self.path}: {what}: {exc}") from None
        return n
    # -- end of retention -----------------------------------------------------------------------

    def set_cursor(self, name: str, last_id: int) -> None:
        """Store a reader's position (e.g. the InfluxDB forwarder's last sent event id)."""
        try:
            self._db.execute("INSERT INTO cursors(name, last_id) VALUES (?, ?) ON CONFLICT(name)"
                             " DO UPDATE SET last_id = excluded.last_id", (name, int(last_id)))
        except sqlite3.Error as exc:
            raise SinkError(f"journal {self.path}: cannot set cursor {name}: {exc}") from None

    # -- reading ---------------------------------------------------------------------------
    def get_cursor(self, name: str) -> int | None:
        row = self._db.execute("SELECT last_id FROM cursors WHERE name = ?", (name,)).fetchone()
        return None if row is None else row[0]

    def events_after(self, last_id: int, limit: int = 1000) -> list[StoredEvent]:
        """Events with id > last_id, oldest first, at most `limit`."""
        cur = self._db.execute("SELECT id, ts_s, kind, node_id, machine, data FROM events "
                               "WHERE id > ? ORDER BY id LIMIT ?", (last_id, limit))
        return [StoredEvent(*row) for row in cur]

    def frames_after(self, last_id: int, limit: int = 1000) -> list[StoredFrame]:
        """Frames with id > last_id in the order they were accepted, at most `limit`."""
        cur = self._db.execute("SELECT id, rx_s, source, node_id, boot_id, seq, type, uptime_ms,"
                               " raw FROM frames WHERE id > ? ORDER BY id LIMIT ?",
                               (last_id, limit))
        return [StoredFrame(*row) for row in cur]

    def replay_frames(self, heard: Iterable[Heard], tail: int, since_s: float, *,
                      before_s: float | None = None, limit: int = 500_000
                      ) -> Iterator[tuple[float, bytes]]:
        """(rx_s, raw) in id order, streamed, of what a restart rebuilds the nodes from:
        per node of `heard`, its last `tail` frames (by seq) of the boot it was last heard
        from and any newer of that boot; and every frame received at or after `since_s`
        (among the last `limit`). With `before_s` (a recompute: the journal as it stood),
        only frames received before it, and every one since `since_s`.

        The ids are gathered inside SQLite (the `IN` of one query): 512 frames a node are
        513,000 ids at 1,000 nodes, and held as a Python set they were most of a restart's
        peak memory (and 10 times that at 10,000 nodes).
        """
        db = self._db
        db.execute("CREATE TEMP TABLE IF NOT EXISTS replay_tails(node_id INT, boot_id INT, "
                   "from_seq INT)")
        db.execute("DELETE FROM temp.replay_tails")
        db.executemany("INSERT INTO temp.replay_tails VALUES (?, ?, ?)",
                       ((h.node_id, h.boot_id, h.seq - tail) for h in heard))
        tails = ("SELECT f.id FROM temp.replay_tails AS t JOIN frames AS f ON "
                 "f.node_id = t.node_id AND f.boot_id = t.boot_id AND f.seq >= t.from_seq")
        if before_s is None:
            recent = ("SELECT id FROM frames WHERE id > (SELECT coalesce(max(id), 0) - ? "
                      "FROM frames) AND rx_s >= ?")
            args: tuple = (limit, since_s)
        else:
            recent = "SELECT id FROM frames WHERE rx_s >= ? AND rx_s < ?"
            tails += " AND f.rx_s < ?"
            args = (since_s, before_s, before_s)
        yield from db.execute(f"SELECT rx_s, raw FROM frames WHERE id IN ({recent} UNION ALL "
                              f"{tails}) ORDER BY id", args)

    def replay_events(self, since_s: float) -> Iterator[StoredEvent]:
        """Events with ts_s >= since_s, in id order, streamed, with the data a restart
        rebuilds from only (REPLAY_DATA). A restart 5 hours into a 1,000-machine shift reads
        1.4 M of them: as a list they took 3.3 GB.

        They are read from the first id of one dated since_s on (per kind, its events(kind,
        ts_s) index holds it: a few lookups), so the scan covers what came since, not the
        journal. (The last 5 M events were scanned: 0.44-0.81 s after 7 days of 100 machines,
        against 0.12 s now after 1 day or 7.)
        """
        db = self._db
        kinds = [k for (k,) in db.execute(
            "WITH RECURSIVE ks(k) AS (SELECT min(kind) FROM events UNION ALL "
            "SELECT (SELECT min(kind) FROM events WHERE kind > k) FROM ks WHERE k IS NOT NULL) "
            "SELECT k FROM ks WHERE k IS NOT NULL")]
        firsts = [db.execute("SELECT min(id) FROM events WHERE kind = ? AND ts_s >= ?",
                             (kind, since_s)).fetchone()[0] for kind in kinds]
        firsts.append(db.execute("SELECT min(id) FROM events WHERE kind IS NULL AND ts_s >= ?",
                                 (since_s,)).fetchone()[0])
        first = min((i for i in firsts if i is not None), default=None)
        if first is None:
            return iter(())
        cur = db.execute(f"SELECT id, ts_s, kind, node_id, machine, {REPLAY_DATA} FROM events "
                         "WHERE id >= ? AND ts_s >= ? ORDER BY id", (first, since_s))
        return map(StoredEvent._make, cur)

    def last_counts(self, per_node: int | None = None) -> list[StoredEvent]:
        """The last `count` event of every (node, boot), in id order: per-boot totals survive
        restarts. With `per_node`, only each node's newest that many boots (by their last
        count's id). Read through the last_counts table (schema 6): one row a node and boot."""
        newest = ("" if per_node is None else
                  "WHERE l.event_id IN (SELECT event_id FROM (SELECT event_id, row_number() "
                  "OVER (PARTITION BY node_id ORDER BY event_id DESC) AS k FROM last_counts) "
                  "WHERE k <= ?) ")
        cur = self._db.execute(
            "SELECT e.id, e.ts_s, e.kind, e.node_id, e.machine, e.data FROM last_counts AS l "
            "JOIN events AS e ON e.id = l.event_id " + newest + "ORDER BY e.id",
            () if per_node is None else (per_node,))
        return [StoredEvent(*row) for row in cur]

    def last_before(self, kind: str, before_s: float) -> list[StoredEvent]:
        """The last event of `kind` per machine that happened before `before_s`, in id order
        (last: by id, arrival order; a late event can be dated earlier than one before it).
        """
        if kind == "state":
            return self._last_states_before(before_s)
        cur = self._db.execute(
            "SELECT id, ts_s, kind, node_id, machine, data FROM events WHERE id IN "
            "(SELECT max(id) FROM events WHERE kind = ? AND ts_s < ? GROUP BY machine) "
            "ORDER BY id", (kind, before_s))
        return [StoredEvent(*row) for row in cur]

    def _last_states_before(self, before_s: float) -> list[StoredEvent]:
        """last_before("state", ...) by the index of state events (schema 6): per machine a
        walk back from its newest state to the first dated before `before_s`, so it reads
        what came since, not the journal's history. (The machines: a skip over the index.)"""
        db = self._db
        ix = "FROM events INDEXED BY events_state_machine WHERE kind = 'state' AND machine "
        machines = [m for (m,) in db.execute(
            f"WITH RECURSIVE ms(m) AS (SELECT min(machine) {ix}IS NOT NULL UNION ALL "
            f"SELECT (SELECT min(machine) {ix}> m) FROM ms WHERE m IS NOT NULL) "
            "SELECT m FROM ms WHERE m IS NOT NULL")]
        walk = (f"SELECT id, ts_s, kind, node_id, machine, data {ix}%s AND ts_s < ? "
                "ORDER BY id DESC LIMIT 1")
        rows = [db.execute(walk % "= ?", (m, before_s)).fetchone() for m in machines]
        rows.append(db.execute(walk % "IS NULL", (before_s,)).fetchone())
        return sorted(StoredEvent(*row) for row in rows if row is not None)

    def heard(self) -> list[Heard]:
        """When each node was last heard (the small `heard` table, not a scan of frames)."""
        return [Heard(*row) for row in self._db.execute(
            "SELECT node_id, rx_s, boot_id, seq, uptime_ms FROM heard ORDER BY node_id")]

    def node_tail(self, heard: Heard, frames: int) -> list[StoredFrame]:
        """The last `frames` frames (by seq) of the boot a node was last heard from, and any
        newer of that boot, in id order: what rebuilds its clock anchor after a restart."""
        cur = self._db.execute("SELECT id, rx_s, source, node_id, boot_id, seq, type, uptime_ms,"
                               " raw FROM frames WHERE node_id = ? AND boot_id = ? AND seq >= ? "
                               "ORDER BY id", (heard.node_id, heard.boot_id,
                                               heard.seq - frames))
        return [StoredFrame(*row) for row in cur]

    def last_time(self) -> float | None:
        """The latest time the journal holds: newest receive time or newest event's time."""
        rx = self._db.execute("SELECT max(rx_s) FROM heard").fetchone()[0]
        ev = self._db.execute("SELECT ts_s FROM events ORDER BY id DESC LIMIT 1").fetchone()
        times = [t for t in (rx, ev[0] if ev else None) if t is not None]
        return max(times) if times else None

    def has_frame(self, node_id: int, boot_id: int, seq: int) -> bool:
        """Whether (node, boot, seq) is stored, or was and retention deleted it."""
        return self._db.execute("SELECT 1 FROM frames WHERE node_id = ? AND boot_id = ? AND "
                                "seq = ?", (node_id, boot_id, seq)).fetchone() is not None \
            or retention.compacted_below(self._db, node_id, boot_id, seq)

    def received_at(self, frames: Iterable[tuple[int, int, int]],
                    before_s: float | None = None) -> dict[tuple[int, int, int], float]:
        """When each stored (node, boot, seq) of `frames` was received (those received before
        `before_s`, if given); one indexed lookup each (a restart: one a node)."""
        sql = "SELECT rx_s FROM frames WHERE node_id = ? AND boot_id = ? AND seq = ?"
        if before_s is not None:
            sql += " AND rx_s < ?"
        out = {}
        for f in frames:
            row = self._db.execute(sql, f if before_s is None else (*f, before_s)).fetchone()
            if row is not None:
                out[f] = row[0]
        return out

    def seqs_from(self, node_id: int, boot_id: int, min_seq: int) -> list[int]:
        """Stored sequence numbers >= min_seq of one node's boot (to seed a dedupe window)."""
        cur = self._db.execute("SELECT seq FROM frames WHERE node_id = ? AND boot_id = ? AND "
                               "seq >= ?", (node_id, boot_id, min_seq))
        return [row[0] for row in cur]

    def rejects(self) -> dict[tuple[str, str], tuple[int, float]]:
        """(source, reason) -> (count, last time seen), over the journal's whole life, summed
        over nodes (what the forwarder ships)."""
        cur = self._db.execute("SELECT source, reason, sum(count), max(last_s) FROM rejects "
                               "GROUP BY source, reason")
        return {(s, r): (n, t) for s, r, n, t in cur}

    def stored_frame(self, node_id: int, boot_id: int, seq: int) -> tuple[bytes, float] | None:
        """(bytes, receive time) of the stored frame (node_id, boot_id, seq), or None."""
        row = self._db.execute("SELECT raw, rx_s FROM frames WHERE node_id = ? AND boot_id = ? "
                               "AND seq = ?", (node_id, boot_id, seq)).fetchone()
        return None if row is None else (bytes(row[0]), row[1])

    def newest_frame(self, node_id: int) -> tuple[int, int, int] | None:
        """(boot_id, seq, uptime_ms) of the node's newest stored frame (from the `heard`
        table: the boot of its newest frame, that boot's highest seq and its uptime), or
        None."""
        row = self._db.execute("SELECT boot_id, seq, uptime_ms FROM heard WHERE node_id = ?",
                               (node_id,)).fetchone()
        return None if row is None else (row[0], row[1], row[2])

    def frame_count(self) -> int:
        return self._db.execute("SELECT count(*) FROM frames").fetchone()[0]

    def last_event_id(self) -> int:
        return self._db.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0]
