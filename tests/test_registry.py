"""The node registry file: owner-only, atomic, merged updates, validated by the collector's parser."""

import os
import stat

import pytest
from lampwatch import registry
from lampwatch.config import load_config
from lampwatch.errors import ConfigError

KEY = "00112233445566778899aabbccddeeff"


def entry(node_id=1, machine="husker-1", **more):
    return dict(id=node_id, plant="karawang", line="mill-1", machine=machine, key=KEY, **more)


def test_new_key_is_32_random_bytes_hex():
    a, b = registry.new_key(), registry.new_key()
    assert len(bytes.fromhex(a)) == 32 and a != b


def test_absent_file_reads_empty(tmp_path):
    assert registry.read_nodes(tmp_path / "nodes.toml") == []


def test_upsert_creates_owner_only_file_the_collector_loads(tmp_path):
    path = tmp_path / "nodes.toml"
    old = os.umask(0o022)
    try:
        registry.upsert_node(path, entry(ideal_cycle_s=2.5,
                                         lamp_map={"red": "STOP", "blink:yellow": "STOP:setup"}))
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    (tmp_path / "collector.toml").write_text('[collector]\nnodes_file = "nodes.toml"\n')
    cfg = load_config(tmp_path / "collector.toml")
    node = cfg.nodes[1]
    assert (node.machine, node.key.hex(), node.ideal_cycle_s) == ("husker-1", KEY, 2.5)
    assert node.lamp_map == {"red": "STOP", "blink:yellow": "STOP:setup"}
    assert node.commissioned is None


def test_upsert_merges_and_keeps_other_nodes(tmp_path):
    path = tmp_path / "nodes.toml"
    registry.upsert_node(path, entry(1, "husker-1", unit="kg"))
    registry.upsert_node(path, entry(2, "whitener-1"))
    stored = registry.upsert_node(path, {"id": 1, "machine": "husker-A"})
    assert stored["unit"] == "kg" and stored["key"] == KEY and stored["machine"] == "husker-A"
    assert [n["machine"] for n in registry.read_nodes(path)] == ["husker-A", "whitener-1"]


def test_update_marks_commissioned(tmp_path):
    path = tmp_path / "nodes.toml"
    registry.upsert_node(path, entry())
    registry.update_node(path, 1, commissioned="2026-11-23T10:15:00+07:00",
                         commissioned_by="Budi, Sari")
    (tmp_path / "c.toml").write_text('[collector]\nnodes_file = "nodes.toml"\n')
    node = load_config(tmp_path / "c.toml").nodes[1]
    assert node.commissioned == "2026-11-23T10:15:00+07:00"
    assert node.commissioned_by == "Budi, Sari"
    registry.update_node(path, 1, commissioned=None, commissioned_by=None)  # withdrawn
    assert "commissioned" not in registry.read_nodes(path)[0]
    assert load_config(tmp_path / "c.toml").nodes[1].commissioned is None
    with pytest.raises(ConfigError, match="node 9 is not in the registry"):
        registry.update_node(path, 9, commissioned="2026-11-23T10:15:00")


def test_invalid_result_is_refused_and_file_untouched(tmp_path):
    path = tmp_path / "nodes.toml"
    registry.upsert_node(path, entry(1, "husker-1"))
    before = path.read_bytes()
    with pytest.raises(ConfigError, match="machine 'husker-1' is already watched by node 1"):
        registry.upsert_node(path, entry(2, "husker-1"))
    with pytest.raises(ConfigError, match="key must be hexadecimal"):
        registry.upsert_node(path, {"id": 1, "key": "zz"})
    with pytest.raises(ConfigError, match="commissioned must be a date-time"):
        registry.update_node(path, 1, commissioned="yesterday")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nodes.toml", "nodes.toml.lock"]


def test_broken_file_is_one_line_error(tmp_path):
    path = tmp_path / "nodes.toml"
    path.write_text("[[nodes]\nid = 1\n")
    with pytest.raises(ConfigError, match=r"nodes.toml: invalid TOML"):
        registry.read_nodes(path)
    path.write_text("nodes = 3\n")
    with pytest.raises(ConfigError, match=r"must be an array of tables"):
        registry.upsert_node(path, entry())
