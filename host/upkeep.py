"""The journal's upkeep from the collector: rollups kept current, old raw frames compacted.

Both run from Collector.tick in the collector's thread (the journal's one writer), which
ingests nothing meanwhile, so both are bounded per tick. The rollups: once a minute a pass
begins over the events since the last one, and each tick does at most `rollup_budget_s` of
it, less what the tick already spent (a scan of new events or one machine's rebuild at a
time; the last may pass the budget),
so the machines a minute made dirty are rebuilt over the following ticks; a pass that takes
longer than a minute is followed at once by the next (with thousands of machines a pass may
take minutes; a report reads what is not rolled up yet from events). Retention: one batch of frames per tick while there is a backlog (a
journal migrated with years of frames shrinks over hours without stalling ingest), else one
look every ten minutes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from .errors import SinkError

log = logging.getLogger(__name__)

ROLLUP_EVERY_S = 60.0
RETENTION_EVERY_S = 600.0
RETENTION_BATCH = 5000
ROLLUP_BUDGET_S = 0.02  # of a tick at 1 Hz: 2 % of the collector's time at most
# What the tick spent before (the live OEE's points, the commit) comes off the rollups'
# slice, down to this: the parts no longer add up in one tick (a 1,000-machine shift's
# tick p99 was 57 ms: 20 of points, 15 of commit, 20-30 of rollups in the same tick).
_MIN_SLICE_S = 0.002
_DAY_S = 86400.0


class JournalUpkeep:
    """Runs the rollups and retention on `journal` (a store.Journal) when due.

    Args:
        retention_days: raw frames received longer ago than this are deleted.
        short_stop_s, pm_policy: how the rollups classify stops (the collector's [oee]).
        rollup_budget_s: the rollup work a tick does at most (plus one machine's rebuild).
        clock: a monotonic clock (s) that times it; the only clock upkeep reads.
    """

    def __init__(self, journal: Any, *, retention_days: float, short_stop_s: float,
                 pm_policy: str, batch: int = RETENTION_BATCH,
                 rollup_budget_s: float = ROLLUP_BUDGET_S,
                 clock: Callable[[], float] = time.perf_counter):
        self.journal = journal
        self.retention_s = retention_days * _DAY_S
        self.short_stop_s, self.pm_policy, self.batch = short_stop_s, pm_policy, batch
        self.rollup_budget_s, self.clock = rollup_budget_s, clock
        self._rollups_at = self._retention_at = float("-inf")
        self.compacted = 0  # frames deleted since start
        self.rolled = 0  # machine rebuilds of the rollups since start

    def tick(self, now_s: float, spent_s: float = 0.0) -> None:
        """Do what is due at `now_s`; a failure is logged and tried again when next due.
        spent_s: what the collector's tick has taken so far (comes off the rollups' slice)."""
        if self.journal.rollups_pending or now_s >= self._rollups_at:
            if not self.journal.rollups_pending:  # a new pass
                self._rollups_at = now_s + ROLLUP_EVERY_S
            deadline = self.clock() + max(_MIN_SLICE_S, self.rollup_budget_s - spent_s)
            try:
                self.rolled += self.journal.update_rollups(
                    short_stop_s=self.short_stop_s, pm_policy=self.pm_policy,
                    more=lambda: self.clock() < deadline)
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
