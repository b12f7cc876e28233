"""Raw frames out and in, and recompute under config versions (issue 14, items 3 and 4).

The scenario journal is made by the collector's real path (tests/plantsim.py: the
firmware's codec and outbox, a link gap, a collector outage); `lampwatch journal` commands
run through the CLI. The truth each test states: the journal the collector made.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import sys
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pytest
import servers
from click.testing import CliRunner
from lampwatch.cli import cli
from lampwatch.config import load_config
from lampwatch.journal import Journal
from plantsim import DAY, G, Machine, Plant, R, Y, at

REPO = Path(__file__).resolve().parent.parent
SHIFT_A = '\n[[calendar.shifts]]\nname = "A"\nstart = "06:00"\nend = "14:00"\n'
NODES = {7: {"machine": "press", "ideal_s": 2.0}, 8: {"machine": "saw", "ideal_s": 5.0}}


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat()


def run(*args: str):
    res = CliRunner().invoke(cli, list(args), standalone_mode=False)
    assert res.exception is None, (res.output, res.exception)
    return res


def frames(path) -> list[tuple]:
    with Journal(path) as j:
        return [(f.rx_s, f.source, f.node_id, f.boot_id, f.seq, f.type, f.uptime_ms, f.raw)
                for f in j.frames_after(0, 10**9)]


def events(path, kinds=None) -> list[tuple]:
    with Journal(path) as j:
        return [(e.ts_s, e.kind, e.node_id, e.machine, e.data) for e in j.events_after(0, 10**9)
                if kinds is None or e.kind in kinds]


def table(path, sql) -> list[tuple]:
    db = sqlite3.connect(path)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def by_content(evs):
    return sorted(evs, key=lambda e: (e[0], e[1], e[2] or 0, e[4]))


def config_for(src: Path, journal: str, dest: Path, **replace: str) -> Path:
    """A copy of the plant's config naming another journal (and with `replace` applied)."""
    text = src.read_text().replace('journal = "journal.sqlite"', f'journal = "{journal}"')
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    dest.write_text(text)
    return dest


@pytest.fixture(scope="module")
def plant_journal(tmp_path_factory):
    """Two machines through shift A: a stop, a setup, a 20 min link gap, a 30 min outage."""
    tmp = tmp_path_factory.mktemp("plant")
    p = Plant(tmp, NODES, SHIFT_A)
    p.node(7, Machine([(at("05:00"), {G: 1}), (at("08:00"), {G: 0, R: 1}),
                       (at("08:20"), {R: 0, G: 1})], ideal_s=2.0, speed=0.9, ng_every=40),
           boot_at=at("04:59"))
    saw = p.node(8, Machine([(at("05:30"), {G: 1}), (at("10:00"), {G: 0, Y: 1}),
                             (at("10:40"), {Y: 0, G: 1})], ideal_s=5.0, speed=0.8),
                 boot_at=at("05:10"))
    saw.link_down.append((at("11:00"), at("11:20")))
    p.start_collector()
    p.run(at("14:05"), outages=[(at("12:00"), at("12:30"))])
    p.close()
    dump = tmp / "dump.jsonl"
    run("journal", "export", "--config", str(p.config_path), str(dump))
    return p.config_path, p.journal_path, dump


def test_export_then_import_into_a_fresh_journal_round_trips(plant_journal, tmp_path):
    config, original, dump = plant_journal
    lines = dump.read_text().splitlines()
    first = json.loads(lines[0])
    assert set(first) == {"rx", "src", "frame"} and first["src"] == "udp:10.0.0.7:4210"
    assert len(lines) == len(frames(original)) > 5000
    cfg = config_for(config, "fresh.sqlite", tmp_path / "fresh.toml")
    res = run("journal", "import", str(dump), "--config", str(cfg))
    assert f"{len(lines)} frames read: {len(lines)} stored, 0 duplicates" in res.output
    fresh = load_config(cfg).journal_path
    # frames: the same bytes, receive times and sources, in the same order
    assert frames(fresh) == frames(original)
    # derived events: every one the collector derived, identical (time, kind, node, data)
    a, b = events(original), events(fresh)
    assert Counter(e[1] for e in a)["state"] >= 8 and len(b) == len(a)
    assert by_content(b) == by_content(a)
    # the OEE points (each made at a tick) even in the same order
    assert events(fresh, {"oee"}) == events(original, {"oee"})
    # and a journal made by an import goes round again exactly, in order
    again = tmp_path / "again.jsonl"
    run("journal", "export", "--config", str(cfg), str(again))
    assert again.read_text() == dump.read_text()
    cfg2 = config_for(config, "again.sqlite", tmp_path / "again.toml")
    run("journal", "import", str(again), "--config", str(cfg2))
    assert frames(load_config(cfg2).journal_path) == frames(fresh)
    assert events(load_config(cfg2).journal_path) == events(fresh)


