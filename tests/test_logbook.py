"""Logbook CSV: strict per-locale numbers, exact per-period and TOTAL values, malformed rows."""

import pytest
from lampwatch.errors import InputFileError
from lampwatch.oee import Calendar, CountEvent, Shift, StateInterval, evaluate
from lampwatch.report import logbook
from lampwatch.report.logbook import Summary, parse_logbook, parse_number, summarize

HEADER = "period,available_min,pm_min,setup_min,breakdown_min,processed,good,ideal_cycle_s\n"


def rows(text, locale="en", pm="availability_loss"):
    return summarize(parse_logbook(text.encode(), "week.csv", locale), pm)


def error(data, locale="en"):
    with pytest.raises(InputFileError) as exc:
        parse_logbook(data if isinstance(data, bytes) else data.encode(), "week.csv", locale)
    return str(exc.value)


@pytest.mark.parametrize("text, value", [
    ("5,325,000", 5325000), ("0.6", 0.6), ("1.234", 1.234), ("1,234.5", 1234.5), ("1234", 1234),
    (" 12 ", 12), (".5", 0.5), ("-3", -3), ("+7", 7), ("0", 0), ("123,456,789.25", 123456789.25),
])
def test_parse_number_en(text, value):
    assert parse_number(text, "en") == value


@pytest.mark.parametrize("text, value", [
    ("5.325.000", 5325000), ("0,6", 0.6), ("1.234,5", 1234.5), ("1.234", 1234), ("1234", 1234),
    ("1,0", 1.0), ("26.400", 26400), ("-2,5", -2.5),
])
def test_parse_number_id(text, value):
    assert parse_number(text, "id") == value


@pytest.mark.parametrize("text, locale", [
    ("1,23", "en"), ("12,34,5", "en"), ("1,2345", "en"), ("1.2.3", "en"), ("1,,234", "en"),
    ("abc", "en"), ("1e3", "en"), ("nan", "en"), ("", "en"), ("-", "en"), (",5", "en"),
    ("12.34.5", "id"), ("1,2,3", "id"), ("1.23", "id"), ("1.234.5", "id"), ("0.6", "id"),
    ("1 234", "id"), ("5.325.000,", "id"),
])
def test_parse_number_refuses_what_the_locale_does_not_write(text, locale):
    with pytest.raises(ValueError):
        parse_number(text, locale)


def test_parse_number_message_hints_at_the_other_locale():
    with pytest.raises(ValueError) as exc:
        parse_number("0,6", "en")
    assert str(exc.value) == ("'0,6' is not a number in locale en (thousands ',', decimal '.'); "
                              "use --locale id for decimal commas")


def test_one_period_exact():
    (s,), total = rows(HEADER + 'S1,480,30,20,25,"24,000",23500,0.9\n')
    # PM is lost availability (the default): planned = 480; run = 480 - 30 - 20 - 25 = 405;
    # ideal = 24000 x 0.9 = 21600 s = 360 min; good ideal = 23500 x 0.9 = 21150 s.
    assert (s.period, s.planned_min, s.run_min) == ("S1", 480, 405)
    r = s.ratios
    assert r.availability == 405 / 480
    assert r.performance == pytest.approx(360 / 405, abs=1e-15)
    assert r.quality == pytest.approx(23500 / 24000, abs=1e-15)
    assert r.oee == pytest.approx(21150 / (480 * 60), abs=1e-15)
    assert total.ratios == r
    # PM as planned downtime: planned = 480 - 30 = 450, the rest is the same
    (p,), _ = rows(HEADER + 'S1,480,30,20,25,"24,000",23500,0.9\n', pm="planned_stop")
    assert (p.planned_min, p.run_min) == (450, 405)
    assert p.ratios.availability == 405 / 450
    assert p.ratios.oee == pytest.approx(21150 / (450 * 60), abs=1e-15)


def test_the_source_studys_totals_under_both_policies():
    # 65,880 min available, 1,905 PM, 1,890 setup, 960 breakdown (docs/oee.md)
    text = HEADER + "all,65880,1905,1890,960,1,1,1\n"
    (s,), _ = rows(text)
    assert round(s.ratios.availability, 4) == 0.9278  # (65880 - 1905 - 1890 - 960) / 65880
    (p,), _ = rows(text, pm="planned_stop")
    assert round(p.ratios.availability, 4) == 0.9555  # 61125 / (65880 - 1905)


def test_total_sums_ideal_time_across_cycle_times():
    lines, total = rows(HEADER + "A,480,0,0,0,900,880,30\nB,480,60,30,30,100,90,180\n",
                        pm="planned_stop")
    # A: planned 480, run 480, ideal 900 x 30 s = 450 min, good 880 x 30 s = 440 min.
    # B: planned 420, run 360, ideal 100 x 180 s = 300 min, good 90 x 180 s = 270 min.
    # TOTAL: planned 900, run 840, ideal 750 min, good 710 min.
    assert (total.planned_min, total.run_min) == (900, 840)
    assert (total.ideal_total_s, total.ideal_good_s) == (750 * 60, 710 * 60)
    r = total.ratios
    assert r.availability == 840 / 900
    assert r.performance == 750 / 840
    assert r.quality == 710 / 750
    assert r.oee == 710 / 900  # 0.7889; the mean of 0.9167 and 0.6429 would be 0.7798
    assert r.oee != pytest.approx(sum(x.ratios.oee for x in lines) / 2, abs=1e-3)


