"""Restart: the collector rebuilds the running shift from the journal, including a state
that began before the shift and has not changed since."""

from datetime import datetime, timezone

from lampwatch.config import parse_config
from lampwatch.derive import Deriver
from lampwatch.journal import Journal
from lampwatch.runtime import replay

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc).timestamp()  # Monday 08:00 UTC


def config(journal_path):
    return parse_config({
        "collector": {"udp_listen": "127.0.0.1:0", "journal": str(journal_path)},
        "nodes": [{"id": 7, "plant": "p", "line": "l", "machine": "press",
                   "key": bytes(range(16)).hex(), "ideal_cycle_s": 2.0}],
        "calendar": {"time_zone": "UTC",
                     "shifts": [{"name": "A", "start": "08:00", "end": "16:00"}]},
    })


def test_a_state_from_before_the_shift_survives_a_restart(tmp_path):
    cfg = config(tmp_path / "j.sqlite")
    j = Journal(tmp_path / "j.sqlite")
    # RUN began at 07:00, an hour before shift A; nothing changed since.
    j.commit(events=[(T0 - 3600, "state", 7, "press", {"state": "RUN", "prev": "OFF"})])
    d = Deriver(cfg)
    replay(d, j, cfg, T0 + 600)
    snap = d.snapshot(T0 + 600)["press"]
    assert (snap.state, snap.since_s) == ("RUN", T0 - 3600)


def test_only_the_last_state_before_the_shift_per_machine_is_replayed(tmp_path):
    j = Journal(tmp_path / "j.sqlite")
    j.commit(events=[
        (T0 - 7200, "state", 7, "press", {"state": "STOP", "prev": "OFF"}),
        (T0 - 3600, "state", 7, "press", {"state": "IDLE", "prev": "STOP"}),
        (T0 - 1800, "state", 8, "mill", {"state": "RUN", "prev": "OFF"}),
        (T0 + 60, "state", 7, "press", {"state": "RUN", "prev": "IDLE"}),
    ])
    got = [(r.machine, r.ts_s - T0) for r in j.last_before("state", T0)]
    assert got == [("press", -3600), ("mill", -1800)]


def test_a_restart_late_in_a_shift_streams_its_events_and_reads_only_what_it_rebuilds(tmp_path):
    """Five hours of a plant's shift are a million events or more: a restart must not hold
    them (it took 3.3 GB at 1,000 machines). The running shift's points come without their
    data (only their times count), states, counts and final points with theirs."""
    import tracemalloc

    from lampwatch.derive_api import NullDeriver

    cfg = config(tmp_path / "j.sqlite")
    j = Journal(tmp_path / "j.sqlite")
    point = {"shift": "A", "shift_start_s": T0, "final": False, "availability": 0.5,
             "losses": {k: 1.0 for k in "abcdefghij"}, "note": "x" * 300}
    rows = [(T0, "state", 7, "press", {"state": "RUN", "prev": "OFF"})]
    for k in range(1, 60_001):
        rows.append((T0 + k * 0.25, "count", 7, "press",
                     {"good": 1, "ng": 0, "good_total": k, "ng_total": 0, "boot_id": 1}))
        if k % 6 == 0:
            rows.append((T0 + k * 0.25, "oee", 7, "press", point))
    rows.append((T0 + 1, "oee", 7, "press", point | {"final": True, "shift": "night"}))
    j.commit(events=rows)
    seen = {"oee": [], "count": 0}

    class Reader(NullDeriver):  # takes the streams as Deriver.replay does: once, in order
        def replay(self, frames, events=()):
            for _ in frames:
                pass
            for ev in events:
                if ev.kind == "oee":
                    seen["oee"].append(ev.data.get("final"))
                elif ev.kind == "count":
                    seen["count"] += 1

    tracemalloc.start()
    try:
        replay(Reader(), j, cfg, T0 + 5 * 3600)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert seen["count"] == 60_000 and seen["oee"].count(None) == 10_000
    assert seen["oee"].count(True) == 1  # a final point keeps its data
    assert peak < 8 * 2**20, peak  # held as a list: ~70 MB
    d = Deriver(cfg)  # and the real deriver rebuilds the shift from the stream
    replay(d, j, cfg, T0 + 5 * 3600)
    assert d.snapshot(T0 + 5 * 3600)["press"].result.good == 60_000


def test_a_final_owed_after_an_outage_across_the_shifts_end_has_the_whole_shift(tmp_path):
    """The collector is down from 15:00 to 17:00; shift A ended at 16:00 without its final
    point, and B runs when it starts again. The replay read only from B's start, so A's
    final was made from its last state and one count: 4 parts against 10,080 made, a
    performance of 0.03 %, written to the journal and InfluxDB as the shift's figure."""
    cfg = parse_config({
        "collector": {"udp_listen": "127.0.0.1:0", "journal": str(tmp_path / "j.sqlite")},
        "nodes": [{"id": 7, "plant": "p", "line": "l", "machine": "press",
                   "key": bytes(range(16)).hex(), "ideal_cycle_s": 2.0}],
        "calendar": {"time_zone": "UTC",
                     "shifts": [{"name": "A", "start": "08:00", "end": "16:00"},
                                {"name": "B", "start": "16:00", "end": "00:00"}]},
    })
    j = Journal(tmp_path / "j.sqlite")
    # What the press did: it ran from 07:59 on, 4 parts every 10 s until 15:00.
    rows = [(T0 - 60, "state", 7, "press", {"state": "RUN", "prev": "OFF"})]
    for k in range(1, 7 * 360 + 1):
        rows.append((T0 + 10 * k, "count", 7, "press",
                     {"good": 4, "ng": 0, "since_s": T0 + 10 * (k - 1), "good_total": 4 * k,
                      "ng_total": 0, "boot_id": 1}))
    j.commit(events=rows)
    d = Deriver(cfg)
    now = T0 + 9 * 3600
    replay(d, j, cfg, now)
    finals = [e for t in range(30) for e in d.tick(now + t)
              if e.kind == "oee" and e.data["final"]]
    assert [(e.data["shift"], e.ts_s) for e in finals] == [("A", T0 + 8 * 3600)]
    data = finals[0].data
    assert data["good"] == 4 * 7 * 360 and data["ng"] == 0
    assert data["availability"] == 1.0  # RUN all shift, as journaled
    assert abs(data["performance"] - 4 * 7 * 360 * 2.0 / (8 * 3600)) < 1e-9