def test_export_selects_by_time_and_node(plant_journal, tmp_path):
    config, original, _ = plant_journal
    out = tmp_path / "part.jsonl"
    run("journal", "export", "--config", str(config), "--from", "2026-03-02T09:00",
        "--to", "2026-03-02T10:00", "--node", "8", str(out))
    got = [json.loads(line) for line in out.read_text().splitlines()]
    want = [f for f in frames(original) if f[2] == 8 and at("09:00") <= f[0] < at("10:00")]
    assert [(g["rx"], bytes.fromhex(g["frame"])) for g in got] == [(f[0], f[7]) for f in want]
    assert len(got) > 300


def test_importing_twice_changes_no_frame_and_no_event(plant_journal, tmp_path):
    config, _, dump = plant_journal
    cfg = config_for(config, "twice.sqlite", tmp_path / "twice.toml")
    run("journal", "import", str(dump), "--config", str(cfg))
    path = load_config(cfg).journal_path
    before = (frames(path), events(path), table(path, "SELECT * FROM heard"),
              table(path, "SELECT * FROM config_versions"))
    assert table(path, "SELECT * FROM rejects") == []
    res = run("journal", "import", str(dump), "--config", str(cfg))
    n = len(before[0])
    assert f"{n} frames read: 0 stored, {n} duplicates, 0 refused" in res.output
    assert (frames(path), events(path), table(path, "SELECT * FROM heard"),
            table(path, "SELECT * FROM config_versions")) == before
    # the second import's frames are counted as duplicates of source "import", nothing else
    assert table(path, "SELECT source, reason, sum(count) FROM rejects GROUP BY 1, 2") == [
        ("import", "duplicate", n)]


@pytest.mark.parametrize("bad, message", [
    ("{not json", "not JSON"),
    ('{"rx": "09:00", "src": "udp:1", "frame": "00"}', '"rx" must be unix seconds'),
    ('{"rx": 1.0, "frame": "00"}', '"src" must be the address'),
    ('{"rx": 1.0, "src": "udp:1", "frame": "0g"}', '"frame" is not hexadecimal'),
    ("[1, 2]", "not a JSON object"),
])
def test_a_bad_line_stops_with_one_line_naming_it_and_loses_nothing(plant_journal, tmp_path,
                                                                    capsys, bad, message):
    from lampwatch.cli import main

    config, original, dump = plant_journal
    lines = dump.read_text().splitlines(keepends=True)
    broken = tmp_path / "broken.jsonl"
    broken.write_text("".join(lines[:1000]) + bad + "\n" + "".join(lines[1000:]))
    cfg = config_for(config, "broken.sqlite", tmp_path / "broken.toml")
    with pytest.raises(SystemExit) as exit_:
        main(["journal", "import", str(broken), "--config", str(cfg)])
    assert exit_.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"lampwatch: {broken}:1001: ") and message in err
    assert "\n" not in err and "Traceback" not in err
    path = load_config(cfg).journal_path
    assert frames(path) == frames(original)[:1000]  # everything before the line is stored
    # the line fixed, the same import again: the rest is added, nothing twice
    broken.write_text("".join(lines))
    main(["journal", "import", str(broken), "--config", str(cfg)])
    assert frames(path) == frames(original)
    # every event derived as by the collector; the second import resumed like a restarted
    # collector, which makes a running-shift OEE point at once (and the same final)
    assert by_content([e for e in events(path) if e[1] != "oee"]) == by_content(
        [e for e in events(original) if e[1] != "oee"])
    finals = [e for e in events(path, {"oee"}) if json.loads(e[4])["final"]]
    assert finals == [e for e in events(original, {"oee"}) if json.loads(e[4])["final"]]
    assert len(finals) == 2


