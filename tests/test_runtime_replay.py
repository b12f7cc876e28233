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
