"""Restart benchmark: a collector's start (the journal's replay) after short and long histories.

    .venv/bin/python bench/restart.py [--machines 100] [--days 1,7] [--runs 2] [--upgrade]
                                      [--dir /tmp]

For each number of days, builds (or reuses) the journal of bench/report.py: the same plant
(per node a heartbeat every 10 s, a HEALTH every minute, a lamp change every ~4 min, parts
while running) written through the journal's commit. Then, each as a fresh process, a
restart a second after its last frame (midnight UTC, two hours into shift C, 22:00-06:00):
the journal opened by the writer, `runtime.replay` into a new Deriver (what
`lampwatch collect` does before it listens), timed, with the peak RSS of that process.
Also timed in it, after the replay: the two reads of it that walked the journal's history
before schema 6 (each node and boot's last count; each machine's last state before the
shift); and in a process of its own, `before_schema_6`, the same two as they read then
(the grouping queries, as plain SQL).

Its frames carry no valid tag (bench/report.py makes them so), so the deriver takes none of
them: this times the journal's reads and the events' replay, not the rebuilding of the
nodes' clock anchors from their last frames (bench/live.py --restart-at times that, on a
journal of 5 hours).

`--upgrade`: the step to schema 6 reads every event once (last_counts filled from the count
events, the state index built); timed on a copy of the last journal made as schema 5 had it.

The baseline is the shortest history: a restart rebuilds the nodes' last frames and the
running shift, which are the same after 1 day or after 30, so a longer history should cost
nothing more. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from report import T0, _run, build, config

_CHILD = r"""
import json, sys, time
from lampwatch.config import load_config
from lampwatch.derive import Deriver
from lampwatch.journal import Journal
from lampwatch.runtime import replay

cfg = load_config(sys.argv[1])
now = float(sys.argv[2])
since = cfg.calendar.shift_at(now).start
t = time.perf_counter()
j = Journal(cfg.journal_path, sync="normal")
opened = time.perf_counter() - t
t = time.perf_counter()
replayed = replay(Deriver(cfg), j, cfg, now)
start = time.perf_counter() - t
out = {"open_s": round(opened, 3), "replay_s": round(start, 3), "replayed_frames": replayed}
t = time.perf_counter()
out["last_counts"] = len(j.last_counts())
out["last_counts_s"] = round(time.perf_counter() - t, 4)
t = time.perf_counter()
out["last_states"] = len(j.last_before("state", since))
out["last_states_s"] = round(time.perf_counter() - t, 4)
out["events"] = j.last_event_id()
print(json.dumps(out))
"""

# The two reads as they were before schema 6 (grouping every count event; every state event
# before the shift), in a process of their own, for comparison.
_GROUPING = r"""
import json, sqlite3, sys, time
from lampwatch.config import load_config

cfg = load_config(sys.argv[1])
since = cfg.calendar.shift_at(float(sys.argv[2])).start
db = sqlite3.connect(f"file:{cfg.journal_path}?mode=ro", uri=True)
out = {}
t = time.perf_counter()
db.execute("SELECT id, ts_s, kind, node_id, machine, data FROM events WHERE id IN (SELECT "
           "max(id) FROM events WHERE kind = 'count' GROUP BY node_id, "
           "json_extract(data, '$.boot_id')) ORDER BY id").fetchall()
out["last_counts_by_grouping_s"] = round(time.perf_counter() - t, 4)
t = time.perf_counter()
db.execute("SELECT id, ts_s, kind, node_id, machine, data FROM events WHERE id IN (SELECT "
           "max(id) FROM events WHERE kind = 'state' AND ts_s < ? GROUP BY machine) "
           "ORDER BY id", (since,)).fetchall()
out["last_states_by_grouping_s"] = round(time.perf_counter() - t, 4)
print(json.dumps(out))
"""

# The step from schema 5: a copy of the journal as schema 5 had it, opened by the writer once.
_UPGRADE = r"""
import json, shutil, sqlite3, sys, time
from lampwatch.journal import Journal

src, dst = sys.argv[1], sys.argv[2]
shutil.copyfile(src, dst)
db = sqlite3.connect(dst)
db.execute("DROP TABLE last_counts")
db.execute("DROP INDEX events_state_machine")
db.execute("PRAGMA user_version=5")
db.commit()
db.close()
t = time.perf_counter()
Journal(dst, sync="normal").close()
print(json.dumps({"upgrade_s": round(time.perf_counter() - t, 2)}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--machines", type=int, default=100)
    ap.add_argument("--days", default="1,7", help="comma-separated; the first is the baseline")
    ap.add_argument("--runs", type=int, default=2, help="restarts of each journal (best)")
    ap.add_argument("--upgrade", action="store_true",
                    help="also time a writer's first open of the last journal as schema 5 "
                         "had it (on a copy)")
    ap.add_argument("--dir", type=Path, default=Path("/tmp"),
                    help="where the journals are (lampwatch-report-MxD.sqlite, as report.py)")
    args = ap.parse_args()
    result: dict = {"date": time.strftime("%Y-%m-%d", time.gmtime()),
                    "python": sys.executable, "machines": args.machines, "journals": []}
    for days in (int(d) for d in args.days.split(",")):
        journal = args.dir / f"lampwatch-report-{args.machines}x{days}.sqlite"
        done = Path(f"{journal}.done")
        info = json.loads(done.read_text()) if done.is_file() and journal.is_file() else None
        if not info or (info["machines"], info["days"]) != (args.machines, days):
            info = build(journal, args.machines, days)
        cfg = config(journal.with_suffix(".toml"), journal, args.machines)
        now = T0 + days * 86400 + 1.0  # its last frames are at 24:00 of its last day
        run = _run([sys.executable, "-c", _CHILD, str(cfg), repr(now)], args.runs)
        child = json.loads(run.pop("out"))
        before = json.loads(_run([sys.executable, "-c", _GROUPING, str(cfg), repr(now)],
                                 args.runs)["out"])
        result["journals"].append({"days": days, "frames": info["frames"],
                                   "bytes": journal.stat().st_size, **child, **run,
                                   "before_schema_6": before})
    if args.upgrade:
        copy = journal.with_name(journal.stem + "-schema5.sqlite")
        try:
            up = json.loads(_run([sys.executable, "-c", _UPGRADE, str(journal), str(copy)],
                                 1)["out"])
        finally:
            for p in (copy, Path(f"{copy}-wal"), Path(f"{copy}-shm")):
                p.unlink(missing_ok=True)
        result["journals"][-1]["upgrade_from_schema_5_s"] = up["upgrade_s"]
    base = result["journals"][0]
    for j in result["journals"]:
        j["x_baseline"] = round(j["wall_s"] / base["wall_s"], 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
