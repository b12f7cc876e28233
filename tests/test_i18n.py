"""Bahasa Indonesia (issue 18): the catalogues match key for key, numbers and dates follow the
locale, and with `id` no English word is left: every table, the shift sheet and the board are
rendered in Indonesian and every word is checked against the Indonesian catalogue's words
plus a short list of terms both languages share (and the plant's own names)."""

from __future__ import annotations

import re
import string
from datetime import date
from html.parser import HTMLParser

import pytest
from babel.dates import get_day_names, get_month_names
from lampwatch import config, i18n, oee, report
from lampwatch.board import pages
from lampwatch.events import Event
from lampwatch.i18n import catalogue, en
from lampwatch.i18n import id as id_
from lampwatch.report import oee_report, reconcile_tables, sheet
from lampwatch.report.logbook import Period
from lampwatch.report.reconcile import CAUSES, Figures, Flag, Match, Reconciliation, Tolerances

WORD = re.compile(r"[^\W\d_]+(?:_[^\W\d_]+)*")  # letters; a config key like ideal_cycle_s whole
FIELD = re.compile(r"\{\w+\}|[\w/]+\.md\b")  # a {field}, or a file like docs/oee.md
# Written the same in both languages: the formula's letters and OEE, NG (the shop floor's word
# for a reject), PIN, Andon (the board's Japanese name), the product, a config key, and two
# words that are Indonesian too (KBBI: data, sensor).
SHARED = {"A", "P", "Q", "OEE", "NG", "PIN", "Andon", "lampwatch", "ideal_cycle_s", "data",
          "sensor"}
# The plant's own names in the renders below (machines, shifts, units, logbook periods)
NAMES = {"huller", "polisher", "pagi", "siang", "malam", "kg", "karung"}


def words(text: str) -> set[str]:
    return set(WORD.findall(FIELD.sub(" ", text)))


def vocabulary(messages: dict) -> set[str]:
    return {w for k, v in messages.items() if not k.startswith("format.") for w in words(v)}


ID_WORDS = vocabulary(id_.MESSAGES) | {
    w for names in (get_month_names("abbreviated", locale="id"), get_month_names(locale="id"),
                    get_day_names(locale="id"), get_day_names("abbreviated", locale="id"))
    for name in names.values() for w in words(name)}


def english_left(text: str, names: set[str] = NAMES) -> set[str]:
    """The words of `text` that are not Indonesian (catalogue, babel's month and day names),
    shared terms or the plant's names."""
    return words(text) - ID_WORDS - SHARED - names


# --- the catalogues ---------------------------------------------------------------------------

def test_no_key_is_missing_in_either_catalogue_and_fields_match():
    assert set(en.MESSAGES) == set(id_.MESSAGES)
    for key, text in en.MESSAGES.items():
        fields = {f for _, f, _, _ in string.Formatter().parse(text) if f}
        assert fields == {f for _, f, _, _ in string.Formatter().parse(id_.MESSAGES[key]) if f}, key
        assert text.strip() and id_.MESSAGES[key].strip(), key
    # every state and reason the engine knows has its name
    for s in oee.STATES:
        assert f"state.{s}" in en.MESSAGES
    for r in oee.REASONS:
        assert f"reason.{r}" in en.MESSAGES


def test_the_indonesian_catalogue_shares_only_the_listed_terms_with_english():
    assert vocabulary(id_.MESSAGES) & vocabulary(en.MESSAGES) <= SHARED


def test_the_language_lists_agree():
    assert i18n.LANGS == report.LANGS == config.BOARD_LANGS
    with pytest.raises(i18n.LangError, match="unknown language 'fr'"):
        catalogue("fr")


def test_numbers_and_dates_per_locale():
    c, e = catalogue("id"), catalogue("en")
    assert (c.number(5_325_000), c.number(0.6), c.number(1234.5)) == ("5.325.000", "0,6", "1.234,5")
    assert (e.number(5_325_000), e.number(0.6), e.number(1234.5)) == ("5,325,000", "0.6", "1,234.5")
    assert (c.percent(0.8754), e.percent(0.8754), e.percent(78.89)) == ("87,5%", "87.5%",
                                                                         "7889.0%")
    assert e.percent(0.8754) == oee.percent(0.8754)
    assert c.number(40.0, 1, exact=True) == "40,0" and c.number(40.0) == "40"
    assert c.date(date(2026, 3, 2)) == "Senin, 2 Mar 2026"
    assert e.date(date(2026, 3, 2)) == "Mon 2 Mar 2026"
    assert (c.reason("planned_maintenance"), c.reason("breakdown"), c.reason("setup")) == (
        "Perawatan terencana", "Kerusakan", "Penyetelan")
    assert [c.t(f"rec.fig.{k}") for k in ("availability", "performance", "quality")] == [
        "ketersediaan (A)", "kinerja (P)", "kualitas (Q)"]


