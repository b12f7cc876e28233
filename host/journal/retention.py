"""Retention: raw frames older than the configured period are deleted in bounded batches.

Derived data (events, rollups, rejects, cursors) is kept; so is what live operation needs:
the `heard` table, the `sources` table, and each node's last frames of the boot it was last
heard from (the frames a restart rebuilds its clock anchor from, runtime.replay). A deleted
frame's (node, boot, seq) is still known as stored: `compacted` keeps, per boot, the seq
below which frames may have been deleted, and has_frame answers yes below it, so a frame
sent again after a year is never taken as new (docs/protocol.md, "Duplicates and replays").
"""

from __future__ import annotations

import sqlite3

RETENTION_SCHEMA = """
CREATE TABLE IF NOT EXISTS compacted(node_id INT, boot_id INT, below_seq INT,
    PRIMARY KEY(node_id, boot_id));
"""
DEFAULT_RETENTION_DAYS = 365.0
TAIL_FRAMES = 512  # runtime._TAIL_FRAMES: the frames a restart reads of a node's last boot
# The frames of one batch: the oldest by id received before the cutoff, but not the tail of
# the boot each node was last heard from.
_BATCH = ("SELECT f.id, f.node_id, f.boot_id, f.seq FROM frames f LEFT JOIN heard h "
          "ON h.node_id = f.node_id WHERE f.rx_s < ? AND NOT (h.boot_id IS f.boot_id AND "
          "f.seq >= h.seq - ?) ORDER BY f.id LIMIT ?")


def compact(db: sqlite3.Connection, before_s: float, batch: int) -> int:
    """Delete up to `batch` frames received before `before_s`; returns how many. The caller
    holds the write transaction."""
    rows = db.execute(_BATCH, (before_s, TAIL_FRAMES, batch)).fetchall()
    if not rows:
        return 0
    floors: dict[tuple[int, int], int] = {}
    for _, node, boot, seq in rows:
        floors[(node, boot)] = max(floors.get((node, boot), 0), seq + 1)
    db.executemany("INSERT INTO compacted VALUES (?, ?, ?) ON CONFLICT(node_id, boot_id) "
                   "DO UPDATE SET below_seq = max(below_seq, excluded.below_seq)",
                   [(n, b, s) for (n, b), s in floors.items()])
    db.executemany("DELETE FROM frames WHERE id = ?", [(r[0],) for r in rows])
    return len(rows)


def compacted_below(db: sqlite3.Connection, node_id: int, boot_id: int, seq: int) -> bool:
    """Whether (node, boot, seq) lies below what retention may have deleted."""
    return db.execute("SELECT 1 FROM compacted WHERE node_id = ? AND boot_id = ? AND "
                      "? < below_seq", (node_id, boot_id, seq)).fetchone() is not None