def test_zero_output_periods():
    lines, total = rows(HEADER + "Z1,480,0,0,480,0,0,60\n"   # broke down all shift
                        "Z2,480,0,0,0,0,0,60\n"              # ran, made nothing
                        "Z3,0,0,0,0,0,0,60\n"                # not planned at all
                        "X,480,0,0,60,350,340,60\n")
    got = [(x.ratios.availability, x.ratios.performance, x.ratios.quality, x.ratios.oee)
           for x in lines]
    assert got[:3] == [(0, None, None, 0), (1, 0, None, 0), (None, None, None, None)]
    # TOTAL: planned 480 x 3 = 1440, run 0 + 480 + 0 + 420 = 900, ideal 350 min, good 340 min.
    r = total.ratios
    assert (total.planned_min, total.run_min) == (1440, 900)
    assert r.availability == 900 / 1440
    assert r.performance == 350 / 900
    assert r.quality == 340 / 350
    assert r.oee == 340 / 1440


def test_indonesian_locale_and_semicolons_give_the_same_numbers():
    en = rows(HEADER + 'S1,480,30,20,25.5,"5,325,000",5300000,0.06\nS2,480,0,0,0,1234.5,1200,6\n')
    idn = rows(HEADER.replace(",", ";") + "S1;480;30;20;25,5;5.325.000;5.300.000;0,06\n"
               "S2;480;0;0;0;1.234,5;1.200;6\n", "id")
    assert en == idn
    assert en[0][0].ideal_total_s == pytest.approx(5325000 * 0.06)
    assert en[0][1].ideal_total_s == 1234.5 * 6


def test_en_locale_with_semicolons_and_id_with_quoted_commas():
    a = rows(HEADER.replace(",", ";") + "S1;480;0;0;0;1,000;990;1.5\n")
    b = rows(HEADER + 'S1,480,0,0,0,"1.000",990,"1,5"\n', "id")
    assert a == b
    assert a[0][0].ideal_total_s == 1500


def test_bom_blank_rows_extra_columns_and_header_case_are_fine():
    text = ("\ufeff" + HEADER.upper().replace("PERIOD", "Period").rstrip("\n") + ",note\n"
            "\nS1,480,0,0,0,400,400,60,first shift\n\n,,,,,,,,\n")  # Excel's empty rows
    (s,), _ = rows(text)
    assert (s.period, s.run_min, s.ideal_good_s) == ("S1", 480, 24000)


@pytest.mark.parametrize("pm", ["availability_loss", "planned_stop"])
def test_logbook_matches_the_engine_treatment_of_planned_maintenance(pm):
    # The same shift once as a logbook row and once as a state timeline for the engine,
    # under each PM policy.
    (s,), _ = rows(HEADER + "S1,480,30,20,25,24000,23500,0.9\n", pm=pm)
    cal = Calendar("UTC", [Shift("S1", "06:00", "14:00")])
    t = 6 * 3600.0
    states = []
    for minutes, state, reason in [(30, "STOP", "planned_maintenance"), (20, "STOP", "setup"),
                                   (100, "RUN", None), (25, "STOP", "breakdown"),
                                   (305, "RUN", None)]:
        states.append(StateInterval(t, t + minutes * 60, state, reason))
        t += minutes * 60
    counts = [CountEvent(12 * 3600.0, "GOOD", 23500), CountEvent(12 * 3600.0, "NG", 500)]
    r = evaluate(states, counts, 0.9, cal, 6 * 3600.0, 14 * 3600.0, planned_maintenance=pm)
    assert r.planned_s == s.planned_min * 60 and r.run_s == s.run_min * 60
    assert r.ratios == s.ratios


