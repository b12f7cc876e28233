"""Config versions (issue 14): the settings document, what changed, which version is valid."""

from collections import namedtuple
from pathlib import Path

from lampwatch.config import load_config
from lampwatch.config_versions import (
    DerivedSettings,
    changes,
    segments,
    settings_hash,
    settings_of,
    valid_at,
)

V = namedtuple("V", "version effective_from_s")
CONFIG = """
[collector]
udp_listen = false
[[nodes]]
id = 7
plant = "mill"
line = "l1"
machine = "press"
key = "{key}"
ideal_cycle_s = 2.0
lamp_map = {{ red = "STOP", green = "RUN" }}
[calendar]
time_zone = "Asia/Jakarta"
[[calendar.shifts]]
name = "A"
start = "06:00"
end = "14:00"
days = ["mon", "tue"]
[[calendar.shifts.breaks]]
start = "10:00"
end = "10:30"
[oee]
short_stop_s = 120
"""


def config(tmp_path: Path, key: str = "07" * 16, **replace):
    text = CONFIG.format(key=key)
    for old, new in replace.items():
        text = text.replace(old, new)
    path = tmp_path / "c.toml"
    path.write_text(text)
    return load_config(path)


def test_the_document_holds_no_key_and_reads_back_to_the_same_settings(tmp_path):
    cfg = config(tmp_path)
    doc = settings_of(cfg)
    assert "07" * 16 not in str(doc) and "key" not in str(doc)
    assert doc["nodes"]["7"] == {"machine": "press", "ideal_cycle_s": 2.0, "heartbeat_s": 10.0,
                                 "lamp_map": {"red": "STOP", "green": "RUN"}, "unit": "pcs"}
    assert doc["short_stop_s"] == 120.0 and doc["calendar"]["time_zone"] == "Asia/Jakarta"
    back = DerivedSettings.from_doc(doc, cfg.key_of)
    assert settings_of(back) == doc and back.key_of(7) == bytes.fromhex("07" * 16)
    assert back.calendar.shift_at(1772420400.0) == cfg.calendar.shift_at(1772420400.0)
    # another key is the same version: keys are not part of it
    assert settings_hash(settings_of(config(tmp_path, key="08" * 16))) == settings_hash(doc)


def test_changes_says_what_changed_in_one_line(tmp_path):
    old = settings_of(config(tmp_path))
    new = settings_of(config(tmp_path, **{"ideal_cycle_s = 2.0": "ideal_cycle_s = 1.6",
                                          'end = "14:00"': 'end = "15:00"',
                                          "short_stop_s = 120": "short_stop_s = 300"}))
    assert changes(None, old) == "first version"
    assert changes(old, old) == "no change"
    assert changes(old, new) == ("node 7 ideal_cycle_s 2.0 -> 1.6; calendar changed; "
                                 "short_stop_s 120.0 -> 300.0")


def test_the_valid_version_is_the_last_recorded_of_those_in_effect():
    # 1 from t=0; 2 from t=100 (a restart); 3 recorded later, effective from t=50 (recompute)
    vs = [V(1, 0.0), V(2, 100.0), V(3, 50.0)]
    assert valid_at(vs, -1.0) is None
    assert [valid_at(vs, t).version for t in (0.0, 49.9, 50.0, 100.0, 1e9)] == [1, 1, 3, 3, 3]
    assert [(a, b, v.version) for a, b, v in segments(vs, 0.0, 200.0)] == [
        (0.0, 50.0, 1), (50.0, 200.0, 3)]
    vs.append(V(4, 150.0))  # a collector started later with another config
    assert [(a, b, v and v.version) for a, b, v in segments(vs, -10.0, 200.0)] == [
        (-10.0, 0.0, None), (0.0, 50.0, 1), (50.0, 150.0, 3), (150.0, 200.0, 4)]
