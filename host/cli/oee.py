"""`lampwatch oee report` and `oee calc`: OEE from the journal and from a logbook CSV."""

from __future__ import annotations

from pathlib import Path

import click

from ..report import LANGS, LOGBOOK_LOCALES, REPORT_FORMATS

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
@click.option("--lang", type=click.Choice(LANGS), default=None,
              help="Language of the table: en or id (default: the config's [board] lang, "
              "else en).")
def report_command(journal_path, config_path, from_, to, shift, day, machine, fmt, wide, lang):
    """OEE per machine and for the plant, with the six big losses and data coverage.

    Without --config the whole window is planned time and, with no ideal cycle
    times, performance and OEE are shown as '-'. Ratios cover the part of planned
    time with data; coverage is that part's share of planned time. Output made in
    unknown time counts in quality, not in performance; notes under the tables
    show it, output outside planned time, and any warning. See docs/oee.md.
    """
    import time

    from ..report import oee_report as report

    now = time.time()
    journal_path, calendar, settings, judged = _from_config(config_path, journal_path)
    start, end = _window(calendar or report.ALL_DAY, from_, to, shift, day, now)
    from ..report.oee_rollup import journal_report

    # issue 14: per-minute rollups for whole minutes, each config version's part with its
    # own machine settings
    versions = report.read_versions(journal_path, start, min(end, now))
    rep = journal_report(journal_path, start, end, calendar=calendar, settings=settings,
                         machine=machine, now_s=now, **judged, versions=versions)
    if fmt == "table":
        text = report.format_table(rep, wide=wide, lang=_lang(lang, config_path))
    else:
        text = report.FORMATS[fmt](rep)
    click.echo(text.rstrip("\n"))


def _from_config(config_path, journal_path):
    """(journal, calendar or None, machine settings, judging options) from --config."""
    if config_path is None:
        if journal_path is None:
            raise click.UsageError("give --journal PATH or --config FILE")
        return journal_path, None, {}, {}
    from ..config import load_config
    from ..report import oee_report as report

    cfg = load_config(config_path)
    calendar, settings, judged = report.from_config(cfg)
    return journal_path or cfg.journal_path, calendar, settings, judged


def _lang(lang, config_path) -> str:
    """--lang, else the config's [board] lang, else English."""
    if lang is not None or config_path is None:
        return lang or "en"
    from ..config import load_config

    return load_config(config_path).board_lang


def _window(cal, from_, to, shift, day, now, default_day=True):
    """(start, end) of --from/--to, --shift or --day; None when none is given and not
    `default_day` (else today)."""
    from datetime import datetime

    from ..report import oee_report as report

    if sum(x is not None for x in (from_ or to, shift, day)) > 1:
        raise click.UsageError("use one of --from/--to, --shift, --day")
    if from_ or to:
        if not from_:
            raise click.UsageError("--to needs --from")
        start = report.parse_when(from_, cal, "--from")
        end = report.parse_when(to, cal, "--to") if to else now
        if end <= start:
            raise report.ReportError("--to must be after --from")
        return start, end
    if shift:
        return report.shift_window(shift, cal, now)
    if day is None and not default_day:
        return None
    today = datetime.fromtimestamp(now, cal.zone).date()
    return cal.day(report.parse_day(day or "today", today))


@oee.command("calc")
@click.argument("logbook_csv", metavar="LOGBOOK.csv", type=click.Path(path_type=Path))
@click.option("--locale", type=click.Choice(LOGBOOK_LOCALES), default="en", show_default=True,
              help="How numbers are written: en = 5,325,000.5; id = 5.325.000,5.")
@click.option("--pm", "pm", type=click.Choice(PM_CHOICES), default="availability-loss",
              show_default=True, help="Planned maintenance lowers availability, or is "
              "planned downtime that leaves planned time.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON, ratios as fractions.")
@click.option("--lang", type=click.Choice(LANGS), default="en", show_default=True,
              help="Language and number format of the table.")
def calc(logbook_csv, locale, pm, as_json, lang):
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
        click.echo(logbook.format_table(rows, total, lang))


@oee.command("reconcile")
@click.option("--logbook", "logbook_path", required=True, type=click.Path(path_type=Path),
              help="The logbook CSV (as `oee calc` reads it, with date and shift columns).")
@click.option("--config", "config_path", required=True, type=click.Path(path_type=Path),
              help="Collector config: journal, calendar, machines.")
@click.option("--journal", "journal_path", type=click.Path(path_type=Path),
              help="The journal (default: the one --config names).")
@click.option("--from", "from_", metavar="WHEN", help="Only shifts that start from then.")
@click.option("--to", metavar="WHEN", help="... and before then (default: now).")
@click.option("--shift", metavar="WHICH", help="Only this shift (as `oee report --shift`).")
@click.option("--machine", help="The machine of rows without a machine column; only its rows.")
@click.option("--locale", type=click.Choice(LOGBOOK_LOCALES), default="en", show_default=True,
              help="How the logbook writes numbers: en = 5,325,000.5; id = 5.325.000,5.")
@click.option("--tolerance-min", "tol_min", type=click.FloatRange(min=0), default=10.0,
              show_default=True, help="Minutes run time, downtime or planned time may differ.")
