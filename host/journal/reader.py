"""Read-only access to a journal beside a running collector: one opener, named queries.

Every module that reads the journal without writing it (nodes, report, commission, flash,
demo) goes through `open_readonly`; no SQL lives outside this package. WAL lets a reader
see each commit of the running collector as soon as it is made, without blocking it.

What opening read-only does to the files (SQLite 3.40, checked in tests/test_journal_reader.py):
the database file is never created or changed. On a journal whose writer is not running (its
`-wal` and `-shm` were removed when the writer closed), the first query creates an empty
`-wal` and a 32 KiB `-shm` beside it, as every WAL reader must, and leaves them: a
read-only connection never checkpoints, and removing them could pull them from under a
writer that started meanwhile. The next writer uses them as its own.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
from pathlib import Path
from typing import Self

from ..errors import JournalReadError
from ..protocol import LAMP_NAMES, T_HEARTBEAT
from . import rollups
from .history import ConfigVersion
from .store import SCHEMA_VERSION, Heard, StoredEvent

__all__ = ["JournalReader", "is_journal", "open_readonly"]

_TABLES = ("frames", "events", "rejects")
_EVENT = "SELECT id, ts_s, kind, node_id, machine, data FROM events "


def open_readonly(path: str | os.PathLike, *, timeout_s: float = 10.0) -> JournalReader:
    """Open an existing journal read-only; use as a context manager or close() it.

    Args:
        path: the journal file; any characters (spaces, `#`, `?`, `%`) are escaped.
        timeout_s: how long a query waits while the writer holds a lock it needs.
    Raises:
        JournalReadError: no file there, or not a lampwatch journal (not SQLite, no
            journal tables, a newer schema), or unreadable.
    """
    path = Path(path)
    if not path.is_file():
        raise JournalReadError(f"no journal at {path}")
    try:
        # mode=ro: never create the file or write it. as_uri() percent-escapes the path.
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True,
                             timeout=timeout_s, isolation_level=None)
    except sqlite3.Error as exc:
        raise JournalReadError(f"cannot read the journal {path}: {exc}") from None
    try:
        tables = {row[0] for row in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        version = db.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.OperationalError as exc:  # locked, I/O error, permission: not its content
        db.close()
        raise JournalReadError(f"cannot read the journal {path}: {exc}") from None
    except sqlite3.DatabaseError as exc:  # "file is not a database"
        db.close()
        raise JournalReadError(f"{path} is not a lampwatch journal ({exc})") from None
    missing = [t for t in _TABLES if t not in tables]
    if missing:
        db.close()
        raise JournalReadError(f"{path} is not a lampwatch journal (no table "
                               f"{', '.join(missing)})")
    if version > SCHEMA_VERSION:
        db.close()
        raise JournalReadError(f"journal {path} has schema {version}, newer than this "
                               f"lampwatch ({SCHEMA_VERSION})")
    return JournalReader(db, path, "heard" in tables, "sources" in tables)


def is_journal(path: str | os.PathLike) -> bool:
    """Whether `path` is a lampwatch journal open_readonly can read."""
    try:
        open_readonly(path).close()
    except JournalReadError:
        return False
    return True


class JournalReader:
    """A read-only connection to a journal, for one thread. Each query reads the newest
    committed state; it raises JournalReadError if SQLite cannot answer it."""

    def __init__(self, db: sqlite3.Connection, path: Path, has_heard: bool = True,
                 schema_4: bool = True):
        self._db = db
        self.path = path
        self._has_heard = has_heard  # schema 3; an older journal (not yet reopened) may not
        self._schema_4 = schema_4  # the sources table, the rollups

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _rows(self, sql: str, args: tuple = ()) -> list[tuple]:
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise JournalReadError(f"cannot read the journal {self.path}: {exc}") from None

    # -- ids and HELLOs (flash, commission) --------------------------------------------------
    def last_event_id(self) -> int:
        """The newest event's id (0 when there is none)."""
        return self._rows("SELECT coalesce(max(id), 0) FROM events")[0][0]

    def last_hello(self, node_id: int) -> dict | None:
        """The data of the node's newest HELLO (fw, boot_id, lamp_mask, ...), or None."""
        rows = self._rows("SELECT data FROM events WHERE kind = 'hello' AND node_id = ? "
                          "ORDER BY id DESC LIMIT 1", (node_id,))
        return json.loads(rows[0][0]) if rows else None

    def hello_after(self, node_id: int, event_id: int) -> dict | None:
        """The data of the node's first HELLO with an id above `event_id`, or None."""
        rows = self._rows("SELECT data FROM events WHERE kind = 'hello' AND node_id = ? "
                          "AND id > ? ORDER BY id LIMIT 1", (node_id, event_id))
        return json.loads(rows[0][0]) if rows else None

    def last_heartbeat_id(self, node_id: int) -> int:
        """The frame id of the node's newest heartbeat (0 when there is none)."""
        return self._rows("SELECT coalesce(max(id), 0) FROM frames WHERE node_id = ? AND "
                          "type = ?", (node_id, T_HEARTBEAT))[0][0]

    def node_events_after(self, node_id: int, event_id: int) -> list[tuple[str, dict]]:
        """(kind, data) of the node's events with an id above `event_id`, in id order."""
        rows = self._rows("SELECT kind, data FROM events WHERE id > ? AND node_id = ? "
                          "ORDER BY id", (event_id, node_id))
        return [(kind, json.loads(data or "{}")) for kind, data in rows]

    # -- the OEE report ----------------------------------------------------------------------
    def last_heard(self) -> dict[int, Heard]:
        """Node id -> when it was last heard (the small `heard` table the collector updates
        with every batch of frames; a scan of the frames on an older journal without it)."""
        if self._has_heard:
            rows = self._rows("SELECT node_id, rx_s, boot_id, seq, uptime_ms FROM heard")
        else:
            rows = self._rows("SELECT node_id, rx_s, boot_id, seq, uptime_ms FROM frames "
                              "WHERE id IN (SELECT max(id) FROM frames GROUP BY node_id)")
        return {row[0]: Heard(*row) for row in rows}

    def last_rx(self) -> dict[int, float]:
        """Node id -> the receive time of its newest frame."""
        return {node: h.rx_s for node, h in self.last_heard().items()}

    def machines(self) -> list[str]:
        """Every machine named by an event (a walk over the index, not over the events)."""
        if not self._schema_4:
            return [m for (m,) in self._rows("SELECT DISTINCT machine FROM events WHERE "
                                             "machine IS NOT NULL")]
        return [m for (m,) in self._rows(
            "WITH RECURSIVE ms(m) AS (SELECT min(machine) FROM events UNION ALL "
            "SELECT (SELECT min(machine) FROM events WHERE machine > m) FROM ms "
            "WHERE m IS NOT NULL) SELECT m FROM ms WHERE m IS NOT NULL")]

    def machine_window(self, machine: str, start_s: float, end_s: float,
                       margin_s: float, *, counts_after: bool = True) -> list[StoredEvent]:
        """What an OEE report of one machine over [start_s, end_s) reads, in id order: its
        state events from margin_s before to margin_s after and the one in effect before
        that, its counts from start_s (an earlier count's output was made before start_s)
        to margin_s after (counts_after False: to end_s), its reasons from margin_s before
        on, hello events in the margins.
        """
        lo, hi = start_s - margin_s, end_s + margin_s
        # one indexed range per kind (an OR of them would read all the machine's events)
        rows = self._rows(
            _EVENT + "WHERE machine = ?1 AND kind = 'state' AND ts_s >= ?2 AND ts_s < ?3 "
            "UNION ALL " + _EVENT + "WHERE machine = ?1 AND kind = 'hello' AND ts_s >= ?2 "
            "AND ts_s < ?3 UNION ALL " + _EVENT + "WHERE machine = ?1 AND kind = 'count' AND "
            "ts_s >= ?4 AND ts_s < ?5 UNION ALL " + _EVENT + "WHERE machine = ?1 AND "
            "kind = 'reason' AND ts_s >= ?2 UNION ALL SELECT * FROM (" + _EVENT +
            "WHERE machine = ?1 AND kind = 'state' AND ts_s < ?2 ORDER BY ts_s DESC, id DESC "
            "LIMIT 1)", (machine, lo, hi, start_s, hi if counts_after else end_s))
        return [StoredEvent(*row) for row in sorted(rows)]

    def machine_last_ts(self, machine: str, start_s: float, end_s: float) -> float | None:
        """The newest time of the machine's count and hello events in [start_s, end_s), its
        state events before end_s and its reasons from start_s on (None: none of them)."""
        times = [self._rows("SELECT max(ts_s) FROM events WHERE machine = ? AND kind = ? AND "
                            "ts_s >= ? AND ts_s < ?", (machine, kind, lo, end_s))[0][0]
                 for kind, lo in (("state", -math.inf), ("count", start_s),
                                  ("hello", start_s))]
        times.append(self._rows("SELECT max(ts_s) FROM events WHERE machine = ? AND "
                                "kind = 'reason' AND ts_s >= ?", (machine, start_s))[0][0])
        times = [t for t in times if t is not None]
        return max(times) if times else None

    def kind_between(self, kind: str, start_s: float, end_s: float) -> list[StoredEvent]:
        """Events of one kind (hello, clock) with start_s <= ts_s < end_s, in id order."""
        return [StoredEvent(*row) for row in self._rows(
            _EVENT + "WHERE kind = ? AND ts_s >= ? AND ts_s < ? ORDER BY id",
            (kind, start_s, end_s))]

    # -- rollups (journal/rollups.py) --------------------------------------------------------
    def _rollups(self, fn, *args, empty=None):
        if not self._schema_4:
            return empty
        try:
            return fn(self._db, *args)
        except sqlite3.Error as exc:
            raise JournalReadError(f"cannot read the journal {self.path}: {exc}") from None

    def rollup_meta(self) -> dict:
        """The settings the cells were built with, and the event id they are built up to."""
        return self._rollups(rollups.meta, empty={})

    def rollup_machines(self) -> dict[str, tuple[float, float, int]]:
        """machine -> (from_s, to_s, built_id): the whole minutes its cells cover."""
        return self._rollups(rollups.machines, empty={})

    def rollup_stale(self) -> dict[str, float]:
        """machine -> the earliest time events newer than its cells change them."""
        return self._rollups(rollups.stale, empty={})

    def rollup_sums(self, spans: list[tuple[int, int, bool]],
                    bounds: dict[str, tuple[int, int]]) -> list[tuple]:
        """Cells summed per machine, planned span and class (rollups.sums)."""
        return self._rollups(rollups.sums, spans, bounds, empty=[])

    def rollup_cells(self, machine: str, start_s: float, end_s: float) -> list[tuple]:
        """(minute_s, class, secs, rate) of the machine's cells in [start_s, end_s)."""
        return self._rollups(rollups.cells, machine, start_s, end_s, empty=[])

    def rollup_nodes(self, machine: str, start_s: float, end_s: float) -> list[int]:
        """The nodes the machine's events came from between start_s and end_s."""
        return self._rollups(rollups.node_ids, machine, start_s, end_s, empty=[])

    def oee_events(self, start_s: float, end_s: float) -> list[StoredEvent]:
        """What an OEE report over [start_s, end_s) reads, in id order: the state, count,
        hello and clock events in the window, the reason events from start_s on (a reason
        may be given after its stop), and each machine's last state before start_s."""
        return [StoredEvent(*row) for row in self._rows(
            _EVENT + "WHERE (kind IN ('state', 'count', 'hello', 'clock') AND ts_s >= ? "
            "AND ts_s < ?) OR (kind = 'reason' AND ts_s >= ?) "
            "OR id IN (SELECT MAX(id) FROM events WHERE kind = 'state' AND ts_s < ? "
            "GROUP BY machine) ORDER BY id", (start_s, end_s, start_s, start_s))]

    def clock_steps(self, since_s: float) -> list[tuple[float, dict]]:
        """(event time, data) of the host clock steps journaled from since_s on."""
        return [(ts, json.loads(data)) for ts, data in self._rows(
            "SELECT ts_s, data FROM events WHERE kind = 'clock' AND ts_s >= ? ORDER BY id",
            (since_s,))]

    # -- the nodes view ----------------------------------------------------------------------
    def frame_sources(self) -> list[tuple[int, str, float, float]]:
        """(node id, source, first rx_s, last rx_s) for every source a node's frames came
        from."""
        if self._schema_4:  # kept per batch of frames: no scan, and it outlives retention
            return self._rows("SELECT node_id, source, first_s, last_s FROM sources")
        return self._rows("SELECT node_id, source, min(rx_s), max(rx_s) FROM frames "
                          "GROUP BY node_id, source")

    # Each node's newest events of a kind, one indexed walk from the newest per node and
    # kind (events(node_id, kind), id order), not a grouping over all the events: the nodes
    # are those of the `heard` table (every node that sent a frame).
    def _nodes(self) -> list[int]:
        if not self._has_heard:
            return [n for (n,) in self._rows("SELECT DISTINCT node_id FROM frames")]
        return [n for (n,) in self._rows("SELECT node_id FROM heard ORDER BY node_id")]

    def _newest(self, node: int, kind: str, where: str = "", args: tuple = (),
                cols: str = "data") -> tuple | None:
        rows = self._rows(f"SELECT {cols} FROM events WHERE node_id = ? AND kind = ? {where} "
                          "ORDER BY id DESC LIMIT 1", (node, kind, *args))
        return rows[0] if rows else None

    def last_hello_and_health(self) -> list[tuple[int, str | None, str, dict]]:
        """(node id, machine, kind, data) of each node's newest HELLO and newest HEALTH."""
        out = []
        for node in self._nodes():
            for kind in ("hello", "health"):
                row = self._newest(node, kind, cols="machine, data")
                if row is not None:
                    out.append((node, row[0], kind, json.loads(row[1])))
        return out

    def states_since(self, since_s: float) -> list[tuple[int, float, str]]:
        """(node id, ts_s, state): each node's last state before since_s and every state
        from since_s on, in id order."""
        before = [(row[0], node, *row[1:]) for node in self._nodes() if (row := self._newest(
            node, "state", "AND ts_s < ?", (since_s,),
            "id, ts_s, json_extract(data, '$.state')")) is not None]
        after = self._rows("SELECT id, node_id, ts_s, json_extract(data, '$.state') FROM "
                           "events WHERE kind = 'state' AND ts_s >= ?", (since_s,))
        return [row[1:] for row in sorted(before + after)]

    def last_lamp_states(self) -> list[tuple[int, str, str]]:
        """(node id, lamp, state) of each node's newest lamp event per lamp."""
        return [(node, lamp, row[0]) for node in self._nodes() for lamp in LAMP_NAMES
                if (row := self._newest(node, "lamp", "AND json_extract(data, '$.lamp') = ?",
                                        (lamp,), "json_extract(data, '$.state')"))]

    def last_lit(self) -> list[tuple[int, str, float]]:
        """(node id, lamp, ts_s): when each node's lamp last went ON or BLINK (its newest
        such event)."""
        return [(node, lamp, row[0]) for node in self._nodes() for lamp in LAMP_NAMES
                if (row := self._newest(node, "lamp", "AND json_extract(data, '$.lamp') = ? "
                                        "AND json_extract(data, '$.state') IN ('ON', 'BLINK')",
                                        (lamp,), "ts_s"))]

    def last_good_part(self) -> list[tuple[int, float]]:
        """(node id, ts_s) of each node's newest count event with a GOOD part."""
        return [(node, row[0]) for node in self._nodes()
                if (row := self._newest(node, "count", "AND json_extract(data, '$.good') > 0",
                                        (), "ts_s"))]

    def config_versions(self) -> list[ConfigVersion]:
        """Every config version recorded (schema 5), oldest first; none in an older journal."""
        if not self._rows("SELECT 1 FROM sqlite_master WHERE name = 'config_versions'"):
            return []
        return [ConfigVersion(*r) for r in self._rows(
            "SELECT version, effective_from_s, recorded_s, hash, settings, summary "
            "FROM config_versions ORDER BY version")]

    def reject_counts(self) -> list[tuple[str, str, int, int, float]]:
        """(source, reason, node id, count, last time seen) over the journal's life, by
        source, reason and node; node id 0 when the frames named no node they could be
        verified as (and in a version 1 journal, which did not keep it)."""
        columns = {row[1] for row in self._rows("PRAGMA table_info(rejects)")}
        node = "node_id" if "node_id" in columns else "0"
        return self._rows(f"SELECT source, reason, {node}, count, last_s FROM rejects "
                          "ORDER BY 1, 2, 3")
