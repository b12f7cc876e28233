"""What the collector tells its operator: rejects logged at a bounded rate, journald levels."""

import logging
import sys
import time

from lampwatch.cli.collect import setup_logging
from lampwatch.collector import REJECT_LOG_S, Collector
from lampwatch.config import load_config
from lampwatch.journal import Journal
from lampwatch.node_files import firmware_dir
from test_collector import write_config

sys.path.insert(0, str(firmware_dir()))
import lwproto


def reject_lines(caplog):
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("rejected")]


def test_a_flood_of_rejects_is_counted_in_full_and_logged_a_few_times(tmp_path, caplog):
    now = [1_700_000_000.0]
    cfg = load_config(write_config(tmp_path))
    with Journal(tmp_path / "journal.sqlite", sync="normal") as j:
        col = Collector(cfg, j, clock=lambda: now[0])
        wrong_key = lwproto.Codec(7, bytes(16)).heartbeat(1, 1, 1000, 0, 0, [0] * 5)
        caplog.set_level(logging.WARNING, logger="lampwatch.collector")
        for i in range(30 * 1000):  # 30 s of 1000 bad frames a second from one sender
            now[0] += 0.001
            col.submit(b"\x00garbage" if i % 2 else wrong_key, "udp:10.0.0.9:5000", None,
                       "udp:10.0.0.9")
            if i % 1000 == 999:
                col.tick()
        col.flush()
        lines = reject_lines(caplog)
        # one line at once, then at most one per REJECT_LOG_S with the counts since
        assert 2 <= len(lines) <= 1 + 30 / REJECT_LOG_S
        assert lines[0].startswith("rejected 1 frame(s) from udp:10.0.0.9")
        assert "(bad_tag 5000, truncated 5001)" in lines[1]  # the counts since the last line
        assert col.stats.rejects == {("udp:10.0.0.9", "bad_tag"): 15000,
                                     ("udp:10.0.0.9", "truncated"): 15000}
        assert {k: v[0] for k, v in j.rejects().items()} == col.stats.rejects


def test_a_second_sender_gets_its_own_line(tmp_path, caplog):
    cfg = load_config(write_config(tmp_path))
    with Journal(tmp_path / "journal.sqlite", sync="normal") as j:
        col = Collector(cfg, j, clock=time.time)
        caplog.set_level(logging.WARNING, logger="lampwatch.collector")
        for src in ("udp:10.0.0.9", "udp:10.0.0.9", "udp:10.0.0.10"):
            col.submit(b"x" * 30, src + ":1", None, src)
        assert [line.split(" (")[0] for line in reject_lines(caplog)] == [
            "rejected 1 frame(s) from udp:10.0.0.9", "rejected 1 frame(s) from udp:10.0.0.10"]


def test_log_lines_carry_a_journald_level_under_systemd(monkeypatch, capsys):
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
        setup_logging("info")
        logging.getLogger("lampwatch.collector").warning("rejected 3 frame(s)")
        logging.getLogger("lampwatch.runtime").info("collector running")
        logging.getLogger("lampwatch.runtime").debug("not shown at info")
        monkeypatch.delenv("JOURNAL_STREAM")
        setup_logging("info")
        logging.getLogger("lampwatch.runtime").error("journal commit failed")
    finally:
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])
    assert capsys.readouterr().err.splitlines() == [
        "<4>WARNING lampwatch.collector: rejected 3 frame(s)",
        "<6>INFO lampwatch.runtime: collector running",
        "ERROR lampwatch.runtime: journal commit failed",
    ]
