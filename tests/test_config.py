"""Collector config: the example parses, every mistake is one line naming the option."""

from datetime import time
from pathlib import Path

import pytest
from lampwatch.config import load_config
from lampwatch.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
KEY = "000102030405060708090a0b0c0d0e0f"
NODE = f"""
[[nodes]]
id = 7
plant = "p"
line = "l"
machine = "m7"
key = "{KEY}"
ideal_cycle_s = 2
"""


def write(tmp_path, text, name="c.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_example_config_parses_with_every_section():
    cfg = load_config(ROOT / "examples" / "collector.toml")
    assert cfg.udp_listen == ("0.0.0.0", 4210)
    assert [s.baud for s in cfg.serial] == [115200]
    assert cfg.journal_path == Path("/var/lib/lampwatch/journal.sqlite")
    assert cfg.influxdb.bucket == "lampwatch"
    assert sorted(cfg.nodes) == [7, 8]
    assert cfg.nodes[7].key == bytes(range(16))
    assert cfg.nodes[8].silence_timeout_s == 15.0
    assert cfg.calendar.tz == "Asia/Jakarta"
    a = cfg.calendar.shifts[0]
    assert (a.name, a.start, a.end, a.weekdays) == ("A", time(6), time(14), (0, 1, 2, 3, 4, 5))
    # 2025-08-17 00:00 in Jakarta (UTC+7) is 2025-08-16 17:00 UTC.
    assert cfg.calendar.planned_stops == ((1755363600.0, 1755450000.0),)


def test_minimal_config_defaults(tmp_path):
    cfg = load_config(write(tmp_path, NODE))
    assert cfg.udp_listen == ("0.0.0.0", 4210)
    assert cfg.serial == ()
    assert cfg.journal_path == tmp_path / "journal.sqlite"
    assert cfg.journal_sync == "full"
    assert cfg.influxdb is None
    node = cfg.nodes[7]
    assert (node.unit, node.heartbeat_s, node.lamp_map) == ("pcs", 10.0, None)
    assert (cfg.heartbeat_s, cfg.oee_interval_s, cfg.short_stop_s) == (10.0, 60.0, 300.0)
    assert cfg.key_of(7) == bytes(range(16)) and cfg.key_of(8) is None
    assert "key" not in repr(node) and KEY not in repr(cfg)


def test_lamp_map_in_machine_state_form(tmp_path):
    cfg = load_config(write(tmp_path, NODE + """
lamp_map = { red = "STOP", "blink:yellow" = "STOP:setup", yellow = "IDLE", green = "RUN" }
[collector]
heartbeat_s = 4
[oee]
refresh_s = 30
"""))
    node = cfg.nodes[7]
    assert list(node.lamp_map) == ["red", "blink:yellow", "yellow", "green"]
    assert (node.heartbeat_s, node.silence_timeout_s, cfg.oee_interval_s) == (4.0, 12.0, 30.0)
    assert cfg.nodes[7].ideal_cycle_s == 2.0


def test_registry_file_is_merged(tmp_path):
    write(tmp_path, NODE.replace("7", "9").replace('"m9"', '"m9"'), "nodes.toml").chmod(0o600)
    cfg = load_config(write(tmp_path, '[collector]\nnodes_file = "nodes.toml"\n' + NODE))
    assert sorted(cfg.nodes) == [7, 9]
    assert cfg.nodes_file == tmp_path / "nodes.toml"  # where flash and commission write


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_registry_open_to_group_or_others_is_refused_like_an_ssh_key(tmp_path, mode):
    write(tmp_path, NODE.replace("7", "9"), "nodes.toml").chmod(mode)
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, '[collector]\nnodes_file = "nodes.toml"\n'))
    assert str(exc.value) == (f"{tmp_path / 'nodes.toml'}: the node registry holds the nodes' "
                              f"keys but is open to group or others (mode {mode:04o}): "
                              f"chmod 600 {tmp_path / 'nodes.toml'}")
    (tmp_path / "nodes.toml").chmod(0o400)  # owner read-only is fine
    assert list(load_config(tmp_path / "c.toml").nodes) == [9]


@pytest.mark.parametrize("line", [f"key = {int(KEY, 16)}", "key = 0x" + KEY, f"key = [{KEY!r}]"])
def test_a_key_given_unquoted_is_never_echoed(tmp_path, line):
    text = NODE.replace(f'key = "{KEY}"', line)
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, text))
    assert "nodes[0].key must be a string (in quotes)" in str(exc.value)
    for shown in (KEY, str(int(KEY, 16)), KEY.lstrip("0")):
        assert shown not in str(exc.value)


