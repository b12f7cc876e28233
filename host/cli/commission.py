"""`lampwatch commission` and `lampwatch nodes`: thin handlers over commission.py and nodes.py."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .collect import DEFAULT_CONFIG

if TYPE_CHECKING:
    from ..flash import commission as cm

_CONFIG = click.option("--config", "config_path", type=click.Path(path_type=Path),
                       default=DEFAULT_CONFIG, show_default=True,
                       help="The running collector's config (TOML): journal and registry.")


class _ConsoleUI:
    """Prompts on stdout, answers from stdin one line each (scriptable); EOF is None."""

    def ask(self, text: str) -> str | None:
        click.echo(text, nl=False)
        line = sys.stdin.readline()
        if not line:
            click.echo()
            return None
        return line.rstrip("\n")

    def say(self, text: str) -> None:
        click.echo(text)


def _lamp_list(text: str) -> list[str]:
    from ..protocol import LAMP_NAMES

    lamps = [s.strip().lower() for s in text.split(",") if s.strip()]
    bad = [s for s in lamps if s not in LAMP_NAMES]
    if bad or not lamps:
        raise click.BadParameter(f"expected lamps among {', '.join(LAMP_NAMES)}, "
                                 f"comma-separated, not {text!r}")
    return lamps


@click.command("commission")
@click.argument("node_id", metavar="NODE", type=click.IntRange(1, 65535))
@_CONFIG
@click.option("--lamps", help="Lamps to check, e.g. green,yellow,red "
              "[default: those the node's HELLO says are wired].")
@click.option("--parts", type=click.IntRange(0, 1000), default=3, show_default=True,
              help="GOOD and NG parts to make (0: do not check the counters).")
@click.option("--timeout", "timeout_s", type=click.FloatRange(0.5, 600), default=30.0,
              show_default=True, help="Seconds each step waits for the node's report.")
@click.option("--checked-by", help="Who checked (technician and production lead) "
              "[default: asked].")
@click.option("--out", "out_dir", type=click.Path(path_type=Path),
              default=Path("commissioning"), show_default=True,
              help="Folder for the acceptance report (Markdown and JSON).")
@click.option("--registry", "registry", type=click.Path(path_type=Path),
              help="Node registry to mark [default: the config's nodes_file].")
def commission(node_id, config_path, lamps, parts, timeout_s, checked_by, out_dir, registry):
    """Check a node at its machine, step by step, and write its acceptance report.

    \b
    Run it beside the running collector, with the production lead: each lamp is
    switched ON, made to BLINK and switched OFF, then a few GOOD and NG parts are
    made; every step shows live whether the node reported it (read from the
    collector's journal). Answers come from stdin, one line each: Enter after each
    action, r (retry) or s (skip) after a miss. Only if every input passes is the
    node marked commissioned in the registry; otherwise the exit code is 1.
    """
    from datetime import datetime

    from ..config import load_config
    from ..flash import commission as cm
    from ..registry import read_nodes, update_node

    lamp_names = _lamp_list(lamps) if lamps else None
    cfg = load_config(config_path)
    registry = registry or cfg.nodes_file
    if registry is None:
        raise cm.CommissionError(f"{config_path} names no nodes_file: pass --registry")
    entry = next((e for e in read_nodes(registry) if e.get("id") == node_id), None)
    if entry is None:
        raise cm.CommissionError(f"node {node_id} is not in the registry {registry}")
    node = cfg.nodes.get(node_id)
    if node is None:
        raise cm.CommissionError(f"node {node_id} is not in {config_path}'s node list")
    ui = _ConsoleUI()
    watch = cm.JournalWatch(cfg.journal_path, node_id)
    try:
        hello = _wait_hello(watch, node_id, timeout_s)
        if lamp_names is None:
            if hello is None:
                raise cm.CommissionError(f"node {node_id} has not said HELLO within "
                                         f"{timeout_s:g} s: power it up, check its link, or "
                                         "pass --lamps")
            lamp_names = cm.lamps_from_mask(hello.get("lamp_mask", 0))
        while not checked_by:
            checked_by = ui.ask("Checked by (technician, production lead): ")
            if checked_by is None:
                raise cm.CommissionError("who checked is needed: pass --checked-by")
        ui.say(f"Commissioning node {node_id} on {node.machine} (firmware "
               f"{(hello or {}).get('fw', 'unknown')}), lamps {', '.join(lamp_names) or 'none'}"
               f", {parts} part(s) each; {timeout_s:g} s per step.")
        started = datetime.now().astimezone()
        results = [cm.run_check(step, watch, ui, timeout_s, time.time, time.sleep)
                   for step in cm.plan_steps(lamp_names, parts)]
    finally:
        watch.close()
    finished = datetime.now().astimezone()
    rep = cm.build_report(cm.Session(node_id, node.machine, node.plant, node.line, hello,
                                     checked_by.strip(), started, finished, timeout_s, results))
    md, js = cm.write_report(out_dir, rep, finished)
    ui.say(f"Report: {md} and {js.name}")
    if rep["result"] != "PASSED":
        failed = [f"{r.step.input} {r.step.label}" for r in results if not r.passed]
        # A failed re-check withdraws an earlier acceptance: its inputs are not proven now.
        was = "commissioned" in entry
        if was:
            update_node(registry, node_id, commissioned=None, commissioned_by=None)
        raise cm.CommissionFailed(f"node {node_id} FAILED commissioning ({', '.join(failed)}); "
                                  + ("its earlier commissioning is withdrawn" if was
                                     else "not marked commissioned"))
    update_node(registry, node_id, commissioned=finished.replace(microsecond=0),
                commissioned_by=checked_by.strip())
    ui.say(f"Node {node_id} PASSED: marked commissioned in {registry}.")


def _wait_hello(watch: cm.JournalWatch, node_id: int, timeout_s: float) -> dict | None:
    hello = watch.last_hello()
    if hello is None:
        click.echo(f"Waiting up to {timeout_s:g} s for node {node_id}'s HELLO "
                   "(power it up now) ...")
        end = time.time() + timeout_s
        while hello is None and time.time() < end:
            time.sleep(0.2)
            hello = watch.last_hello()
    return hello


@click.command("nodes")
@_CONFIG
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
def nodes_command(config_path, fmt):
    """Every node in the registry and every node heard, with what looks wrong.

    Per node: machine, state (UNKNOWN while it is silent, with for how long), last
    seen and boot time in the plant's time zone, firmware, RSSI, duplicate frames
    (harmless resends), rejected frames (replays, forgeries) and dropped frames. Under
    a node, what looks wrong: silent, never heard, never commissioned, not in the
    registry, a wired lamp not seen lit in a week, the GOOD counter stuck while the
    machine runs. Below: host clock steps the collector saw in the last week.
    """
    import json

    from ..config import load_config
    from ..journal import open_readonly
    from ..report.nodes import clock_step_lines, format_table, node_rows, read_facts, to_json

    cfg = load_config(config_path)
    now_s = time.time()
    with open_readonly(cfg.journal_path) as journal:
        facts = read_facts(journal, now_s)
    rows, unknown = node_rows(cfg.nodes, facts, now_s)
    if fmt == "json":
        steps = [{"ts_s": ts, **data} for ts, data in facts.clock_steps]
        click.echo(json.dumps(dict(to_json(rows, unknown, now_s), clock_steps=steps), indent=2))
    else:
        click.echo("\n".join([format_table(rows, unknown, now_s, cfg.calendar.tz),
                               *clock_step_lines(facts, cfg.calendar.tz)]))
