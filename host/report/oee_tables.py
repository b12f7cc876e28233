"""`lampwatch oee report` as text, CSV and JSON: the tables, the notes under them, warnings."""

from __future__ import annotations

import csv
import io
import json
import textwrap
from typing import TYPE_CHECKING, Any

from ..i18n import catalogue
from ..timeline import LOSS_KEYS

if TYPE_CHECKING:
    from ..i18n import Catalogue
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


# --- i18n (issue 18): what the tables say comes from the catalogue (host/i18n, keys
# report.*, loss.*), so `--lang id` writes them in Bahasa Indonesia with id numbers.
_HEAD = ("report.head.machine", "A", "P", "Q", "OEE", "report.head.good", "report.head.ng")
_HEAD_WIDE = ("report.head.planned_h", "report.head.run_h", "report.head.unknown_h")
_LOSSES = ("breakdown", "setup", "pm", "minor", "speed", "defects", "startup")
_MACHINE_W = 14  # in 80 columns a longer name ends in an ellipsis (--wide: whole)


def _head(cat: Catalogue, wide: bool) -> tuple[str, ...]:
    words = [cat.t(k) if "." in k else k for k in _HEAD]
    words += [cat.t(k) for k in _HEAD_WIDE] if wide else []
    return (*words, cat.t("report.head.coverage"))


def _loss_head(cat: Catalogue, wide: bool) -> tuple[str, ...]:
    return (cat.t("report.head.machine"),
            *(cat.t(f"loss.wide.{k}" if wide else f"loss.{k}") for k in _LOSSES))


def format_table(report: Report, wide: bool = False, lang: str = "en") -> str:
    """The report as text: machines in line order, then the plant, then notes; within 80
    columns unless `wide` (every column, whole machine names). Coverage is the share of
    planned time with a known state. `lang`: en or id (host/i18n)."""
    cat = catalogue(lang)
    lines, losses = [], []
    for row in [*report.rows, report.plant]:
        r = row.data()
        name = row.machine if wide or len(row.machine) <= _MACHINE_W else (
            row.machine[:_MACHINE_W - 1] + "…")
        name = cat.t("report.all") if row is report.plant else name
        ratios = (r["availability"], r["performance"], r["quality"], r["oee"])
        hours = tuple(None if v is None else cat.number(v / 3600, 2, exact=True)
                      for v in (r["planned_s"], r.get("run_s"), r.get("unknown_s"))
                      ) if wide else ()
        lines.append((name, *map(cat.percent, ratios), cat.number(r["good"]),
                      cat.number(r["ng"]), *(h or "-" for h in hours),
                      cat.percent(r["planned_coverage"])))
        losses.append((name, *(cat.number(None if r["losses"][k] is None else
                                          r["losses"][k] / 60, 1, exact=True)
                               for k in LOSS_KEYS)))
    # English keeps ISO 8601 (scripts read it); other languages their local date and time
    when = report.calendar.iso if cat.lang == "en" else (
        lambda ts: cat.datetime(ts, report.calendar.zone))
    out = [cat.t("report.title", start=when(report.start), end=when(report.end)), ""]
    out += _grid(_head(cat, wide), lines)
    out += ["", cat.t("report.losses")] + _grid(_loss_head(cat, wide), losses)
    if not wide:
        out += textwrap.wrap(cat.t("report.legend"), 80, break_on_hyphens=False)
    return "\n".join(out + _notes(report, cat))


def _when(report: Report, t: float, cat: Catalogue) -> str:
    """A config version's bound, clipped to the window: ISO 8601 in English, else local."""
    t = min(max(t, report.start), report.end)
    return report.calendar.iso(t) if cat.lang == "en" else cat.datetime(t, report.calendar.zone)


def _warnings(report: Report, cat: Catalogue) -> list[str]:
    """The report's warnings in the catalogue's language (as written, when a warning has no
    catalogue key)."""
    notices = report.notices
    if cat.lang == "en" or len(notices) != len(report.warnings):
        return list(report.warnings)
    from .oee_report import notice_text  # (oee_report imports this module)

    plant = report.plant.machine  # the plant row's name is a word, translated too
    return [notice_text(key, {**fields, **({"machine": cat.t("report.all")}
                                           if fields.get("machine") == plant else {})},
                        cat, report.calendar)
            for key, fields in notices]


def _notes(report: Report, cat: Catalogue) -> list[str]:
    """Lines under the tables: what the plant row leaves out, output by unit, output outside
    planned time and in unknown time, warnings."""
    notes = []
    plant = report.plant
    n = cat.number
    if plant.left_out and len(plant.left_out) < len(plant.rows):
        notes.append(cat.t("report.left_out", machines=", ".join(plant.left_out)))
    if len(plant.units) > 1:
        notes.append(cat.t("report.units", units="; ".join(
            cat.t("report.unit", good=n(g), ng=n(ng), unit=unit)
            for unit, (g, ng) in plant.units.items())))
    for row in report.rows:
        r = row.result
        if n(r.unknown_good) != "0" or n(r.unknown_ng) != "0":
            notes.append(cat.t("report.unknown", machine=row.machine, good=n(r.unknown_good),
                               ng=n(r.unknown_ng)))
        if n(r.excluded_good) != "0" or n(r.excluded_ng) != "0":
            notes.append(cat.t("report.outside", machine=row.machine, good=n(r.excluded_good),
                               ng=n(r.excluded_ng)))
    notes += [cat.t("report.config" if v.version else "report.config_none",
                    version=v.version, hash=v.hash[:8], start=_when(report, v.start, cat),
                    end=_when(report, v.end, cat)) for v in report.versions]
    notes += [cat.t("report.warning", text=w) for w in _warnings(report, cat)]
    wrapped = [part for note in notes for part in textwrap.wrap(
        note, 80, subsequent_indent="  ", break_on_hyphens=False)]
    return [""] + wrapped if wrapped else []
# --- end i18n


def _grid(head: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]

    def fmt(cells):
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths)))
    return [fmt(head), *(fmt(r) for r in rows)]
