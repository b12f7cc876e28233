"""What lampwatch puts on a node: the firmware (package data `lampwatch.firmware`), config.json.

The firmware ships inside the package, so a wheel install flashes and simulates a node as an
editable one does: pyproject.toml maps the package `lampwatch.firmware` to firmware/, and it
is found here through importlib.resources, never through a path beside the source tree.
"""

from __future__ import annotations

import importlib.resources
import json
from collections.abc import Mapping
from pathlib import Path

from .errors import LampwatchError

FIRMWARE_PACKAGE = "lampwatch.firmware"
# firmware/__init__.py makes the folder that package (setuptools' editable installs cannot
# map a namespace package elsewhere, pypa/setuptools#4943); it is not a node file.
_PACKAGE_MARKER = "__init__.py"


def firmware_dir() -> Path:
    """The firmware's folder as installed: firmware/ in a source tree (editable install),
    lampwatch/firmware/ in site-packages (wheel).

    Raises:
        LampwatchError: the package is installed zipped: mpy-cross needs real files.
    """
    root = importlib.resources.files(FIRMWARE_PACKAGE)
    if not isinstance(root, Path):
        raise LampwatchError(f"the firmware ({FIRMWARE_PACKAGE}) is not installed as files: "
                             "reinstall lampwatch unzipped (pip install)")
    return root


def firmware_sources(folder: Path | None = None) -> list[Path]:
    """The node's modules in `folder` (default: the installed firmware), sorted: every .py
    file but the package marker."""
    folder = firmware_dir() if folder is None else Path(folder)
    return sorted(p for p in folder.glob("*.py") if p.name != _PACKAGE_MARKER)


def example_config() -> dict:
    """firmware/config.example.json: the pins and timings a node gets unless told otherwise."""
    return json.loads((firmware_dir() / "config.example.json").read_text(encoding="utf-8"))


def config_json(config: Mapping) -> bytes:
    """The node's config.json, byte for byte: what `lampwatch flash` writes to a board and
    what a virtual node reads (both engines). The node reports the first 4 bytes of its
    sha256 in HELLO, so every copy must be these same bytes: this is the one writer."""
    return json.dumps(dict(config)).encode()
