"""Whether a collector config can start: every problem at once, and what is merely odd.

`collect --check` (and systemd's ExecStartPre) runs this: a problem is what would stop the
collector (a secret missing or unreadable, the registry open to others, a journal that
cannot be written, the board's open files); a warning is what lets it start but receive
nothing useful (no listener, no nodes, a serial device not plugged in now). Messages never
hold a secret, nor its length.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .config import Config
from .errors import ConfigError, JournalReadError
from .journal import open_readonly

__all__ = ["Readiness", "check"]

# What the check says (kept together, to be translated in one place).
T_READY = "ready"
T_READY_WARNED = "ready, with {n} warning{s}"
T_NOT_READY = "not ready: {n} problem{s}"
T_JOURNAL_DIR = "journal {path}: cannot be created: {where} is not a writable directory"
T_JOURNAL_FILE = "journal {path}: not writable by this user"
T_NO_LISTENER = "nothing to listen on (udp_listen is false and there is no [[serial]]): " \
    "no frame will arrive"
T_NO_NODES = "no nodes in the registry: every frame will be rejected as from an unknown node"
T_NO_SERIAL = "serial port {port} is not there now (the collector opens it when it appears)"


@dataclass
class Readiness:
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return not self.problems

    def verdict(self) -> str:
        """The first line: 'ready', 'ready, with 1 warning' or 'not ready: 2 problems'."""
        if self.problems:
            n = len(self.problems)
            return T_NOT_READY.format(n=n, s="" if n == 1 else "s")
        if self.warnings:
            n = len(self.warnings)
            return T_READY_WARNED.format(n=n, s="" if n == 1 else "s")
        return T_READY


def check(cfg: Config, config_problems: Sequence[str] = ()) -> Readiness:
    """Every problem and warning of `cfg`, read now (secrets, files, limits).

    Args:
        cfg: the loaded config. config_problems: what load_config(problems=...) found.
    """
    r = Readiness(list(config_problems))
    reads = []  # each raises ConfigError with a one-line reason
    if cfg.influxdb is not None:
        reads.append(cfg.influxdb.token)
    if cfg.board_listen is not None and cfg.board_pin is not None:
        reads.append(cfg.board_pin.value)
    if cfg.board_listen is not None:
        from .board.limits import viewer_slots  # only for a config with a board

        reads.append(lambda: viewer_slots(cfg.board_sse_slots))
    # UNS (issue 16): every broker password read and every TLS file found, one by one
    reads += [s.auth.check for s in cfg.uns_sources]
    if cfg.uns is not None:
        reads.append(cfg.uns.auth.check)
    for read in reads:
        try:
            read()
        except ConfigError as exc:
            r.problems.append(str(exc))
    journal = _journal_problem(cfg.journal_path)
    if journal:
        r.problems.append(journal)
    if not cfg.udp_listen and not cfg.serial and not cfg.uns_sources:
        r.warnings.append(T_NO_LISTENER)
    if not cfg.nodes:
        r.warnings.append(T_NO_NODES)
    for s in cfg.serial:
        if "://" not in s.port and not Path(s.port).exists():
            r.warnings.append(T_NO_SERIAL.format(port=s.port))
    return r


def _journal_problem(path: Path) -> str | None:
    """Why the collector could not open its journal for writing, or None."""
    if path.exists():
        try:
            open_readonly(path).close()
        except JournalReadError as exc:
            return str(exc)
        if not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK | os.X_OK)):
            return T_JOURNAL_FILE.format(path=path)
        return None
    where = path.parent
    while not where.exists() and where != where.parent:
        where = where.parent  # the collector makes the missing directories under it
    if not (where.is_dir() and os.access(where, os.W_OK | os.X_OK)):
        return T_JOURNAL_DIR.format(path=path, where=where)
    return None
