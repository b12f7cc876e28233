"""The shift sheet: one A4 page per machine (timeline, figures, stops, the logbook beside the
sensor, signature lines) as self-contained HTML styled for print, in the catalogue's language.

Its figures are `oee report`'s (build_report over the shift's window) and its comparison is
`oee reconcile`'s: the sheet only lays them out. Any browser prints it; tests/test_sheet.py
prints it to PDF with headless chromium and counts the pages.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .. import oee
from ..i18n import Catalogue, catalogue
from ..timeline import STOP_STATES
from .logbook import Period
from .oee_report import MachineSettings, Report, Row, build_report, read_journal
from .reconcile import Match, Tolerances, reconcile
from .reconcile_tables import figure_rows, flag_text

_W, _H, _BAR = 700, 64, 36  # the timeline's SVG box and its bar, in CSS pixels
_COLOURS = {"RUN": "#2e7d32", "IDLE": "#f9a825", "STOP": "#c62828", "OFF": "#616161",
            "UNKNOWN": "#e0e0e0"}
_MAX_STOPS = 14  # the longest stops listed on a page; the rest are summed in one line
_CSS = """
@page { size: A4; margin: 12mm; }
* { box-sizing: border-box; }
body { font: 9pt/1.3 "DejaVu Sans", Arial, sans-serif; color: #000; margin: 0; }
.page { break-after: page; page-break-after: always; min-height: 265mm; display: flex;
        flex-direction: column; }
.page:last-child { break-after: auto; page-break-after: auto; }
h1 { font-size: 14pt; margin: 0 0 1mm; } h2 { font-size: 10.5pt; margin: 3mm 0 1mm; }
.window { color: #333; margin: 0; }
table { border-collapse: collapse; width: 100%; }
td, th { border: 0.25mm solid #999; padding: 0.4mm 1.2mm; text-align: right; }
td:first-child, th:first-child { text-align: left; }
.ratios td { font-size: 13pt; text-align: center; } .ratios th { text-align: center; }
.cols { display: flex; gap: 5mm; } .cols > div { flex: 1; min-width: 0; }
.flag { color: #b00020; margin: 1mm 0; } .ok { margin: 1mm 0; }
svg { display: block; width: 100%; height: auto; }
.legend span { display: inline-block; margin-right: 4mm; }
.legend i { display: inline-block; width: 3mm; height: 3mm; margin-right: 1mm; }
.sign { margin-top: auto; padding-top: 4mm; display: flex; gap: 10mm; }
.sign div { flex: 1; border: 0.25mm solid #999; padding: 2mm; height: 30mm; }
.sign p { margin: 0 0 6mm; } .foot { font-size: 7.5pt; color: #555; margin: 1mm 0 0; }
"""


@dataclass(frozen=True)
class Sheet:
    """What one shift's sheet shows: the report over the shift and the reconciled periods."""

    shift: oee.ShiftInstance
    report: Report
    matches: Sequence[Match] = ()
    made_s: float = 0.0
    logbook: bool = False  # a logbook was given (else the comparison section is left out)


def build(journal_path, shift: oee.ShiftInstance, *, calendar: oee.Calendar,
          settings: dict[str, MachineSettings], judged: dict, now_s: float,
          periods: Sequence[Period] | None = None, machine: str | None = None,
          tolerances: Tolerances | None = None) -> Sheet:
    """The sheet of `shift` from the journal at `journal_path` (and a logbook's periods).

    judged: build_report's short_stop_s, startup_window_s, planned_maintenance.
    Raises ReportError (no journal, unknown machine), ReconcileError (the logbook's rows).
    """
    events, last_rx = read_journal(journal_path, shift.start, shift.end)
    rep = build_report(events, last_rx, shift.start, shift.end, calendar=calendar,
                       settings=settings, machine=machine, now_s=now_s, **judged)
    matches: list[Match] = []
    if periods is not None:
        matches = reconcile(periods, events, last_rx, calendar=calendar, settings=settings,
                            window=(shift.start, shift.end), machine=machine,
                            tolerances=tolerances or Tolerances(), now_s=now_s,
                            **judged).matches
    return Sheet(shift, rep, matches, now_s, periods is not None)


def render(sheet: Sheet, lang: str = "en") -> str:
    """The sheet as an HTML document: one `.page` per machine."""
    cat = catalogue(lang)
    pages = [_page(sheet, row, cat) for row in sheet.report.rows]
    title = _e(cat.t("sheet.title") + " · " + cat.date(sheet.shift.day))
    return (f'<!doctype html>\n<html lang="{cat.lang}"><head><meta charset="utf-8">'
            f"<title>{title}</title><style>{_CSS}</style></head><body>\n"
            + "\n".join(pages) + "\n</body></html>\n")


def _e(text: object) -> str:
    return html.escape(str(text))


def _tag(tag: str, text: str, cls: str | None = None) -> str:
    attr = f' class="{cls}"' if cls else ""
    return f"<{tag}{attr}>{_e(text)}</{tag}>"


def _page(sheet: Sheet, row: Row, cat: Catalogue) -> str:
    inst, zone = sheet.shift, sheet.report.calendar.zone
    heading = cat.t("sheet.heading", machine=row.machine, shift=inst.name,
                    date=cat.date(inst.day))
    window = cat.t("sheet.window", start=cat.datetime(inst.start, zone),
                   end=cat.datetime(inst.end, zone))
    parts = [
        f'<section class="page" data-machine="{_e(row.machine)}">',
        _tag("h1", heading), _tag("p", window, "window"),
        _tag("h2", cat.t("sheet.timeline")), _timeline(row, inst, cat, zone),
        _tag("h2", cat.t("sheet.figures")), _figures(row, cat),
    ]
    stops = _tag("h2", cat.t("sheet.stops")) + _stops(row, inst, cat, zone)
    if sheet.logbook:  # stops and the logbook side by side, so a page holds both
        mine = [m for m in sheet.matches if m.machine == row.machine and m.shift == inst]
        parts.append(f'<div class="cols"><div>{stops}</div><div>'
                     f'{_tag("h2", cat.t("sheet.reconcile"))}{_comparison(mine, cat)}'
                     "</div></div>")
    else:
        parts.append(stops)
    sign = "".join(
        f"<div><b>{_e(cat.t(who))}</b><p></p><p>{_e(cat.t('sheet.sign.name'))}:</p>"
        f"<p>{_e(cat.t('sheet.sign.signature'))}:</p></div>"
        for who in ("sheet.sign.supervisor", "sheet.sign.technician"))
    parts += [f'<div class="sign">{sign}</div>',
              _tag("p", cat.t("sheet.footer", made=cat.datetime(sheet.made_s, zone)), "foot"),
              "</section>"]
    return "\n".join(parts)


def _clipped(row: Row, inst: oee.ShiftInstance) -> list[tuple[float, float, str, str | None]]:
    """The shift's time as (start, end, state, reason), gaps as UNKNOWN."""
    out, t = [], inst.start
    for s in row.intervals:
        a, b = max(s.start, inst.start), min(s.end, inst.end)
        if b <= a:
            continue
        if a > t:
            out.append((t, a, "UNKNOWN", None))
        out.append((a, b, s.state, s.reason))
        t = b
    if t < inst.end:
        out.append((t, inst.end, "UNKNOWN", None))
    return out


def _timeline(row: Row, inst: oee.ShiftInstance, cat: Catalogue, zone) -> str:
    span = inst.end - inst.start

    def x(ts: float) -> float:
        return round((ts - inst.start) / span * _W, 2)

    rects = "".join(
        f'<rect x="{x(a)}" y="0" width="{max(0.3, x(b) - x(a))}" height="{_BAR}" '
        f'fill="{_COLOURS[state]}"/>' for a, b, state, _ in _clipped(row, inst))
    hours = int(span // 3600)
    step = 1 if hours <= 12 else 2
    ticks = "".join(
        f'<line x1="{x(t)}" y1="{_BAR}" x2="{x(t)}" y2="{_BAR + 5}" stroke="#000"/>'
        f'<text x="{x(t)}" y="{_H - 8}" font-size="11" text-anchor="middle">'
        f"{_e(cat.time(t, zone))}</text>"
        for t in (inst.start + h * 3600 for h in range(0, hours + 1, step)) if t <= inst.end)
    legend = " ".join(f'<span><i style="background:{c}"></i>{_e(cat.state(s))}</span>'
                     for s, c in _COLOURS.items())
    return (f'<svg viewBox="-24 0 {_W + 48} {_H}" xmlns="http://www.w3.org/2000/svg" role="img">'
            f"{rects}{ticks}</svg><div class=\"legend\">{legend}</div>")


def _figures(row: Row, cat: Catalogue) -> str:
    """The ratios with coverage in large type, then the times (minutes) and output."""
    d, r = row.data(), row.result
    ratios = tuple((cat.t(f"rec.fig.{k}"), d[k]) for k in (
        "availability", "performance", "quality", "oee")) + (
        (cat.t("rec.fig.coverage"), d["planned_coverage"]),)
    times = (("rec.fig.planned_min", r.planned_s), ("rec.fig.run_min", r.run_s),
             ("rec.fig.pm_min", r.maintenance_s), ("rec.fig.setup_min", r.setup_s),
             ("rec.fig.breakdown_min", r.breakdown_s))
    output = ((cat.t("rec.fig.good"), r.good + r.unknown_good),
              (cat.t("rec.fig.ng"), r.ng + r.unknown_ng))
    unit = f" ({_e(row.unit)})" if row.unit else ""
    return ('<table class="ratios"><tr>' + "".join(f"<th>{_e(k)}</th>" for k, _ in ratios)
            + "</tr><tr>" + "".join(f"<td>{_e(cat.percent(v))}</td>" for _, v in ratios)
            + "</tr></table><table><tr>"
            + "".join(f"<th>{_e(cat.t(k))}</th>" for k, _ in times)
            + "".join(f"<th>{_e(k)}{unit}</th>" for k, _ in output) + "</tr><tr>"
            + "".join(f"<td>{_e(cat.number(v / 60, 0))}</td>" for _, v in times)
            + "".join(f"<td>{_e(cat.number(v))}</td>" for _, v in output)
            + "</tr></table>")


def _stop_list(row: Row, inst: oee.ShiftInstance) -> list[tuple[float, float, str, str | None]]:
    """Stops in the shift, contiguous stop intervals of one reason joined."""
    out: list[tuple[float, float, str, str | None]] = []
    for a, b, state, reason in _clipped(row, inst):
        if state not in STOP_STATES:
            continue
        if out and out[-1][1] == a and out[-1][3] == reason:
            out[-1] = (out[-1][0], b, out[-1][2], reason)
        else:
            out.append((a, b, state, reason))
    return out


def _stops(row: Row, inst: oee.ShiftInstance, cat: Catalogue, zone) -> str:
    stops = _stop_list(row, inst)
    if not stops:
        return f"<p>{_e(cat.t('sheet.no_stops'))}</p>"
    shown = sorted(sorted(stops, key=lambda s: s[0] - s[1])[:_MAX_STOPS])
    head = "".join(f"<th>{_e(cat.t(k))}</th>" for k in (
        "sheet.col.from", "sheet.col.to", "sheet.col.minutes", "sheet.col.state",
        "sheet.col.reason"))
    body = "".join(
        f"<tr><td>{_e(cat.time(a, zone))}</td><td>{_e(cat.time(b, zone))}</td>"
        f"<td>{_e(cat.number((b - a) / 60, 1))}</td><td>{_e(cat.state(st))}</td>"
        f"<td>{_e(cat.reason(rs) if rs else cat.t('sheet.no_reason'))}</td></tr>"
        for a, b, st, rs in shown)
    rest = [s for s in stops if s not in shown]
    minutes = cat.number(sum(b - a for a, b, *_ in rest) / 60, 1)
    more = _tag("p", cat.t("sheet.more_stops", n=len(rest), minutes=minutes)) if rest else ""
    return f"<table><tr>{head}</tr>{body}</table>{more}"


def _comparison(matches: Iterable[Match], cat: Catalogue) -> str:
    matches = [m for m in matches if m.sensor is not None]
    if not matches:
        return f"<p>{_e(cat.t('sheet.no_logbook'))}</p>"
    out = []
    for m in matches:
        head, rows = figure_rows(cat, m)
        out.append("<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>"
                   + "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>"
                             for r in rows) + "</table>")
        out += [f'<p class="flag">! {_e(flag_text(cat, f))}</p>' for f in m.flags] or [
            f'<p class="ok">= {_e(cat.t("rec.ok"))}</p>']
    return "".join(out)
