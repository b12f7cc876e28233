"""Config versions in the journal: record the running config, find the one valid at a time."""

from __future__ import annotations

import json
import logging
from typing import Any

from ..config_versions import (
    DerivedSettings,
    changes,
    segments,
    settings_hash,
    settings_of,
    settings_text,
    valid_at,
)
from ..journal.history import ConfigVersion, HistoryJournal

__all__ = ["record_config", "segments", "settings_at", "valid_at"]

log = logging.getLogger(__name__)


def record_config(journal: HistoryJournal, config: Any, effective_from_s: float,
                  recorded_s: float | None = None, *, force: bool = False) -> ConfigVersion:
    """Record `config` as a new version unless it is the latest already (or `force`: a
    version effective from an earlier time, by a recompute). Returns the version in force.
    The first version of a journal is effective from its beginning (epoch 0).

    Raises SinkError if the journal cannot store it.
    """
    versions = journal.config_versions()
    doc = settings_of(config)
    hash_ = settings_hash(doc)
    last = versions[-1] if versions else None
    if last is not None and last.hash == hash_ and not force:
        return last
    summary = changes(json.loads(last.settings) if last else None, doc)
    if last is None:
        # The first version is the journal's from its beginning: nothing was derived before
        # it, or (a journal older than versions) under a config no longer known, which the
        # report used to take from the config it was given: this one.
        effective_from_s = 0.0
    recorded = effective_from_s if recorded_s is None else recorded_s
    number = journal.record_version(settings_text(doc), hash_, summary, effective_from_s,
                                    recorded)
    log.info("config version %d recorded (%s): %s", number, hash_, summary)
    return ConfigVersion(number, effective_from_s, recorded, hash_, settings_text(doc), summary)


def settings_at(versions: list[ConfigVersion], t: float) -> DerivedSettings | None:
    v = valid_at(versions, t)
    return None if v is None else DerivedSettings.from_doc(json.loads(v.settings))