def test_influx_token_from_env_or_file_and_masked(tmp_path, monkeypatch):
    cfg = load_config(write(tmp_path, NODE + """
[influxdb]
url = "http://127.0.0.1:8086"
org = "o"
bucket = "b"
token_env = "LW_TEST_TOKEN"
"""))
    monkeypatch.delenv("LW_TEST_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="LW_TEST_TOKEN is not set"):
        cfg.influxdb.token()
    assert cfg.influxdb.describe_token() == "MISSING (expected in $LW_TEST_TOKEN)"
    monkeypatch.setenv("LW_TEST_TOKEN", "s3cret-token")
    assert cfg.influxdb.token() == "s3cret-token"
    assert "s3cret" not in cfg.influxdb.describe_token()
    assert cfg.influxdb.describe_token() == "******** (set, from $LW_TEST_TOKEN)"
    (tmp_path / "tok").write_text("filetoken\n")
    cfg = load_config(write(tmp_path, NODE + """
[influxdb]
url = "https://influx.example"
org = "o"
bucket = "b"
token_file = "tok"
"""))
    assert cfg.influxdb.token() == "filetoken"


@pytest.mark.parametrize("text, message", [
    ("[collector\n", "invalid TOML"),
    (NODE.replace(KEY, "zz"), "nodes[0].key must be hexadecimal"),
    (NODE.replace(KEY, "0011"), "nodes[0].key must be 16 to 64 bytes"),
    (NODE.replace("id = 7", "id = 0"), "nodes[0].id must be 1..65535"),
    (NODE.replace("id = 7", 'id = "7"'), "nodes[0].id must be an integer"),
    (NODE.replace('plant = "p"', ""), "nodes[0].plant is required"),
    (NODE.replace("ideal_cycle_s = 2", "ideal_cycle_s = 0"), "ideal_cycle_s must be greater"),
    (NODE + "colour = 1\n", "nodes[0].colour is not a known option"),
    (NODE + NODE, "node 7 is in the registry twice"),
    (NODE + NODE.replace("id = 7", "id = 8"), "machine 'm7' is already watched by node 7"),
    ('[collector]\nudp_listen = "4210"\n' + NODE, "collector.udp_listen must be 'host:port'"),
    ('[collector]\njournal_sync = "off"\n' + NODE, "journal_sync must be 'full' or 'normal'"),
    ('[[serial]]\nbaud = 9600\n' + NODE, "serial[0].port is required"),
    ('[influxdb]\nurl="http://x"\norg="o"\nbucket="b"\ntoken="t"\n', ("influxdb.token is not "
     "allowed: put the token in a file")),
    ('[influxdb]\nurl="x"\norg="o"\nbucket="b"\n', "influxdb.url must start with http"),
    (NODE + 'lamp_map = { pink = "RUN" }\n', "nodes[0].lamp_map is invalid: lamp map key"),
    (NODE + 'lamp_map = { red = "BUSY" }\n', "nodes[0].lamp_map is invalid: lamp map 'red'"),
    (NODE + 'lamp_map = { red = 1 }\n', "nodes[0].lamp_map values must be strings"),
    ('[oee]\nrefresh_s = -1\n', "oee.refresh_s must be greater than 0"),
    ('[calendar]\ntime_zone = "Mars/Olympus"\n', "not a known IANA time zone"),
    (('[calendar]\ntime_zone = "UTC"\n[[calendar.shifts]]\nname = "A"\nstart = "6am"\n'
     'end = "14:00"\n'), "calendar.shifts[0].start must be a wall time"),
    (('[calendar]\ntime_zone = "UTC"\n[[calendar.shifts]]\nname = "A"\nstart = "06:00"\n'
     'end = "14:00"\ndays = ["funday"]\n'), "days must name days"),
    (('[calendar]\ntime_zone = "UTC"\n[[calendar.shifts]]\nname = "A"\nstart = "06:00"\n'
     'end = "14:00"\nbreaks = [{start = "15:00", end = "15:30"}]\n'), "outside shift"),
    (('[calendar]\ntime_zone = "UTC"\n[[calendar.planned_stops]]\nstart = 2025-01-02\n'
     'end = 2025-01-01\n'), "planned stop ends before it starts"),
    ('[collector]\nnodes_file = "missing.toml"\n', "cannot read the node registry"),
])
def test_bad_config_is_one_clear_line(tmp_path, text, message):
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, text))
    assert message in str(exc.value)
    assert "\n" not in str(exc.value)
    assert str(exc.value).startswith(str(tmp_path))


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.toml")


# --- [board]: the Andon board's address and operator PIN ---------------------------------

def test_example_config_has_a_board_with_a_pin_from_the_environment(monkeypatch):
    cfg = load_config(ROOT / "examples" / "collector.toml")
    assert cfg.board_listen == ("0.0.0.0", 8080)
    assert cfg.board_pin.pin_env == "LAMPWATCH_BOARD_PIN"
    monkeypatch.setenv("LAMPWATCH_BOARD_PIN", " 471108 \n")
    assert cfg.board_pin.value() == "471108"
    assert cfg.board_pin.describe() == "******** (set, from $LAMPWATCH_BOARD_PIN)"
    assert cfg.board_hosts == ("andon.plant.local",) and cfg.board_sse_slots is None


