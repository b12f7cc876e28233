"""Per-minute and per-hour OEE rollups in the journal, kept from the events it holds.

What a cell holds and why sums of cells are the OEE engine's figures: host/rollup.py.
Tables (schema 4):
- rollup_minutes / rollup_hours (machine, minute_s | hour_s, class, secs, good, ng, rate,
  ng_gap): the cells, and their sums per whole hour (a report of a month reads hours).
- rollup_machines (machine, from_s, to_s, built_id): cells exist for every minute in
  [from_s, to_s), built from the machine's events with ids up to built_id (and perhaps some
  newer, that a later build takes again). to_s never passes the start of the machine's last
  stop run, nor its newest count (a later count's span starts there).
- rollup_nodes (machine, node_id, first_s, last_s): which nodes a machine's events came from.
- rollup_meta: the classification settings the cells were built with (short_stop_s,
  pm_policy) and `built_id`: every machine's cells hold its events up to that id.

The update is incremental: it rebuilds each machine from the first minute its new events can
change (the start of the stop run they fall in). The collector does it in slices (`step`,
a few ms each, host/upkeep.py): a pass scans the events newer than the journal's built_id
for the machines they change and rebuilds those one at a time; each machine's built_id
says how far its cells are, so a report (`stale`) never uses a cell newer events change,
and a pass cut short by a restart goes on where the journal's built ids say. A journal
migrated from schema 3 has no cells until the first update builds them (lazily, by the
collector); until then, and for any machine with events newer than its cells where they
would change them, a report reads events (host/report/oee_rollup.py).
"""

from __future__ import annotations

import logging
import math
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field

from .. import rollup
from ..events import Event

log = logging.getLogger(__name__)

ROLLUP_SCHEMA = """
CREATE TABLE IF NOT EXISTS rollup_minutes(machine TEXT, minute_s INT, class TEXT, secs REAL,
    good REAL, ng REAL, rate REAL, ng_gap REAL, qty_max REAL, mixed_rate REAL,
    PRIMARY KEY(machine, minute_s, class)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rollup_hours(machine TEXT, hour_s INT, class TEXT, secs REAL,
    good REAL, ng REAL, rate REAL, ng_gap REAL, qty_max REAL, mixed_rate REAL,
    PRIMARY KEY(machine, hour_s, class)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rollup_machines(machine TEXT PRIMARY KEY, from_s REAL, to_s REAL,
    built_id INT);
CREATE TABLE IF NOT EXISTS rollup_nodes(machine TEXT, node_id INT, first_s REAL, last_s REAL,
    PRIMARY KEY(machine, node_id));
CREATE TABLE IF NOT EXISTS rollup_meta(key TEXT PRIMARY KEY, value);
"""
HOUR_S = 3600
# (Queries over the events newer than the cells read them by id: NOT INDEXED, or SQLite
# would walk the kind index over every event of those kinds.)
# A stop run, or a count's span, reaching back further than this is cut here (as the report
# reads a day around its window).
MARGIN_S = 86400.0
_STOPS = ("IDLE", "STOP", "OFF")
_KINDS = "kind IN ('state', 'count', 'reason')"
_BIG = 1e300  # rate of a count with no production time in its span ("infinite")
_NO_ID = 2 ** 63 - 1  # above every event id


def _floor(t: float, step: int = rollup.MINUTE_S) -> int:
    return math.floor(t / step) * step


def meta(db: sqlite3.Connection) -> dict:
    return dict(db.execute("SELECT key, value FROM rollup_meta"))


def machines(db: sqlite3.Connection) -> dict[str, tuple[float, float, int]]:
    """machine -> (from_s, to_s, built_id) of its cells."""
    return {m: (a, b, i) for m, a, b, i in db.execute(
        "SELECT machine, from_s, to_s, built_id FROM rollup_machines")}


def run_start(db: sqlite3.Connection, machine: str, ts: float) -> float:
    """The start of the stop run in effect at `ts` (contiguous IDLE/STOP/OFF states), or `ts`
    when a RUN or UNKNOWN is; never more than MARGIN_S back."""
    start = ts
    for t, state in db.execute(
            "SELECT ts_s, json_extract(data, '$.state') FROM events WHERE machine = ? AND "
            "kind = 'state' AND ts_s <= ? AND ts_s >= ? ORDER BY ts_s DESC, id DESC",
            (machine, ts, ts - MARGIN_S)):
        if state not in _STOPS:
            return start if start != ts else t
        start = t
    return start