@click.option("--tolerance-output", "tol_output", type=click.FloatRange(min=0), default=2.0,
              show_default=True, help="Percent output may differ from the logbook's.")
@click.option("--min-coverage", "min_coverage", type=click.FloatRange(0, 100), default=95.0,
              show_default=True, help="Percent of planned time with sensor data below which "
              "a shift has a sensor gap.")
@click.option("--format", "fmt", type=click.Choice(REPORT_FORMATS), default="table",
              show_default=True)
@click.option("--wide", is_flag=True, help="One line per period, each figure as logbook / "
              "sensor (wider than 80 columns).")
@click.option("--lang", type=click.Choice(LANGS), default=None,
              help="Language of the table (default: the config's [board] lang, else en).")
def reconcile_command(logbook_path, config_path, journal_path, from_, to, shift, machine,
                      locale, tol_min, tol_output, min_coverage, fmt, wide, lang):
    """The logbook and the sensor side by side, shift by shift, differences flagged.

    Each logbook row is matched to the calendar shift its date and shift columns name
    (and to its machine column's machine, or the config's only machine, or
    --machine); the sensor's figures for that shift are `oee report`'s. Differences
    over the tolerances are flagged with their likely cause: an unrecorded stop,
    logbook downtime while the lamp showed running, an output mismatch, a sensor gap,
    or a different planned time. Rows that cannot be matched, and shifts with sensor
    data but no logbook row, are listed. See docs/oee.md.
    """
    import time

    from ..report import logbook, oee_report, reconcile, reconcile_tables

    now = time.time()
    journal_path, calendar, settings, judged = _from_config(config_path, journal_path)
    periods = logbook.read_logbook(logbook_path, locale)
    window = _window(calendar, from_, to, shift, None, now, default_day=False)
    days = [p.date for p in periods if p.date]
    if window is not None:
        span = window
    elif days:  # the logbook's days, with a day either side for shifts past midnight
        span = (calendar.day(min(days))[0] - 86400, calendar.day(max(days))[1] + 86400)
    else:
        span = (now, now)
    events, last_rx = oee_report.read_journal(journal_path, *span)
    tol = reconcile.Tolerances(tol_min, tol_output / 100, min_coverage / 100)
    rec = reconcile.reconcile(periods, events, last_rx, calendar=calendar, settings=settings,
                              window=window, machine=machine, tolerances=tol, now_s=now,
                              **judged)
    if fmt == "table":
        text = reconcile_tables.format_table(rec, _lang(lang, config_path), wide=wide)
    else:
        text = reconcile_tables.FORMATS[fmt](rec)
    click.echo(text.rstrip("\n"))


@oee.command("sheet")
@click.option("--config", "config_path", required=True, type=click.Path(path_type=Path),
              help="Collector config: journal, calendar, machines.")
@click.option("--shift", "shift_name", required=True, metavar="NAME", help="A calendar shift.")
@click.option("--date", "day", required=True, metavar="DATE",
              help="The local date the shift starts on: 2026-03-02 or 'today'.")
@click.option("--logbook", "logbook_path", type=click.Path(path_type=Path),
              help="A logbook CSV to set beside the sensor (as `oee reconcile`).")
@click.option("--locale", type=click.Choice(LOGBOOK_LOCALES), default="en", show_default=True,
              help="How the logbook writes numbers.")
@click.option("--journal", "journal_path", type=click.Path(path_type=Path),
              help="The journal (default: the one --config names).")
@click.option("--machine", help="Only this machine's page.")
@click.option("--lang", type=click.Choice(LANGS), default=None,
              help="Language (default: the config's [board] lang, else en).")
@click.option("-o", "--output", "out", required=True, type=click.Path(path_type=Path),
              metavar="FILE.html", help="Where to write the sheet.")
def sheet_command(config_path, shift_name, day, logbook_path, locale, journal_path, machine,
                  lang, out):
    """The shift sheet both sides sign: one A4 page per machine.

    Each page holds the shift's timeline, its figures with the sensor's coverage, its
    stops and their reasons, the logbook beside the sensor when --logbook is given,
    and signature lines for the shift supervisor and the technician. The HTML is
    styled for print: any browser prints it on A4. See docs/oee.md.
    """
    import time
    from datetime import datetime

    from ..report import logbook, oee_report, reconcile, sheet

    now = time.time()
    journal_path, calendar, settings, judged = _from_config(config_path, journal_path)
    today = datetime.fromtimestamp(now, calendar.zone).date()
    the_day = oee_report.parse_day(day, today)
    inst = reconcile.instance_of(calendar, the_day, shift_name)
    if inst is None:
        names = ", ".join(sorted({s.name for s in calendar.shifts}))
        raise oee_report.ReportError(f"the calendar has no shift {shift_name!r} on {the_day} "
                                     f"(shifts: {names})")
    periods = logbook.read_logbook(logbook_path, locale) if logbook_path else None
    made = sheet.build(journal_path, inst, calendar=calendar, settings=settings, judged=judged,
                       now_s=now, periods=periods, machine=machine)
    try:
        out.write_text(sheet.render(made, _lang(lang, config_path)), encoding="utf-8")
    except OSError as exc:
        raise click.FileError(str(out), exc.strerror or str(exc)) from None
    click.echo(f"{out}: {len(made.report.rows)} page(s), shift {inst.name} on {inst.day}")
