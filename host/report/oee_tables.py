"""`lampwatch oee report` as text, CSV and JSON: the tables, the notes under them, warnings."""

from __future__ import annotations

import csv
import io
import json
import textwrap
from typing import TYPE_CHECKING, Any

from .. import oee
from ..timeline import LOSS_KEYS

if TYPE_CHECKING:
    from .oee_report import Plant, Report, Row

__all__ = ["format_csv", "format_json", "format_table"]


_CSV_COLUMNS = ("machine", "from", "to", "availability", "performance", "quality", "oee",
                "good", "ng", "startup_ng", "unknown_good", "unknown_ng", "excluded_good",
                "excluded_ng", "planned_s", "run_s", "unknown_s", "coverage",
                "planned_coverage") + LOSS_KEYS


def _flat(row: Row | Plant, report: Report) -> dict[str, Any]:
    d = row.data()
    d.update(d.pop("losses"))
    d["from"], d["to"] = report.calendar.iso(report.start), report.calendar.iso(report.end)
    return d


def format_json(report: Report) -> str:
    return json.dumps({
        "from": report.calendar.iso(report.start), "to": report.calendar.iso(report.end),
        "machines": [r.data() for r in report.rows], "plant": report.plant.data(),
        "warnings": report.warnings,
        "config_versions": [{"version": v.version, "hash": v.hash,
                             "from": report.calendar.iso(max(v.start, report.start)),
                             "to": report.calendar.iso(min(v.end, report.end))}
                            for v in report.versions]}, indent=2)


def format_csv(report: Report) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, _CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for row in [*report.rows, report.plant]:
        w.writerow({k: "" if v is None else v for k, v in _flat(row, report).items()})
    return buf.getvalue()


# What the tables say (kept together, to be translated in one place).
T_TITLE = "OEE {start} .. {end}"
T_HEAD = ("machine", "A", "P", "Q", "OEE", "good", "NG", "coverage")
T_HEAD_WIDE = ("machine", "A", "P", "Q", "OEE", "good", "NG", "planned h", "run h",
               "unknown h", "coverage")
T_LOSSES = "six big losses and planned maintenance (minutes)"
T_LOSS_HEAD = ("machine", "breakdown", "setup", "PM", "minor", "speed", "defects", "startup")
T_LOSS_HEAD_WIDE = ("machine", "breakdown", "setup", "planned maint.", "minor stops",
                    "reduced speed", "process defects", "startup rejects")
T_LEFT_OUT = "plant P, Q, OEE: without {machines} (no ideal_cycle_s)"
T_UNITS = "plant output: {units}"
T_UNIT = "{good} good, {ng} NG {unit}"
T_UNKNOWN = "{machine}: output in unknown time: {good} good, {ng} NG (in Q, not in P)"
T_OUTSIDE = "{machine}: counted outside planned time: {good} good, {ng} NG (left out)"
T_WARNING = "warning: {text}"
T_CONFIG = "config version {version} ({hash}) from {start} to {end}"
T_CONFIG_NONE = "no config version recorded from {start} to {end}: the config given"
T_LEGEND = "PM: planned maintenance; minor: minor stops; speed: reduced speed"
_MACHINE_W = 14  # in 80 columns a longer name ends in an ellipsis (--wide: whole)


def _min(v: float | None) -> str:
    return "-" if v is None else f"{v / 60:,.1f}"


def _n(v: float | None) -> str:
    """A count with thousands separators, to one decimal (a heartbeat's output spread across
    a window's edge leaves a share of a unit), without the decimal when it is 0."""
    if v is None:
        return "-"
    return f"{v:,.1f}".removesuffix(".0")


def _hours(v: float | None) -> str:
    return "-" if v is None else f"{v / 3600:,.2f}"


def format_table(report: Report, wide: bool = False) -> str:
    """The report as text: machines in line order, then the plant, then notes; within 80
    columns unless `wide` (every column, whole machine names). Coverage is the share of
    planned time with a known state."""
    lines, losses = [], []
    for row in [*report.rows, report.plant]:
        r = row.data()
        name = row.machine if wide or len(row.machine) <= _MACHINE_W else (
            row.machine[:_MACHINE_W - 1] + "…")
        ratios = (r["availability"], r["performance"], r["quality"], r["oee"])
        hours = ((_hours(r["planned_s"]), _hours(r.get("run_s")), _hours(r.get("unknown_s")))
                 if wide else ())
        lines.append((name, *map(oee.percent, ratios), _n(r["good"]), _n(r["ng"]), *hours,
                      oee.percent(r["planned_coverage"])))
        losses.append((name, *(_min(r["losses"][k]) for k in LOSS_KEYS)))
    out = [T_TITLE.format(start=report.calendar.iso(report.start),
                          end=report.calendar.iso(report.end)), ""]
    out += _grid(T_HEAD_WIDE if wide else T_HEAD, lines)
    out += ["", T_LOSSES] + _grid(T_LOSS_HEAD_WIDE if wide else T_LOSS_HEAD, losses)
    if not wide:
        out.append(T_LEGEND)
    return "\n".join(out + _notes(report))


def _notes(report: Report) -> list[str]:
    """Lines under the tables: what the plant row leaves out, output by unit, output outside
    planned time and in unknown time, warnings."""
    notes = []
    plant = report.plant
    if plant.left_out and len(plant.left_out) < len(plant.rows):
        notes.append(T_LEFT_OUT.format(machines=", ".join(plant.left_out)))
    if len(plant.units) > 1:
        notes.append(T_UNITS.format(units="; ".join(
            T_UNIT.format(good=_n(g), ng=_n(n), unit=unit)
            for unit, (g, n) in plant.units.items())))
    for row in report.rows:
        r = row.result
        if _n(r.unknown_good) != "0" or _n(r.unknown_ng) != "0":
            notes.append(T_UNKNOWN.format(machine=row.machine, good=_n(r.unknown_good),
                                          ng=_n(r.unknown_ng)))
        if _n(r.excluded_good) != "0" or _n(r.excluded_ng) != "0":
            notes.append(T_OUTSIDE.format(machine=row.machine, good=_n(r.excluded_good),
                                          ng=_n(r.excluded_ng)))
    notes += [(T_CONFIG if v.version else T_CONFIG_NONE).format(
        version=v.version, hash=v.hash[:8], start=report.calendar.iso(max(v.start, report.start)),
        end=report.calendar.iso(min(v.end, report.end))) for v in report.versions]
    notes += [T_WARNING.format(text=w) for w in report.warnings]
    wrapped = [part for note in notes for part in textwrap.wrap(
        note, 80, subsequent_indent="  ", break_on_hyphens=False)]
    return [""] + wrapped if wrapped else []


def _grid(head: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]

    def fmt(cells):
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths)))
    return [fmt(head), *(fmt(r) for r in rows)]
