"""The node registry file (nodes.toml): read it, add or update a node, safely and owner-only.

`lampwatch flash` writes a node's entry with its fresh key, `lampwatch commission` marks it
commissioned, and the collector reads the same file through `nodes_file` in its config.
Entries use the collector config's `[[nodes]]` keys (id, plant, line, machine, key, ...).

Every write takes a lock, validates the whole registry with the collector's own parser
(so a file this module writes always loads), and replaces the file atomically with mode
0600: the keys in it are secrets.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import tomli_w

from .config import parse_config
from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["new_key", "read_nodes", "update_node", "upsert_node"]

KEY_BYTES = 32


def new_key() -> str:
    """A fresh per-node HMAC key, hex (32 random bytes from the OS's CSPRNG)."""
    return secrets.token_hex(KEY_BYTES)


def read_nodes(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The registry's `[[nodes]]` entries in file order; [] when the file does not exist.

    Raises:
        ConfigError: the file is unreadable or not valid TOML (one line, naming the file).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the node registry: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(text)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    nodes = data.get("nodes", [])
    if not isinstance(nodes, list) or not all(isinstance(n, dict) for n in nodes):
        raise ConfigError(f"{path}: `nodes` must be an array of tables ([[nodes]])")
    return nodes


def upsert_node(path: str | os.PathLike, entry: Mapping[str, Any]) -> dict[str, Any]:
    """Add the node `entry["id"]`, or merge `entry` into its existing entry (fields not
    given are kept). Returns the stored entry.

    Raises:
        ConfigError: the result would not be a valid registry (bad field, machine name
            already watched by another node, ...), or the file cannot be written.
    """
    if "id" not in entry:
        raise ConfigError("a registry entry needs an id")
    with _locked(Path(path)) as p:
        nodes = read_nodes(p)
        for stored in nodes:
            if stored.get("id") == entry["id"]:
                stored.update(entry)
                break
        else:
            stored = dict(entry)
            nodes.append(stored)
        _write(p, nodes)
        return dict(stored)


def update_node(path: str | os.PathLike, node_id: int, **fields: Any) -> dict[str, Any]:
    """Set `fields` on node `node_id`'s existing entry (a field given as None is removed,
    e.g. `commissioned=None` after a failed re-check); returns the stored entry.

    Raises:
        ConfigError: the node is not in the registry, or as upsert_node.
    """
    with _locked(Path(path)) as p:
        nodes = read_nodes(p)
        for stored in nodes:
            if stored.get("id") == node_id:
                stored.update(fields)
                for name in [k for k, v in fields.items() if v is None]:
                    del stored[name]  # TOML has no null: absent is how a field is cleared
                _write(p, nodes)
                return dict(stored)
    raise ConfigError(f"{path}: node {node_id} is not in the registry")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[Path]:
    # A sidecar lock: the registry itself is replaced on every write, so a lock on it
    # would not stop a second writer that opened the old file.
    lock_path = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot lock the node registry: {exc.strerror or exc}") \
            from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield path
    finally:
        os.close(fd)


def _write(path: Path, nodes: list[dict[str, Any]]) -> None:
    # The collector's own parser is the schema: what is written here always loads there.
    parse_config({"collector": {"udp_listen": False}, "nodes": nodes}, path)
    text = ("# lampwatch node registry, written by `lampwatch flash` and `lampwatch commission`."
            "\n# It holds the nodes' secret keys: keep it owner-only (mode 0600).\n\n"
            + tomli_w.dumps({"nodes": nodes}))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)  # O_CREAT's mode is masked by umask; be explicit
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise ConfigError(f"{path}: cannot write the node registry: {exc.strerror or exc}") \
            from None
