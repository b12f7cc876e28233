"""`lampwatch journal recompute`: derived events rebuilt from the raw frames, per config version.

From WHEN on, the derived events (everything but operators' reasons and host clock steps,
journal/history.INPUT_KINDS) are derived again from the stored frames, under the config
version valid at each time (history/versions.py). Each span of one version runs as the
collector would have run had it been restarted at the span's start with that config: the
deriver's memory rebuilt by runtime.replay from the journal as it stood then (the frames
received before, the events dated before, both read through `_AsOf`), then the frames in
acceptance order on the stream's time (transfer.StreamTime: the same ticks as an import),
the journaled clock steps handed to it again at their times (their UNKNOWN spans are made
again; but node time is anchored on the stored receive times, which followed the step,
where the collector anchored it on its monotonic clock, which did not: after a forward
step of s seconds a node's later data is dated up to s earlier than live until it reboots;
the command warns). An event dated before WHEN is kept as it is (the frames before WHEN
are not derived again).

It is one transaction: an error or an interrupt leaves the journal as it was. Stop the
collector first: its deriver would carry on with what it had, and its commits wait for the
transaction (and, past their timeout, are retried after it).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config_versions import DerivedSettings
from ..derive import Deriver
from ..errors import ConfigError, ProtocolError
from ..hostclock import ClockStep, HostClock
from ..journal.history import HistoryJournal
from ..protocol import decode
from ..runtime import replay
from .transfer import StreamTime
from .versions import record_config, segments

__all__ = ["RecomputeStats", "recompute"]

log = logging.getLogger(__name__)


@dataclass
class RecomputeStats:
    frames: int = 0
    events: int = 0
    undecodable: int = 0  # stored frames the config's keys no longer verify
    clock_steps: int = 0  # host clock steps journaled in the range (docs/history.md: a limit)
    versions: list[int] = field(default_factory=list)  # the versions used, in time order
    recorded: int | None = None  # the version a given config was recorded as


class _AsOf:
    """The restart reads runtime.replay makes, of the journal as it stood at `t`."""

    def __init__(self, journal: HistoryJournal, t: float):
        self.j, self.t = journal, t
        self._heard: list | None = None  # (a scan of the frames: once)

    def replay_frames(self, heard, tail: int, since_s: float):
        return self.j.replay_frames(heard, tail, since_s, before_s=self.t)

    def received_at(self, frames):
        return self.j.received_at(frames, before_s=self.t)

    def heard(self):
        if self._heard is None:
            self._heard = self.j.heard_before(self.t)
        return self._heard

    def last_time(self) -> float | None:
        """The newest receive time before `t` (what the replay's shifts are chosen by)."""
        return max((h.rx_s for h in self.heard()), default=None)

    def last_counts(self, per_node: int | None = None):
        return self.j.last_counts_before(self.t, per_node)

    def last_before(self, kind: str, before_s: float):
        return self.j.last_before(kind, min(before_s, self.t))

    def replay_events(self, since_s: float):
        return self.j.replay_events_between(since_s, self.t)


def recompute(config: Any, from_s: float, now_s: float, *, new_config: Any = None,
              journal_path: str | Path | None = None) -> RecomputeStats:
    """Derive again every event dated from `from_s` on (module docstring).

    Args:
        config: a Config: its keys verify the stored frames; its journal unless
            `journal_path`. Recorded as version 1 if the journal has
            none (a journal older than schema 5): from its beginning.
        new_config: a Config recorded as a new version effective from `from_s`
            (recorded at `now_s`) before recomputing.
    Raises:
        SinkError: the journal cannot be written (nothing changed).
        ConfigError: a stored version cannot be read.
    """
    stats = RecomputeStats()
    with HistoryJournal(journal_path or config.journal_path, sync="full") as journal:
        if not journal.config_versions():  # a journal older than versions: from its start
            record_config(journal, config, 0.0, now_s)
        if new_config is not None:
            stats.recorded = record_config(journal, new_config, from_s, now_s,
                                           force=True).version
        spans = segments(journal.config_versions(), from_s, float("inf"))
        with journal.recompute_transaction(from_s) as add:
            for start, end, version in spans:
                if version is None:  # before the first version: nothing was derived then
                    continue
                try:
                    settings = DerivedSettings.from_doc(json.loads(version.settings),
                                                        config.key_of)
                except (KeyError, TypeError, ValueError) as exc:
                    raise ConfigError(f"config version {version.version} in the journal "
                                      f"cannot be read: {exc}") from None
                stats.versions.append(version.version)
                _span(journal, settings, from_s, start, end, add, stats)
        # the per-minute rollups the report sums were built from the events just replaced
        journal.rebuild_rollups(from_s)
    log.info("recomputed from %.3f: %d frames, %d events, versions %s", from_s, stats.frames,
             stats.events, stats.versions)
    return stats


def _span(journal: HistoryJournal, settings: DerivedSettings, from_s: float, start: float,
          end: float, add, stats: RecomputeStats) -> None:
    """Derive the frames received in [start, end) as a collector restarted at `start`."""
    clock = StreamTime(start, start)
    host = HostClock(clock, clock)
    deriver = Deriver(settings, host=host)
    replay(deriver, _AsOf(journal, start), settings, start)  # type: ignore[arg-type]
    steps = [ClockStep(e.ts_s, d["wall_s"], d["step_s"], e.ts_s, d["after_s"])
             for e in journal.clock_events_from(start) if e.ts_s < end
             for d in [json.loads(e.data)]]
    stats.clock_steps += len(steps)

    def keep(events) -> None:
        # the kept clock events are input: the deriver's copies of them are not stored
        rows = [e for e in events if e.ts_s >= from_s and e.kind != "clock"]
        stats.events += len(rows)
        add(rows)

    frames = 0
    for row in journal.iter_frames(start, None if end == float("inf") else end):
        while steps and steps[0].before_s <= row.rx_s:
            host.steps.append(steps.pop(0))  # the deriver takes it with the next frame
        try:
            frame = decode(row.raw, settings.key_of)
        except ProtocolError:
            stats.undecodable += 1
            continue
        if clock.tick_before(row.rx_s):
            keep(deriver.tick(clock()))
        clock.advance(row.rx_s)
        frames += 1
        keep(deriver.on_frame(frame, row.rx_s))
    host.steps.extend(steps)
    stats.frames += frames
    if frames:
        keep(deriver.tick(clock()))
        keep(deriver.drain(clock()))
