"""bench/baseline.py --journal, the journal floor of bench/ingest.py --floor: it journals, in
lampwatch's own schema, one count event per HEARTBEAT whose totals grew, with lampwatch's text,
and each node's heard and sources rows; a resent frame changes nothing."""

import json
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
import ingest


def test_the_journal_floor_writes_the_rows_lampwatch_keeps_for_heartbeats(tmp_path):
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    path = tmp_path / "journal.sqlite"
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "baseline.py"), str(port),
                             str(path), "3", "--journal"])
    try:
        sock = ingest.connect(port)  # node 1's probe frame (a HEALTH): no event
        codecs = {n: ingest.lwproto.Codec(n, ingest.key(n)) for n in (2, 3)}
        # node 2 counts 5 parts, then 2 more and 1 NG, then nothing new; node 3 is idle
        sent = [codecs[2].heartbeat(ingest.BOOT, 1, 1000, 5, 0, [1, 0, 0, 0, 0]),
                codecs[2].heartbeat(ingest.BOOT, 2, 2000, 7, 1, [1, 0, 0, 0, 0]),
                codecs[2].heartbeat(ingest.BOOT, 3, 3000, 7, 1, [1, 0, 0, 0, 0]),
                codecs[3].heartbeat(ingest.BOOT, 1, 1000, 0, 0, [0, 0, 0, 0, 0])]
        acked = set()
        deadline = time.monotonic() + 10
        while len(acked) < len(sent) and time.monotonic() < deadline:
            for f in sent:
                sock.send(f)
                time.sleep(0.02)
                ingest.drain(sock, lambda node, seq: acked.add((node, seq)))
        assert {(2, 1), (2, 2), (2, 3), (3, 1)} <= acked
        sock.close()
    finally:
        ingest.stop(proc)
    db = sqlite3.connect(path)
    assert db.execute("SELECT count(*) FROM frames").fetchone()[0] == 5  # resends ignored
    events = db.execute("SELECT ts_s, kind, node_id, machine, data FROM events ORDER BY id"
                        ).fetchall()
    assert [e[1:4] for e in events] == [("count", 2, "m2"), ("count", 2, "m2")]
    first, second = (json.loads(e[4]) for e in events)
    assert (first["good"], first["good_total"], second["good"], second["ng"]) == (5, 5, 2, 1)
    assert second["since_s"] == events[0][0] < events[1][0]  # made since the one before
    # lampwatch's schema: its event indexes are there to be kept up
    names = {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"events_machine_kind_ts", "events_node_kind", "events_kind_ts"} <= names
    assert db.execute("SELECT node_id, seq FROM heard ORDER BY node_id").fetchall() == [
        (1, 0), (2, 3), (3, 1)]
    assert db.execute("SELECT count(*) FROM sources").fetchone()[0] == 3