@pytest.mark.parametrize("pin", ["4711", "12345", "a"])
def test_a_pin_shorter_than_six_is_refused_without_saying_its_length(tmp_path, monkeypatch, pin):
    monkeypatch.setenv("LW_TEST_PIN", pin)
    cfg = load_config(write(tmp_path, '[board]\noperator_pin_env = "LW_TEST_PIN"\n' + NODE))
    with pytest.raises(ConfigError) as exc:
        cfg.board_pin.value()
    assert str(exc.value) == ("board operator PIN from environment variable LW_TEST_PIN is "
                              "too short: use at least 6 digits")
    assert cfg.board_pin.describe() == "MISSING (expected in $LW_TEST_PIN)"


def test_board_hosts_and_live_viewer_slots(tmp_path):
    cfg = load_config(write(tmp_path, '[board]\nhosts = ["Andon.Plant.local.", "collector-2"]\n'
                            'sse_slots = 40\n' + NODE))
    assert cfg.board_hosts == ("andon.plant.local", "collector-2")
    assert cfg.board_sse_slots == 40


def test_no_board_table_means_no_board(tmp_path):
    cfg = load_config(write(tmp_path, NODE))
    assert (cfg.board_listen, cfg.board_pin) == (None, None)


def test_board_defaults_to_loopback_and_read_only(tmp_path):
    cfg = load_config(write(tmp_path, "[board]\n" + NODE))
    assert (cfg.board_listen, cfg.board_pin) == (("127.0.0.1", 8080), None)
    cfg = load_config(write(tmp_path, '[board]\nlisten = false\n' + NODE))
    assert cfg.board_listen is None


def test_board_pin_from_a_file_relative_to_the_config(tmp_path, monkeypatch):
    (tmp_path / "pin").write_text("246813\n")
    monkeypatch.delenv("LAMPWATCH_BOARD_PIN", raising=False)
    cfg = load_config(write(tmp_path, '[board]\nlisten = "[::1]:0"\noperator_pin_file = "pin"\n'
                            + NODE))
    assert cfg.board_listen == ("::1", 0)
    assert cfg.board_pin.value() == "246813"
    (tmp_path / "pin").write_text("  \n")
    with pytest.raises(ConfigError, match="PIN file .* is empty"):
        cfg.board_pin.value()


def test_board_pin_missing_from_the_environment_is_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv("LW_TEST_PIN", raising=False)
    cfg = load_config(write(tmp_path, '[board]\noperator_pin_env = "LW_TEST_PIN"\n' + NODE))
    with pytest.raises(ConfigError, match="environment variable LW_TEST_PIN is not set"):
        cfg.board_pin.value()
    assert cfg.board_pin.describe() == "MISSING (expected in $LW_TEST_PIN)"


@pytest.mark.parametrize("text, message", [
    ('[board]\nlisten = "8080"\n', "board.listen must be 'host:port' like '127.0.0.1:8080'"),
    ('[board]\nlisten = 8080\n', "board.listen must be 'host:port', or false"),
    ('[board]\noperator_pin = "1234"\n', ("board.operator_pin is not allowed: put the PIN in "
     "a file (operator_pin_file) or an environment variable (operator_pin_env)")),
    ('[board]\noperator_pin_env = ""\noperator_pin_file = 5\n', "board.operator_pin_file must"),
    ('[board]\ncolour = "red"\n', "board.colour is not a known option"),
    ('[board]\nhosts = "andon"\n', "board.hosts must be an array of host names"),
    ('[board]\nhosts = ["http://andon"]\n', "board.hosts must hold host names like"),
    ('[board]\nhosts = ["andon:8080"]\n', "board.hosts must hold host names like"),
    ('[board]\nsse_slots = 0\n', "board.sse_slots must be 1 to 100000, not 0"),
    ('[board]\nsse_slots = "auto"\n', "board.sse_slots must be a whole number"),
    ('board = 1\n', "board must be a table"),
])
def test_bad_board_config_is_one_clear_line(tmp_path, text, message):
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, text + NODE))
    assert message in str(exc.value)
    assert "\n" not in str(exc.value)


def test_board_address_for_the_command_line():
    from lampwatch.config import board_address

    assert board_address("0.0.0.0:8080") == ("0.0.0.0", 8080)
    with pytest.raises(ConfigError, match="--board must be 'host:port'"):
        board_address("localhost")


def test_a_registry_of_10000_nodes_is_validated_one_table_at_a_time(tmp_path):
    # The parsed TOML of 10,000 nodes is ~8.5 MB of objects; each node's table being
    # validated (its dict wrapper and the set of options read) was made up front, 10,000 of
    # them alive at once: a peak of 19.7 MB, RSS a collector kept (ad hoc, 2026-12-02). Made
    # as the loop reaches them, the peak is the document plus the registry.
    import tracemalloc

    nodes = "".join(
        f'[[nodes]]\nid = {n}\nplant = "p"\nline = "l"\nmachine = "m{n}"\n'
        f'key = "{n:032x}"\nideal_cycle_s = 1.0\n\n' for n in range(1, 10_001))
    path = write(tmp_path, nodes)
    tracemalloc.start()
    try:
        cfg = load_config(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(cfg.nodes) == 10_000 and cfg.nodes[10_000].machine == "m10000"
    assert cfg.nodes[42].key == bytes.fromhex(f"{42:032x}")
    assert peak < 13e6, peak

