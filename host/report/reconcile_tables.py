"""`lampwatch oee reconcile` as text (per period, logbook | sensor | difference), CSV and JSON."""

from __future__ import annotations

import csv
import io
import json
import math
import textwrap
from typing import TYPE_CHECKING

from ..i18n import catalogue
from .reconcile import CAUSES, FIGURES

if TYPE_CHECKING:
    from ..i18n import Catalogue
    from .reconcile import Flag, Match, Reconciliation

__all__ = ["figure_rows", "flag_text", "format_csv", "format_json", "format_table"]

_RATIOS = ("availability", "performance", "quality", "oee", "coverage")
_WIDTH = 80


def _cell(cat: Catalogue, key: str, v: float | None) -> str:
    if v is None:
        return "-"
    return cat.percent(v) if key in _RATIOS else cat.number(v, 1, exact=key.endswith("_min"))


def _diff(cat: Catalogue, key: str, a: float | None, b: float | None) -> str:
    """b - a, signed; ratios in percentage points; 0 without a sign."""
    if a is None or b is None:
        return ""
    ratio, minutes = key in _RATIOS, key.endswith("_min")
    d = round((b - a) * (100 if ratio else 1), 1)
    d = 0.0 if d == 0 else d  # never "-0"
    text = cat.number(d, 1, exact=ratio or minutes)
    text = "+" + text if d > 0 else text
    return cat.t("rec.pp", diff=text) if ratio else text


def flag_text(cat: Catalogue, f: Flag) -> str:
    """One flag as a sentence in the catalogue's language."""
    if f.cause == "output_mismatch":
        diff = "+∞" if math.isinf(f.amount) else (
            ("+" if f.amount > 0 else "") + cat.percent(f.amount))
        return cat.t("rec.flag.output_mismatch", diff=diff)
    return cat.t(f"rec.flag.{f.cause}", minutes=cat.number(abs(f.amount), 0))


def figure_rows(cat: Catalogue, m: Match) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """The head and rows (figure, logbook, sensor, difference) of a matched period."""
    head = ("", cat.t("rec.col.logbook"), cat.t("rec.col.sensor"), cat.t("rec.col.diff"))
    rows = []
    for key in FIGURES:
        a, b = getattr(m.logbook, key), getattr(m.sensor, key)
        rows.append((cat.t(f"rec.fig.{key}"), _cell(cat, key, a), _cell(cat, key, b),
                     _diff(cat, key, a, b)))
    return head, rows


def _when(cat: Catalogue, m: Match) -> str:
    return cat.date(m.shift.day if m.shift else m.period.date)


def _wide(cat: Catalogue, matched: list[Match]) -> list[str]:
    """One line per matched period, each figure as logbook / sensor: wider than 80."""
    keys = ("machine", "date", "shift", "row", "planned", "run", "down", "unrecorded", "good",
            "ng", "oee", "coverage", "flags")

    def pair(a: float | None, b: float | None, ratio: bool = False) -> str:
        fmt = cat.percent if ratio else (lambda v: cat.number(v, 0))
        return f"{fmt(a)}/{fmt(b)}"

    rows = []
    for m in matched:
        lg, se = m.logbook, m.sensor
        rows.append((m.machine, str(m.shift.day), m.shift.name, str(m.period.row),
                     pair(lg.planned_min, se.planned_min), pair(lg.run_min, se.run_min),
                     pair(lg.down_min, se.down_min), cat.number(se.unrecorded_min, 0),
                     pair(lg.good, se.good), pair(lg.ng, se.ng), pair(lg.oee, se.oee, True),
                     cat.percent(se.coverage),
                     ", ".join(cat.t(f"rec.cause.{f.cause}") for f in m.flags) or "="))
    head = tuple(cat.t(f"rec.wide.{k}") for k in keys)
    return ["", cat.t("rec.wide.legend"), *_grid(head, rows, left=(0, -1))]


