"""OEE from a hand-kept logbook CSV (one row per period): parse strictly per locale, then sum."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from .. import oee
from ..errors import InputFileError
from ..i18n import Catalogue, catalogue

COLUMNS = ("period", "available_min", "pm_min", "setup_min", "breakdown_min", "processed",
           "good", "ideal_cycle_s")
# Optional, for `oee reconcile` (docs/oee.md, "Logbook and sensor side by side"): the local
# date (ISO, 2026-03-02) and calendar shift name a period covers, and the machine it is of.
MATCH_COLUMNS = ("date", "shift", "machine")
# Thousands and decimal separator per locale: `en` writes 5,325,000.5, `id` writes 5.325.000,5.
SEPARATORS = {"en": (",", "."), "id": (".", ",")}
_NUMBER = {
    loc: re.compile(rf"([+-]?)(\d{{1,3}}(?:{re.escape(g)}\d{{3}})+|\d+)?(?:{re.escape(d)}(\d+))?")
    for loc, (g, d) in SEPARATORS.items()
}
# Sums of decimal minutes pick up float noise (0.1 + 0.2 > 0.3); this is far below a second.
_SLACK = 1e-9


def parse_number(text: str, locale: str = "en") -> float:
    """A number written in `locale`; group separators must sit every three digits.

    Raises ValueError saying how numbers are written in that locale.
    """
    group, dec = SEPARATORS[locale]
    m = _NUMBER[locale].fullmatch(text.strip())
    if not m or (m.group(2) is None and m.group(3) is None):
        hint = "; use --locale id for decimal commas" if locale == "en" and "," in text else ""
        raise ValueError(f"{text.strip()!r} is not a number in locale {locale} "
                         f"(thousands {group!r}, decimal {dec!r}){hint}")
    whole = (m.group(2) or "0").replace(group, "")
    return float(f"{m.group(1)}{whole}.{m.group(3) or '0'}")


@dataclass(frozen=True)
class Period:
    """One logbook row, numbers parsed; minutes, units and seconds per unit as in the CSV."""

    period: str
    available_min: float
    pm_min: float
    setup_min: float
    breakdown_min: float
    processed: float
    good: float
    ideal_cycle_s: float
    row: int = 0
    date: date | None = None
    shift: str | None = None
    machine: str | None = None


@dataclass(frozen=True)
class Summary:
    """The sums OEE is computed from, for one period or for the TOTAL of several."""

    period: str
    planned_min: float
    run_min: float
    ideal_total_s: float
    ideal_good_s: float

    @classmethod
    def of(cls, p: Period, pm_policy: str = oee.DEFAULT_PM_POLICY) -> Summary:
        # Where PM goes is the policy's, decided by the same function as in the engine
        # (oee.planned_time): an availability loss by default, or planned downtime.
        planned = oee.planned_time(p.available_min, p.pm_min, pm_policy)
        return cls(p.period, planned, p.available_min - p.pm_min - p.setup_min - p.breakdown_min,
                   p.processed * p.ideal_cycle_s, p.good * p.ideal_cycle_s)

    @classmethod
    def total(cls, parts: Iterable[Summary], label: str = "TOTAL") -> Summary:
        """Sums of the columns, never an average of percentages."""
        parts = list(parts)
        return cls(label, sum(s.planned_min for s in parts), sum(s.run_min for s in parts),
                   sum(s.ideal_total_s for s in parts), sum(s.ideal_good_s for s in parts))

    @property
    def ratios(self) -> oee.Ratios:
        # Clamp float noise only: validation already refused run time below zero.
        run = max(0.0, self.run_min) * 60
        return oee.ratios(self.planned_min * 60, run, self.ideal_total_s, self.ideal_good_s)


def _fail(name: str, row: int, column: str | None, problem: str) -> InputFileError:
    where = f"row {row}" + (f", column {column}" if column else "")
    return InputFileError(f"{name}: {where}: {problem}")


def _decode(data: bytes) -> str:
    # Undecodable bytes become lone surrogates, caught per cell so the error names row and column.
    return data.decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")


def _cell(name: str, row: int, column: str, value: str | None) -> str:
    if value is None:
        raise _fail(name, row, column, "missing value (the row has fewer fields than the header)")
    bad = re.search("[\udc80-\udcff]", value)
    if bad:
        byte = ord(bad.group()) - 0xDC00
        raise _fail(name, row, column, f"not UTF-8 text (byte 0x{byte:02x}); save as CSV UTF-8")
    return value.strip()


def _period(name: str, row: int, rec: dict, locale: str) -> Period:
    period = _cell(name, row, "period", rec["period"])
    if not period:
        raise _fail(name, row, "period", "empty")
    nums = {}
    for col in COLUMNS[1:]:
        text = _cell(name, row, col, rec[col])
        if not text:
            raise _fail(name, row, col, "empty")
        try:
            nums[col] = parse_number(text, locale)
        except ValueError as exc:
            raise _fail(name, row, col, str(exc)) from None
        if nums[col] < 0:
            raise _fail(name, row, col, f"must not be negative ({text})")
    for col, value in rec.items():
        if col not in COLUMNS and value is not None:
            _cell(name, row, col, value)
    p = Period(period, row=row, **nums, **_match(name, row, rec))
    if p.ideal_cycle_s == 0:
        raise _fail(name, row, "ideal_cycle_s", "must be greater than 0")
    if p.good > p.processed * (1 + _SLACK):
        raise _fail(name, row, "good", f"{rec['good'].strip()} exceeds processed "
                                       f"({rec['processed'].strip()})")
    lost = p.pm_min + p.setup_min + p.breakdown_min
    if lost > p.available_min * (1 + _SLACK) + _SLACK:
        raise _fail(name, row, "available_min", f"{rec['available_min'].strip()} is less than "
                    f"pm_min + setup_min + breakdown_min ({lost:g})")
    if p.processed > 0 and Summary.of(p).run_min <= _SLACK:
        raise _fail(name, row, "processed", f"{rec['processed'].strip()} units processed "
                    "with no run time (available - pm - setup - breakdown = 0)")
    return p


def _match(name: str, row: int, rec: dict) -> dict:
    """The optional date, shift and machine cells (None when absent or empty)."""
    out = {col: (rec.get(col) or "").strip() or None for col in MATCH_COLUMNS}
    if out["date"] is not None:
        try:
            out["date"] = date.fromisoformat(out["date"])
        except ValueError:
            raise _fail(name, row, "date", f"{out['date']!r} is not a date like 2026-03-02"
                        ) from None
    return out


def parse_logbook(data: bytes, name: str, locale: str = "en") -> list[Period]:
    """Periods of a logbook CSV given as bytes; `name` is used in messages.

    The delimiter is `;` when the header has more semicolons than commas, else `,`.
    Raises InputFileError naming the row (header = row 1) and column of the first problem.
    """
    if locale not in SEPARATORS:
        raise InputFileError(f"unknown locale {locale!r}; expected one of {', '.join(SEPARATORS)}")
    text = _decode(data)
    if not text.strip():
        raise InputFileError(f"{name}: empty file; row 1 must be the header: {','.join(COLUMNS)}")
    first = text.lstrip().splitlines()[0]
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        return _periods(name, reader, locale)
    except csv.Error as exc:
        raise _fail(name, reader.line_num, None, f"not valid CSV: {exc}") from None


def _periods(name: str, reader, locale: str) -> list[Period]:
    header = next(r for r in reader if r)
    head_row = reader.line_num
    names = [_cell(name, head_row, f"{i + 1}", h).lower() for i, h in enumerate(header)]
    for col in COLUMNS:
        if col not in names:
            raise _fail(name, head_row, col, f"missing from the header ({','.join(COLUMNS)})")
        if names.count(col) > 1:
            raise _fail(name, head_row, col, "appears twice in the header")
    periods = []
    for fields in reader:
        if not any(f.strip() for f in fields):
            continue
        if len(fields) > len(names):
            raise _fail(name, reader.line_num, None, f"{len(fields)} fields but the header has "
                        f"{len(names)} (is a decimal comma unquoted in a ','-separated file?)")
        rec = dict(zip(names, fields + [None] * (len(names) - len(fields))))
        periods.append(_period(name, reader.line_num, rec, locale))
    if not periods:
        raise InputFileError(f"{name}: no periods after the header (row {head_row})")
    return periods


def read_logbook(path: str | Path, locale: str = "en") -> list[Period]:
    """Periods of the logbook CSV at `path`; InputFileError if unreadable or malformed."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return parse_logbook(data, str(path), locale)


