"""The Andon board in Bahasa Indonesia (issue 18), in the real browser: a collector with
`[board] lang = "id"`, fed real frames over loopback UDP; every word the page shows (tiles,
header, warnings, the reason dialog and its messages, the print view) is checked as
tests/test_i18n.py checks the tables."""

import json
import time
import urllib.error
import urllib.request

from lampwatch.config import load_config
from lampwatch.runtime import CollectorThread
from test_board import BLINK, ON, PIN, PIN_ENV, G, Node, R, Y, board_config
from test_board_browser import browser, tile, wait_for  # noqa: F401 (browser: a fixture)
from test_i18n import english_left

MACHINES = ("press-07", "press-08", "press-09", "press-10")
# the plant's names: the machine names' words, the calendar's shift, the count unit (the
# config's default, which plants in Indonesia write so too)
NAMES = {"press", "A", "pcs"}


def page_text(driver) -> str:
    return driver.execute_script("return document.body.innerText")


def test_the_board_in_indonesian_has_no_english_word(browser, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv(PIN_ENV, PIN)
    path = board_config(tmp_path, MACHINES)  # its shift began hours ago: all 5,400 parts in it
    path.write_text(path.read_text().replace("[board]\n", '[board]\nlang = "id"\n'))
    ct = CollectorThread(load_config(path)).start()
    nodes = [Node(7 + i, ct.udp_address) for i in range(3)]  # press-10: never heard
    try:
        nodes[0].lamp((G, ON), at_s=time.time() - 120)
        nodes[0].heartbeat(good=5400, ng=12)
        nodes[1].lamp((Y, BLINK))
        nodes[2].lamp((R, ON))
        browser.get(ct.runtime.board_url)
        wait_for(browser, f"document.querySelectorAll('.tile').length == 4 && "
                          f"{tile('press-09')}.dataset.state == 'STOP'")
        time.sleep(1.2)  # the clocks tick once
        assert browser.title == "Papan Andon lampwatch"
        text = page_text(browser)
        assert "JALAN" in text and "BERHENTI" in text and "SIAGA" in text
        assert "belum ada data" in text  # press-10's warning
        assert "5.400 baik" in text  # numbers in the id locale
        assert english_left(text, NAMES) == set(), text

        # the reason dialog and what it says back
        browser.execute_script(f"{tile('press-09')}.querySelector('.reason-btn').click()")
        wait_for(browser, "document.getElementById('reason-dialog').open")
        browser.find_element("id", "reason-submit").click()
        status = "document.getElementById('reason-status').textContent"
        assert wait_for(browser, status) == "Pilih penyebab."
        dialog = browser.execute_script(
            "return document.getElementById('reason-dialog').innerText")
        assert "Kerusakan" in dialog and "Perawatan terencana" in dialog
        assert english_left(dialog, NAMES) == set(), dialog
        browser.find_element("css selector", "[data-reason=breakdown]").click()
        browser.find_element("id", "pin").send_keys("0000")
        browser.find_element("id", "reason-submit").click()
        assert wait_for(browser, f"{status}.startsWith('PIN salah') && {status}")
        browser.find_element("id", "pin").clear()
        browser.find_element("id", "pin").send_keys(PIN)
        browser.find_element("id", "reason-submit").click()
        assert wait_for(browser, f"{status} == 'Tersimpan.'")
        wait_for(browser, f"{tile('press-09')}.querySelector('.reason').textContent "
                          "== 'Kerusakan'", timeout_s=2.0)

        # the print view: the running shift's sheet, one page per machine, in Indonesian
        browser.get(ct.runtime.board_url + "print")
        wait_for(browser, "document.querySelectorAll('.page').length == 4")
        sheet = page_text(browser)
        assert "Pengawas sif" in sheet and "Teknisi" in sheet and "Lini masa" in sheet
        assert english_left(sheet, NAMES) == set(), sheet
        # a named shift the calendar has not: a 404 that says so
        try:
            urllib.request.urlopen(ct.runtime.board_url + "print?shift=malam&date=2026-03-02",
                                   timeout=10)
            raise AssertionError("no error")
        except urllib.error.HTTPError as exc:
            assert exc.code == 404
            assert json.loads(exc.read()) == {"error": "no shift 'malam' on 2026-03-02"}
        with urllib.request.urlopen(ct.runtime.board_url + "print?shift=A&date=2026-03-02",
                                    timeout=10) as res:
            assert "A · Senin, 2 Mar 2026" in res.read().decode()
            assert "style-src 'unsafe-inline'" in res.headers["Content-Security-Policy"]
    finally:
        for n in nodes:
            n.close()
        ct.stop()