# --- every string rendered in Indonesian ------------------------------------------------------

CAL = oee.Calendar("Asia/Jakarta", (oee.Shift("pagi", "06:00", "14:00",
                                              breaks=(oee.Break("10:00", "10:30"),)),))
T0 = CAL.at(date(2026, 3, 2), 6 * 3600)
H = 3600.0


def every_note_report() -> oee_report.Report:
    """A report with every note and warning the tables write: a machine without an ideal
    cycle, two units, output in unknown time and outside planned time, host clock steps,
    performance over 100 %."""
    ev = []
    for node, machine in ((1, "huller"), (2, "polisher")):
        ev += [Event(T0 - 60, "hello", node, machine, {"heartbeat_ms": 10000}),
               Event(T0 - 60, "state", node, machine, {"state": "RUN"}),
               Event(T0 + H, "state", node, machine, {"state": "STOP"}),
               Event(T0 + 2 * H, "state", node, machine, {"state": "RUN"}),
               Event(T0 + 3 * H, "state", node, machine, {"state": "UNKNOWN"}),
               Event(T0 + 4 * H, "state", node, machine, {"state": "RUN"})]
        ev += [Event(T0 + k * 600, "count", node, machine, {"good": 900, "ng": 5})
               for k in range(1, 48)]
        ev.append(Event(T0 + 4.25 * H, "count", node, machine, {"good": 7, "ng": 1}))  # break
        ev.append(Event(T0 + 3.5 * H, "count", node, machine, {"good": 40, "ng": 1}))
    ev += [Event(T0 + 5 * H, "clock", None, None, {"step_s": 3600}),
           Event(T0 + 6 * H, "clock", None, None, {"step_s": -3600})]
    settings = {"huller": oee_report.MachineSettings(1.0, 10, "kg"),
                "polisher": oee_report.MachineSettings(None, 10, "karung")}
    rep = oee_report.build_report(ev, {1: T0 + 8 * H, 2: T0 + 8 * H}, T0, T0 + 8 * H,
                                  calendar=CAL, settings=settings)
    assert len(rep.warnings) == 4  # two clock steps, performance over 100 % (huller, plant)
    return rep


def test_the_report_tables_in_indonesian_have_no_english_word():
    rep = every_note_report()
    notes = oee_report.format_table(rep, lang="id")
    for phrase in ("tanpa polisher", "keluaran pabrik", "keluaran pada waktu tak diketahui",
                   "terhitung di luar waktu terencana", "maju 3.600 detik",
                   "mundur 3.600 detik", "huller: kinerja 173,7% di atas 100%",
                   "semua: kinerja"):
        assert phrase in " ".join(notes.split()), phrase
    for wide in (False, True):
        text = oee_report.format_table(rep, wide=wide, lang="id")
        assert english_left(text) == set(), text
        en_text = oee_report.format_table(rep, wide=wide, lang="en")
        assert english_left(en_text) >= {"machine", "good", "warning"}  # the check can fail
    assert max(map(len, oee_report.format_table(rep, lang="id").splitlines())) <= 80
    assert "ketersediaan" in oee_report.format_table(rep, lang="id")


def test_the_logbook_table_in_indonesian_has_no_english_word():
    from pathlib import Path

    from lampwatch.report import logbook

    example = Path(__file__).resolve().parent.parent / "examples" / "logbook-id.csv"
    rows, total = logbook.summarize(logbook.read_logbook(example, "id"))
    text = logbook.format_table(rows, total, "id")
    assert "JUMLAH         4.365         85,6%" in text
    assert english_left(text, NAMES | {"S"}) == set(), text  # periods: Sen S1, Sen S2, ...


