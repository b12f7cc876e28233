"""The journal reads and writes of export, import and recompute (host/history/, issue 14).

Frames are read in pages by id (`iter_frames`), so an export of any length holds one page in
memory. Config versions are rows of `config_versions` (store.py, schema 5). The `*_before`
reads are the restart reads of runtime.replay as the journal stood at an earlier time: what
a recompute rebuilds the deriver's memory from. `recompute_transaction` makes a recompute
one transaction: derived events from a time on are replaced whole or not at all.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

from ..errors import SinkError
from .store import REPLAY_DATA, Heard, Journal, StoredEvent, StoredFrame, event_row, note_counts

__all__ = ["INPUT_KINDS", "ConfigVersion", "HistoryJournal"]

_FRAME = "SELECT id, rx_s, source, node_id, boot_id, seq, type, uptime_ms, raw FROM frames "
_EVENT = "SELECT id, ts_s, kind, node_id, machine, data FROM events "
_INSERT_EVENT = "INSERT INTO events(ts_s, kind, node_id, machine, data) VALUES (?, ?, ?, ?, ?)"
# Events that are input, not derived from frames: an operator's reason, a host clock step.
# A recompute keeps them (and hands the clock steps to the deriver again).
INPUT_KINDS = ("reason", "clock")


class ConfigVersion(NamedTuple):
    version: int
    effective_from_s: float
    recorded_s: float
    hash: str
    settings: str  # host/config_versions.py's document, as JSON text
    summary: str


class HistoryJournal(Journal):
    """A Journal with the reads and writes of export, import and recompute."""

    # -- frames out ------------------------------------------------------------------------
    def iter_frames(self, from_s: float | None = None, to_s: float | None = None,
                    node_id: int | None = None, page: int = 2000) -> Iterator[StoredFrame]:
        """Frames in id (= acceptance) order, received in [from_s, to_s), of one node or
        all; read `page` rows at a time (a query per page: no read held open meanwhile)."""
        where, args = ["id > ?"], []
        if from_s is not None:
            where.append("rx_s >= ?")
            args.append(from_s)
        if to_s is not None:
            where.append("rx_s < ?")
            args.append(to_s)
        if node_id is not None:
            where.append("node_id = ?")
            args.append(node_id)
        sql = _FRAME + "WHERE " + " AND ".join(where) + " ORDER BY id LIMIT ?"
        last = 0
        while True:
            rows = self._db.execute(sql, (last, *args, page)).fetchall()
            for row in rows:
                yield StoredFrame(*row)
            if len(rows) < page:
                return
            last = rows[-1][0]

    # -- config versions -------------------------------------------------------------------
    def config_versions(self) -> list[ConfigVersion]:
        """Every recorded version, oldest first."""
        return [ConfigVersion(*r) for r in self._db.execute(
            "SELECT version, effective_from_s, recorded_s, hash, settings, summary "
            "FROM config_versions ORDER BY version")]

    def record_version(self, settings: str, hash_: str, summary: str, effective_from_s: float,
                       recorded_s: float) -> int:
        """Store a new version; returns its number. Raises SinkError."""
        try:
            cur = self._db.execute(
                "INSERT INTO config_versions(effective_from_s, recorded_s, hash, settings, "
                "summary) VALUES (?, ?, ?, ?, ?)",
                (effective_from_s, recorded_s, hash_, settings, summary))
        except sqlite3.Error as exc:
            raise SinkError(f"journal {self.path}: cannot record the config: {exc}") from None
        return cur.lastrowid

    # -- the journal as it stood at `t` (a recompute's restart point) ----------------------
    def heard_before(self, t: float) -> list[Heard]:
        """Per node, its newest frame received before `t`, as a Heard."""
        return [Heard(*r) for r in self._db.execute(
            "SELECT node_id, rx_s, boot_id, seq, uptime_ms FROM frames WHERE id IN "
            "(SELECT max(id) FROM frames WHERE rx_s < ? GROUP BY node_id)", (t,))]

    def last_counts_before(self, t: float, per_node: int | None = None) -> list[StoredEvent]:
        """The last `count` event before `t` of every (node, boot), in id order; with
        `per_node`, of each node's newest that many boots (as Journal.last_counts: a count
        naming no node or no integer boot seeds nothing, so none). A scan of the count
        events (a recompute reads them all anyway)."""
        last = ("SELECT max(id) AS id, node_id FROM events WHERE kind = 'count' AND ts_s < ? "
                "AND node_id IS NOT NULL AND json_valid(data) AND "
                "json_type(data, '$.boot_id') = 'integer' "
                "GROUP BY node_id, json_extract(data, '$.boot_id')")
        if per_node is not None:
            last = (f"SELECT id FROM (SELECT id, row_number() OVER (PARTITION BY node_id "
                    f"ORDER BY id DESC) AS k FROM ({last})) WHERE k <= ?")
        else:
            last = f"SELECT id FROM ({last})"
        return [StoredEvent(*r) for r in self._db.execute(
            _EVENT + f"WHERE id IN ({last}) ORDER BY id",
            (t,) if per_node is None else (t, per_node))]

    def replay_events_between(self, since_s: float, t: float) -> Iterator[StoredEvent]:
        """As Journal.replay_events, the events dated in [since_s, t)."""
        return map(StoredEvent._make, self._db.execute(
            f"SELECT id, ts_s, kind, node_id, machine, {REPLAY_DATA} FROM events "
            "WHERE ts_s >= ? AND ts_s < ? ORDER BY id", (since_s, t)))

    def clock_events_from(self, t: float) -> list[StoredEvent]:
        """The host clock steps journaled from `t` on, in time order."""
        return [StoredEvent(*r) for r in self._db.execute(
            _EVENT + "WHERE kind = 'clock' AND ts_s >= ? ORDER BY ts_s, id", (t,))]

    # -- recompute -------------------------------------------------------------------------
    @contextmanager
    def recompute_transaction(self, from_s: float):
        """One write transaction: derived events dated from `from_s` on are deleted, the
        yielded `add(events)` stores their replacement; all committed at the end, or nothing
        (an error or an interrupt rolls back: the journal is as it was).

        Raises SinkError if the journal cannot be written.
        """
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise SinkError(f"journal {self.path}: cannot start the recompute: {exc}") from None
        try:
            marks = ", ".join("?" * len(INPUT_KINDS))
            db.execute(f"DELETE FROM events WHERE ts_s >= ? AND kind NOT IN ({marks})",
                       (from_s, *INPUT_KINDS))

            def add(events) -> None:
                rows = [event_row(e) for e in events]
                if rows:
                    db.executemany(_INSERT_EVENT, rows)
                    note_counts(db, rows)
            yield add
            _mend_last_counts(db)
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            db.execute("ROLLBACK")
            raise SinkError(f"journal {self.path}: recompute not stored: {exc}") from None
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise


def _mend_last_counts(db: sqlite3.Connection) -> None:
    """After a recompute replaced events: a (node, boot) whose newest count event was deleted
    and not derived again points at its newest count left, or at none. (Those derived again
    are newer than every event kept, so `add` pointed at them.) Rare: a node taken out of
    the config; a scan of that node's counts each."""
    gone = db.execute("SELECT node_id, boot_id FROM last_counts AS l WHERE NOT EXISTS "
                      "(SELECT 1 FROM events WHERE id = l.event_id)").fetchall()
    for node, boot in gone:
        newest = db.execute(
            "SELECT max(id) FROM events WHERE node_id = ? AND kind = 'count' AND "
            "json_valid(data) AND json_extract(data, '$.boot_id') = ?", (node, boot)).fetchone()[0]
        if newest is None:
            db.execute("DELETE FROM last_counts WHERE node_id = ? AND boot_id = ?", (node, boot))
        else:
            db.execute("UPDATE last_counts SET event_id = ? WHERE node_id = ? AND boot_id = ?",
                       (newest, node, boot))
