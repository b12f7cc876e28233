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
# The frames of one batch: the oldest by id up to `upto` (_received_before) received before
# the cutoff, but not the tail of the boot each node was last heard from.
_BATCH = ("SELECT f.id, f.node_id, f.boot_id, f.seq FROM frames f LEFT JOIN heard h "
          "ON h.node_id = f.node_id WHERE f.id <= ? AND f.rx_s < ? AND NOT (h.boot_id IS "
          "f.boot_id AND f.seq >= h.seq - ?) ORDER BY f.id LIMIT ?")
_FIRST_FROM = "SELECT id, rx_s FROM frames WHERE id >= ? ORDER BY id LIMIT 1"
_LAST = "SELECT max(id) FROM frames"


def compact(db: sqlite3.Connection, before_s: float, batch: int) -> int:
    """Delete up to `batch` frames received before `before_s`; returns how many. The caller
    holds the write transaction."""
    upto = _received_before(db, before_s)
    if upto is None:
        return 0
    rows = db.execute(_BATCH, (upto, before_s, TAIL_FRAMES, batch)).fetchall()
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


def _received_before(db: sqlite3.Connection, before_s: float) -> int | None:
    """The last frame id received before `before_s`, found by bisecting the ids (frames are
    stored in the order they were received: HostClock and an import's stream time never go
    back), or None. So a pass with nothing due reads ~2 x log2(frames) rows, not every frame
    (that scan took 55-74 ms every 10 minutes of a 1,000-machine shift, growing with the
    journal). A file imported with receive times older than frames already stored is
    deleted once the ids before it are due."""
    first = db.execute(_FIRST_FROM, (0,)).fetchone()
    if first is None or first[1] >= before_s:
        return None
    lo, hi = first[0], db.execute(_LAST).fetchone()[0]  # rx(lo) < before_s
    while lo < hi:  # the last id with rx_s < before_s, within [lo, hi]
        mid = (lo + hi + 1) // 2
        row = db.execute(_FIRST_FROM, (mid,)).fetchone()  # the first id from mid on
        if row[1] < before_s:
            lo = row[0]
        else:
            hi = mid - 1
    return lo


def compacted_below(db: sqlite3.Connection, node_id: int, boot_id: int, seq: int) -> bool:
    """Whether (node, boot, seq) lies below what retention may have deleted."""
    return db.execute("SELECT 1 FROM compacted WHERE node_id = ? AND boot_id = ? AND "
                      "? < below_seq", (node_id, boot_id, seq)).fetchone() is not None
