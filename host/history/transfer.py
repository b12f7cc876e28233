"""`lampwatch journal export` and `import`: raw frames out of a journal and into one.

Import sends every line through the live path: `Collector.submit` (decode, verify with
the config's keys, dedupe, batch, derive) with the line's `rx` as the receive time, and the
collector's commits. Time is the stream's (as a central collector reading a broker,
sources/uns.py): the newest `rx` read, never going back, never before what the journal
held; the collector ticks once per second of it (silence, the running shift's OEE) while
it is past the journal's end. So a frame already stored is a duplicate (counted under the
reject source `import`), and importing a file twice adds no frame and no event.

A bad line stops the import with one line naming it; every frame before it is committed,
nothing after it is read. Fix the line and import again: the frames stored are skipped
as duplicates. Memory is bounded: a line at a time, the collector's batch, its windows.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..collector import Collector
from ..derive import Deriver
from ..errors import InputFileError, SinkError
from ..hostclock import HostClock
from ..journal.history import HistoryJournal
from ..runtime import replay
from .jsonl import format_line, parse_line
from .versions import record_config

__all__ = ["ImportStats", "StreamTime", "export_frames", "import_frames"]

log = logging.getLogger(__name__)

IMPORT_SOURCE = "import"  # the reject source of imported frames (duplicates, bad tags)
TICK_S = 1.0


class StreamTime:
    """The clock of a replayed stream: the newest receive time fed in, never going back
    (HostClock's wall and monotonic clock both, so event time is receive time), and when
    the collector's 1 s tick is due on it: after the frames received at its time, once the
    next frame is later (as a live tick follows the datagrams read before it), and only
    past `held` (the journal's end: time before it is derived already)."""

    def __init__(self, start_s: float, held: float | None = None):
        self.t, self.held = start_s, held
        self._last_tick = float("-inf")

    def __call__(self) -> float:
        return self.t

    def live(self) -> bool:
        return self.held is None or self.t > self.held

    def tick_before(self, rx_s: float) -> bool:
        """Whether a tick is due (at self()) before the frame received at `rx_s`."""
        if rx_s > self.t and self.live() and self.t - self._last_tick >= TICK_S:
            self._last_tick = self.t
            return True
        return False

    def advance(self, rx_s: float) -> None:
        self.t = max(self.t, rx_s)


@dataclass
class ImportStats:
    lines: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0  # every refused frame, duplicates included


def export_frames(journal_path: str | Path, out: IO[str], *, from_s: float | None = None,
                  to_s: float | None = None, node_id: int | None = None) -> int:
    """Write the journal's frames (in [from_s, to_s) by receive time, of one node or all)
    to `out` as JSON Lines, in the order they were accepted. Returns how many.

    Raises SinkError if the journal cannot be opened."""
    n = 0
    with HistoryJournal(journal_path, sync="normal") as journal:
        for f in journal.iter_frames(from_s, to_s, node_id):
            out.write(format_line(f.rx_s, f.source, f.raw))
            out.write("\n")
            n += 1
    return n


def import_frames(lines: Iterable[str], name: str, config: Any,
                  journal_path: str | Path | None = None) -> ImportStats:
    """Import raw-frame lines into the config's journal (or `journal_path`) through the
    collector's path (module docstring).

    Args:
        lines: the file's lines (an open text file). name: the file's name, for errors.
        config: a validated Config: the keys that verify each frame, the derive settings.
    Raises:
        InputFileError: a bad line (`name:N: ...`); what came before it is committed.
        SinkError: the journal cannot be opened or written.
    """
    stats = ImportStats()
    path = journal_path or config.journal_path
    # A crash loses at most the last commits, and importing again restores them: no fsync
    # per commit.
    journal = HistoryJournal(path, sync="normal")
    try:
        held = journal.last_time()
        feed = None
        for number, text in enumerate(lines, 1):
            if not text.strip():
                continue
            try:
                line = parse_line(text, f"{name}:{number}")
            except InputFileError:
                if feed is not None:
                    feed.finish(stats, drain=False)
                raise
            stats.lines += 1
            if feed is None:  # the first frame's time: the deriver's memory as of then
                feed = _Feed(journal, config, held, line.rx_s)
            feed.submit(line)
        if feed is not None:
            feed.finish(stats, drain=True)
    finally:
        journal.close()
    return stats


class _Feed:
    """The collector of an import, on the stream's time (module docstring)."""

    def __init__(self, journal: HistoryJournal, config: Any, held: float | None,
                 first_s: float):
        self.journal = journal
        self.clock = StreamTime(first_s if held is None else held, held)
        host = HostClock(self.clock, self.clock)
        self.deriver = Deriver(config, host=host)
        if held is not None:
            replay(self.deriver, journal, config, held)
        record_config(journal, config, self.clock())
        self.collector = Collector(config, journal, self.deriver, clock=host.now)

    def submit(self, line) -> None:
        if self.clock.tick_before(line.rx_s):
            self.collector.tick()
        self.clock.advance(line.rx_s)
        self.collector.submit(line.frame, line.source, None, IMPORT_SOURCE, rx_s=line.rx_s)

    def finish(self, stats: ImportStats, drain: bool) -> None:
        """Commit what is pending (the end, or a bad line). Raises SinkError if it cannot."""
        c = self.collector
        if drain and self.clock.live():  # as the collector does when it stops
            c.tick()
            c.store_now(self.deriver.drain(self.clock()))
        c.flush(retry_now=True)
        s = c.stats
        stats.accepted, stats.duplicates, stats.rejected = s.accepted, s.duplicates, s.rejected
        if c.pending:
            raise SinkError(f"journal {self.journal.path}: the last frames were not stored "
                            "(see the log); import the file again")