@pytest.mark.parametrize("body, message", [
    ("S1,480,0,abc,0,100,90,60\n",
     "row 2, column setup_min: 'abc' is not a number in locale en (thousands ',', decimal '.')"),
    ("S1,480,0,0,-5,100,90,60\n", "row 2, column breakdown_min: must not be negative (-5)"),
    ("S1,480,0,0,0,1100,1200,6\n", "row 2, column good: 1200 exceeds processed (1100)"),
    ("S1,60,30,20,20,10,9,6\n",
     "row 2, column available_min: 60 is less than pm_min + setup_min + breakdown_min (70)"),
    ("S1,480,0,0,0,100,,60\n", "row 2, column good: empty"),
    (",480,0,0,0,100,90,60\n", "row 2, column period: empty"),
    ("S1,480,0,0,0,100,90\n",
     "row 2, column ideal_cycle_s: missing value (the row has fewer fields than the header)"),
    ("S1,480,0,0,0,100,90,0,6\n",
     ("row 2: 9 fields but the header has 8 "
      "(is a decimal comma unquoted in a ','-separated file?)")),
    ("S1,480,0,0,0,100,90,0\n", "row 2, column ideal_cycle_s: must be greater than 0"),
    ("S1,480,30,450,0,10,9,6\n",
     ("row 2, column processed: 10 units processed with no run time (available - pm - setup - "
     "breakdown = 0)")),
    ("S1,480,0,0,0,100,90,60\n\nS2,480,0,0,0,1OO,90,60\n",
     "row 4, column processed: '1OO' is not a number in locale en (thousands ',', decimal '.')"),
    ('S1,480,0,0,0,100,90,60\n"S2\nnight",480,0,0,0,100,90,x\n',
     "row 4, column ideal_cycle_s: 'x' is not a number in locale en (thousands ',', decimal '.')"),
])
def test_malformed_rows_name_row_and_column(body, message):
    assert error(HEADER + body) == f"week.csv: {message}"


def test_malformed_files():
    assert error("") == ("week.csv: empty file; row 1 must be the header: "
                         "period,available_min,pm_min,setup_min,breakdown_min,processed,good,"
                         "ideal_cycle_s")
    assert error("\n  \n") == error("")
    assert error(HEADER) == "week.csv: no periods after the header (row 1)"
    assert error(HEADER.replace(",good", "")) == (
        "week.csv: row 1, column good: missing from the header (period,available_min,pm_min,"
        "setup_min,breakdown_min,processed,good,ideal_cycle_s)")
    assert error(HEADER.rstrip() + ",good\n") == (
        "week.csv: row 1, column good: appears twice in the header")
    latin1 = (HEADER + "Caf\xe9,480,0,0,0,100,90,60\n").encode("latin-1")
    assert error(latin1) == (
        "week.csv: row 2, column period: not UTF-8 text (byte 0xe9); save as CSV UTF-8")
    # Every cell is checked, also those of columns the calculation does not read.
    with_note = (HEADER.rstrip("\n") + ",note\n").encode()
    assert error(with_note + b"S1,480,0,0,0,100,90,60,gearbox \xff\n") == (
        "week.csv: row 2, column note: not UTF-8 text (byte 0xff); save as CSV UTF-8")
    assert error(("Per\xefod" + HEADER[6:]).encode("latin-1")) == (
        "week.csv: row 1, column 1: not UTF-8 text (byte 0xef); save as CSV UTF-8")


def test_locale_is_strict():
    assert error(HEADER + "S1,480,0,0,0,12.34.5,90,60\n", "id") == (
        "week.csv: row 2, column processed: '12.34.5' is not a number in locale id "
        "(thousands '.', decimal ',')")
    assert error(HEADER.replace(",", ";") + "S1;480;0;0;0;100;90;0,9\n") == (
        "week.csv: row 2, column ideal_cycle_s: '0,9' is not a number in locale en "
        "(thousands ',', decimal '.'); use --locale id for decimal commas")
    # Under id `1.234` is 1234, so 1234 good out of 1000 processed is refused ...
    assert error(HEADER.replace(",", ";") + "S1;480;0;0;0;1000;1.234;6\n", "id") == (
        "week.csv: row 2, column good: 1.234 exceeds processed (1000)")
    # ... while under en it is 1.234 units.
    (s,), _ = rows(HEADER + "S1,480,0,0,0,1000,1.234,6\n")
    assert s.ideal_good_s == pytest.approx(1.234 * 6)


def test_read_logbook_unreadable(tmp_path):
    with pytest.raises(InputFileError) as exc:
        logbook.read_logbook(tmp_path / "nope.csv")
    assert str(exc.value) == f"{tmp_path / 'nope.csv'}: cannot read: No such file or directory"


def test_report_shape_rounds_fractions():
    lines, total = rows(HEADER + "S1,480,30,20,25,24000,23500,0.9\nZ,480,0,0,480,0,0,0.9\n")
    assert logbook.report(lines, total) == {
        "periods": [
            # 405 / 480 = 0.84375; 360 / 405 = 0.88889; 23500 / 24000 = 0.97917;
            # 21150 / 28800 = 0.73438
            {"period": "S1", "run_min": 405, "availability": 0.8438, "performance": 0.8889,
             "quality": 0.9792, "oee": 0.7344},
            {"period": "Z", "run_min": 0, "availability": 0.0, "performance": None,
             "quality": None, "oee": 0.0},
        ],
        # 405 / 960 = 0.42188; 21150 / (960 x 60) = 0.36719
        "total": {"period": "TOTAL", "run_min": 405, "availability": 0.4219,
                  "performance": 0.8889, "quality": 0.9792, "oee": 0.3672},
    }


def test_summary_total_of_nothing_is_undefined():
    t = Summary.total([])
    assert (t.ratios.availability, t.ratios.oee) == (None, None)