def test_a_recompute_after_an_ideal_cycle_fix_changes_p_and_oee_and_nothing_else(
        plant_journal, tmp_path):
    config, original, _ = plant_journal
    journal = tmp_path / "j.sqlite"
    shutil.copy(original, journal)
    # the press's real ideal cycle is 1.6 s, not 2.0: it ran at 0.9 x 2.0 / 1.6 s a unit
    fixed = config_for(config, str(journal), tmp_path / "fixed.toml",
                       **{"ideal_cycle_s = 2.0": "ideal_cycle_s = 1.6"})
    window = ("--from", iso(at("06:00")), "--to", iso(at("14:00")), "--format", "json")
    before = json.loads(run("oee", "report", "--config", str(fixed), *window).output)
    old = events(journal)
    res = run("journal", "recompute", "--config", str(fixed), "--from", iso(DAY), "--apply")
    assert "version 2 recorded" in res.output
    after = json.loads(run("oee", "report", "--config", str(fixed), *window).output)
    # The report used version 1 (ideal 2.0) before, version 2 (1.6) now, and says so
    assert [v["version"] for v in before["config_versions"]] == [1]
    assert [v["version"] for v in after["config_versions"]] == [2]
    rows = {r["machine"]: (r, s) for r, s in zip(before["machines"], after["machines"])}
    press_b, press_a = rows["press"]
    assert press_b["performance"] == pytest.approx(0.9, abs=0.01)  # the truth at 2.0 s
    assert press_a["performance"] == pytest.approx(0.9 * 1.6 / 2.0, abs=0.01)  # and at 1.6 s
    assert press_a["oee"] == pytest.approx(press_b["oee"] * 1.6 / 2.0, rel=1e-9)
    # the report sums per-minute rollups: a count spread over minutes (unknown_good) is the
    # same sum, cut at other places, so equal to the last bits of a double
    for key in ("availability", "good", "ng", "planned_coverage", "unknown_good"):
        assert press_a[key] == pytest.approx(press_b[key], rel=1e-12, abs=1e-12), key
    # quality is weighted by ideal time: the same ratio, computed with another factor
    assert press_a["quality"] == pytest.approx(press_b["quality"], rel=1e-12)
    saw_b, saw_a = rows["saw"]  # another machine's figures: untouched (to the last bits:
    assert saw_a.keys() == saw_b.keys()  # its rollups were rebuilt too, summed in other cuts)
    for key, value in saw_b.items():
        assert saw_a[key] == (pytest.approx(value, rel=1e-12, abs=1e-12)
                              if isinstance(value, float) else value), key
    new = events(journal)
    # states, lamps, counts, hellos: identical; the OEE events differ in P, OEE, TEEP and the
    # losses an ideal cycle prices, for the press only
    keep = {"state", "lamp", "count", "hello", "health", "reason", "clock"}
    assert by_content([e for e in new if e[1] in keep]) == by_content(
        [e for e in old if e[1] in keep])
    oee_old, oee_new = (by_content([e for e in x if e[1] == "oee"]) for x in (old, new))
    assert [e[:4] for e in oee_old] == [e[:4] for e in oee_new]
    changed = set()
    for a, b in zip(oee_old, oee_new):
        da, db = json.loads(a[4]), json.loads(b[4])
        diff = {k for k in da if da[k] != db[k]
                and not (k == "quality" and db[k] == pytest.approx(da[k], rel=1e-12))}
        if a[3] == "saw":
            assert not diff
        changed |= diff
        for k in ("availability", "good", "ng", "coverage"):
            assert da.get(k) == db.get(k), k
        assert db["quality"] == pytest.approx(da["quality"], rel=1e-12)
    assert changed == {"performance", "oee", "teep", "losses"}


def test_a_recompute_under_the_same_versions_changes_nothing(plant_journal, tmp_path):
    config, original, _ = plant_journal
    journal = tmp_path / "j.sqlite"
    shutil.copy(original, journal)
    cfg = config_for(config, str(journal), tmp_path / "same.toml")
    old = events(journal)
    res = run("journal", "recompute", "--config", str(cfg), "--from", iso(at("09:30")))
    assert "config version(s) 1" in res.output and "recorded" not in res.output
    assert by_content(events(journal)) == by_content(old)
    assert table(journal, "SELECT version FROM config_versions") == [(1,)]


