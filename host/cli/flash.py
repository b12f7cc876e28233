"""`lampwatch flash`: the thin command over flash.py (one node, or a batch CSV) and --verify."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from ..errors import InputFileError, LampwatchError

PASSWORD_ENV = "LAMPWATCH_WIFI_PASSWORD"
_REQUIRED = "[required without --batch]"


def _collector(text: str | None) -> tuple[str, int] | None:
    if text is None:
        return None
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"must be HOST:PORT like 192.168.10.5:4210, not {text!r}",
                                 param_hint="--collector")
    return host, int(port)


def _password() -> str:
    # Never an option: it would land in shell history and in `ps`.
    value = os.environ.get(PASSWORD_ENV)
    if value is not None:
        return value
    return click.prompt("Wi-Fi password (not shown)", hide_input=True, default="",
                        show_default=False, err=True)


@click.command("flash")
@click.option("--port", help="Serial device, socket://host:port or rfc2217://host:port "
              f"{_REQUIRED}.")
@click.option("--node-id", type=click.IntRange(1, 65535),
              help=f"The node's id, 1 to 65535 {_REQUIRED}.")
@click.option("--machine", help=f"Machine name, as on reports {_REQUIRED}.")
@click.option("--plant", default="plant", show_default=True)
@click.option("--line", default="line-1", show_default=True)
@click.option("--ideal-cycle-s", type=click.FloatRange(min=0, min_open=True),
              help="Ideal cycle time per part, seconds (Performance).")
@click.option("--transport", type=click.Choice(["udp", "serial"]), default="udp",
              show_default=True)
@click.option("--wifi-ssid", help="Wi-Fi network (udp). The password is asked for, or read "
              f"from ${PASSWORD_ENV}; never an option.")
@click.option("--collector", "collector_addr", metavar="HOST:PORT",
              help="Where the node sends (udp), e.g. 192.168.10.5:4210.")
@click.option("--registry", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("nodes.toml"), show_default=True,
              help="The collector's node registry (created readable by its owner only).")
@click.option("--new-key", is_flag=True, help="Give the node a fresh key even if it has one.")
@click.option("--template", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="config.json with the pins and timings (default: the firmware's example).")
@click.option("--batch", type=click.Path(dir_okay=False, path_type=Path),
              help="A CSV file, one node per row: port, node_id, machine, and optionally "
              "plant, line, ideal_cycle_s, transport.")
@click.option("--verify", is_flag=True, help="Wait for the node's HELLO at the collector.")
@click.option("--config", "collector_config", type=click.Path(dir_okay=False, path_type=Path),
              help="Collector config (TOML), for --verify: where its journal is.")
@click.option("--verify-timeout", type=float, default=60.0, show_default=True,
              help="Seconds to wait for the HELLO.")
def flash_command(port, node_id, machine, plant, line, ideal_cycle_s, transport, wifi_ssid,
                  collector_addr, registry, new_key, template, batch, verify, collector_config,
                  verify_timeout):
    """Flash the lampwatch firmware and a node's config.json onto a board, and register it.

    Precompiles the firmware (mpy-cross), copies only what differs from the board
    (sha256), writes config.json with the node's key and adds or updates the node in
    the registry. A re-flash keeps the node's key (--new-key gives it a fresh one).
    """
    import json

    from ..flash import flasher as fl
    from ..flash.batch import Outcome, read_batch, summary

    defaults = {"plant": plant, "line": line, "ideal_cycle_s": ideal_cycle_s,
                "transport": transport}
    if batch is not None:
        specs = read_batch(batch, defaults)
    else:
        missing = [n for n, v in (("--port", port), ("--node-id", node_id),
                                  ("--machine", machine)) if v is None]
        if missing:
            raise click.UsageError(f"missing {', '.join(missing)} (or give --batch)")
        specs = [fl.NodeSpec(port, node_id, machine, **defaults)]
    journal = None
    if verify:
        if collector_config is None:
            raise click.UsageError("--verify needs --config (the collector's config)")
        from ..config import load_config

        journal = load_config(collector_config).journal_path
    tmpl = None
    if template is not None:
        try:
            tmpl = json.loads(template.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputFileError(f"{template}: not a JSON config: {exc}") from None
    collector = _collector(collector_addr)
    wifi = (wifi_ssid, _password()) if any(s.transport == "udp" for s in specs) \
        and wifi_ssid else None
    click.echo("compiling the firmware (mpy-cross) ...", err=True)
    firmware = fl.build_firmware()
    outcomes = []
    for i, spec in enumerate(specs, start=1):
        if batch is not None:
            click.echo(f"[{i}/{len(specs)}] node {spec.node_id} {spec.machine}", err=True)
            click.prompt(f"Connect board for {spec.machine} to {spec.port} and press Enter",
                         default="", show_default=False, prompt_suffix=" ", err=True)
            if not sys.stdin.isatty():  # scripted: the Enter read was not echoed
                click.echo(err=True)
        try:
            detail = _one(spec, firmware, registry, wifi, collector, new_key, tmpl, journal,
                          verify_timeout)
            outcomes.append(Outcome(spec, True, detail))
        except LampwatchError as exc:
            if batch is None:
                raise
            outcomes.append(Outcome(spec, False, str(exc)))
            click.echo(f"  FAILED: {exc}", err=True)
            continue
        if batch is not None:
            click.echo(f"  OK: {detail}", err=True)  # progress; the summary goes to stdout
        else:
            click.echo(detail)
    if batch is not None:
        click.echo(summary(outcomes))
        failed = sum(not o.ok for o in outcomes)
        if failed:
            raise fl.FlashError(f"{failed} of {len(outcomes)} node(s) failed (see above)")


def _one(spec, firmware, registry, wifi, collector, new_key, template, journal,
         verify_timeout) -> str:
    from ..flash import flasher as fl

    after = fl.last_event_id(journal) if journal is not None else 0

    def progress(msg: str) -> None:
        click.echo(f"  {msg}", err=True)

    res = fl.flash_node(spec, firmware, registry, wifi=wifi, collector=collector,
                        new_key=new_key, template=template, progress=progress)
    key = "new key" if res.new_key else "key kept"
    detail = (f"node {spec.node_id} ({spec.machine}): {len(res.copied)} file(s) copied "
              f"({res.bytes_copied} bytes), {len(res.unchanged)} unchanged, {key}; "
              f"MicroPython {res.micropython}; {res.seconds:.1f} s")
    if journal is None:
        return detail
    click.echo(f"  {detail}", err=True)
    click.echo(f"  waiting for HELLO from node {spec.node_id} (up to {verify_timeout:g} s) ...",
               err=True)
    hello = fl.wait_hello(journal, spec.node_id, after, verify_timeout)
    if hello is None:
        raise fl.FlashError(f"no HELLO from node {spec.node_id} within {verify_timeout:g} s: "
                            "Wi-Fi credentials rejected, wrong --collector address, or the "
                            "node is not powered (its console shows why)")
    return (f"node {spec.node_id} ({spec.machine}) verified: firmware {hello.get('fw')}, "
            f"reset cause {hello.get('reset_cause')}")
