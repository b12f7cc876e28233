"""`lampwatch oee report` as text, CSV and JSON: the tables, the notes under them, warnings."""

from __future__ import annotations

import csv
import io
import json
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
        "warnings": report.warnings}, indent=2)


def format_csv(report: Report) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, _CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for row in [*report.rows, report.plant]:
        w.writerow({k: "" if v is None else v for k, v in _flat(row, report).items()})
    return buf.getvalue()


def _min(v: float | None) -> str:
    return "-" if v is None else f"{v / 60:.1f}"


def _n(v: float | None) -> str:
    """A count to one decimal (a heartbeat's output spread across a window's edge leaves a
    share of a unit), without the decimal when it is 0."""
    if v is None:
        return "-"
    text = f"{v:.1f}"
    return text.removesuffix(".0")


def format_table(report: Report) -> str:
    """The text table; coverage is the share of planned time with a known state."""
    head = ("machine", "A", "P", "Q", "OEE", "good", "NG", "planned h", "coverage")
    loss_head = ("machine", "breakdown", "setup", "maint.", "minor stop", "reduced speed",
                 "defects", "startup rej.")
    lines, losses = [], []
    for row in [*report.rows, report.plant]:
        r = row.data()
        ratios = (r["availability"], r["performance"], r["quality"], r["oee"])
        lines.append((row.machine, *map(oee.percent, ratios), _n(r["good"]), _n(r["ng"]),
                      f"{r['planned_s'] / 3600:.2f}", oee.percent(r["planned_coverage"])))
        losses.append((row.machine, *(_min(r["losses"][k]) for k in LOSS_KEYS)))
    out = [f"OEE {report.calendar.iso(report.start)} .. {report.calendar.iso(report.end)}", ""]
    out += _grid(head, lines) + ["", "six big losses and planned maintenance (minutes)"]
    out += _grid(loss_head, losses)
    return "\n".join(out + _notes(report))


def _notes(report: Report) -> list[str]:
    """Lines under the tables: what the plant row leaves out, output by unit, output outside
    planned time and in unknown time, warnings."""
    notes = []
    plant = report.plant
    if plant.left_out and len(plant.left_out) < len(plant.rows):
        notes.append(f"plant P, Q, OEE: without {', '.join(plant.left_out)} "
                     "(no ideal_cycle_s)")
    if len(plant.units) > 1:
        notes.append("plant output: " + "; ".join(
            f"{_n(g)} good, {_n(n)} NG {unit}" for unit, (g, n) in plant.units.items()))
    for row in report.rows:
        r = row.result
        if _n(r.unknown_good) != "0" or _n(r.unknown_ng) != "0":
            notes.append(f"{row.machine}: output in unknown time: {_n(r.unknown_good)} good, "
                         f"{_n(r.unknown_ng)} NG (in Q, not in P)")
        if _n(r.excluded_good) != "0" or _n(r.excluded_ng) != "0":
            notes.append(f"{row.machine}: counted outside planned time: "
                         f"{_n(r.excluded_good)} good, {_n(r.excluded_ng)} NG (left out)")
    notes += [f"warning: {w}" for w in report.warnings]
    return [""] + notes if notes else []


def _grid(head: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]

    def fmt(cells):
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths)))
    return [fmt(head), *(fmt(r) for r in rows)]
