"""The CLI's command table: `--help` loads no heavy stack, and every command's help renders."""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner
from lampwatch.cli import cli
from lampwatch.report import LOGBOOK_LOCALES, REPORT_FORMATS, logbook, oee_report

# Top-level packages and lampwatch modules that a help screen must not import: the event loop,
# the stores and the hardware/VM stacks are what made `lampwatch --help` slow (issue 11).
HEAVY = ("asyncio", "sqlite3", "influxdb_client", "aiohttp", "serial", "mpremote")
HEAVY_LAMPWATCH = ("lampwatch.runtime", "lampwatch.board", "lampwatch.demo")
# What a help screen may load of lampwatch: the CLI, the error types, and constant modules.
LIGHT_LAMPWATCH = {"lampwatch", "lampwatch.errors", "lampwatch.report"}

_PROBE = """
import contextlib, io, json, sys
from lampwatch.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        main(sys.argv[1:])
        code = 0
    except SystemExit as exc:
        code = exc.code
print(json.dumps({"code": code, "out": out.getvalue(), "modules": sorted(sys.modules)}))
"""


def _commands(group: click.Group, prefix: tuple[str, ...] = ()):
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        assert cmd is not None, f"{' '.join((*prefix, name))} is in the table but not found"
        yield (*prefix, name)
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, (*prefix, name))


ALL = [(), *_commands(cli)]


def _ids(path: tuple[str, ...]) -> str:
    return " ".join(path) or "(top)"


def test_the_table_holds_every_command():
    assert {p for p in ALL if len(p) == 1} == {
        ("collect",), ("commission",), ("demo",), ("flash",), ("journal",), ("nodes",),
        ("oee",)}
    assert {p for p in ALL if p[:1] == ("oee",)} == {("oee",), ("oee", "report"),
                                                      ("oee", "calc"), ("oee", "reconcile"),
                                                      ("oee", "sheet")}
    assert {p for p in ALL if p[:1] == ("journal",)} == {
        ("journal",), ("journal", "export"), ("journal", "import"), ("journal", "recompute"),
        ("journal", "versions")}


@pytest.mark.parametrize("path", ALL, ids=_ids)
def test_help_renders(path):
    result = CliRunner().invoke(cli, [*path, "--help"], prog_name="lampwatch")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: {' '.join(('lampwatch', *path))} [OPTIONS]")
    assert "Show this message and exit." in result.output


@pytest.mark.parametrize("path", ALL, ids=_ids)
def test_help_imports_nothing_heavy(path):
    # A fresh interpreter: in this one the other tests have imported everything already.
    proc = subprocess.run([sys.executable, "-c", _PROBE, *path, "--help"],
                          capture_output=True, text=True, check=True, timeout=60)
    probe = json.loads(proc.stdout)
    assert probe["code"] == 0
    assert probe["out"].startswith("Usage: ")
    mods = probe["modules"]
    heavy = [m for m in mods if m.split(".")[0] in HEAVY
             or any(m == h or m.startswith(h + ".") for h in HEAVY_LAMPWATCH)]
    assert heavy == []
    ours = {m for m in mods if m.partition(".")[0] == "lampwatch" and "lampwatch.cli" not in m}
    assert ours <= LIGHT_LAMPWATCH


def test_choices_offered_before_import_match_the_modules():
    from lampwatch import oee
    from lampwatch.cli.oee import PM_CHOICES

    assert list(REPORT_FORMATS) == sorted(oee_report.FORMATS)
    assert list(LOGBOOK_LOCALES) == sorted(logbook.SEPARATORS)
    assert [c.replace("-", "_") for c in PM_CHOICES] == list(oee.PM_POLICIES)


def test_the_collector_without_a_serial_link_loads_neither_pyserial_nor_statistics():
    # Every module is RSS for as long as the collector runs: pyserial (0.4 MB) only where a
    # serial link is configured, statistics (0.9 MB with fractions, decimal, random) never.
    probe = ("import json, sys\nimport lampwatch.runtime, lampwatch.cli.collect\n"
             "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout
    modules = set(json.loads(out))
    assert "lampwatch.runtime" in modules and "asyncio" in modules
    assert not modules & {"serial", "lampwatch.sources.serial", "statistics", "fractions",
                          "decimal"}
