"""The UNS publisher in a process of its own, started and watched by the collector runtime.

A separate process has its own interpreter lock, and runs niced, so building and sending
messages never takes the collector's turn on a core; it reads the journal (WAL lets it, while
the collector writes) and writes only its cursors. It exits when asked, when the collector
dies (its parent is gone), and holds a lock beside the journal so two publishers never serve
one journal.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from .topics import places

__all__ = ["PublisherProcess", "lock_path", "main"]

log = logging.getLogger(__name__)

_SUPERVISE_S = 2.0
_RESTART_MAX_S = 60.0
# The publisher runs at a lower CPU priority than ingest: when both want a core, the
# collector gets it, and the backlog (safe in the journal) waits a little.
_NICE = 19


class _Stop:
    """Set by SIGTERM (the collector asks) or by the collector's death; waits like an Event."""

    def __init__(self, parent_pid: int):
        self._event, self._parent = threading.Event(), parent_pid

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set() or os.getppid() != self._parent

    def wait(self, timeout_s: float) -> bool:
        return self._event.wait(timeout_s) or self.is_set()


def _logging(level: str) -> None:
    # As `lampwatch collect` logs (cli/collect.py), to the same stderr.
    fmt = "%(levelname)s %(name)s: %(message)s"
    if os.environ.get("JOURNAL_STREAM"):
        fmt = "<6>" + fmt
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def lock_path(journal_path: str | Path) -> Path:
    """The file a publisher holds locked while it serves the journal."""
    return Path(f"{journal_path}.uns-lock")


def _lock(journal_path: str, stop: _Stop):
    """Hold `<journal>.uns-lock`; waits (checking stop) while an old publisher lets go."""
    f = open(lock_path(journal_path), "a")  # noqa: SIM115 - held for the process's life
    warned = False
    while not stop.is_set():
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return f
        except BlockingIOError:
            if not warned:
                log.warning("UNS publisher: another publisher still serves %s; waiting",
                            journal_path)
                warned = True
            stop.wait(0.5)
    f.close()
    return None


def main() -> None:
    """The publisher process (`python -m lampwatch.uns.process`, its settings pickled on
    stdin by PublisherProcess): lock, open the journal, publish until stopped."""
    from ..journal.uns import UnsJournal
    from .publisher import build_publisher

    uns, where, journal_path, level, parent_pid = pickle.load(sys.stdin.buffer)
    _logging(level)
    try:
        os.nice(_NICE)
    except OSError as exc:  # e.g. a systemd unit whose SystemCallFilter denies setpriority
        log.info("UNS publisher runs at the collector's CPU priority (%s)", exc.strerror)
    stop = _Stop(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the collector, which stops us
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    lock = _lock(journal_path, stop)
    if lock is None:
        return
    journal = UnsJournal(journal_path, sync="normal")
    publisher = build_publisher(uns, where, journal)
    try:
        publisher.run(stop)
    finally:
        publisher.close()
        journal.close()
        lock.close()


class PublisherProcess:
    """Parent side: start, watch (restart if it dies), stop.

    A plain subprocess (not multiprocessing): nothing of the caller's main module is run
    again in it. Args: config, the collector Config (its `uns`, node registry, journal and
    log level).
    """

    def __init__(self, config: Any):
        self._args = (config.uns, places(config.nodes.values()), str(config.journal_path),
                      config.log_level, os.getpid())
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self._stopping = False

    def start(self) -> None:
        self._stopping = False
        self.proc = subprocess.Popen([sys.executable, "-m", "lampwatch.uns.process"],
                                     stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
        with self.proc.stdin:
            self.proc.stdin.write(pickle.dumps(self._args))
        uns = self._args[0]
        log.info("publishing to the UNS: %s%s", uns.broker.url,
                 f", raw frames to JetStream stream {uns.raw_stream} on {uns.raw_broker.url}"
                 if uns.raw_broker is not None else "")

    async def supervise(self) -> None:
        """Restart the publisher if it exits unasked (a bug must not end publishing)."""
        delay = _SUPERVISE_S
        while True:
            await asyncio.sleep(_SUPERVISE_S)
            if self.proc is None or self.proc.poll() is None or self._stopping:
                continue
            log.error("UNS publisher process exited with %s; restarting in %.0f s",
                      self.proc.returncode, delay)
            await asyncio.sleep(delay)
            delay = min(2 * delay, _RESTART_MAX_S)
            self.restarts += 1
            self.start()

    def stop(self, timeout_s: float = 15.0) -> None:
        """Ask it to flush (bounded) and exit; kill it if it does not."""
        self._stopping = True
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("UNS publisher did not stop in %.0f s; killing it", timeout_s)
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None


if __name__ == "__main__":
    main()
