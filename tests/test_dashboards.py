"""dashboards/: every Grafana panel's InfluxQL run against a real InfluxDB 1.6 holding a known
two-shift scenario (frames -> Deriver -> journal -> lampwatch.influx.points line protocol), with the
figures worked out by hand; the InfluxDB 2 template checked against the schema.
"""

import json
import re
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path

import pytest
import servers
from lampwatch import oee
from lampwatch.derive import DeriveConfig, Deriver, Event, NodeConfig
from lampwatch.influx.points import MEASUREMENTS, Placement, event_lines, rejects_points
from lampwatch.journal import Journal
from lampwatch.protocol import (
    T_HEALTH,
    T_HEARTBEAT,
    T_HELLO,
    T_LAMP,
    Frame,
    Header,
    Health,
    Heartbeat,
    Hello,
    Lamp,
    LampEvent,
)

DASHBOARDS = Path(__file__).resolve().parent.parent / "dashboards"
DB = "lampwatch"

# --- the scenario ---------------------------------------------------------------------------
# Monday 2026-03-02, shifts A 08:00-09:00 and B 09:00-10:00 UTC; two machines of plant mill1.
#
# husker (node 7, line L1, ideal 2 s/piece), node booted at 08:00:00:
#   A: RUN 08:00-08:30, STOP (red) 08:30-08:40 = 600 s breakdown (the board also names it),
#      RUN 08:40-09:00
#   B: RUN 09:00-09:20, yellow BLINK 09:20-09:35 = 900 s setup (lamp map blink:yellow ->
#      STOP:setup), RUN 09:35-09:50, IDLE (yellow) 09:50-09:52 = 120 s minor stop, RUN to 10:00
#   Each minute (from 08:00) it ran, it made 24 GOOD + 1 NG; a heartbeat each whole minute
#   carries the node's cumulative counts.
# packer (node 8, line L2, ideal 3 s/piece), node booted at 07:58:20, RUN throughout;
#   it made 18 GOOD + 1 NG each minute from 08:00, also through a Wi-Fi outage: nothing
#   heard after the 09:19:00 heartbeat until the 09:30:45 health report (frames lost), so
#   the deriver declares UNKNOWN from 09:22:00 (last heard + 3 heartbeat periods) and RUN
#   again at 09:31:00; that heartbeat's 12 minutes of output: 3 made in known run time,
#   9 in unknown time.
# Health reports each minute at :45 (none in the outage); rssi husker -60 (A) / -66 (B),
# packer -75 (A) / -80 (B before the outage) / -72 (after).

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc).timestamp()
END = T0 + 7200
CAL = oee.Calendar("UTC", (oee.Shift("A", "08:00", "09:00"), oee.Shift("B", "09:00", "10:00")))
HUSKER, PACKER = 7, 8
PLACES = {"husker": Placement("mill1", "L1"), "packer": Placement("mill1", "L2")}
BOOTS = {HUSKER: (0x0000A001, T0), PACKER: (0x0000B001, T0 - 100)}
G, Y, R = 0, 1, 2
OFF, ON, BLINK = 0, 1, 2
GAP = (T0 + 4770, T0 + 5430)  # packer: frames in this span were lost (09:19:30 .. 09:30:30)
LAMPS = {  # seconds after 08:00 -> lamp changes
    HUSKER: [(0, [(G, ON)]), (1800, [(G, OFF), (R, ON)]), (2400, [(R, OFF), (G, ON)]),
             (4800, [(G, OFF), (Y, BLINK)]), (5700, [(Y, OFF), (G, ON)]),
             (6600, [(G, OFF), (Y, ON)]), (6720, [(Y, OFF), (G, ON)])],
    PACKER: [(-100, [(G, ON)])],
}
PER_BEAT = {HUSKER: (24, 1), PACKER: (18, 1)}


def rssi(node, t):
    if node == HUSKER:
        return -60 if t < T0 + 3600 else -66
    return -75 if t < T0 + 3600 else (-80 if t < GAP[0] else -72)


def _lamps_at(node, t):
    lamps = [OFF] * 5
    for rel, changes in LAMPS[node]:
        if T0 + rel <= t:
            for ch, st in changes:
                lamps[ch] = st
    return tuple(lamps)


