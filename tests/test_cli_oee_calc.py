"""`lampwatch oee calc` through the real entry point: tables, JSON, one-line errors, examples."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from lampwatch.cli import main

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
LAMPWATCH = Path(sys.executable).with_name("lampwatch")
HEADER = "period,available_min,pm_min,setup_min,breakdown_min,processed,good,ideal_cycle_s\n"


def run(argv, capsys):
    """Exit code, stdout and stderr of `lampwatch ARGV` run in-process through main()."""
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path, text, name="week.csv"):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_table(tmp_path, capsys):
    path = write(tmp_path, HEADER + 'Mon S1,480,30,20,25,"24,000",23500,0.9\n'
                 "Mon S2,480,0,0,480,0,0,0.9\n")
    code, out, err = run(["oee", "calc", str(path)], capsys)
    # S1 (PM lost availability): A 405/480 = 84.4 %, P 21600/24300 = 88.9 %,
    #     Q 23500/24000 = 97.9 %, OEE 21150/28800 = 73.4 %. S2 broke down all shift.
    # TOTAL: planned 960, run 405: A 42.2 %, OEE 21150/57600 = 36.7 %.
    assert (code, err) == (0, "")
    assert out == (
        "period  run min  availability  performance  quality    OEE\n"
        "Mon S1      405         84.4%        88.9%    97.9%  73.4%\n"
        "Mon S2        0          0.0%            -        -   0.0%\n"
        "\n"
        "TOTAL       405         42.2%        88.9%    97.9%  36.7%\n"
        "(-: undefined: no run time, or nothing processed; see docs/oee.md)\n")
    # PM as planned downtime: S1 planned 450, A 90.0 %, OEE 21150/27000 = 78.3 %;
    # TOTAL planned 930: A 43.5 %, OEE 21150/55800 = 37.9 %.
    code, out, err = run(["oee", "calc", "--pm", "planned-stop", str(path)], capsys)
    assert (code, err) == (0, "")
    assert out.splitlines()[1] == "Mon S1      405         90.0%        88.9%    97.9%  78.3%"
    assert out.splitlines()[4] == "TOTAL       405         43.5%        88.9%    97.9%  37.9%"


def test_json(tmp_path, capsys):
    path = write(tmp_path, HEADER + "A,480,0,0,0,900,880,30\nB,480,60,30,30,100,90,180\n")
    code, out, err = run(["oee", "calc", "--json", "--pm", "planned-stop", str(path)], capsys)
    assert (code, err) == (0, "")
    # A: 900 x 30 s = 450 ideal min in 480: P 0.9375, Q 880/900, OEE 440/480.
    # B: planned 420 (its PM planned downtime), run 360, 300 ideal min: P 0.8333, Q 0.9,
    #    OEE 270/420.
    # TOTAL: A 840/900, P 750/840, Q 710/750, OEE 710/900.
    assert json.loads(out) == {
        "periods": [
            {"period": "A", "run_min": 480, "availability": 1.0, "performance": 0.9375,
             "quality": 0.9778, "oee": 0.9167},
            {"period": "B", "run_min": 360, "availability": 0.8571, "performance": 0.8333,
             "quality": 0.9, "oee": 0.6429},
        ],
        "total": {"period": "TOTAL", "run_min": 840, "availability": 0.9333,
                  "performance": 0.8929, "quality": 0.9467, "oee": 0.7889},
    }


def test_zero_output_json_uses_null(tmp_path, capsys):
    path = write(tmp_path, HEADER + "idle,480,0,0,0,0,0,60\noff,0,0,0,0,0,0,60\n")
    code, out, _ = run(["oee", "calc", "--json", str(path)], capsys)
    data = json.loads(out)
    assert code == 0
    assert data["periods"][0] == {"period": "idle", "run_min": 480, "availability": 1.0,
                                  "performance": 0.0, "quality": None, "oee": 0.0}
    assert data["periods"][1] == {"period": "off", "run_min": 0, "availability": None,
                                  "performance": None, "quality": None, "oee": None}
    assert '"quality": null' in out


def test_example_logbook_matches_docs_and_hand_total(capsys):
    code, out, err = run(["oee", "calc", str(EXAMPLES / "logbook.csv")], capsys)
    assert (code, err) == (0, "")
    docs = (REPO / "docs" / "oee.md").read_text(encoding="utf-8")
    block = docs.split("<!-- logbook-example:")[1].split("<!-- /logbook-example -->")[0]
    shown = block.split("$ lampwatch oee calc examples/logbook.csv\n")[1].split("```")[0]
    assert out == shown
    code, out, _ = run(["oee", "calc", "--json", str(EXAMPLES / "logbook.csv")], capsys)
    total = json.loads(out)["total"]
    # docs/oee.md: planned 5100 (PM lost availability), run 4365 min; ideal 237,810 s;
    # good ideal 233,088 s.
    assert total == {"period": "TOTAL", "run_min": 4365,
                     "availability": round(4365 / 5100, 4),          # 0.8559
                     "performance": round(237810 / (4365 * 60), 4),  # 0.908
                     "quality": round(233088 / 237810, 4),           # 0.9801
                     "oee": round(233088 / (5100 * 60), 4)}          # 0.7617
    assert (total["availability"], total["oee"]) == (0.8559, 0.7617)
    code, out, _ = run(["oee", "calc", "--json", "--pm", "planned-stop",
                        str(EXAMPLES / "logbook.csv")], capsys)
    total = json.loads(out)["total"]  # planned 5010
    assert (total["availability"], total["oee"]) == (0.8713, 0.7754)


def test_indonesian_example_gives_the_same_numbers(capsys):
    _, en, _ = run(["oee", "calc", "--json", str(EXAMPLES / "logbook.csv")], capsys)
    code, idn, err = run(["oee", "calc", "--locale", "id", "--json",
                          str(EXAMPLES / "logbook-id.csv")], capsys)
    assert (code, err) == (0, "")
    en, idn = json.loads(en), json.loads(idn)
    assert [p["period"] for p in idn["periods"]][:2] == ["Sen S1", "Sen S2"]
    strip = [{k: v for k, v in p.items() if k != "period"} for p in en["periods"]]
    assert strip == [{k: v for k, v in p.items() if k != "period"} for p in idn["periods"]]
    assert en["total"] == idn["total"]


MALFORMED = [
    (HEADER.replace(",good", ""),
     ("row 1, column good: missing from the header (period,available_min,pm_min,setup_min,"
      "breakdown_min,processed,good,ideal_cycle_s)")),
    (HEADER + "S1,480,0,0,0,100,90,60\nS2,480,0,ten,0,100,90,60\n",
     "row 3, column setup_min: 'ten' is not a number in locale en (thousands ',', decimal '.')"),
    (HEADER + "S1,480,0,-15,0,100,90,60\n", "row 2, column setup_min: must not be negative (-15)"),
    (HEADER + "S1,480,0,0,0,1100,1200,6\n", "row 2, column good: 1200 exceeds processed (1100)"),
    (HEADER + "S1,480,200,200,100,10,9,6\n",
     "row 2, column available_min: 480 is less than pm_min + setup_min + breakdown_min (500)"),
    ("", ("empty file; row 1 must be the header: period,available_min,pm_min,setup_min,"
          "breakdown_min,processed,good,ideal_cycle_s")),
    (HEADER, "no periods after the header (row 1)"),
    ((HEADER + "Mesin \xe9,480,0,0,0,100,90,60\n").encode("latin-1"),
     "row 2, column period: not UTF-8 text (byte 0xe9); save as CSV UTF-8"),
    (HEADER + "S1,480,0,0,0,100,90,0,9\n",
     ("row 2: 9 fields but the header has 8 (is a decimal comma unquoted in a ','-separated "
      "file?)")),
]


@pytest.mark.parametrize("content, message", MALFORMED)
def test_malformed_file_is_one_line_and_exit_1(tmp_path, capsys, content, message):
    path = write(tmp_path, content)
    code, out, err = run(["oee", "calc", str(path)], capsys)
    assert (code, out) == (1, "")
    assert err == f"lampwatch: {path}: {message}\n"


def test_locale_errors_through_the_cli(tmp_path, capsys):
    path = write(tmp_path, HEADER.replace(",", ";") + "S1;480;0;0;0;12.34.5;90;60\n")
    code, _, err = run(["oee", "calc", "--locale", "id", str(path)], capsys)
    assert (code, err) == (1, (f"lampwatch: {path}: row 2, column processed: '12.34.5' is not "
                               "a number in locale id (thousands '.', decimal ',')\n"))
    code, _, err = run(["oee", "calc", str(EXAMPLES / "logbook-id.csv")], capsys)
    assert code == 1
    assert err == (f"lampwatch: {EXAMPLES / 'logbook-id.csv'}: row 2, column ideal_cycle_s: "
                   "'0,9' is not a number in locale en (thousands ',', decimal '.'); "
                   "use --locale id for decimal commas\n")


def test_missing_file(tmp_path, capsys):
    code, _, err = run(["oee", "calc", str(tmp_path / "nope.csv")], capsys)
    assert (code, err) == (1, (f"lampwatch: {tmp_path / 'nope.csv'}: cannot read: "
                               "No such file or directory\n"))


def lampwatch(*args, cwd=None):
    """The installed console script, as a user runs it."""
    return subprocess.run([str(LAMPWATCH), *args], capture_output=True, text=True, timeout=60,
                          cwd=cwd, check=False)


def test_installed_command_prints_no_traceback(tmp_path):
    assert LAMPWATCH.exists(), f"console script missing: {LAMPWATCH}"
    bad = write(tmp_path, HEADER + "S1,480,0,0,0,1100,1200,6\n")
    proc = lampwatch("oee", "calc", str(bad))
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == f"lampwatch: {bad}: row 2, column good: 1200 exceeds processed (1100)\n"
    assert "Traceback" not in proc.stderr
    latin1 = write(tmp_path, (HEADER + "Caf\xe9,480,0,0,0,1,1,6\n").encode("latin-1"), "l1.csv")
    proc = lampwatch("oee", "calc", str(latin1))
    assert proc.returncode == 1 and len(proc.stderr.splitlines()) == 1
    assert "Traceback" not in proc.stderr
    ok = lampwatch("oee", "calc", "examples/logbook.csv", cwd=REPO)
    assert (ok.returncode, ok.stderr) == (0, "")
    assert ok.stdout.splitlines()[-2].split() == ["TOTAL", "4365", "85.6%", "90.8%", "98.0%",
                                                 "76.2%"]


def test_help_documents_the_planned_maintenance_choice(capsys):
    code, out, _ = run(["oee", "calc", "--help"], capsys)
    assert code == 0
    assert "availability = run / available           (--pm availability-loss)" in out
    assert "= run / (available - pm)    (--pm planned-stop)" in out
    assert "By default planned maintenance (pm_min) is an availability loss" in out
    code, _, err = run(["oee", "calc", "--pm", "ignore", str(EXAMPLES / "logbook.csv")], capsys)
    assert code == 2 and "'ignore' is not one of 'availability-loss', 'planned-stop'" in err
