"""Secrets (tokens, PINs, passwords) read from a file or an environment variable, never config."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ConfigError

__all__ = ["read_secret"]


def read_secret(what: str, path: Path | None, env: str | None) -> str:
    """The secret named `what`, read now from `path` if set, else from `$env`.

    Raises ConfigError (one line, naming where it was looked for, never the value) if it is
    unreadable, empty or not set.
    """
    if path is not None:
        try:
            value = path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{what} file {path}: {exc.strerror or exc}") from None
        if not value:
            raise ConfigError(f"{what} file {path} is empty")
        return value
    value = os.environ.get(env or "", "").strip()
    if not value:
        raise ConfigError(f"{what}: environment variable {env} is not set")
    return value
