"""The Andon board in a real browser: Debian's chromium, headless, driven by Selenium through
Debian's chromedriver, against a running collector fed real frames over loopback UDP."""

import json
import os
import random
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from lampwatch.config import load_config
from lampwatch.journal import Journal
from lampwatch.runtime import CollectorThread
from test_board import BLINK, OFF, ON, PIN, PIN_ENV, Events, G, Node, R, Y, board_config

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars")
ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts"
STOP_RED = "rgb(208, 2, 27)"  # --stop in board.css


@pytest.fixture
def browser(tmp_path, monkeypatch):
    """Headless chromium at 1920x1080. A missing chromium or driver FAILS the test (the test
    command installs them); explicit paths, so selenium-manager never downloads anything."""
    for exe in (CHROMIUM, CHROMEDRIVER):
        if not os.access(exe, os.X_OK):
            pytest.fail(f"{exe} is missing: run `bash scripts/install.sh --test` (it installs "
                        "Debian's chromium and chromium-driver)", pytrace=False)
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")
    opts = Options()
    opts.binary_location = CHROMIUM
    for flag in FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    opts.add_argument("--window-size=1920,1080")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    # The page's own viewport, exactly a 1080p TV's, whatever the headless window adds.
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": 1920, "height": 1080, "deviceScaleFactor": 1, "mobile": False})
    yield driver
    driver.quit()