def summarize(periods: Iterable[Period],
              pm_policy: str = oee.DEFAULT_PM_POLICY) -> tuple[list[Summary], Summary]:
    """A Summary per period and the TOTAL computed from the summed columns.

    pm_policy: "availability_loss" (default: A = (available - PM - setup - breakdown) /
    available) or "planned_stop" (A = run / (available - PM)); see oee.planned_time.
    """
    rows = [Summary.of(p, pm_policy) for p in periods]
    return rows, Summary.total(rows)


def _minutes(value: float, cat: Catalogue) -> str:
    if cat.lang == "en":  # as this table always wrote them: 4365, 437.5
        return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"
    return cat.number(value, 1)


def format_table(rows: list[Summary], total: Summary, lang: str = "en") -> str:
    """An aligned text table, percentages with one decimal; `-` where a ratio is undefined.
    `lang`: en or id (host/i18n)."""
    cat = catalogue(lang)
    head = tuple(cat.t(f"calc.head.{k}") for k in (
        "period", "run_min", "availability", "performance", "quality")) + ("OEE",)
    body = []
    for s in [*rows, total]:
        r = s.ratios
        period = cat.t("calc.total") if s is total else s.period
        body.append((period, _minutes(s.run_min, cat),
                     *map(cat.percent, (r.availability, r.performance, r.quality, r.oee))))
    widths = [max(len(line[i]) for line in [head, *body]) for i in range(len(head))]

    def fmt(line):
        cells = [line[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(line[1:], widths[1:])]
        return "  ".join(cells).rstrip()

    out = [fmt(head), *(fmt(line) for line in body[:-1]), "", fmt(body[-1])]
    if any("-" in line[2:] for line in body):
        out.append(cat.t("calc.undefined"))
    return "\n".join(out)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def report(rows: list[Summary], total: Summary) -> dict:
    """The JSON shape: ratios as fractions rounded to 4 decimals, None when undefined."""

    def one(s: Summary) -> dict:
        r = s.ratios
        return {"period": s.period, "run_min": _round(s.run_min),
                "availability": _round(r.availability), "performance": _round(r.performance),
                "quality": _round(r.quality), "oee": _round(r.oee)}

    return {"periods": [one(s) for s in rows], "total": one(total)}
