"""Operator- and supervisor-facing text in English and Bahasa Indonesia, numbers and dates.

One catalogue per language (host/i18n/en.py, host/i18n/id.py: key -> text with `{name}`
fields); tests/test_i18n.py holds them to the same keys and walks every rendered string.
Numbers and dates are formatted with babel's CLDR data, so `id` writes 5.325.000 and 0,6.
The English catalogue's percent and count formats are the report's own (host/oee.percent),
so an English table reads exactly as it did before catalogues.
"""

from __future__ import annotations

import functools
from datetime import date, datetime, tzinfo

from babel.dates import format_date, format_datetime, format_time
from babel.numbers import format_decimal

from ..errors import LampwatchError
from . import en
from . import id as id_

__all__ = ["LANGS", "Catalogue", "LangError", "catalogue"]

LANGS = ("en", "id")
_MESSAGES = {"en": en.MESSAGES, "id": id_.MESSAGES}
_LOCALE = {"en": "en_GB", "id": "id_ID"}


class LangError(LampwatchError):
    """An unknown language, or a key missing from a catalogue."""


class Catalogue:
    """The texts, number and date formats of one language."""

    def __init__(self, lang: str):
        if lang not in _MESSAGES:
            raise LangError(f"unknown language {lang!r}; expected one of {', '.join(LANGS)}")
        self.lang, self.locale = lang, _LOCALE[lang]
        self.messages = _MESSAGES[lang]

    def t(self, key: str, **fields) -> str:
        """The text of `key` with its fields filled in. Raises LangError for an unknown key."""
        try:
            text = self.messages[key]
        except KeyError:
            raise LangError(f"no text {key!r} in the {self.lang} catalogue") from None
        return text.format(**fields) if fields else text

    def reason(self, reason: str | None) -> str:
        """A stop reason's name (host/losses.REASONS); '-' for none."""
        return "-" if reason is None else self.t(f"reason.{reason}")

    def state(self, state: str | None) -> str:
        return self.t(f"state.{state or 'UNKNOWN'}")

    def percent(self, ratio: float | None, digits: int = 1) -> str:
        """0.8754 -> '87.5%' (en, exactly as host/oee.percent) or '87,5%' (id); None -> '-'."""
        if ratio is None:
            return "-"
        if self.lang == "en":
            return f"{100 * ratio:.{digits}f}%"
        pattern = "0" + ("." + "0" * digits if digits else "")
        return format_decimal(100 * ratio, format=pattern, locale=self.locale) + "%"

    def number(self, value: float | None, digits: int = 1, *, exact: bool = False) -> str:
        """A figure with the locale's separators and `digits` decimals, which are left out
        when they are all 0 unless `exact`: en 5,325,000.5, id 5.325.000,5; None -> '-'."""
        if value is None:
            return "-"
        if self.lang == "en":  # Python's own format: the report's tables, byte for byte
            text, point = f"{value:,.{digits}f}", "."
        else:
            pattern = "#,##0" + ("." + "0" * digits if digits else "")
            text, point = format_decimal(value, format=pattern, locale=self.locale), ","
        return text if exact or not digits else text.removesuffix(point + "0" * digits)

    def date(self, day: date) -> str:
        """A local date: 'Mon 2 Mar 2026' / 'Senin, 2 Mar 2026'."""
        return format_date(day, self.t("format.date"), locale=self.locale)

    def datetime(self, ts: float, zone: tzinfo) -> str:
        """Epoch seconds as a local date and time: '2 Mar 2026 06:00'."""
        return format_datetime(datetime.fromtimestamp(ts, zone), self.t("format.datetime"),
                               tzinfo=zone, locale=self.locale)

    def time(self, ts: float, zone: tzinfo) -> str:
        return format_time(datetime.fromtimestamp(ts, zone), "HH:mm", tzinfo=zone,
                           locale=self.locale)


@functools.cache
def catalogue(lang: str = "en") -> Catalogue:
    """The Catalogue of `lang` ('en' or 'id'). Raises LangError for another language."""
    return Catalogue(lang)