def wait_for(driver, script, timeout_s=5.0):
    """Poll a JS expression until it is truthy; returns its value."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout_s, poll_frequency=0.02).until(
        lambda d: d.execute_script(f"return {script};"))


def tile(machine):
    return f"document.querySelector('.tile[data-machine=\"{machine}\"]')"


def screenshot(driver, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    # Blinking tiles at their bright phase, so a still picture shows their colour.
    driver.execute_script("document.getAnimations().forEach(a => { a.currentTime = 0; });")
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 20_000


def test_board_recolors_within_a_second_and_takes_a_reason(browser, tmp_path, monkeypatch):
    monkeypatch.setenv(PIN_ENV, PIN)
    machines = ("press-07", "press-08", "press-09", "press-10")
    ct = CollectorThread(load_config(board_config(tmp_path, machines))).start()
    nodes = [Node(7 + i, ct.udp_address) for i in range(4)]
    try:
        nodes[0].lamp((G, ON), at_s=time.time() - 120)
        nodes[0].heartbeat(good=50, ng=2)
        nodes[1].lamp((Y, BLINK))
        nodes[2].lamp((R, ON))
        browser.get(ct.runtime.board_url)
        wait_for(browser, f"document.querySelectorAll('.tile').length == 4 && "
                          f"{tile('press-07')}.dataset.state == 'RUN'")
        assert browser.title == "lampwatch Andon board"
        # A blinking lamp blinks the tile; a stopped tile is red.
        assert wait_for(browser, f"getComputedStyle({tile('press-08')}).animationName") == "blink"
        assert browser.execute_script(
            f"return getComputedStyle({tile('press-09')}).backgroundColor") == STOP_RED
        assert browser.execute_script(
            f"return {tile('press-10')}.dataset.state") == "UNKNOWN"  # HELLO only, no lamps

        # The state change: time from the frame leaving the node to the red tile painted.
        browser.execute_script(f"""
            const t = {tile('press-07')};
            window.recolor = null;
            new MutationObserver(() => {{
              if (t.dataset.state !== 'STOP' || window.recolor) return;
              const r = window.recolor = {{bg: getComputedStyle(t).backgroundColor}};
              requestAnimationFrame(() => requestAnimationFrame(() => {{ r.at = Date.now(); }}));
            }}).observe(t, {{attributes: true, attributeFilter: ['data-state']}});""")
        sent_ms = time.time() * 1000
        nodes[0].lamp((G, OFF), (R, ON))
        recolor = wait_for(browser, "window.recolor && window.recolor.at && window.recolor")
        latency_ms = recolor["at"] - sent_ms
        print(f"board: tile recolored {latency_ms:.0f} ms after the state change was sent")
        assert recolor["bg"] == STOP_RED
        assert 0 < latency_ms < 1000

        # An operator gives the stop its reason, with the PIN typed on the board.
        before = ct.snapshot()["press-07"].oee_data()["losses"]
        assert before["breakdown_s"] == 0 and before["minor_stop_s"] > 0
        browser.execute_script(f"{tile('press-07')}.querySelector('.reason-btn').click()")
        wait_for(browser, "document.getElementById('reason-dialog').open")
        browser.find_element("css selector", "[data-reason=breakdown]").click()
        browser.find_element("id", "pin").send_keys(PIN)
        browser.find_element("id", "reason-submit").click()
        assert wait_for(browser, "document.getElementById('reason-status').textContent "
                                 "== 'Saved.'")
        wait_for(browser, f"{tile('press-07')}.querySelector('.reason').textContent "
                          "== 'Breakdown'", timeout_s=1.0)
        after = ct.snapshot()["press-07"].oee_data()["losses"]
        assert after["minor_stop_s"] == 0 and after["breakdown_s"] > 0
        with Journal(tmp_path / "journal.sqlite") as j:
            reasons = [(e.machine, json.loads(e.data)) for e in j.events_after(0)
                       if e.kind == "reason"]
        assert [(m, d["reason"], d["by"], d["end_s"]) for m, d in reasons] == [
            ("press-07", "breakdown", "board", None)]
        # Only stopped machines offer a reason.
        assert browser.execute_script(
            f"return {tile('press-08')}.querySelector('.reason-btn').hidden") is False  # IDLE
        assert browser.execute_script(
            f"return {tile('press-10')}.querySelector('.reason-btn').hidden") is True
        wait_for(browser, "!document.getElementById('reason-dialog').open")
        screenshot(browser, ARTIFACTS / "board.png")
    finally:
        for n in nodes:
            n.close()
        ct.stop()


def test_a_screen_over_the_live_slots_shows_the_board_and_goes_live_when_one_frees(
        browser, tmp_path, monkeypatch):
    """One live slot, taken: the page gets 503 + Retry-After, shows the board once from
    /api/board with the offline banner, and retries the stream until it gets the slot."""
    monkeypatch.setenv(PIN_ENV, PIN)
    path = board_config(tmp_path)
    path.write_text(path.read_text().replace("[board]\n", "[board]\nsse_slots = 1\n"))
    ct = CollectorThread(load_config(path)).start()
    node = Node(7, ct.udp_address)
    other = Events(ct.runtime.board, "127.0.0.2")  # another screen holds the only slot
    try:
        node.lamp((G, ON))
        assert other.res.status == 200
        # The page loads the board once: load it after the collector has taken the lamp
        # frame, not in a race with it. (It used to get the view the other screen had just
        # been sent, from before the frame: a first view walks the running 24-hour shift, so
        # the view share did not allow another yet. /api/board now waits for the share.)
        deadline = time.monotonic() + 5.0
        while ct.snapshot()["press-07"].state != "RUN" and time.monotonic() < deadline:
            time.sleep(0.02)
        browser.get(ct.runtime.board_url)
        wait_for(browser, f"{tile('press-07')} && {tile('press-07')}.dataset.state == 'RUN'")
        assert browser.execute_script("return document.getElementById('offline').hidden") \
            is False  # shown, but not live
        other.close()  # the slot frees: the page's next retry (5-10 s) gets it
        wait_for(browser, "document.getElementById('offline').hidden", timeout_s=15.0)
        node.lamp((G, OFF), (R, ON))
        wait_for(browser, f"{tile('press-07')}.dataset.state == 'STOP'", timeout_s=2.0)
    finally:
        other.close()
        node.close()
        ct.stop()


# --- a full 1080p board for the docs --------------------------------------------------------

# machine -> (segments of (minutes, state) from the shift start, speed vs ideal, NG share)
PLAN = {
    "press-07": ([(95, "RUN"), (12, "IDLE"), (140, "RUN"), (8, "STOP"), (45, "RUN")], 0.92, 0.01),
    "press-08": ([(60, "RUN"), (35, "STOP"), (160, "RUN"), (45, "RUN")], 0.85, 0.03),
    "press-09": ([(120, "RUN"), (20, "IDLE"), (150, "RUN"), (10, "IDLE")], 0.9, 0.02),
    "press-10": ([(80, "RUN"), (55, "STOP"), (120, "RUN"), (45, "STOP")], 0.8, 0.02),
    "weld-01": ([(300, "RUN")], 0.95, 0.005),
    "weld-02": ([(200, "RUN"), (15, "IDLE"), (85, "RUN")], 0.88, 0.04),
    "cnc-03": ([(150, "RUN"), (30, "STOP"), (60, "RUN"), (60, "OFF")], 0.9, 0.01),
    "cnc-04": ([(90, "RUN"), (110, "UNKNOWN"), (100, "RUN")], 0.9, 0.02),
}


def seed_history(journal_path, start_s):
    """Five hours of state and count events per machine, as a collector would have journaled
    them before this one started (it rebuilds the running shift from them)."""
    rng = random.Random(7)
    events = []
    for i, (machine, (segments, speed, ng_share)) in enumerate(PLAN.items()):
        node, t, prev, good_total, ng_total = 7 + i, start_s, "OFF", 0, 0
        for minutes, state in segments:
            events.append((t, "state", node, machine, {"state": state, "prev": prev}))
            for k in range(minutes):
                if state == "RUN":
                    made = rng.randint(int(27 * speed), int(33 * speed))
                    ng = sum(rng.random() < ng_share for _ in range(made))
                    good_total, ng_total = good_total + made - ng, ng_total + ng
                    events.append((t + 60 * k + 30, "count", node, machine, {
                        "good": made - ng, "ng": ng, "good_total": good_total,
                        "ng_total": ng_total, "boot_id": 1}))
            t, prev = t + 60 * minutes, state
    events.sort(key=lambda e: e[0])
    with Journal(journal_path) as j:
        j.commit(events=events)


def test_full_board_at_1080p_is_legible(browser, tmp_path, monkeypatch):
    """Eight machines in every state on a 1920x1080 screen: text sizes for reading at 5 m.

    The picture goes to artifacts/board-1080p.png, and to docs/img/board.png when
    LAMPWATCH_DOCS_SCREENSHOT=1 (so an ordinary test run never changes a committed file).
    """
    monkeypatch.setenv(PIN_ENV, PIN)
    now = time.time()
    start = now - 300 * 60
    hhmm = datetime.fromtimestamp(start, timezone.utc).strftime("%H:%M")
    end = datetime.fromtimestamp(start + 8 * 3600, timezone.utc).strftime("%H:%M")
    cfg = board_config(tmp_path, tuple(PLAN), shift=(hhmm, end))
    seed_history(tmp_path / "journal.sqlite", start - start % 60)
    ct = CollectorThread(load_config(cfg)).start()
    nodes = {m: Node(7 + i, ct.udp_address, heartbeat_ms=1000 if m == "cnc-04" else 10_000)
             for i, m in enumerate(PLAN)}
    lamps = {"RUN": [(G, ON)], "IDLE": [(Y, ON)], "STOP": [(R, ON)], "OFF": []}
    try:
        for m, (segments, _, _) in PLAN.items():
            state = segments[-1][1]
            if m == "press-09":
                nodes[m].lamp((Y, BLINK))  # calling for material: a blinking yellow
            elif m == "weld-02":
                nodes[m].lamp((G, OFF), (R, ON), at_s=now - 95)  # stopped a minute and a half ago
            elif lamps.get(state):
                nodes[m].lamp(*lamps[state])
            nodes[m].heartbeat()
        ct.call(ct.runtime.add_reason, "press-10", "breakdown", now - 45 * 60)
        browser.get(ct.runtime.board_url)
        wait_for(browser, "document.querySelectorAll('.tile').length == 8")
        # cnc-04's node goes silent (1 s heartbeat): UNKNOWN after three missed heartbeats.
        wait_for(browser, f"{tile('cnc-04')}.dataset.state == 'UNKNOWN'", timeout_s=8.0)
        time.sleep(1.2)  # the time-in-state counters tick once
        states = browser.execute_script(
            "return [...document.querySelectorAll('.tile')].map(t => t.dataset.state)")
        assert states == ["RUN", "RUN", "IDLE", "STOP", "RUN", "STOP", "OFF", "UNKNOWN"]
        sizes = browser.execute_script("""
            const px = (sel) => Math.min(...[...document.querySelectorAll(sel)]
              .filter(e => e.offsetParent && e.textContent.trim())
              .map(e => parseFloat(getComputedStyle(e).fontSize)));
            const all = [...document.querySelectorAll('.tile, .tile *, header, header *')];
            const overflow = [...document.querySelectorAll('.tile, .tile *, header, header *')]
              .filter(e => e.offsetParent && (e.scrollHeight > e.clientHeight + 1 ||
                                              e.scrollWidth > e.clientWidth + 1))
              .map(e => e.className || e.tagName);
            return {state: px('.tile .state'), name: px('.tile .name'), oee: px('.tile .pct'),
                    header: px('header'), overflow: overflow,
                    smallest: Math.min(...all.filter(e => e.offsetParent &&
                      e.childNodes.length && e.textContent.trim())
                      .map(e => parseFloat(getComputedStyle(e).fontSize)))};""")
        screenshot(browser, ARTIFACTS / "board-1080p.png")
        print(f"board at 1920x1080 with 8 machines, font sizes (px): {sizes}")
        # On a 55" 1080p TV a pixel is 0.63 mm: state 70 px letters are ~30 mm tall, the
        # smallest text (28 px) ~12 mm, readable from 5 m.
        assert sizes["state"] >= 70 and sizes["name"] >= 36 and sizes["oee"] >= 44
        assert sizes["smallest"] >= 28 and sizes["header"] >= 28
        assert sizes["overflow"] == []  # nothing cut off
        if os.environ.get("LAMPWATCH_DOCS_SCREENSHOT") == "1":
            screenshot(browser, ROOT / "docs" / "img" / "board.png")
    finally:
        for n in nodes.values():
            n.close()
        ct.stop()
