"""The ingest baseline: a UDP receiver doing only the work every frame needs, for bench/ingest.py.

    .venv/bin/python bench/baseline.py PORT JOURNAL NODES [--journal]

Per frame: check the HMAC tag (key by node id), insert the raw frame into SQLite (WAL,
synchronous=FULL, the same frames table and UNIQUE(node, boot, seq) key as the journal:
a resend is ignored), and ACK it after the commit that made it durable (the protocol's ACK,
grouped per node and boot as the protocol allows). Datagrams are read in bursts and each
burst is one transaction, as the collector does. No dedupe window, no derivation, no events,
no rejects table, no last-heard: what lampwatch adds to this is what bench/ingest.py prices.
It imports nothing of lampwatch, so a change there cannot make the baseline slower. Stops on
SIGTERM after committing what it holds.

`--journal` (the "journal floor"): the same, plus the rows lampwatch's journal keeps for such
frames, written with its very schema and statements (imported from lampwatch.journal.store,
so its indexes are the ones lampwatch has to keep up): a `count` event for each HEARTBEAT
whose totals grew (timed by the receive time; nothing else is derived) with its node and
boot's `last_counts` row, and each node's `heard` and `sources` rows. What a collector with
that schema pays at least, with no derivation, no dedupe window, no clock anchor;
bench/ingest.py `--floor` prices it.
"""

from __future__ import annotations

import hmac
import selectors
import signal
import socket
import sqlite3
import struct
import sys
import time

_HEADER = struct.Struct(">BHIBH")  # version/type, node, boot, seq hi, seq lo
_ACK = struct.Struct(">BHIBHI")
_TAG_LEN = 8
_T_ACK = 0x15  # version 1, type 5
_T_HEARTBEAT = 3
# A HEARTBEAT body begins with the good and NG totals (a lamp byte follows).
_HB_TOTALS = struct.Struct(">II")
_BURST = 2048
_SCHEMA = ("CREATE TABLE IF NOT EXISTS frames(id INTEGER PRIMARY KEY, rx_s REAL, source TEXT, "
           "node_id INT, boot_id INT, seq INT, type INT, uptime_ms INT, raw BLOB, "
           "UNIQUE(node_id, boot_id, seq))")
_INSERT = ("INSERT OR IGNORE INTO frames(rx_s, source, node_id, boot_id, seq, type, uptime_ms, "
           "raw) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")


def key(n: int) -> bytes:
    """The bench's key of node n (bench/ingest.py writes the same into the collector's config)."""
    return n.to_bytes(2, "big") * 8


def acks(node_id: int, boot_id: int, seqs: list[int], k: bytes) -> list[bytes]:
    """ACK frames for `seqs`: a base seq and a bitmap of the 32 after it, HMAC-tagged."""
    out, pending = [], sorted(set(seqs))
    while pending:
        base, bitmap, rest = pending[0], 0, []
        for s in pending[1:]:
            if s - base - 1 < 32:
                bitmap |= 1 << (s - base - 1)
            else:
                rest.append(s)
        msg = _ACK.pack(_T_ACK, node_id, boot_id, base >> 16, base & 0xFFFF, bitmap)
        out.append(msg + hmac.digest(k, msg, "sha256")[:_TAG_LEN])
        pending = rest
    return out


def serve(port: int, path: str, nodes: int, journal: bool = False) -> None:
    keys = {n: key(n) for n in range(1, nodes + 1)}
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    if journal:
        from lampwatch.journal import store

        db.executescript(store._SCHEMA + store._SCHEMA_6)
        totals: dict[tuple[int, int], tuple[int, int, float]] = {}  # (node, boot) -> g, n, rx
    else:
        db.execute(_SCHEMA)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind(("127.0.0.1", port))
    sock.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ)
    running = [True]
    signal.signal(signal.SIGTERM, lambda *_: running.__setitem__(0, False))
    names: dict[tuple, str] = {}
    while running[0]:
        sel.select(0.5)
        rows, owed, events = [], {}, []
        for _ in range(_BURST):
            try:
                data, addr = sock.recvfrom(256)
            except (BlockingIOError, InterruptedError):
                break
            if len(data) < 15 + _TAG_LEN:
                continue
            vt, node, boot, hi, lo = _HEADER.unpack_from(data)
            k = keys.get(node)
            if k is None or not hmac.compare_digest(
                    hmac.digest(k, data[:-_TAG_LEN], "sha256")[:_TAG_LEN], data[-_TAG_LEN:]):
                continue
            seq = (hi << 16) | lo
            up = int.from_bytes(data[10:15], "big")
            source = names.get(addr) or names.setdefault(addr, f"udp:{addr[0]}:{addr[1]}")
            rx = time.time()
            rows.append((rx, source, node, boot, seq, vt & 0x0F, up, data))
            owed.setdefault((node, boot, addr), []).append(seq)
            if journal and vt & 0x0F == _T_HEARTBEAT and len(data) == 15 + 9 + _TAG_LEN:
                good, ng = _HB_TOTALS.unpack_from(data, 15)
                g0, n0, since = totals.get((node, boot), (0, 0, rx))
                if good > g0 or ng > n0:
                    events.append((rx, "count", node, f"m{node}", store._COUNT_JSON % (
                        boot, max(0, good - g0), good, max(0, ng - n0), ng, since)))
                    totals[(node, boot)] = (max(good, g0), max(ng, n0), rx)
        if rows:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(_INSERT, rows)
            if journal:
                if events:
                    db.executemany(store._INSERT_EVENT, events)
                    store.note_counts(db, events)
                db.executemany(store._UPSERT_HEARD, store._heard_rows(rows))
                db.executemany(store._UPSERT_SOURCE, store._source_rows(rows))
            db.execute("COMMIT")
            for (node, boot, addr), seqs in owed.items():
                for ack in acks(node, boot, seqs, keys[node]):
                    try:
                        sock.sendto(ack, addr)
                    except OSError:
                        pass  # the node resends, and is ACKed then
    db.close()


if __name__ == "__main__":
    serve(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), journal="--journal" in sys.argv[4:])