def _machine_events(db: sqlite3.Connection, machine: str, from_s: float) -> list[tuple]:
    """The machine's events a rebuild from `from_s` needs, in id order: its states from the
    start of the stop run in effect at from_s (and the one before), its counts from from_s
    (an earlier count's output lies before from_s), its reasons from a day before."""
    sel = "SELECT id, ts_s, kind, node_id, data FROM events WHERE machine = ?1 AND "
    # one indexed range per kind (an OR of them would read all the machine's events)
    return sorted(db.execute(
        sel + "kind = 'state' AND ts_s >= ?2 UNION ALL " + sel + "kind = 'count' AND "
        "ts_s >= ?3 UNION ALL " + sel + "kind = 'reason' AND ts_s >= ?4 UNION ALL "
        "SELECT * FROM (" + sel + "kind = 'state' AND ts_s < ?2 ORDER BY ts_s DESC, id DESC "
        "LIMIT 1)", (machine, run_start(db, machine, from_s), from_s, from_s - MARGIN_S)))


def _build_machine(db: sqlite3.Connection, machine: str, from_s: float, settings: dict,
                   built_id: int) -> None:
    rows = _machine_events(db, machine, from_s)
    events = []
    states: list[tuple[float, str]] = []
    newest_count = -math.inf
    nodes: dict[int, list[float]] = {}
    for _id, ts, kind, node, data in rows:
        try:
            ev = Event.from_row(ts, kind, node, machine, data)
        except (TypeError, ValueError):
            continue  # a malformed row is skipped, as the report does
        events.append(ev)
        if kind == "state":
            states.append((ev.ts_s, ev.data.get("state")))
        elif kind == "count":
            newest_count = max(newest_count, ev.ts_s)
        if node is not None and ts >= from_s:
            span = nodes.setdefault(node, [ts, ts])
            span[0], span[1] = min(span[0], ts), max(span[1], ts)
    states.sort()
    # Cells end where what they hold is still open: a stop run still going (its class
    # depends on its length), and the newest count (the next one's span starts there).
    # A RUN or UNKNOWN going on is known up to the newest count: the report's last state
    # lasts at least until then.
    if not states:
        to = from_s
    elif states[-1][1] in _STOPS:
        to = states[-1][0]
        for t, state in reversed(states[:-1]):
            if state not in _STOPS:
                break
            to = t
        to = min(to, newest_count) if newest_count > -math.inf else to
    else:
        to = max(states[-1][0], newest_count)
    to_s = max(from_s, _floor(to))
    cells = rollup.minute_cells(events, from_s, to_s, until_s=newest_count,
                                short_stop_s=settings["short_stop_s"],
                                pm_policy=settings["pm_policy"]) if to_s > from_s else {}
    db.execute("DELETE FROM rollup_minutes WHERE machine = ? AND minute_s >= ?",
               (machine, from_s))
    db.execute("DELETE FROM rollup_hours WHERE machine = ? AND hour_s >= ?",
               (machine, _floor(from_s, HOUR_S)))
    db.executemany("INSERT INTO rollup_minutes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   [(machine, m, cls, c[0], c[1], c[2], min(c[3], _BIG),
                     None if c[4] == math.inf else c[4], c[5], min(c[6], _BIG))
                    for (m, cls), c in cells.items()])
    old = db.execute("SELECT from_s FROM rollup_machines WHERE machine = ?",
                     (machine,)).fetchone()
    first = from_s if old is None else min(old[0], from_s)
    # whole hours inside [first, to_s) from their minutes
    db.execute("INSERT INTO rollup_hours SELECT machine, minute_s / 3600 * 3600 AS h, class, "
               "sum(secs), sum(good), sum(ng), max(rate), min(ng_gap), max(qty_max), "
               "max(mixed_rate) FROM rollup_minutes "
               "WHERE machine = ? AND minute_s >= ? AND minute_s < ? GROUP BY h, class",
               (machine, max(_floor(from_s, HOUR_S), -(-first // HOUR_S) * HOUR_S),
                _floor(to_s, HOUR_S)))
    # built_id never goes back: a rebuild (journal recompute) may have taken it further
    db.execute("INSERT INTO rollup_machines VALUES (?, ?, ?, ?) ON CONFLICT(machine) DO UPDATE "
               "SET from_s = excluded.from_s, to_s = excluded.to_s, "
               "built_id = max(built_id, excluded.built_id)",
               (machine, first, to_s, built_id))
    db.executemany("INSERT INTO rollup_nodes VALUES (?, ?, ?, ?) ON CONFLICT(machine, node_id) "
                   "DO UPDATE SET first_s = min(first_s, excluded.first_s), "
                   "last_s = max(last_s, excluded.last_s)",
                   [(machine, n, a, b) for n, (a, b) in nodes.items()])


def _settings(m: dict, short_stop_s: float | None, pm_policy: str | None) -> tuple[dict, bool]:
    """The classification to build with (None: as recorded, else the engine's defaults), and
    whether it differs from the one the cells were built with."""
    from .. import oee
    settings = {"short_stop_s": float(short_stop_s if short_stop_s is not None else
                                      m.get("short_stop_s", oee.DEFAULT_SHORT_STOP_S)),
                "pm_policy": pm_policy or m.get("pm_policy", oee.DEFAULT_PM_POLICY)}
    return settings, (settings["short_stop_s"] != m.get("short_stop_s", settings["short_stop_s"])
                      or settings["pm_policy"] != m.get("pm_policy", settings["pm_policy"]))


def _set_meta(db: sqlite3.Connection, **values) -> None:
    db.executemany("INSERT INTO rollup_meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET "
                   "value = excluded.value", list(values.items()))


def _newest(db: sqlite3.Connection) -> int:
    return db.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0]


def _changes(db: sqlite3.Connection, lo: int, hi: int) -> dict[str, float]:
    """machine -> the earliest time (ts_s, a count's since_s, a reason's start_s) of its
    events with ids in (lo, hi] that its cells do not hold (id above its built_id)."""
    return {machine: min(t for t in (ts, since, start) if t is not None)
            for machine, ts, since, start in db.execute(
                "SELECT machine, min(ts_s), min(json_extract(data, '$.since_s')), "
                "min(json_extract(data, '$.start_s')) FROM events NOT INDEXED "
                f"WHERE id > ?1 AND id <= ?2 AND {_KINDS} AND machine IS NOT NULL AND id > "
                "coalesce((SELECT built_id FROM rollup_machines r WHERE "
                "r.machine = events.machine), 0) GROUP BY machine", (lo, hi))}


def _rebuild_machine(db: sqlite3.Connection, machine: str, t: float, settings: dict,
                     built_id: int, *, rebuild: bool = False,
                     from_s: float | None = None) -> None:
    """Rebuild the machine's cells from the first minute events changed at `t` can change:
    where its cells end if t is later, else the start of the stop run t falls in (or from
    `from_s`, not before it, when given)."""
    old = db.execute("SELECT to_s FROM rollup_machines WHERE machine = ?",
                     (machine,)).fetchone()
    if old is not None and not rebuild and t >= old[0]:
        start = old[0]  # only new time: from where the cells end
    else:
        start = run_start(db, machine, t) if old is not None else t
        start = max(start, from_s) if from_s is not None else start
    _build_machine(db, machine, _floor(start), settings, built_id)


@dataclass
class Pass:
    """An incremental update under way, between slices (kept in memory by its writer).

    It accounts for the events with ids in (first, upto]: it scans them SCAN_CHUNK at a
    time for the machines whose cells they change, then rebuilds those one by one. Each
    rebuilt machine's built_id becomes `upto` (its cells may hold newer events; those are
    found by the next pass, and by `stale`), and when the last is done the journal's
    built_id becomes `upto`. Nothing else is durable: a pass lost (a restart, a failed
    slice) is begun again from the journal's built_id, and skips the events the machines
    rebuilt meanwhile hold.
    """

    scanned: int  # events up to this id are scanned
    upto: int
    dirty: dict[str, float] = field(default_factory=dict)  # machine -> earliest change
    order: list[str] | None = None  # the dirty machines left, last first, once scanned


SCAN_CHUNK = 5000  # events a scan reads: 5-9 ms for a plant of 10,000 machines


def step(db: sqlite3.Connection, pending: Pass | None, more: Callable[[], bool], *,
         short_stop_s: float | None = None,
         pm_policy: str | None = None) -> tuple[Pass | None, int]:
    """One slice of the incremental update: scans of SCAN_CHUNK events and machine rebuilds
    while more() says so (asked after each; at least one is done). Returns the pass left
    (None: the cells hold every event there was when the pass began) and how many machines
    were rebuilt.

    Args:
        pending: the pass a previous slice left, or None to begin one (nothing to do if no
            event is newer than the journal's built_id).
        short_stop_s, pm_policy: the classification to build with (None: as recorded, else
            the engine's defaults); a change deletes every cell and begins a pass over all
            events (a report reads events for the machines not yet rebuilt).
    The caller holds the write transaction.
    """
    m = meta(db)
    settings, changed = _settings(m, short_stop_s, pm_policy)
    if changed or "short_stop_s" not in m or "pm_policy" not in m:
        if changed:  # every cell was classified otherwise
            for table in ("rollup_minutes", "rollup_hours", "rollup_machines", "rollup_nodes"):
                db.execute(f"DELETE FROM {table}")
            pending, m["built_id"] = None, 0
        _set_meta(db, **settings, built_id=int(m.get("built_id", 0)))
    low = int(m.get("built_id", 0))
    if pending is None:
        pending = Pass(low, _newest(db))
    built = 0
    while True:
        if pending.scanned < pending.upto:
            hi = min(pending.upto, pending.scanned + SCAN_CHUNK)
            for machine, t in _changes(db, pending.scanned, hi).items():
                pending.dirty[machine] = min(t, pending.dirty.get(machine, t))
            pending.scanned = hi
            if hi == pending.upto:
                pending.order = sorted(pending.dirty, reverse=True)
        elif pending.order:
            machine = pending.order.pop()
            _rebuild_machine(db, machine, pending.dirty.pop(machine), settings, pending.upto)
            built += 1
        if pending.scanned >= pending.upto and not pending.order:
            _set_meta(db, built_id=max(low, pending.upto))
            if built:
                log.debug("rollups: %d machines rebuilt up to event %d", built, pending.upto)
            return None, built
        if not more():
            return pending, built


def rebuild(db: sqlite3.Connection, from_s: float | None = None) -> int:
    """Rebuild every machine from `from_s` (None: all cells, each machine from its first
    event) with the recorded classification, in one go; returns how many machines.
    The caller holds the write transaction."""
    m = meta(db)
    settings, _ = _settings(m, None, None)
    newest = _newest(db)
    if from_s is None:
        for table in ("rollup_minutes", "rollup_hours", "rollup_machines", "rollup_nodes"):
            db.execute(f"DELETE FROM {table}")
    dirty = _changes(db, 0, newest)
    if from_s is not None:
        dirty = {mc: from_s for mc in set(dirty) | set(machines(db))}
    for machine, t in sorted(dirty.items()):
        _rebuild_machine(db, machine, t, settings, newest, rebuild=True, from_s=from_s)
    _set_meta(db, **settings, built_id=max(newest, int(m.get("built_id", 0))))
    if dirty:
        log.debug("rollups: %d machines rebuilt up to event %d", len(dirty), newest)
    return len(dirty)


def stale(db: sqlite3.Connection) -> dict[str, float]:
    """machine -> the earliest time its events newer than its cells would change.

    Such events are newer than the journal's built_id (every machine's cells hold the events
    up to it) and than the lowest built_id of any machine: only those are read."""
    have = machines(db)
    if not have:
        return {}
    lo = max(int(meta(db).get("built_id", 0)), min(b for _, _, b in have.values()))
    return {machine: run_start(db, machine, t)
            for machine, t in _changes(db, lo, _NO_ID).items() if machine in have}


def sums(db: sqlite3.Connection, spans: list[tuple[int, int, bool]],
         bounds: dict[str, tuple[int, int]]) -> list[tuple]:
    """Per machine, whether planned, and class: seconds, good, ng, max rate, min ng_gap (of
    cells with NG), max qty_max, max mixed_rate of the cells in the planned (True) and
    unplanned (False) whole-minute `spans`, each machine within its own [a, b) of `bounds`;
    whole hours read from rollup_hours."""
    out = []
    for machine, (a, b) in bounds.items():
        for p, q, planned in spans:
            lo, hi = max(p, a), min(q, b)
            if hi <= lo:
                continue
            h0, h1 = -(-lo // HOUR_S) * HOUR_S, _floor(hi, HOUR_S)
            parts = [("rollup_hours", "hour_s", h0, h1), ("rollup_minutes", "minute_s", lo, h0),
                     ("rollup_minutes", "minute_s", h1, hi)] if h1 > h0 else [
                ("rollup_minutes", "minute_s", lo, hi)]
            for table, col, x, y in parts:
                if y <= x:
                    continue
                for row in db.execute(
                        f"SELECT class, sum(secs), sum(good), sum(ng), max(rate), "
                        f"min(CASE WHEN ng > 0 THEN ng_gap END), max(qty_max), "
                        f"max(mixed_rate) FROM {table} WHERE "
                        f"machine = ? AND {col} >= ? AND {col} < ? GROUP BY class",
                        (machine, x, y)):
                    out.append((machine, planned, *row))
    return out


def cells(db: sqlite3.Connection, machine: str, a: float, b: float) -> list[tuple]:
    return db.execute("SELECT minute_s, class, secs, rate FROM rollup_minutes WHERE "
                      "machine = ? AND minute_s >= ? AND minute_s < ? ORDER BY minute_s",
                      (machine, a, b)).fetchall()


def node_ids(db: sqlite3.Connection, machine: str, a: float, b: float) -> list[int]:
    return [n for (n,) in db.execute("SELECT node_id FROM rollup_nodes WHERE machine = ? AND "
                                     "first_s < ? AND last_s >= ?", (machine, b, a))]
