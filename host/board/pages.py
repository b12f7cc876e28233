"""The board's pages in its language: index.html's texts filled in, and the print view."""

from __future__ import annotations

import html
import json
import re
from datetime import date
from pathlib import Path
from typing import Any

from ..i18n import Catalogue
from ..report import oee_report, reconcile, sheet

STATIC_DIR = Path(__file__).resolve().parent / "static"
# The shift sheet is one self-contained document: its own <style>, inline SVG, no script.
PRINT_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"
_FIELD = re.compile(r"\{\{([\w.]+)\}\}")  # index.html's {{key}}
_JS_KEYS = ("board.", "state.", "reason.")  # the texts board.js writes
_BCP47 = {"en": "en-GB", "id": "id-ID"}


def index_page(cat: Catalogue) -> bytes:
    """index.html with the catalogue's texts, and those board.js writes as a JSON block."""
    labels = {k: v for k, v in cat.messages.items() if k.startswith(_JS_KEYS)}
    labels["locale"] = _BCP47[cat.lang]
    fields = {"lang": cat.lang,
              "labels": json.dumps(labels, ensure_ascii=False).replace("</", "<\\/")}
    text = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    return _FIELD.sub(lambda m: fields[m[1]] if m[1] in fields else html.escape(cat.t(m[1])),
                      text).encode()


def shift_sheet(cfg: Any, shift: str | None, day: str | None, now_s: float,
                lang: str) -> str:
    """The sheet of shift `shift` starting on `day` (ISO), or with neither of the running
    shift, else the last one that ended. Reads the journal: call it off the loop.

    Raises ReportError (no such shift, no journal).
    """
    calendar, settings, judged = oee_report.from_config(cfg)
    if shift and day:
        try:
            inst = reconcile.instance_of(calendar, date.fromisoformat(day), shift)
        except ValueError:
            raise oee_report.ReportError(f"date {day[:20]!r} is not like 2026-03-02") from None
        if inst is None:
            raise oee_report.ReportError(f"no shift {shift[:40]!r} on {day}")
    else:
        start, _ = oee_report.shift_window("current", calendar, now_s)
        inst = next(i for i in calendar.shifts_between(start, start + 1) if i.start == start)
    made = sheet.build(cfg.journal_path, inst, calendar=calendar, settings=settings,
                       judged=judged, now_s=now_s)
    return sheet.render(made, lang)