def format_table(rec: Reconciliation, lang: str = "en", wide: bool = False) -> str:
    """Per matched period a block of figures (logbook, sensor, difference) and its flags,
    then the periods not matched and the shifts without a logbook period; 80 columns.
    `wide`: one line per period instead (wider than 80 columns)."""
    cat = catalogue(lang)
    cal = rec.calendar
    tol = rec.tolerances
    out = [cat.t("rec.title", start=cat.datetime(rec.start, cal.zone),
                 end=cat.datetime(rec.end, cal.zone)),
           cat.t("rec.tolerances", minutes=cat.number(tol.minutes),
                 output=cat.percent(tol.output), coverage=cat.percent(tol.coverage))]
    matched = [m for m in rec.matches if m.sensor is not None]
    if not matched:
        out += ["", cat.t("rec.none")]
    if wide and matched:
        out += _wide(cat, matched)
    for m in [] if wide else matched:
        out += ["", cat.t("rec.period", machine=m.machine, shift=m.shift.name,
                          date=_when(cat, m), row=m.period.row, period=m.period.period)]
        out += _grid(*figure_rows(cat, m))
        notes = [flag_text(cat, f) for f in m.flags] or [cat.t("rec.ok")]
        out += [line for n in notes for line in textwrap.wrap(
            ("! " if m.flags else "= ") + n, _WIDTH, subsequent_indent="  ",
            break_on_hyphens=False)]
    tail = []
    for m in rec.matches:
        if m.why is not None:
            why = cat.t(f"rec.why.{m.why}", shift=m.period.shift, machine=m.machine,
                        date=cat.date(m.period.date) if m.period.date else "")
            tail.append(cat.t("rec.unmatched", row=m.period.row, period=m.period.period,
                              why=why))
    tail += [cat.t("rec.unlogged", machine=name, shift=inst.name, date=cat.date(inst.day))
             for name, inst in rec.unlogged]
    wrapped = [part for t in tail for part in textwrap.wrap(
        t, _WIDTH, subsequent_indent="  ", break_on_hyphens=False)]
    return "\n".join(out + ([""] + wrapped if wrapped else []))


def _grid(head: tuple[str, ...], rows: list[tuple[str, ...]],
          left: tuple[int, ...] = (0,)) -> list[str]:
    """Columns `left` flush left, the others right."""
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head))]
    left = tuple(i % len(head) for i in left)
    return ["  ".join(c.ljust(w) if i in left else c.rjust(w)
                      for i, (c, w) in enumerate(zip(r, widths))).rstrip()
            for r in (head, *rows)]


def _record(m: Match, rec: Reconciliation) -> dict:
    day = m.shift.day if m.shift else m.period.date
    return {
        "row": m.period.row, "period": m.period.period, "machine": m.machine,
        "date": str(day) if day else None,
        "shift": m.shift.name if m.shift else m.period.shift,
        "from": rec.calendar.iso(m.shift.start) if m.shift else None,
        "to": rec.calendar.iso(m.shift.end) if m.shift else None,
        "matched": m.sensor is not None, "unmatched_why": m.why,
        "logbook": m.logbook.data(), "sensor": m.sensor.data() if m.sensor else None,
        "flags": [{"cause": f.cause, "amount": None if math.isinf(f.amount) else f.amount}
                  for f in m.flags],
    }


def format_json(rec: Reconciliation, lang: str = "en") -> str:
    """Keys and causes are the same in every language (CAUSES); figures are numbers."""
    return json.dumps({
        "from": rec.calendar.iso(rec.start), "to": rec.calendar.iso(rec.end),
        "tolerances": vars(rec.tolerances), "causes": list(CAUSES),
        "periods": [_record(m, rec) for m in rec.matches],
        "unlogged": [{"machine": n, "date": str(i.day), "shift": i.name}
                     for n, i in rec.unlogged]}, indent=2)


def format_csv(rec: Reconciliation, lang: str = "en") -> str:
    """One row per logbook period: logbook_* and sensor_* columns, flags as cause:amount."""
    cols = ["row", "period", "machine", "date", "shift", "from", "to", "matched",
            "unmatched_why"] + [f"{side}_{k}" for k in FIGURES for side in ("logbook", "sensor")
                                ] + ["flags"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, cols, lineterminator="\n")
    w.writeheader()
    for m in rec.matches:
        r = _record(m, rec)
        flat = {k: r[k] for k in cols[:9]}
        for side in ("logbook", "sensor"):
            for k in FIGURES:
                flat[f"{side}_{k}"] = (r[side] or {}).get(k)
        flat["flags"] = ";".join(f"{f['cause']}:{f['amount']:.4g}" if f["amount"] is not None
                                 else f["cause"] for f in r["flags"])
        w.writerow({k: "" if v is None else v for k, v in flat.items()})
    return buf.getvalue()


FORMATS = {"table": format_table, "csv": format_csv, "json": format_json}