def _timed_frames():
    """(rx_s, node, body) of both nodes over the two shifts, frames lost in the gap left out."""
    out = []
    for node, (_, boot_s) in BOOTS.items():
        out.append((boot_s, node, Hello((0, 1, 0), "power_on", bytes.fromhex("a1b2c3d4"),
                                        True, False, 0b111, 60_000)))
        for rel, changes in LAMPS[node]:
            t = T0 + rel
            out.append((t, node, Lamp(tuple(LampEvent(ch, st, round((t - boot_s) * 1000))
                                            for ch, st in changes))))
        good = ng = 0
        for m in range(-1, 120):
            t = T0 + 60 * m + 60  # heartbeats at whole minutes, 07:59 .. 10:00
            if t < boot_s:
                continue
            if t > T0 and _lamps_at(node, t - 30)[G] == ON:  # it ran the minute before
                good, ng = good + PER_BEAT[node][0], ng + PER_BEAT[node][1]
            if not (node == PACKER and GAP[0] < t < GAP[1]):
                out.append((t, node, Heartbeat(good, ng, _lamps_at(node, t))))
        for m in range(120):
            t = T0 + 60 * m + 45
            lost = node == PACKER and GAP[0] < t < GAP[1]
            after_gap = node == PACKER and t > GAP[1]
            if not lost:
                out.append((t, node, Health(rssi(node, t), 80_000 + node, int(after_gap),
                                            22 if after_gap else 0, 0, 0, 0)))
    out.sort(key=lambda f: (f[0], f[1]))
    return out


_TYPES = {Hello: T_HELLO, Lamp: T_LAMP, Heartbeat: T_HEARTBEAT, Health: T_HEALTH}
REJECTS = {("udp:10.0.0.99:4210", "unknown_node"): (5, T0 + 1234.5),
           ("udp:10.0.0.8:4210", "bad_tag"): (2, T0 + 600.0),
           ("udp:10.0.0.8:51000", "bad_tag"): (1, T0 + 5440.0)}
BREAKDOWN_REASON = Event(T0 + 2460, "reason", HUSKER, "husker", {
    "reason": "breakdown", "start_s": T0 + 1800, "end_s": T0 + 2400, "by": "board"})


def scenario_events():
    """Run the frames through the real Deriver, ticking every 10 s as the collector does."""
    d = Deriver(DeriveConfig(
        nodes={HUSKER: NodeConfig(HUSKER, "husker", ideal_cycle_s=2.0, lamp_map={
            "red": "STOP", "yellow": "IDLE", "green": "RUN", "blink:yellow": "STOP:setup"}),
               PACKER: NodeConfig(PACKER, "packer", ideal_cycle_s=3.0)},
        calendar=CAL, heartbeat_s=60.0))
    frames = _timed_frames()
    seqs = dict.fromkeys(BOOTS, 0)
    events: list[Event] = []
    i = 0
    for tick in range(int(T0) - 120, int(END) + 121, 10):  # B's final comes a minute later
        while i < len(frames) and frames[i][0] <= tick:
            rx, node, body = frames[i]
            boot, boot_s = BOOTS[node]
            up_ms = round((rx - boot_s) * 1000)
            header = Header(_TYPES[type(body)], node, boot, seqs[node], up_ms)
            seqs[node] += 1
            events += d.on_frame(Frame(header, body, b""), rx)
            i += 1
        if tick == BREAKDOWN_REASON.ts_s:
            d.add_reason(BREAKDOWN_REASON)
            events.append(BREAKDOWN_REASON)
        events += d.tick(tick)
    assert i == len(frames)
    return events


START, STOP = T0 - 300, END  # the dashboard time range of the tests: 07:55 .. 10:00


def ms(t_s):
    return round(t_s * 1000)


@pytest.fixture(scope="module")
def scenario_lines(tmp_path_factory):
    """The scenario as the collector ships it: frames -> Deriver -> journal -> line protocol
    of lampwatch.influx.points (the journal's events, and its rejects table)."""
    with Journal(tmp_path_factory.mktemp("journal") / "journal.sqlite") as journal:
        journal.commit(events=scenario_events(), rejects=REJECTS)
        rows = journal.events_after(0, limit=100_000)
        rejects = journal.rejects()
    return event_lines(rows, PLACES) + [p.to_line_protocol() for p in rejects_points(rejects)]


