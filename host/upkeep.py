"""The journal's upkeep from the collector: rollups kept current, old raw frames compacted.

Both run from Collector.tick in the collector's thread (the journal's one writer) and are
bounded: the rollups take the events of the last minute, retention one batch of frames per
tick while there is a backlog (a journal migrated with years of frames shrinks over hours
without stalling ingest), else one look every ten minutes.
"""

from __future__ import annotations

import logging
from typing import Any

from .errors import SinkError

log = logging.getLogger(__name__)

ROLLUP_EVERY_S = 60.0
RETENTION_EVERY_S = 600.0
RETENTION_BATCH = 5000
_DAY_S = 86400.0


class JournalUpkeep:
    """Runs the rollups and retention on `journal` (a store.Journal) when due.

    Args:
        retention_days: raw frames received longer ago than this are deleted.
        short_stop_s, pm_policy: how the rollups classify stops (the collector's [oee]).
    """

    def __init__(self, journal: Any, *, retention_days: float, short_stop_s: float,
                 pm_policy: str, batch: int = RETENTION_BATCH):
        self.journal = journal
        self.retention_s = retention_days * _DAY_S
        self.short_stop_s, self.pm_policy, self.batch = short_stop_s, pm_policy, batch
        self._rollups_at = self._retention_at = float("-inf")
        self.compacted = 0  # frames deleted since start

    def tick(self, now_s: float) -> None:
        """Do what is due at `now_s`; a failure is logged and tried again when next due."""
        if now_s >= self._rollups_at:
            self._rollups_at = now_s + ROLLUP_EVERY_S
            try:
                self.journal.update_rollups(short_stop_s=self.short_stop_s,
                                            pm_policy=self.pm_policy)
            except SinkError as exc:
                log.warning("rollups not updated: %s", exc)
        if now_s >= self._retention_at:
            self._retention_at = now_s + RETENTION_EVERY_S
            try:
                n = self.journal.compact_frames(now_s - self.retention_s, self.batch)
            except SinkError as exc:
                log.warning("old frames not deleted: %s", exc)
                return
            self.compacted += n
            if n == self.batch:  # a backlog: the next batch at the next tick
                self._retention_at = now_s
            if n:
                log.info("retention: %d frames older than %g days deleted",
                         n, self.retention_s / _DAY_S)
