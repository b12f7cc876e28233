"""The shift sheet (issue 18) printed by the real browser: headless chromium prints the HTML
that `lampwatch oee sheet` writes to PDF, one A4 page per machine, in English and Indonesian;
pypdf reads the pages back. The plant runs through the collector's real path (plantsim)."""

from __future__ import annotations

import os
import subprocess

import pytest
from click.testing import CliRunner
from lampwatch.cli import cli
from plantsim import G, M, Machine, Plant, R, Y, at

CHROMIUM = "/usr/bin/chromium"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-pdf-header-footer")
SHIFT = """
[[calendar.shifts]]
name = "pagi"
start = "06:00"
end = "10:00"
"""
MACHINES = {7: "huller", 8: "polisher", 9: "sorter"}
A4_PT = (595, 842)  # A4 in PDF points (210 x 297 mm)


def stops(n: int, every_min: float, length_s: float) -> list:
    """n breakdowns (red) of length_s, one every every_min from 06:05."""
    out = []
    for k in range(n):
        t = at("06:05") + k * every_min * M
        out += [(t, {G: 0, R: 1}), (t + length_s, {R: 0, G: 1})]
    return out


@pytest.fixture(scope="module")
def plant(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sheet")
    p = Plant(tmp, {n: {"machine": m, "ideal_s": 2.0} for n, m in MACHINES.items()}, SHIFT)
    truths = {
        # the huller: a 30 min breakdown; the polisher 25 short stops (more than a page
        # lists); the sorter waits for material (yellow) 20 min
        7: Machine([(at("05:55"), {G: 1}), (at("07:00"), {G: 0, R: 1}),
                    (at("07:30"), {R: 0, G: 1})], ideal_s=2.0, speed=0.9, ng_every=40),
        8: Machine([(at("05:55"), {G: 1}), *stops(25, 9, 90)], ideal_s=2.0, speed=0.95),
        9: Machine([(at("05:55"), {G: 1}), (at("08:00"), {G: 0, Y: 1}),
                    (at("08:20"), {Y: 0, G: 1})], ideal_s=2.0),
    }
    for n, truth in truths.items():
        p.node(n, truth, boot_at=at("05:50"))
    p.start_collector()
    p.run(at("10:05"))
    book = tmp / "logbook.csv"
    book.write_text("period,date,shift,machine,available_min,pm_min,setup_min,breakdown_min,"
                    "processed,good,ideal_cycle_s\n"
                    "pagi,2026-03-02,pagi,huller,240,0,0,30,5670,5528,2\n")
    yield p, book
    p.close()


def print_pdf(html_path, pdf_path, profile) -> None:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run `bash scripts/install.sh --test`",
                    pytrace=False)
    res = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}",
                          f"--print-to-pdf={pdf_path}", html_path.as_uri()],
                         check=False, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and pdf_path.exists(), res.stderr[-2000:]


@pytest.mark.parametrize("lang, words", [
    ("en", ("Shift supervisor", "Technician", "Signature", "availability (A)",
            "Against the logbook", "unrecorded stops (min)", "not given",
            "agrees within the tolerances")),
    ("id", ("Pengawas sif", "Teknisi", "Tanda tangan", "ketersediaan (A)", "kinerja (P)",
            "kualitas (Q)", "Dibandingkan dengan catatan", "henti tak tercatat (menit)",
            "Senin, 2 Mar 2026", "tidak diisi", "cocok dalam toleransi")),
])
def test_the_sheet_prints_one_a4_page_per_machine(plant, tmp_path, lang, words):
    from pypdf import PdfReader

    p, book = plant
    html = tmp_path / f"sheet-{lang}.html"
    res = CliRunner().invoke(cli, ["oee", "sheet", "--config", str(p.config_path), "--shift",
                                   "pagi", "--date", "2026-03-02", "--logbook", str(book),
                                   "--lang", lang, "-o", str(html)], standalone_mode=False)
    assert res.exception is None, res.output
    assert "3 page(s)" in res.output
    pdf = tmp_path / f"sheet-{lang}.pdf"
    print_pdf(html, pdf, tmp_path / "chromium-profile")
    reader = PdfReader(pdf)
    assert len(reader.pages) == len(MACHINES)
    texts = [page.extract_text() for page in reader.pages]
    for page, text, machine in zip(reader.pages, texts, MACHINES.values()):
        box = page.mediabox
        assert (round(float(box.width)), round(float(box.height))) == A4_PT
        assert text.lstrip().startswith(machine), text[:80]  # each machine on its own page
        flat = " ".join(text.split())
        for w in words[:3]:
            assert w in flat, (w, flat[:400])
    flat = [" ".join(t.split()) for t in texts]
    for w in words[3:]:
        assert w in flat[0], (w, flat[0][:2000])  # the huller's page: with its logbook row
    # the polisher's 25 stops: the 14 longest listed, the rest summed, still one page
    more = {"en": "11 more stops", "id": "11 henti lainnya"}[lang]
    assert more in flat[1]
    # the huller's breakdown as it really was: 07:00 to 07:30, 30 minutes
    assert "07:00 07:30 30" in flat[0]