@pytest.fixture(scope="module")
def influx(tmp_path_factory, scenario_lines):
    """InfluxDB 1.6 on loopback holding the scenario, written through /write (precision ns)."""
    server = servers.InfluxDB1(tmp_path_factory.mktemp("influxdb1")).start()
    try:
        server.create_database(DB)
        server.write(scenario_lines, DB)
        yield server
    finally:
        server.stop()


influxdb1 = servers.influxdb1


def test_influxdb1_keeps_nanoseconds_and_overwrites_like_the_forwarder_expects(influxdb1):
    influxdb1.create_database("t")
    line = 'machine_state,machine=m code=4i,state="RUN" 1772438400123456789'
    influxdb1.write([line, line.replace("RUN", "STOP").replace("4i", "2i")], "t")
    [res] = influxdb1.query('SELECT "code", "state" FROM "machine_state"', db="t", epoch="ns")
    assert res["series"][0]["values"] == [[1772438400123456789, 2, "STOP"]]


# --- Grafana: macro substitution as Grafana's InfluxQL data source does it ------------------

_REGEX_SPECIALS = re.compile(r"([\\/^$*+?.()|{}\[\]])")


def regex_value(values):
    """A multi-value / "All" template variable inside /^$var$/, as Grafana formats it for
    InfluxQL: each value regex-escaped, one value alone, several as (a|b)."""
    escaped = [_REGEX_SPECIALS.sub(r"\\\1", v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def interpolate(query, variables, start_s=START, stop_s=STOP, interval="30m"):
    """What Grafana sends for `query`: $timeFilter -> `time >= <from>ms and time <= <to>ms`,
    $__interval -> the interval Grafana computed from the range and panel width (given here),
    $name -> regex_value(variables[name]); longest names first so $line never eats $lines."""
    q = query.replace("$timeFilter", f"time >= {ms(start_s)}ms and time <= {ms(stop_s)}ms")
    q = q.replace("$__interval", interval)
    for name in sorted(variables, key=len, reverse=True):
        q = q.replace(f"${name}", regex_value(variables[name]))
    assert "$" not in q.replace("$/", ""), f"macro left in {q}"
    return q


ALL = {"plant": ["mill1"], "line": ["L1", "L2"], "machine": ["husker", "packer"]}


def grafana():
    return json.loads((DASHBOARDS / "grafana-lampwatch.json").read_text())


def grafana_panels():
    return [p for p in grafana()["panels"] if p["type"] != "row"]


def run_panel(server, title, **variables):
    """Every target of the panel, interpolated and run: refId -> list of series."""
    panel = next(p for p in grafana_panels() if p["title"] == title)
    out = {}
    for t in panel["targets"]:
        res = server.query(interpolate(t["query"], dict(ALL, **variables)), db=DB)
        assert len(res) == 1
        out[t["refId"]] = res[0].get("series", [])
    return out


def rows(series, *tags):
    """{tag values: [row dicts]} of query series (tags of GROUP BY, or columns in table form)."""
    out = {}
    for s in series:
        for values in s["values"]:
            r = dict(zip(s["columns"], values))
            r.update(s.get("tags", {}))
            key = tuple(r.pop(t) for t in tags)
            out.setdefault(key if len(key) != 1 else key[0], []).append(r)
    return out


def approx(x):
    return pytest.approx(float(x), rel=1e-9, abs=1e-12)


# The figures, worked out by hand from the scenario (times in s; ideal 2 s husker, 3 s packer).
# husker A: planned 3600, run 3000, 1250 parts (1200 GOOD) -> ideal 2500 s, good 2400 s.
# husker B: planned 3600, setup 900, run 2580 + minor 120 = 2700, 1075 parts (1032 GOOD).
# packer A: run 3600, 1140 parts (1080 GOOD) at 3 s -> 3420 s, good 3240 s.
# packer B: UNKNOWN 09:22:00 .. 09:31:00 = 540 s, so covered = run = 3060 s; made in it
#   51 min x 19 = 969 parts (918 GOOD) -> ideal 2907 s; in unknown time 9 x 19 = 171 (162
#   GOOD): in quality (1080 / 1140), not in performance.
F = Fraction
PACKER_B_RUN = 3060
PACKER_B_Q = F(1080, 1140)
FINAL = {  # (machine, shift) -> OEE, availability, performance, quality
    ("husker", "A"): (F(2400, 3600), F(3000, 3600), F(2500, 3000), F(1200, 1250)),
    ("husker", "B"): (F(2064, 3600), F(2700, 3600), F(2150, 2700), F(1032, 1075)),
    ("packer", "A"): (F(3240, 3600), F(1), F(3420, 3600), F(1080, 1140)),
    ("packer", "B"): (F(2907, 3060) * PACKER_B_Q, F(1), F(2907, 3060), PACKER_B_Q),
}


def check_plant_rollup(r):
    [row] = rows(r.pop("A"))[()]
    covered = 3600 + PACKER_B_RUN
    packer_good = 2907 * PACKER_B_Q  # ideal time x quality: 2754 s
    assert row["OEE"] == approx((2064 + packer_good) / covered)      # 0.7234...
    assert row["Availability"] == approx(F(2700 + PACKER_B_RUN, covered))
    assert row["Performance"] == approx(F(2150 + 2907, 2700 + PACKER_B_RUN))
    assert row["Quality"] == approx((2064 + packer_good) / (2150 + 2907))


def check_machines(r):
    got = rows(r.pop("A"), "plant", "line", "machine")
    assert set(got) == {("mill1", "L1", "husker"), ("mill1", "L2", "packer")}
    for (_, _, machine), [row] in got.items():
        oee_, a, p, q = FINAL[(machine, "B")]  # the latest points: shift B's final figures
        assert (row["OEE"], row["Availability"], row["Performance"], row["Quality"]) == (
            approx(oee_), approx(a), approx(p), approx(q))
    assert got[("mill1", "L1", "husker")][0]["Coverage"] == 1
    assert got[("mill1", "L2", "packer")][0]["Coverage"] == approx(F(PACKER_B_RUN, 3600))
    # counted in known time (the packer's 162 GOOD + 9 NG in unknown time are beside it)
    assert [(row["GOOD"], row["NG"]) for [row] in got.values()] == [(1032, 43), (918, 51)]
    assert {m: row["State"] for m, [row] in rows(r.pop("B"), "machine").items()} == {
        "husker": "RUN", "packer": "RUN"}


def check_oee_per_shift(r, machine):
    final = rows(r.pop("A"))[()]
    assert [row["time"] for row in final] == [ms(T0 + 3600), ms(T0 + 7200)]
    for row, shift in zip(final, "AB"):
        expected = FINAL[(machine, shift)]
        assert [row[k] for k in ("OEE", "Availability", "Performance", "Quality")] == [
            approx(x) for x in expected]
    running = {row["time"]: row["OEE"] for row in rows(r.pop("B"))[()]}
    # one point a minute from 08:01 to 08:59; none at 08:00 (no planned time yet); shift B's
    # wait for A's final point (09:01:10: a heartbeat period after its end), then each minute
    assert sorted(running) == ([ms(T0 + 60 * m) for m in range(1, 60)]
                               + [ms(T0 + 3670 + 60 * k) for k in range(59)])
    if machine == "husker":
        assert running[ms(T0 + 60)] == approx(F(48, 60))         # 24 GOOD x 2 s in 60 s
        # 09:30:10: 480 GOOD, 610 s setup
        assert running[ms(T0 + 5410)] == approx(F(960, 1810))
        assert running[ms(T0 + 7150)] == approx(F(2016, 3550))   # 09:59:10: 1008 GOOD
    else:
        assert running[ms(T0 + 60)] == approx(F(54, 60))         # 18 GOOD x 3 s in 60 s
        assert running[ms(T0 + 3670)] == approx(F(54, 70))       # 09:01:10
        # 09:25:10: UNKNOWN since 09:22:00 is not planned time with a known state: 19
        # heartbeats' 342 GOOD in 1320 s (the last 3 known minutes' output not yet heard)
        assert running[ms(T0 + 5110)] == approx(F(342 * 3, 1320))


def check_states(r):
    got = {m: [(row["time"], row["state"]) for row in v]
           for m, v in rows(r.pop("A"), "machine").items()}
    assert got == {
        "husker": [(ms(T0 + s), state) for s, state in (
            (0, "RUN"), (1800, "STOP"), (2400, "RUN"), (4800, "STOP"), (5700, "RUN"),
            (6600, "IDLE"), (6720, "RUN"))],
        "packer": [(ms(T0 - 100), "RUN"), (ms(T0 + 4920), "UNKNOWN"),
                   (ms(T0 + 5460), "RUN")]}


def check_losses(r):
    got = {loss: row["minutes"] for loss, [row] in rows(r.pop("A"), "loss").items()}
    assert got == {
        "reduced_speed": approx(F(500 + 430 + 180 + (PACKER_B_RUN - 2907), 60)),
        "setup": 15, "breakdown": 10, "maintenance": 0,
        "process_defect": approx(F(100 + 86 + 180 + 153, 60)),
        "minor_stop": 2, "startup_reject": 0}
    # the Pareto order the panel's sortBy transformation shows
    assert sorted(got, key=got.get, reverse=True) == [
        "reduced_speed", "setup", "breakdown", "process_defect", "minor_stop", "maintenance",
        "startup_reject"]


def check_counts_total(r):
    [row] = rows(r.pop("A"))[()]
    # every count the nodes made (the packer's outage output included): 2232 + 2160 GOOD
    assert (row["GOOD"], row["NG"]) == (1200 + 1032 + 1080 + 1080, 50 + 43 + 60 + 60)


def check_counts(r):
    got = {m: [(row["time"], row["GOOD"], row["NG"]) for row in v]
           for m, v in rows(r.pop("A"), "machine").items()}
    buckets = [ms(T0 + 1800 * k) for k in range(-1, 5)]  # 07:30 .. 10:00
    # by the heartbeat that carried them (each whole minute; the 10:00 one is in the range)
    assert got == {
        "husker": list(zip(buckets, [0, 696, 480, 504, 528, 24], [0, 29, 20, 21, 22, 1])),
        "packer": list(zip(buckets, [0, 522, 540, 360, 720, 18], [0, 29, 30, 20, 40, 1]))}


def check_nodes(r):
    got = {key: row for key, [row] in rows(r.pop("A"), "machine", "node").items()}
    cols = ("RSSI", "Last seen", "Boot began (clock offset)", "Clock uncertainty",
            "Reconnects", "Frames dropped", "Unacked", "Free heap")
    assert {k: tuple(row[c] for c in cols) for k, row in got.items()} == {
        ("husker", "7"): (-66, ms(T0 + 7185), ms(T0), 0, 0, 0, 0, 80007),
        ("packer", "8"): (-72, ms(T0 + 7185), ms(T0 - 100), 0, 1, 22, 0, 80008)}
    hello = {node: (row["Firmware"], row["Reset cause"])
             for node, [row] in rows(r.pop("B"), "node").items()}
    assert hello == {"7": ("0.1.0", "power_on"), "8": ("0.1.0", "power_on")}


def check_rssi(r):
    got = {m: [row["RSSI"] for row in v] for m, v in rows(r.pop("A"), "machine").items()}
    assert got == {"husker": [None, -60, -60, -66, -66, None],
                   "packer": [None, -75, -75, -80, -72, None]}


def check_rejected(r):
    got = {k: row["Rejected"] for k, [row] in rows(r.pop("A"), "source", "reason").items()}
    assert got == {("udp:10.0.0.8", "bad_tag"): 3, ("udp:10.0.0.99", "unknown_node"): 5}


CHECKS = {  # panel title -> check of all its targets' results
    "Plant roll-up (latest figures of each machine)": check_plant_rollup,
    "Machines: latest OEE and state": check_machines,
    "Machine state": check_states,
    "Six big losses, completed shifts (minutes)": check_losses,
    "GOOD / NG in the time range": check_counts_total,
    "GOOD / NG per interval": check_counts,
    "Nodes": check_nodes,
    "Wi-Fi RSSI": check_rssi,
    "Rejected frames": check_rejected,
}
REPEATED = {"OEE per shift: $machine": check_oee_per_shift}  # run once per machine


def test_every_panel_has_queries_and_expected_figures():
    panels = grafana_panels()
    for p in panels:
        assert p["targets"] and all(t["query"].strip() for t in p["targets"]), p["title"]
        assert all(t["datasource"] == {"type": "influxdb", "uid": "${datasource}"}
                   for t in p["targets"]), p["title"]
    assert sorted(p["title"] for p in panels) == sorted([*CHECKS, *REPEATED])


@pytest.mark.parametrize("title", list(CHECKS))
def test_panel_figures(influx, title):
    results = run_panel(influx, title)
    CHECKS[title](results)
    assert results == {}, f"targets whose result was not checked: {sorted(results)}"


@pytest.mark.parametrize("machine", ["husker", "packer"])
def test_repeated_panel_figures_per_machine(influx, machine):
    for title, check in REPEATED.items():
        results = run_panel(influx, title, machine=[machine])
        check(results, machine)
        assert results == {}, f"targets whose result was not checked: {sorted(results)}"


def test_variables_filter_the_panels(influx):
    variables = {v["name"]: v for v in grafana()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "influxdb"
    got = {}
    for name in ("plant", "line", "machine"):
        [res] = influx.query(interpolate(variables[name]["query"], ALL), db=DB)
        got[name] = [v for s in res["series"] for _, v in s["values"]]
    assert got == ALL
    [res] = influx.query(interpolate(variables["machine"]["query"], dict(ALL, line=["L2"])),
                         db=DB)
    assert [v for _, v in res["series"][0]["values"]] == ["packer"]
    # the filters reach the panels: one line, one machine
    machines = rows(run_panel(influx, "Machines: latest OEE and state", line=["L2"])["A"],
                    "plant", "line", "machine")
    assert list(machines) == [("mill1", "L2", "packer")]
    [total] = rows(run_panel(influx, "GOOD / NG in the time range", machine=["husker"])["A"])[()]
    assert (total["GOOD"], total["NG"]) == (2232, 93)


def test_grafana_dashboard_shape():
    d = grafana()
    assert d["schemaVersion"] == 39 and d["uid"] == "lampwatch-oee"
    assert [i["pluginId"] for i in d["__inputs"]] == ["influxdb"]
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    kinds = {p["type"] for p in grafana_panels()}
    assert {"stat", "table", "timeseries", "state-timeline", "barchart"} <= kinds
    for p in grafana_panels():
        for t in p["targets"]:
            assert t["rawQuery"] is True and t["resultFormat"] in ("time_series", "table")
            if "GROUP BY time(" in t["query"]:
                assert "$__interval" in t["query"], p["title"]
            if "frames_rejected" not in t["query"]:
                assert '"machine" =~ /^$machine$/' in t["query"], p["title"]
            assert "$timeFilter" in t["query"], p["title"]


# --- InfluxDB 2 template (Flux): structure and schema; Flux is not executed here ------------
# (no InfluxDB 2.x server is installable from Debian, so these queries are checked against the
# schema only; see dashboards/README.md)

PKGER_CHART_KINDS = {"gauge", "geo", "heatmap", "histogram", "markdown", "mosaic", "scatter",
                     "single_stat", "single_stat_plus_line", "table", "xy", "band"}
FLUX_BUILTIN_VARS = {"timeRangeStart", "timeRangeStop", "windowPeriod"}
FLUX_COLUMNS = {"_time", "_value", "_field", "_measurement", "_start", "_stop"}


def influx2():
    return json.loads((DASHBOARDS / "influxdb2-lampwatch.json").read_text())


def docs_schema():
    """(measurement -> field names, tag names) from the schema tables of docs/influxdb.md."""
    text = (DASHBOARDS.parent / "docs" / "influxdb.md").read_text()
    tags_part = text[text.index("| tag | on | value |"):text.index("Field types never change")]
    tags = {name for line in tags_part.splitlines()[2:] if line.startswith("|")
            for name in re.findall(r"`(\w+)`", line.split("|")[1])}
    table = text[text.index("| measurement | from event | fields | timestamp |"):]
    fields = {}
    for line in table.splitlines()[2:]:
        if not line.startswith("|"):
            break
        cols = line.split("|")
        fields[re.search(r"`(\w+)`", cols[1])[1]] = set(re.findall(r"`(\w+)`", cols[3]))
    return fields, tags


def written_schema(lines):
    """measurement -> field names in the line protocol the collector produced."""
    out = {}
    for line in lines:
        head, field_set, _ = re.split(r"(?<!\\) ", line)
        names = {kv.split("=", 1)[0] for kv in re.split(r",(?=\w+=)", field_set)}
        out.setdefault(head.split(",", 1)[0], set()).update(names)
    return out


def flux_queries():
    for obj in influx2():
        if obj["kind"] == "Dashboard":
            for chart in obj["spec"]["charts"]:
                for q in chart.get("queries", []):
                    yield chart["name"], q["query"]
        elif obj["kind"] == "Variable":
            yield obj["spec"]["name"], obj["spec"]["query"]


def test_influxdb2_template_structure():
    objs = influx2()
    assert {o["apiVersion"] for o in objs} == {"influxdata.com/v2alpha1"}
    assert sorted(o["kind"] for o in objs) == ["Dashboard", "Variable", "Variable"]
    for o in objs:
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", o["metadata"]["name"])
    variables = {o["spec"]["name"] for o in objs if o["kind"] == "Variable"}
    assert variables == {"bucket", "machine"}
    for o in objs:
        if o["kind"] == "Variable":
            assert o["spec"]["type"] == "query" and o["spec"]["language"] == "flux"
    [dash] = [o for o in objs if o["kind"] == "Dashboard"]
    charts = dash["spec"]["charts"]
    cells = set()
    for c in charts:
        kind = c["kind"].lower()
        assert kind in PKGER_CHART_KINDS, c["kind"]
        assert c["queries"] and all(q["query"].strip() for q in c["queries"]), c["name"]
        assert c["width"] > 0 and c["height"] > 0 and c["xPos"] + c["width"] <= 12, c["name"]
        for x in range(c["xPos"], c["xPos"] + c["width"]):  # no two cells overlap
            for y in range(c["yPos"], c["yPos"] + c["height"]):
                assert (x, y) not in cells, c["name"]
                cells.add((x, y))
        if kind == "single_stat":
            assert any(col["type"] == "text" for col in c["colors"])
        if kind == "xy":
            assert c["geom"] in ("line", "step", "stacked", "monotoneX", "bar")
            assert {a["name"] for a in c["axes"]} == {"x", "y"}
        if kind == "mosaic":
            assert c["xCol"] == "_time" and c["ySeriesColumns"] and c["fillColumns"]
        if kind == "table":
            assert c["tableOptions"]["wrapping"] in ("", "single-line", "truncate", "wrap")
        assert all(col["hex"] for col in c.get("colors", []))
    # the same views as the Grafana dashboard
    names = " ".join(c["name"] for c in charts)
    for topic in ("OEE", "per shift", "state", "losses", "GOOD / NG", "Nodes", "RSSI",
                  "Rejected"):
        assert topic in names, topic
    for name, query in flux_queries():
        for var in re.findall(r"\bv\.(\w+)", query):
            assert var in variables | FLUX_BUILTIN_VARS, (name, var)
        for open_, close in ("()", "[]", "{}"):
            assert query.count(open_) == query.count(close), (name, open_)
        if "from(bucket:" in query:
            assert "from(bucket: v.bucket)" in query and (
                "range(start: v.timeRangeStart, stop: v.timeRangeStop)" in query), name


def test_flux_queries_use_only_the_schema(scenario_lines):
    doc_fields, doc_tags = docs_schema()
    assert set(doc_fields) == set(MEASUREMENTS)
    written = written_schema(scenario_lines)
    for measurement, names in written.items():  # the docs describe what is written
        assert names <= doc_fields[measurement], (measurement, names - doc_fields[measurement])
    checked = set()
    for name, query in flux_queries():
        measurements = re.findall(r'r\._measurement == "(\w+)"', query)
        fields = re.findall(r'r\._field == "(\w+)"', query)
        for m in measurements:
            assert m in MEASUREMENTS and m in written, (name, m)
            for f in fields:
                assert f in doc_fields[m] and f in written[m], (name, m, f)
                checked.add((m, f))
        maps = re.findall(r"map\(fn: \(r\) => \(\{(.*?)\}\)\)", query, re.DOTALL)
        computed = {col for body in maps for col in re.findall(r"(\w+):", body)}
        known = (doc_tags | FLUX_COLUMNS | computed
                 | {f for m in measurements for f in doc_fields[m]})
        for cols in re.findall(r"(?:columns|rowKey|ySeriesColumns): \[([^\]]*)\]", query):
            for col in re.findall(r'"(\w+)"', cols):
                assert col in known, (name, col)
        for tag in re.findall(r"\br\.(\w+) == v\.", query):
            assert tag in doc_tags, (name, tag)
    assert {m for m, _ in checked} == {"oee", "oee_loss", "machine_state", "counts",
                                       "node_health", "frames_rejected"}