def test_the_collector_records_a_config_version_when_its_config_changes(tmp_path):
    p = Plant(tmp_path, {7: {"machine": "press", "ideal_s": 2.0}}, SHIFT_A)
    try:
        p.start_collector()
        p.run(at("00:01"))
        p.stop_collector()
        p.start_collector()  # the same config: no new version
        p.run(at("00:02"))
        p.stop_collector()
        path = p.config_path
        path.write_text(path.read_text().replace("ideal_cycle_s = 2.0", "ideal_cycle_s = 1.5"))
        p.config = load_config(path)
        p.start_collector()
        p.run(at("00:03"))
    finally:
        p.close()
    rows = table(p.journal_path, "SELECT version, effective_from_s, summary FROM config_versions")
    assert [(v, s) for v, _, s in rows] == [
        (1, "first version"), (2, "node 7 ideal_cycle_s 2.0 -> 1.5")]
    # the first version holds from the journal's beginning, the next from the restart
    assert rows[0][1] == 0.0 and at("00:02") <= rows[1][1] < at("00:02:01")
    res = run("journal", "versions", "--config", str(p.config_path))
    assert res.output.splitlines()[0].startswith("  1  from 1970-01-01T00:00:00")
    assert res.output.splitlines()[1].startswith("  2  from 2026-03-02T00:02:00")


def test_memory_stays_bounded_while_importing(tmp_path):
    """Peak RSS importing 3x the frames is the same within 3 MB once the collector's dedupe
    window of the node is full (4,096 seqs: 5,000 and 15,000 frames of one node): nothing
    in the import grows with the file. bench/journal_import.py measures 1 M frames."""
    sys.path.insert(0, str(REPO / "bench"))
    import journal_import as bench

    dump = tmp_path / "frames.jsonl"
    bench.write_frames(dump, 1, 15_000)
    base = bench.probe("baseline", dump, 15_000)
    small = bench.probe("import", dump, 5_000, bench.write_config(tmp_path, "small", 1))
    large = bench.probe("import", dump, 15_000, bench.write_config(tmp_path, "large", 1))
    print({"baseline": base, "small": small, "large": large})
    assert (small["frames"], large["frames"]) == (5_000, 15_000)
    assert large["rss_mb"] - small["rss_mb"] < 3.0, (small, large)
    assert large["rss_mb"] - base["rss_mb"] < 30.0, (base, large)


victoria_metrics = servers.victoria_metrics


def test_a_recompute_sends_its_events_to_influxdb(plant_journal, tmp_path, victoria_metrics,
                                                  monkeypatch):
    """--influx: the recomputed events go out through the forwarder to a real InfluxDB
    write API (VictoriaMetrics on loopback): the press's final OEE point carries the P of
    the fixed ideal cycle."""
    config, original, _ = plant_journal
    journal = tmp_path / "j.sqlite"
    shutil.copy(original, journal)
    cfg = config_for(config, str(journal), tmp_path / "influx.toml",
                     **{"ideal_cycle_s = 2.0": "ideal_cycle_s = 1.6"})
    cfg.write_text(cfg.read_text() + f'\n[influxdb]\nurl = "{victoria_metrics.url}"\n'
                   'org = "plant"\nbucket = "lampwatch"\n')
    monkeypatch.setenv("LAMPWATCH_INFLUX_TOKEN", "not-checked")
    res = run("journal", "recompute", "--config", str(cfg), "--from", iso(DAY), "--apply",
              "--influx")
    sent = int(res.output.split("sent to InfluxDB")[1].split(": ")[1].split()[0])
    assert sent == len(events(journal))
    got = victoria_metrics.export('{__name__="oee_performance",machine="press"}')
    finals = [(t, v) for item in got for t, v in zip(item["timestamps"], item["values"])
              if t == int(at("14:00") * 1000)]
    assert [round(v, 2) for _, v in finals] == [0.72]  # 0.9 x 1.6 / 2.0: the truth at 1.6 s