def test_with_no_shift_to_rebuild_a_restart_reads_the_last_hour_not_the_last_day(tmp_path):
    """Without a running shift (a collector without shifts, or between two) the replay read
    the last day's events: for a 1,000-node plant 5 hours of them took 17.8 s, and nothing
    of them was kept but each machine's last state and each boot's last count. It reads
    the last hour now (what a shift starting now would), and those."""
    from lampwatch.derive_api import NullDeriver

    cfg = parse_config({
        "collector": {"udp_listen": "127.0.0.1:0", "journal": str(tmp_path / "j.sqlite")},
        "nodes": [{"id": 7, "plant": "p", "line": "l", "machine": "press",
                   "key": bytes(range(16)).hex(), "ideal_cycle_s": 2.0}],
    })
    j = Journal(tmp_path / "j.sqlite")
    rows = [(T0, "state", 7, "press", {"state": "RUN", "prev": "OFF"})]
    for k in range(1, 10 * 360 + 1):  # 10 hours of heartbeats, 2 parts each
        rows.append((T0 + 10 * k, "count", 7, "press",
                     {"good": 2, "ng": 0, "since_s": T0 + 10 * (k - 1), "good_total": 2 * k,
                      "ng_total": 0, "boot_id": 1}))
    j.commit(events=rows)
    now = T0 + 10 * 3600
    times = []

    class Reader(NullDeriver):
        def replay(self, frames, events=()):
            times.extend(ev.ts_s for ev in events)

    replay(Reader(), j, cfg, now)
    assert min(times) == T0  # the machine's last state, from 10 hours ago
    assert sorted(times)[1] >= now - 3600 and len(times) <= 362  # then the last hour's counts
    d = Deriver(cfg)
    replay(d, j, cfg, now)
    snap = d.snapshot(now)["press"]
    assert (snap.state, snap.since_s) == ("RUN", T0)


def test_a_restart_reads_each_nodes_last_hello_however_old(tmp_path):
    """The heartbeat period a node announced in its hello two days ago still holds; the
    replay read hellos only from its window, so the node's silence was judged by the
    config's period after a restart (UNKNOWN 30 s after each 60 s heartbeat)."""
    from lampwatch.derive_api import NullDeriver

    cfg = config(tmp_path / "j.sqlite")
    j = Journal(tmp_path / "j.sqlite")
    hello = {"fw": "0.3.0", "reset_cause": "power_on", "config_hash": "a1b2c3d4",
             "heartbeat_ms": 60_000, "lamp_mask": 7}
    j.commit(events=[(T0 - 2 * 86400, "hello", 7, "press", hello),
                     (T0 - 2 * 86400 + 1, "state", 7, "press", {"state": "RUN", "prev": "OFF"}),
                     (T0 + 3000, "count", 7, "press", {"good": 2, "ng": 0, "good_total": 2,
                                                       "ng_total": 0, "boot_id": 1})])
    got = []

    class Reader(NullDeriver):
        def replay(self, frames, events=()):
            got.extend((ev.kind, ev.data.get("heartbeat_ms")) for ev in events)

    replay(Reader(), j, cfg, T0 + 3600)
    assert ("hello", 60_000) in got


def test_a_restart_seeds_the_counts_of_each_nodes_newest_boots(tmp_path):
    """Node 7 booted 7 times (a power-up each, at 06:00 on the days before; no shift of
    theirs to rebuild); live, its count maxima keep the newest 4 boots, and a restart reads
    no more (it read all of them, from every count event)."""
    from lampwatch.boot_counts import BOOTS_KEPT
    from lampwatch.derive_api import NullDeriver

    cfg = config(tmp_path / "j.sqlite")
    j = Journal(tmp_path / "j.sqlite")
    for boot in range(1, 8):
        j.commit(events=[(T0 - 86400 * (9 - boot) - 7200 + k, "count", 7, "press",
                          {"good": 1, "ng": 0, "good_total": k, "ng_total": 0,
                           "boot_id": boot}) for k in range(1, 4)])
    seeded = []

    class Reader(NullDeriver):
        def replay(self, frames, events=()):
            for _ in frames:
                pass
            seeded.extend((e.data["boot_id"], e.data["good_total"]) for e in events
                          if e.kind == "count")

    replay(Reader(), j, cfg, T0 + 600)
    assert BOOTS_KEPT == 4
    assert seeded == [(4, 3), (5, 3), (6, 3), (7, 3)]
