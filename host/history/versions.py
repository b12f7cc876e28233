"""Config versions in the journal: record the running config, find the one valid at a time."""

from __future__ import annotations

import json
import logging
from typing import Any

from ..config_versions import DerivedSettings, changes, settings_hash, settings_of, settings_text
from ..journal.history import ConfigVersion, HistoryJournal

__all__ = ["record_config", "segments", "settings_at", "valid_at"]

log = logging.getLogger(__name__)


def record_config(journal: HistoryJournal, config: Any, effective_from_s: float,
                  recorded_s: float | None = None, *, force: bool = False) -> ConfigVersion:
    """Record `config` as a new version unless it is the latest already (or `force`: a
    version effective from an earlier time, by a recompute). Returns the version in force.

    Raises SinkError if the journal cannot store it.
    """
    versions = journal.config_versions()
    doc = settings_of(config)
    hash_ = settings_hash(doc)
    last = versions[-1] if versions else None
    if last is not None and last.hash == hash_ and not force:
        return last
    summary = changes(json.loads(last.settings) if last else None, doc)
    recorded = effective_from_s if recorded_s is None else recorded_s
    number = journal.record_version(settings_text(doc), hash_, summary, effective_from_s,
                                    recorded)
    log.info("config version %d recorded (%s): %s", number, hash_, summary)
    return ConfigVersion(number, effective_from_s, recorded, hash_, settings_text(doc), summary)


def valid_at(versions: list[ConfigVersion], t: float) -> ConfigVersion | None:
    """The version valid at `t`: of those effective by then, the last recorded (a config
    given to a recompute "from WHEN" overrides every older one from WHEN on; a collector
    started later with another config overrides it from then). None before the first."""
    best = None
    for v in versions:
        if v.effective_from_s <= t and (best is None or v.version > best.version):
            best = v
    return best


def segments(versions: list[ConfigVersion], start_s: float,
             end_s: float) -> list[tuple[float, float, ConfigVersion | None]]:
    """[start_s, end_s) cut where the valid version changes: (from, to, version)."""
    cuts = sorted({v.effective_from_s for v in versions if start_s < v.effective_from_s < end_s})
    out: list[tuple[float, float, ConfigVersion | None]] = []
    for a, b in zip([start_s, *cuts], [*cuts, end_s]):
        v = valid_at(versions, a)
        if out and out[-1][2] == v:
            out[-1] = (out[-1][0], b, v)
        else:
            out.append((a, b, v))
    return out


def settings_at(versions: list[ConfigVersion], t: float) -> DerivedSettings | None:
    v = valid_at(versions, t)
    return None if v is None else DerivedSettings.from_doc(json.loads(v.settings))
