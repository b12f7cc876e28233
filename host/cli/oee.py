"""`lampwatch oee report` and `oee calc`: OEE from the journal and from a logbook CSV."""

from __future__ import annotations

from pathlib import Path

import click

from ..report import LOGBOOK_LOCALES, REPORT_FORMATS

# oee.PM_POLICIES as the command line writes them (tests/test_cli_lazy.py holds them equal).
PM_CHOICES = ("availability-loss", "planned-stop")


@click.group()
def oee():
    """Compute OEE."""


@oee.command("report")
@click.option("--journal", "journal_path", type=click.Path(path_type=Path),
              help="The collector's SQLite journal (default: the one --config names).")
@click.option("--config", "config_path", type=click.Path(path_type=Path),
              help="Collector config: journal, calendar, ideal cycle times.")
@click.option("--from", "from_", metavar="WHEN", help="Window start: 2026-03-02[T06:00].")
@click.option("--to", metavar="WHEN", help="Window end (default: now).")
@click.option("--shift", metavar="WHICH", help="A shift name (the one running, else the "
              "last one that started), 'current', or 'today' (the running shift's "
              "production day).")
@click.option("--day", metavar="DATE", help="A whole local day: 2026-03-02 or 'today' "
              "(the default window).")
@click.option("--machine", help="Only this machine.")
@click.option("--format", "fmt", type=click.Choice(REPORT_FORMATS), default="table",
              show_default=True)
@click.option("--wide", is_flag=True, help="The long table: planned, run and unknown hours, "
              "the losses' full names, whole machine names (wider than 80 columns).")
def report_command(journal_path, config_path, from_, to, shift, day, machine, fmt, wide):
    """OEE per machine and for the plant, with the six big losses and data coverage.

    Without --config the whole window is planned time and, with no ideal cycle
    times, performance and OEE are shown as '-'. Ratios cover the part of planned
    time with data; coverage is that part's share of planned time. Output made in
    unknown time counts in quality, not in performance; notes under the tables
    show it, output outside planned time, and any warning. See docs/oee.md.
    """
    import time
    from datetime import datetime

    from .. import oee
    from ..report import oee_report as report

    now = time.time()
    calendar, settings, judged = None, {}, {}
    if config_path is not None:
        from ..config import load_config

        cfg = load_config(config_path)
        journal_path = journal_path or cfg.journal_path
        calendar = cfg.calendar
        if not calendar.shifts:  # no shifts configured: every hour is planned
            calendar = oee.Calendar(calendar.tz, report.ALL_DAY.shifts, calendar.planned_stops)
        settings = {n.machine: report.MachineSettings(n.ideal_cycle_s, n.heartbeat_s, n.unit)
                    for n in cfg.nodes.values()}
        judged = {"short_stop_s": cfg.short_stop_s, "startup_window_s": cfg.startup_window_s,
                  "planned_maintenance": cfg.planned_maintenance}
    if journal_path is None:
        raise click.UsageError("give --journal PATH or --config FILE")
    cal = calendar or report.ALL_DAY
    if sum(x is not None for x in (from_ or to, shift, day)) > 1:
        raise click.UsageError("use one of --from/--to, --shift, --day")
    if from_ or to:
        if not from_:
            raise click.UsageError("--to needs --from")
        start = report.parse_when(from_, cal, "--from")
        end = report.parse_when(to, cal, "--to") if to else now
        if end <= start:
            raise report.ReportError("--to must be after --from")
    elif shift:
        start, end = report.shift_window(shift, cal, now)
    else:
        today = datetime.fromtimestamp(now, cal.zone).date()
        start, end = cal.day(report.parse_day(day or "today", today))
    from ..report.oee_rollup import journal_report

    versions = report.read_versions(journal_path, start, min(end, now))  # issue 14
    rep = journal_report(journal_path, start, end, calendar=calendar, settings=settings,
                         machine=machine, now_s=now, **judged, versions=versions)
    text = report.format_table(rep, wide=True) if wide and fmt == "table" else \
        report.FORMATS[fmt](rep)
    click.echo(text.rstrip("\n"))


@oee.command("calc")
@click.argument("logbook_csv", metavar="LOGBOOK.csv", type=click.Path(path_type=Path))
@click.option("--locale", type=click.Choice(LOGBOOK_LOCALES), default="en", show_default=True,
              help="How numbers are written: en = 5,325,000.5; id = 5.325.000,5.")
@click.option("--pm", "pm", type=click.Choice(PM_CHOICES), default="availability-loss",
              show_default=True, help="Planned maintenance lowers availability, or is "
              "planned downtime that leaves planned time.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON, ratios as fractions.")
def calc(logbook_csv, locale, pm, as_json):
    """OEE per period and in TOTAL from a logbook CSV.

    One period (shift, day, ...) per row, under a header row naming these columns in this
    order: period, available_min, pm_min, setup_min, breakdown_min, processed, good,
    ideal_cycle_s.

    \b
    run time     = available - pm - setup - breakdown
    availability = run / available           (--pm availability-loss)
                 = run / (available - pm)    (--pm planned-stop)
    performance  = processed x ideal_cycle_s / run
    quality      = good / processed
    OEE          = availability x performance x quality

    By default planned maintenance (pm_min) is an availability loss, as in the
    source study; with --pm planned-stop it is planned downtime, taken out of
    planned production time like a break. The collector's [oee]
    planned_maintenance option is the same choice for the OEE engine.
    TOTAL comes from the summed columns, never from averaged percentages; ideal
    time is summed as processed x ideal_cycle_s, so periods may differ in cycle
    time (TOTAL quality is weighted the same way). A period with nothing processed
    has quality - (undefined) and OEE 0. The delimiter may be ',' or ';'.
    See docs/oee.md.
    """
    import json

    from ..report import logbook

    rows, total = logbook.summarize(logbook.read_logbook(logbook_csv, locale),
                                    pm.replace("-", "_"))
    if as_json:
        click.echo(json.dumps(logbook.report(rows, total), indent=2))
    else:
        click.echo(logbook.format_table(rows, total))
