"""Event -> line protocol: the exact strings per event kind, types, timestamps and tags."""

import json
from types import SimpleNamespace

import pytest
from lampwatch.influx.points import (
    EventDataError,
    Placement,
    event_lines,
    event_points,
    placements_from,
    rejects_points,
    ts_ns,
)

PLACES = {"husker": Placement("Rice Mill 1", "line A")}
T = 1700000000.123  # 2023-11-14T22:13:20.123Z


def row(kind, data, machine="husker", node_id=7, ts_s=T, id=1):
    return {"id": id, "ts_s": ts_s, "kind": kind, "node_id": node_id, "machine": machine,
            "data": json.dumps(data)}


def lines(r):
    return [p.to_line_protocol() for p in event_points(r, PLACES)]


TAGS = r"line=line\ A,machine=husker,node=7,plant=Rice\ Mill\ 1"
MTAGS = r"line=line\ A,machine=husker,plant=Rice\ Mill\ 1"

CASES = {
    "state": (
        {"state": "RUN", "prev": "IDLE"},
        [f'machine_state,{TAGS} code=4i,prev="IDLE",state="RUN" 1700000000123000000'],
    ),
    "state_unknown": (
        {"state": "UNKNOWN", "prev": "RUN"},
        [f'machine_state,{TAGS} code=0i,prev="RUN",state="UNKNOWN" 1700000000123000000'],
    ),
    "lamp": (
        {"lamp": "green", "state": "BLINK"},
        [(rf'lamp,{TAGS.replace("line=", "lamp=green,line=")} code=2i,state="BLINK"'
         " 1700000000123000000")],
    ),
    "count": (
        {"good": 3, "ng": 0, "good_total": 1234, "ng_total": 5, "boot_id": 3735928559},
        [(f"counts,{TAGS} boot_id=3735928559i,good=3i,good_total=1234i,ng=0i,ng_total=5i"
         " 1700000000123000000")],
    ),
    "hello": (
        {"boot_id": 3, "fw": "0.1.0", "reset_cause": "watchdog", "config_hash": "a1b2c3d4"},
        [(f'node_hello,{TAGS} boot_id=3i,config_hash="a1b2c3d4",fw="0.1.0",'
         'reset_cause="watchdog" 1700000000123000000')],
    ),
    "health": (
        {"rssi": -67, "free_heap": 81234, "reconnects": 2, "frames_dropped": 0,
         "irq_resyncs": 1, "events_dropped": 0, "unacked": 3, "clock_offset_ms": 12,
         "clock_uncertainty_ms": 3.0},
        # clock_offset_ms arrived as JSON 12 and is still a float field (no "i")
        [(f"node_health,{TAGS} clock_offset_ms=12,clock_uncertainty_ms=3,events_dropped=0i,"
         "frames_dropped=0i,free_heap=81234i,irq_resyncs=1i,last_seen_ms=1700000000123i,"
         "reconnects=2i,rssi=-67i,unacked=3i 1700000000123000000")],
    ),
    "reason": (
        {"reason": "breakdown", "start_s": 1699999000.5, "end_s": 1699999600.5, "by": "board"},
        [(f'stop_reason,{MTAGS},reason=breakdown by="board",duration_s=600,end_s=1699999600.5,'
         "start_s=1699999000.5 1700000000123000000")],
    ),
    "oee": (
        {"shift": "A", "shift_start_s": 1699992000, "final": False, "availability": 0.9,
         "performance": 0.95, "quality": 0.99, "oee": 0.84645, "good": 990, "ng": 10.0,
         "coverage": 1, "losses": {"breakdown_s": 600, "minor_stop_s": 30.5,
                                   "setup_s": None}},
        [(f"oee,{MTAGS},shift=A availability=0.9,coverage=1,final=false,good=990,ng=10,"
         "oee=0.84645,performance=0.95,quality=0.99,shift_start_s=1699992000"
         " 1700000000123000000"),
         (f"oee_loss,{MTAGS.replace('machine=', 'loss=breakdown,machine=')},shift=A"
         " final=false,seconds=600 1700000000123000000"),
         (f"oee_loss,{MTAGS.replace('machine=', 'loss=minor_stop,machine=')},shift=A"
         " final=false,seconds=30.5 1700000000123000000")],
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_exact_line_protocol_per_kind(name):
    data, expected = CASES[name]
    assert lines(row(name.split("_")[0], data)) == expected


def test_oee_final_and_ratio_none():
    out = lines(row("oee", {"shift": "B", "final": True, "availability": None, "good": 0},
                    node_id=None))
    assert out == [f"oee,{MTAGS},shift=B final=true,good=0 1700000000123000000"]


def test_timestamp_is_exact_and_reproducible():
    assert ts_ns(1700000000.123) == 1700000000123000000
    assert ts_ns(1700000000.123456789) == 1700000000123456700  # repr: 1700000000.1234567
    assert ts_ns(1700000000) == 1700000000000000000
    assert ts_ns(0.000000001) == 1
    r = row("state", {"state": "STOP"})
    assert lines(r) == lines(dict(r))  # a replay writes the same series and time


def test_unregistered_machine_and_no_node():
    out = event_lines([row("state", {"state": "OFF"}, machine="ghost", node_id=None)], PLACES)
    assert out == ['machine_state,machine=ghost code=1i,state="OFF" 1700000000123000000']


def test_escaping_of_tags_and_strings():
    places = {"a,b=c": Placement("P", "L")}
    out = event_lines([row("hello", {"fw": 'say "hi"\\', "boot_id": 1}, machine="a,b=c")],
                      places)
    assert out == [(r'node_hello,line=L,machine=a\,b\=c,node=7,plant=P boot_id=1i,'
                   r'fw="say \"hi\"\\" 1700000000123000000')]


def test_unknown_kind_is_not_exported():
    assert lines(row("future_kind", {"x": 1})) == []


def test_accepts_dict_data_and_attribute_rows():
    r = SimpleNamespace(id=1, ts_s=T, kind="lamp", node_id=7, machine="husker",
                        data={"lamp": "red", "state": "ON"})
    assert lines(r) == [(rf'lamp,{TAGS.replace("line=", "lamp=red,line=")} code=1i,'
                            'state="ON" 1700000000123000000')]


@pytest.mark.parametrize("kind,data,ts_s", [
    ("state", {"prev": "RUN"}, T),                           # no state
    ("count", {"good": 2.5}, T),                             # not an integer
    ("count", {"good": "3"}, T),                             # not a number
    ("health", {"rssi": float("nan")}, T),                   # not finite
    ("oee", {"shift": "A", "final": "yes"}, T),              # not a boolean
    ("state", {"state": "RUN"}, float("inf")),               # bad time
])
def test_bad_events_raise_event_data_error(kind, data, ts_s):
    with pytest.raises(EventDataError):
        lines(row(kind, data, ts_s=ts_s))


def test_bad_json_raises_and_on_error_skips():
    bad = dict(row("state", {}), data="{not json")
    good = row("state", {"state": "RUN"})
    with pytest.raises(EventDataError):
        event_lines([bad], PLACES)
    seen = []
    out = event_lines([bad, good], PLACES, on_error=lambda r, e: seen.append(r["id"]))
    assert seen == [1] and len(out) == 1


def test_placements_from_registry_entries():
    node = SimpleNamespace(machine="husker", plant="P1", line="L1", node_id=7)
    assert placements_from([node]) == {"husker": Placement("P1", "L1")}


def test_rejects_points_merge_udp_ports_per_host():
    out = [p.to_line_protocol() for p in rejects_points({
        ("udp:10.0.0.5:4210", "bad_tag"): (3, 1700000005.0),
        ("udp:10.0.0.5:4999", "bad_tag"): (2, 1700000007.25),
        ("serial:/dev/ttyUSB0", "bad_cobs"): (1, 1700000009),
    })]
    assert out == [
        "frames_rejected,reason=bad_cobs,source=serial:/dev/ttyUSB0 count=1i 1700000009000000000",
        "frames_rejected,reason=bad_tag,source=udp:10.0.0.5 count=5i 1700000007250000000",
    ]
