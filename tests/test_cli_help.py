"""Every command's `--help` at 80 columns: no line over 80, no word split across lines, and
required options marked as required."""

from __future__ import annotations

import re

import click
import pytest
from click.testing import CliRunner
from lampwatch.cli import cli

WIDTH = 80
# Options a command needs unless another option replaces them (click cannot mark these).
CONDITIONALLY_REQUIRED = {("flash",): ("--port", "--node-id", "--machine")}


def _commands(group: click.Group, prefix: tuple[str, ...] = ()):
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        yield (*prefix, name), cmd
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, (*prefix, name))


ALL = [pytest.param(path, cmd, id=" ".join(path) or "(top)")
       for path, cmd in [((), cli), *_commands(cli)]]


def _render(path: tuple[str, ...]) -> str:
    result = CliRunner().invoke(cli, [*path, "--help"], terminal_width=WIDTH,
                                prog_name="lampwatch")
    assert result.exit_code == 0, result.output
    return result.output


def _words(text: str) -> list[str]:
    return text.split()


def _source_texts(cmd: click.Command) -> list[str]:
    """The texts click wraps: the command's help and every option's help."""
    texts = [cmd.help or ""]
    texts += [p.help or "" for p in cmd.params if isinstance(p, click.Option)]
    return texts


@pytest.mark.parametrize("path, cmd", ALL)
def test_help_fits_80_columns_and_splits_no_word(path, cmd):
    text = _render(path)
    long = [line for line in text.splitlines() if len(line) > WIDTH]
    assert not long, f"lines over {WIDTH} columns in `{' '.join(path)} --help`:\n" + \
        "\n".join(long)
    rendered = set(_words(text))
    for source in _source_texts(cmd):
        # `\b` marks a paragraph click prints as written; every word must come out whole.
        for word in _words(source.replace("\b", " ")):
            assert word in rendered, (f"`{' '.join(path)} --help` splits {word!r} across "
                                      f"lines:\n{text}")


def test_the_checks_can_fail():
    """The two checks above, against help that breaks them, so they are not vacuous."""
    @click.command()
    @click.option("--batch", help="CSV: port,node_id,machine[,plant,line,ideal_cycle_s,"
                  "transport,and,more,fields]. A registry created owner-only, very-long-word.")
    def broken(batch):
        """A paragraph click keeps as written:

        \b
        this line is written wider than eighty columns on purpose, so it must be reported
        """

    text = CliRunner().invoke(broken, ["--help"], terminal_width=WIDTH).output
    assert any(len(line) > WIDTH for line in text.splitlines())
    rendered = set(_words(text))
    missing = [w for s in _source_texts(broken) for w in _words(s) if w not in rendered]
    assert "port,node_id,machine[,plant,line,ideal_cycle_s,transport,and,more,fields]." \
        in missing


@pytest.mark.parametrize("path, cmd", ALL)
def test_required_options_are_marked(path, cmd):
    text = _render(path)
    lines = text.splitlines()
    wanted = [p.opts[0] for p in cmd.params if isinstance(p, click.Option) and p.required]
    wanted += CONDITIONALLY_REQUIRED.get(path, ())
    for opt in wanted:
        # The option's entry: from its line to the next option's line.
        start = next(i for i, line in enumerate(lines) if re.match(rf"\s+{opt}\b", line))
        end = next((i for i in range(start + 1, len(lines))
                    if re.match(r"\s+-", lines[i]) or not lines[i].strip()), len(lines))
        entry = " ".join(lines[start:end])
        assert "required" in entry, f"`{' '.join(path)} --help` does not mark {opt} " \
            f"as required:\n{entry}"
