"""`lampwatch flash`: build the firmware as flashed, write it and config.json to a board, register the node.

The firmware goes on as main.py, a two-line boot stub (source: MicroPython runs only main.py
at boot, compiling it there), plus one .mpy per other module, the seam lwmain included
(mpy-cross: no compile on the node, less RAM); an old main.py is replaced by the stub. A file
whose sha256 on the board already matches is not copied, so re-flashing an unchanged node
copies nothing. The node's key is generated here, kept across re-flashes (unless a new one is
asked for), and written to exactly two places: the node's config.json and the registry (mode
0600).
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .. import journal, registry
from ..errors import JournalReadError
from ..firmware import config as firmware_config
from ..node_files import config_json, example_config, firmware_dir, firmware_sources
from .device import Device, FlashError

__all__ = ["FlashError", "FlashResult", "NodeSpec", "build_firmware", "check_micropython",
           "flash_node", "last_event_id", "node_config", "plan_copy", "wait_hello"]

log = logging.getLogger(__name__)

MIN_MICROPYTHON = (1, 24, 0)  # firmware/README.md
_READ_TIMEOUT_S = 5.0  # a journal read waiting on the collector's lock, within a poll
_NOT_FROM_TEMPLATE = ("node_id", "key", "machine", "transport", "wifi", "collector", "comment")


@dataclass(frozen=True)
class NodeSpec:
    """One node to flash: where its board is and what it watches."""

    port: str
    node_id: int
    machine: str
    plant: str = "plant"
    line: str = "line-1"
    ideal_cycle_s: float | None = None
    transport: str = "udp"


@dataclass
class FlashResult:
    """What flashing did. Holds no key."""

    node_id: int
    copied: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    bytes_copied: int = 0
    seconds: float = 0.0
    new_key: bool = False
    micropython: str = ""


def build_firmware(folder: Path | None = None) -> dict[str, bytes]:
    """{file name on the board: bytes}: main.py (the boot stub) as source, every other module
    as .mpy, from `folder` (default: the installed firmware). The virtual node boots this same
    set (VirtualNode(vm_mpy=True))."""
    folder = firmware_dir() if folder is None else folder
    out = {"main.py": (folder / "main.py").read_bytes()}
    with tempfile.TemporaryDirectory() as tmp:
        for src in firmware_sources(folder):
            if src.name == "main.py":
                continue
            dst = Path(tmp) / f"{src.stem}.mpy"
            try:
                proc = subprocess.run([sys.executable, "-m", "mpy_cross", "-o", str(dst),
                                       str(src)], capture_output=True, text=True, check=False)
            except OSError as exc:
                raise FlashError(f"cannot run mpy-cross: {exc}") from None
            if proc.returncode != 0:
                lines = (proc.stderr.strip() or "failed").splitlines()
                raise FlashError(f"mpy-cross {src.name}: {lines[-1]}")
            out[dst.name] = dst.read_bytes()
    return out


def mpy_header(files: dict[str, bytes]) -> tuple[int, int]:
    """(major, sub-version) of the .mpy files (all the same: one mpy-cross); mpy-cross
    writes the sub-version only into native code, so bytecode reads (6, 0)."""
    data = next(d for n, d in files.items() if n.endswith(".mpy"))
    return data[1], data[2] & 3


def check_micropython(board_mpy: int | None, board_version: tuple, mpy: tuple[int, int]
                      ) -> None:
    """Refuse a board whose MicroPython cannot load these .mpy files or run this firmware.

    board_mpy is sys.implementation._mpy (major | sub << 8 | arch << 10; missing before
    MicroPython 1.19). Bytecode needs the same major version only: the sub-version matters
    for native code alone (MicroPython's persistentcode.c).
    """
    have = "unknown" if board_mpy is None else f"{board_mpy & 0xFF}.{(board_mpy >> 8) & 3}"
    need = f"{mpy[0]}" if mpy[1] == 0 else f"{mpy[0]}.{mpy[1]}"  # bytecode carries no sub
    version = ".".join(str(v) for v in board_version)
    if board_mpy is None or board_mpy & 0xFF != mpy[0]:
        older = board_mpy is None or board_mpy & 0xFF < mpy[0]
        raise FlashError(f"MicroPython {version} on the board is too {'old' if older else 'new'}"
                         f" for this firmware: it loads .mpy v{have}, the firmware is .mpy "
                         f"v{need} (install MicroPython {_v(MIN_MICROPYTHON)} or later, "
                         "matching this mpy-cross)")
    if tuple(board_version) < MIN_MICROPYTHON:
        raise FlashError(f"MicroPython {version} on the board is too old for this firmware: "
                         f"it needs {_v(MIN_MICROPYTHON)} or later")


def _v(t: tuple) -> str:
    return ".".join(str(x) for x in t)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def plan_copy(files: dict[str, bytes], board_hashes: dict[str, str | None],
              board_files: list[str]) -> tuple[list[str], list[str], list[str]]:
    """(to copy, unchanged, to remove): a file is copied unless the board has the same
    sha256; a module's old .py is removed where its .mpy goes (MicroPython would import the
    .py first)."""
    copy = [n for n in files if board_hashes.get(n) != sha256_hex(files[n])]
    same = [n for n in files if n not in copy]
    stale = [n[:-4] + ".py" for n in files if n.endswith(".mpy")]
    return copy, same, [n for n in stale if n in board_files]


def node_config(spec: NodeSpec, key_hex: str, *, wifi: tuple[str, str] | None = None,
                collector: tuple[str, int] | None = None, template: dict | None = None
                ) -> bytes:
    """The node's config.json (node_files.config_json, as a virtual node reads it), checked
    by the firmware's own validator. Pins and timings come from `template` (default:
    firmware/config.example.json).

    Raises:
        FlashError: the result would not start the node (the firmware's first problem).
    """
    if template is None:
        template = example_config()
    cfg: dict = {"node_id": spec.node_id, "key": key_hex, "machine": spec.machine,
                 "transport": spec.transport}
    if spec.transport == "udp":
        if wifi is None or not wifi[0]:
            raise FlashError(f"node {spec.node_id}: the udp transport needs --wifi-ssid")
        if collector is None:
            raise FlashError(f"node {spec.node_id}: the udp transport needs "
                             "--collector HOST:PORT")
        cfg["wifi"] = {"ssid": wifi[0], "password": wifi[1]}
        cfg["collector"] = {"host": collector[0], "port": collector[1]}
    cfg.update((k, v) for k, v in template.items() if k not in _NOT_FROM_TEMPLATE)
    text = config_json(cfg)
    _, problems = firmware_config.parse(text)
    if problems:
        raise FlashError(f"node {spec.node_id}: config.json: {problems[0]}")
    return text


def registry_entry(spec: NodeSpec, key_hex: str, config_text: bytes) -> dict:
    """The collector's [[nodes]] entry for this node (heartbeat from its config.json)."""
    cfg = json.loads(config_text)
    entry = {"id": spec.node_id, "plant": spec.plant, "line": spec.line,
             "machine": spec.machine, "key": key_hex,
             "heartbeat_s": cfg.get("heartbeat_ms", 5000) / 1000}
    if spec.ideal_cycle_s is not None:
        entry["ideal_cycle_s"] = spec.ideal_cycle_s
    return entry


def flash_node(spec: NodeSpec, firmware: dict[str, bytes], registry_path: Path, *,
               wifi: tuple[str, str] | None = None, collector: tuple[str, int] | None = None,
               new_key: bool = False, template: dict | None = None, reset: bool = True,
               progress: Callable[[str], None] = lambda s: None) -> FlashResult:
    """Flash one node: check the board, copy what changed, then add or update its registry
    entry (after the board has its config, so the registry never names a key no board has).

    Raises:
        FlashError, ConfigError: one line each.
    """
    t0 = time.monotonic()
    stored = {n["id"]: n for n in registry.read_nodes(registry_path)}.get(spec.node_id)
    fresh = new_key or stored is None or not stored.get("key")
    key_hex = registry.new_key() if fresh else stored["key"]
    files = dict(firmware)
    files["config.json"] = node_config(spec, key_hex, wifi=wifi, collector=collector,
                                       template=template)
    entry = registry_entry(spec, key_hex, files["config.json"])
    res = FlashResult(spec.node_id, new_key=fresh)
    with Device(spec.port) as board:
        info = board.probe(sorted(files))
        res.micropython = f"{_v(info['version'])} on {info['machine']}"
        check_micropython(info["mpy"], tuple(info["version"]), mpy_header(files))
        copy, res.unchanged, res.removed = plan_copy(files, info["hashes"], info["files"])
        need = sum(len(files[n]) for n in copy)
        # A replaced file frees its old blocks only once renamed over: count it as needed.
        if need and need + 4096 > info["free"]:
            raise FlashError(f"the board's file system is full: {need // 1024 + 1} KB to "
                             f"write, {info['free'] // 1024} KB free (remove files with "
                             "mpremote fs rm, or erase the flash)")
        for name in res.removed:
            board.remove(name)
        for name in copy:
            progress(f"copying {name} ({len(files[name])} bytes)")
            board.write(name, files[name])
            res.copied.append(name)
            res.bytes_copied += len(files[name])
        board.close(reset=reset)
    registry.upsert_node(registry_path, entry)
    res.seconds = time.monotonic() - t0
    return res


def last_event_id(journal_path: Path) -> int:
    """The journal's last event id (0 when it is empty or not there yet)."""
    try:
        with journal.open_readonly(journal_path, timeout_s=_READ_TIMEOUT_S) as j:
            return j.last_event_id()
    except JournalReadError:
        return 0


def wait_hello(journal_path: Path, node_id: int, after_id: int, timeout_s: float,
               poll_s: float = 0.25) -> dict | None:
    """The first HELLO of `node_id` journaled after event `after_id`, within timeout_s
    (its data: fw, reset_cause, boot_id, config_hash); None if none came."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with journal.open_readonly(journal_path, timeout_s=_READ_TIMEOUT_S) as j:
                hello = j.hello_after(node_id, after_id)
            if hello is not None:
                return hello
        except JournalReadError as exc:  # not created yet, or busy: the collector is starting
            log.debug("%s", exc)
        if time.monotonic() >= deadline:
            return None
        time.sleep(poll_s)

