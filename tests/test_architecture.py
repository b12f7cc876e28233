"""The package table of docs/architecture.md, enforced: who may import whom inside lampwatch."""

import ast
from pathlib import Path

import pytest

HOST = Path(__file__).resolve().parent.parent / "host"
PURE = {"errors", "ackcodec", "protocol", "events", "shifts", "oee", "losses", "clock_anchor",
        "machine_state", "timeline", "boot_counts", "live_oee", "derive_api", "derive",
        "rollup"}
CORE = {p.stem for p in HOST.glob("*.py") if p.stem != "__init__"} | {"__init__"}
# unit -> the units it may import (a unit is a core module or a sub-package)
ALLOWED = {
    "errors": set(), "ackcodec": set(), "events": set(),
    "protocol": {"errors", "ackcodec"},
    "shifts": {"errors"}, "oee": {"errors", "shifts", "losses"},
    "losses": {"errors", "shifts", "oee"},
    "boot_counts": PURE, "live_oee": PURE, "derive_api": PURE,
    "hostclock": set(),  # the one module that reads the host's clocks
    "clock_anchor": PURE, "machine_state": PURE, "timeline": PURE, "rollup": PURE,
    "derive": PURE | {"hostclock"},
    "secrets": {"errors"},
    "config": {"errors", "oee", "machine_state", "shifts", "secrets", "uns"},
    "registry": {"errors", "config"},
    "readiness": {"errors", "config", "journal", "board"},
    "dedupe": {"errors", "protocol", "journal"},
    "node_files": {"errors", "firmware"},
    "collector": CORE | {"journal"},
    "upkeep": {"errors"},  # the journal it keeps is passed in
    "config_versions": {"errors", "oee", "shifts"},  # a config's derive settings, versioned
    "runtime": CORE | {"journal", "sources", "influx", "board", "uns", "history"},
    "__init__": set(),
    "journal": {"errors", "protocol", "events", "rollup", "oee", "losses", "shifts",
                "timeline"},  # rollup and what it imports: the rollups are built from events
    "sources": CORE | {"journal", "uns"},  # sources/uns.py reads the broker's messages
    "uns": CORE | {"journal"},
    "influx": CORE | {"journal"},
    "board": CORE | {"journal", "i18n", "report"},  # the print view is report/sheet.py
    "report": CORE | {"journal", "i18n"},
    "history": CORE | {"journal"},  # raw frames out and in, config versions, recompute
    "i18n": {"errors"},  # catalogues and babel's number and date formats
    "flash": CORE | {"journal", "firmware"},
    "vnode": CORE | {"flash", "firmware"},
    "demo": CORE | {"journal", "sources", "influx", "board", "report", "flash", "vnode", "uns",
                    "i18n"},
}
# No I/O and no clock in the pure core: time is passed in.
FORBIDDEN_IN_PURE = {"socket", "sqlite3", "asyncio", "threading", "subprocess", "time", "os",
                     "urllib", "http", "serial", "influxdb_client"}


def _unit(module: str) -> str:
    top = module.split(".")[0] if module else "__init__"
    return top


def _imports(path: Path):
    package = list(path.relative_to(HOST).parts[:-1])  # a module's or __init__'s package
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[:len(package) - (node.level - 1)] if node.level > 1 else package
            if node.module:
                yield ".".join(base + [node.module]), node.lineno
            else:
                for alias in node.names:
                    yield ".".join(base + [alias.name]), node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield "<abs>" + alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield "<abs>" + node.module, node.lineno


SOURCES = sorted(p for p in HOST.rglob("*.py") if "node_modules" not in p.parts)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(HOST)))
def test_imports_follow_the_package_table(path):
    parts = path.relative_to(HOST).with_suffix("").parts
    unit = parts[0]
    if unit == "cli":
        return  # the face of the tool may use everything
    if unit == "firmware":
        return  # MicroPython, runs on the node
    for target, line in _imports(path):
        if target.startswith("<abs>"):
            name = target[5:].split(".")[0]
            if unit in PURE:
                assert name not in FORBIDDEN_IN_PURE, f"{path.name}:{line} imports {name}"
            assert name != "sqlite3" or unit == "journal", f"{path}:{line}: SQL outside journal"
            assert not target[5:].startswith("lampwatch.cli"), f"{path}:{line} imports cli"
            continue
        other = _unit(target)
        if other == unit or (other == "__init__" and target == "__version__"):
            continue
        assert other != "cli", f"{path}:{line} imports cli"
        assert other in ALLOWED[unit], f"{path.relative_to(HOST)}:{line}: {unit} may not " \
            f"import {other} (docs/architecture.md)"


def test_every_unit_is_in_the_table():
    units = {p.relative_to(HOST).parts[0].removesuffix(".py") for p in SOURCES}
    assert units - {"cli", "firmware"} <= set(ALLOWED), units - set(ALLOWED)
