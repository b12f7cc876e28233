"""The journal reads of the UNS publisher and the broker-fed source (host/uns/, sources/uns.py)."""

from __future__ import annotations

from .store import Journal

__all__ = ["UnsJournal"]


class UnsJournal(Journal):
    """A Journal with the named reads the unified namespace needs."""

    def frame_id(self, node_id: int, boot_id: int, seq: int) -> int | None:
        """The id of the stored frame (node, boot, seq), or None: where a broker's copy ends."""
        row = self._db.execute("SELECT id FROM frames WHERE node_id = ? AND boot_id = ? AND "
                               "seq = ?", (node_id, boot_id, seq)).fetchone()
        return None if row is None else row[0]

    def last_frame_id(self) -> int:
        return self._db.execute("SELECT coalesce(max(id), 0) FROM frames").fetchone()[0]

    def last_rx_s(self) -> float | None:
        """The newest frame's receive time (a broker-fed collector's clock resumes there)."""
        row = self._db.execute("SELECT rx_s FROM frames ORDER BY id DESC LIMIT 1").fetchone()
        return None if row is None else row[0]