def every_flag_reconciliation() -> Reconciliation:
    inst = CAL.shifts_between(T0, T0 + 1)[0]
    day = date(2026, 3, 2)
    f = Figures(480, 400, 10, 20, 50, 30, 1000, 20, 0.8, 0.9, 0.98, 0.7, 0.9)
    period = Period("pagi 2 Mar", 480, 10, 20, 50, 1020, 1000, 1.0, row=2, date=day,
                    shift="pagi")
    flags = tuple(Flag(c, 30.0 if c != "output_mismatch" else -0.05) for c in CAUSES)
    matches = [Match(period, "huller", f, inst, f, flags), Match(period, "huller", f, inst, f)]
    matches += [Match(Period("malam", 480, 0, 0, 0, 1, 1, 1.0, row=3 + k, date=day, shift="malam"),
                      "huller", f, why=why)
                for k, why in enumerate(("no_columns", "no_shift", "no_machine"))]
    return Reconciliation(T0, T0 + 8 * H, CAL, Tolerances(), matches, [("polisher", inst)])


def test_the_reconcile_table_in_indonesian_has_no_english_word():
    rec = every_flag_reconciliation()
    text = reconcile_tables.format_table(rec, lang="id")
    for cause in CAUSES:  # every flag is written
        assert catalogue("id").t(f"rec.flag.{cause}").split(":")[0] in text
    assert english_left(text) == set(), text
    assert max(map(len, text.splitlines())) <= 80
    wide = reconcile_tables.format_table(rec, lang="id", wide=True)
    assert all(catalogue("id").t(f"rec.cause.{c}") in wide for c in CAUSES)
    assert english_left(wide) == set(), wide


class _Text(HTMLParser):
    """The text a reader sees: text nodes outside <style>, and the title."""

    def __init__(self):
        super().__init__()
        self.parts, self._skip = [], False

    def handle_starttag(self, tag, attrs):
        self._skip = tag in ("style", "script")

    def handle_endtag(self, tag):
        self._skip = False

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def visible_text(page: str) -> str:
    p = _Text()
    p.feed(page)
    return " ".join(p.parts)


def test_the_shift_sheet_in_indonesian_has_no_english_word():
    rep = every_note_report()
    rec = every_flag_reconciliation()
    made = sheet.Sheet(CAL.shifts_between(T0, T0 + 1)[0], rep, rec.matches, T0 + 9 * H, True)
    page = sheet.render(made, "id")
    text = visible_text(page)
    assert "Pengawas sif" in text and "Teknisi" in text and "Perawatan" not in text[:0]
    assert english_left(text) == set(), text
    assert english_left(visible_text(sheet.render(made, "en"))) >= {"Technician"}


def test_the_board_page_in_indonesian_has_no_english_word():
    page = pages.index_page(catalogue("id")).decode()
    assert english_left(visible_text(page)) == set()
    assert '<html lang="id">' in page and "{{" not in page


# --- choosing the language ---------------------------------------------------------------------

def test_board_lang_in_the_config(tmp_path):
    from lampwatch.config import load_config
    from lampwatch.errors import ConfigError

    base = ('[collector]\nudp_listen = false\njournal = "j.sqlite"\n'
            '[calendar]\ntime_zone = "UTC"\n')
    path = tmp_path / "c.toml"
    path.write_text(base)
    assert load_config(path).board_lang == "en"
    path.write_text(base + '[board]\nlisten = false\nlang = "id"\n')
    assert load_config(path).board_lang == "id"
    path.write_text(base + '[board]\nlisten = false\nlang = "fr"\n')
    with pytest.raises(ConfigError, match=r"board\.lang.*must be one of en, id, not 'fr'"):
        load_config(path)


def test_the_report_command_takes_the_config_language_and_lang_overrides_it(tmp_path):
    from click.testing import CliRunner
    from lampwatch.cli import cli
    from lampwatch.journal import Journal

    base = ('[collector]\nudp_listen = false\njournal = "j.sqlite"\n'
            '[calendar]\ntime_zone = "UTC"\n')
    path = tmp_path / "c.toml"
    path.write_text(base + '[board]\nlisten = false\nlang = "id"\n')
    Journal(tmp_path / "j.sqlite").close()

    def table(*extra):
        res = CliRunner().invoke(cli, ["oee", "report", "--config", str(path), "--day",
                                       "2026-03-02", *extra], standalone_mode=False)
        assert res.exception is None, res.output
        return res.output

    assert "enam kerugian besar" in table() and english_left(table()) == set()
    assert "six big losses" in table("--lang", "en")
