"""README.md's commands, taken from README.md itself, run as a new user runs them: in a fresh
non-interactive bash with a bare environment (no virtual environment active, no .venv on
PATH), right after the install command."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

from click.testing import CliRunner
from lampwatch.cli import cli

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")
MARK = "<!-- tests/test_readme.py"
# The one change the test makes to a README command: the demo plays 15 minutes, not 8 hours.
DEMO_BOUND = "--shift-hours 0.25"
FRESH_ENV = {"HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8",
             "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}


def marked_blocks(text: str) -> list[list[str]]:
    """The commands of each ```sh block right after a MARK comment, comments kept."""
    blocks = []
    for m in re.finditer(re.escape(MARK) + r".*?-->\s*\n *```sh\n(.*?)```", text, re.DOTALL):
        blocks.append([line.strip() for line in m.group(1).splitlines() if line.strip()])
    return blocks


def test_the_readme_marks_the_first_hour():
    install, after, logbook = marked_blocks(README)
    assert logbook and all(line.split()[:3] == ["lampwatch", "oee", "calc"] for line in logbook)
    assert [line.split()[:2] for line in install] == [
        ["bash", "scripts/install.sh"], ["source", ".venv/bin/activate"], ["lampwatch", "demo"]]
    assert [line.split()[1] for line in after] == ["oee", "nodes", "collect"]


def test_readme_commands_work_as_written_in_a_fresh_shell(tmp_path):
    """The install block from the clone's root, then (in the same shell) the demo and what
    follows it in an empty directory, so the demo's files land there and not in the clone;
    then the logbook examples, from the clone's root as the README means them."""
    install, after, logbook = marked_blocks(README)
    script = ["set -euo pipefail", f"cd {shlex.quote(str(REPO))}",
              'test -z "${VIRTUAL_ENV:-}" && ! command -v lampwatch',  # a new user's shell
              install[0], install[1], f"cd {shlex.quote(str(tmp_path))}"]
    for line in [install[2], *after]:
        command = line.partition("#")[0]
        if command.split()[:2] == ["lampwatch", "demo"]:
            command = f"{command.rstrip()} {DEMO_BOUND}"
        script += [f"echo '>>> {command.strip()}'", command]
    script.append(f"cd {shlex.quote(str(REPO))}")
    for line in logbook:
        command = line.partition("#")[0].strip()
        script += [f"echo '>>> {command}'", command]
    run = subprocess.run(["bash", "--noprofile", "--norc", "-c", "\n".join(script)],
                         env=FRESH_ENV, capture_output=True, text=True, timeout=600,
                         stdin=subprocess.DEVNULL, check=False)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    outputs = re.findall(r">>> lampwatch ([^\n]*)\n(.*?)(?=\n>>> |\Z)", run.stdout, re.DOTALL)
    out = {" ".join(cmd.split()[:2]): text for cmd, text in outputs}
    assert "the shift ended:" in out["demo --shift-hours"]
    report = out["oee report"].splitlines()
    # the six machines in line order, then the plant
    assert [line.split()[0] for line in report[3:10]] == [
        "husker-1", "whitener-1", "polisher-1", "grader-1", "packer-1", "scale-1", "all"]
    nodes = out["nodes --config"].splitlines()
    assert nodes[0].startswith("6 nodes; times in plant time, Asia/Jakarta")
    assert out["collect --check"].splitlines()[0] == "ready"
    calc = {cmd: text for cmd, text in outputs if cmd.startswith("oee calc")}
    assert len(calc) == len(logbook) and all("TOTAL" in c or '"total"' in c
                                             for c in calc.values()), calc
    # the source study's totals, as the README's comment says (docs/oee.md)
    study = next(text for cmd, text in calc.items() if "logbook-study" in cmd)
    total = next(line for line in study.splitlines() if line.startswith("TOTAL"))
    assert "92.8%" in total and "57.0%" in total, total
    assert all(len(line) <= 80 for name in ("oee report", "nodes --config")
               for line in out[name].splitlines())
    assert "Traceback" not in run.stdout + run.stderr


def test_every_lampwatch_command_the_readme_names_exists():
    names = set(re.findall(r"\blampwatch ([a-z]+(?: [a-z]+)?)", README))
    runner = CliRunner()
    checked = 0
    for name in sorted(names):
        words = name.split()
        if words[0] not in ("collect", "commission", "demo", "flash", "nodes", "oee"):
            continue  # prose: "lampwatch demo:" is a command, "lampwatch is" is not
        if words[0] != "oee":
            words = words[:1]
        result = runner.invoke(cli, [*words, "--help"])
        assert result.exit_code == 0, (name, result.output)
        checked += 1
    assert checked >= 6
