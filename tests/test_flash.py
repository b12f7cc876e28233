"""`lampwatch flash`, the pure parts: config.json, .mpy checks, copy plan, batch CSV."""

from __future__ import annotations

import hashlib
import json

import pytest
from click.testing import CliRunner
from lampwatch import protocol
from lampwatch.cli import cli
from lampwatch.errors import InputFileError
from lampwatch.flash.batch import Outcome, read_batch, summary
from lampwatch.flash.flasher import (
    FlashError,
    NodeSpec,
    build_firmware,
    check_micropython,
    mpy_header,
    node_config,
    plan_copy,
    registry_entry,
    sha256_hex,
)
from lampwatch.vnode import Scenario, VirtualNode

KEY = "ab" * 32
SPEC = NodeSpec("socket://127.0.0.1:1", 12, "husker-1", "mill", "line-2", 1.5)


def test_node_config_is_what_the_firmware_accepts():
    text = node_config(SPEC, KEY, wifi=("plant-iot", "pw"), collector=("10.0.0.5", 4210))
    cfg = json.loads(text)
    assert text == json.dumps(cfg).encode()  # compact, as the virtual node serializes it
    assert cfg["node_id"] == 12 and cfg["key"] == KEY and cfg["machine"] == "husker-1"
    assert cfg["wifi"] == {"ssid": "plant-iot", "password": "pw"}
    assert cfg["collector"] == {"host": "10.0.0.5", "port": 4210}
    assert cfg["lamps"]["green"] == {"pin": 34, "active_low": True}  # from the example
    serial_cfg = json.loads(node_config(NodeSpec("p", 3, "m", transport="serial"), KEY))
    assert serial_cfg["transport"] == "serial" and "wifi" not in serial_cfg


def test_node_config_refused_with_the_firmware_s_own_words():
    with pytest.raises(FlashError, match="^node 12: the udp transport needs --wifi-ssid$"):
        node_config(SPEC, KEY, collector=("10.0.0.5", 4210))
    with pytest.raises(FlashError, match="needs --collector HOST:PORT"):
        node_config(SPEC, KEY, wifi=("x", ""))
    bad = {"lamps": {"green": {"pin": 7}}}
    with pytest.raises(FlashError) as exc:
        node_config(SPEC, KEY, wifi=("x", ""), collector=("h", 1), template=bad)
    assert str(exc.value) == ("node 12: config.json: lamps.green.pin: 7 is not a usable "
                              "ESP32 input GPIO")


def test_registry_entry_takes_the_heartbeat_from_config_json():
    text = node_config(SPEC, KEY, wifi=("x", ""), collector=("h", 1),
                       template={"lamps": {"red": 36}, "heartbeat_ms": 2000})
    assert registry_entry(SPEC, KEY, text) == {
        "id": 12, "plant": "mill", "line": "line-2", "machine": "husker-1", "key": KEY,
        "heartbeat_s": 2.0, "ideal_cycle_s": 1.5}


def test_firmware_build_is_a_boot_stub_and_mpy_modules():
    fw = build_firmware()
    assert set(fw) == {"main.py", "lwmain.mpy", "app.mpy", "config.mpy", "lwproto.mpy",
                       "lwdns.mpy", "lwserial.mpy", "nodestate.mpy", "outbox.mpy",
                       "pulses.mpy", "sensor_node.mpy"}
    assert mpy_header(fw) == (6, 0)  # bytecode, no sub-version: any MicroPython with .mpy v6
    # main.py is the only source on the board (MicroPython runs it at boot, compiling it
    # there): two lines that hand over to the precompiled seam
    code = [ln for ln in fw["main.py"].decode().splitlines() if ln and not ln.startswith("#")]
    assert code == ["import lwmain", "lwmain.main()"]


@pytest.mark.parametrize("board_mpy, version, message", [
    (6 | 3 << 8, (1, 27, 0), None),
    (6 | 2 << 8 | 10 << 10, (1, 24, 1), None),  # bytecode: only the major version matters
    (5, (1, 18, 0), ("MicroPython 1.18.0 on the board is too old for this firmware: it loads "
                    ".mpy v5.0, the firmware is .mpy v6 (install MicroPython 1.24.0 or "
                    "later, matching this mpy-cross)")),
    (None, (1, 12, 0), ("MicroPython 1.12.0 on the board is too old for this firmware: it "
                       "loads .mpy vunknown")),
    (6 | 1 << 8, (1, 20, 0), ("MicroPython 1.20.0 on the board is too old for this firmware: "
                             "it needs 1.24.0 or later")),
    (7, (2, 0, 0), "MicroPython 2.0.0 on the board is too new for this firmware"),
])
def test_check_micropython(board_mpy, version, message):
    if message is None:
        check_micropython(board_mpy, version, (6, 0))
        return
    with pytest.raises(FlashError) as exc:
        check_micropython(board_mpy, version, (6, 0))
    assert str(exc.value).startswith(message)


def test_plan_copies_only_what_differs_and_removes_shadowing_sources():
    files = {"main.py": b"m", "app.mpy": b"a", "config.json": b"{}"}
    board = {"main.py": sha256_hex(b"m"), "app.mpy": sha256_hex(b"old"), "config.json": None}
    copy, same, remove = plan_copy(files, board, ["main.py", "app.mpy", "app.py", "boot.py"])
    assert (copy, same, remove) == (["app.mpy", "config.json"], ["main.py"], ["app.py"])
    assert plan_copy(files, {n: sha256_hex(d) for n, d in files.items()}, list(files)) == \
        ([], list(files), [])
    # a board from before the boot stub: main.py was the whole seam, as source
    files = {"main.py": b"import lwmain\nlwmain.main()\n", "lwmain.mpy": b"l"}
    board = {"main.py": sha256_hex(b"# main: the node's hardware seam ..."), "lwmain.mpy": None}
    assert plan_copy(files, board, ["main.py", "lwmain.py"]) == \
        (["main.py", "lwmain.mpy"], [], ["lwmain.py"])


def write(tmp_path, text):
    p = tmp_path / "nodes.csv"
    p.write_text(text)
    return p


def test_batch_csv(tmp_path):
    p = write(tmp_path, "port,node_id,machine,ideal_cycle_s,transport\n"
                        "/dev/ttyUSB0,1,husker-1,1.5,\n\n/dev/ttyUSB1,2,whitener-1,,serial\n")
    assert read_batch(p, {"plant": "mill"}) == [
        NodeSpec("/dev/ttyUSB0", 1, "husker-1", "mill", ideal_cycle_s=1.5),
        NodeSpec("/dev/ttyUSB1", 2, "whitener-1", "mill", transport="serial")]


@pytest.mark.parametrize("text, message", [
    ("port,node_id\n", "row 1: missing column 'machine'"),
    ("port,node_id,machine,color\n", ("row 1, column 4: unknown column 'color' (use port, "
                                     "node_id, machine, plant, line, ideal_cycle_s, transport)")),
    ("port,node_id,machine\np,1,m\np,x,m\n", ("row 3, column node_id: must be an integer "
                                             "1..65535, not 'x'")),
    ("port,node_id,machine\np,1,m\np,1,n\n", ("row 3, column node_id: node 1 is already on "
                                             "row 2")),
    ("port,node_id,machine\np,1,\n", "row 2, column machine: is empty"),
    ("port,node_id,machine,ideal_cycle_s\np,1,m,0\n", ("row 2, column ideal_cycle_s: must be "
                                                      "a number of seconds > 0, not '0'")),
    ("port,node_id,machine,transport\np,1,m,lora\n", ("row 2, column transport: must be udp "
                                                     "or serial, not 'lora'")),
    ("port,node_id,machine\np,1\n", "row 2: 2 cells, the header has 3"),
    ("port,node_id,machine\n", "no nodes after the header"),
])
def test_batch_csv_errors_name_row_and_column(tmp_path, text, message):
    p = write(tmp_path, text)
    with pytest.raises(InputFileError) as exc:
        read_batch(p)
    assert str(exc.value) in (f"{p} {message}", f"{p}: {message}")


def test_malformed_batch_flashes_nothing(tmp_path):
    p = write(tmp_path, "port,node_id,machine\nsocket://127.0.0.1:9,1,m\np,0,n\n")
    r = CliRunner().invoke(cli, ["flash", "--batch", str(p), "--registry",
                                 str(tmp_path / "nodes.toml")], input="\n\n")
    assert isinstance(r.exception, InputFileError)
    assert "Connect board" not in r.output and not (tmp_path / "nodes.toml").exists()


def test_summary_table():
    out = summary([Outcome(NodeSpec("p", 1, "husker-1"), True, "8 file(s) copied"),
                   Outcome(NodeSpec("p", 22, "m"), False, "port p not found")])
    assert out.splitlines() == [
        " node  machine   result  detail",
        "    1  husker-1  OK      8 file(s) copied",
        "   22  m         FAILED  port p not found",
        "1 of 2 node(s) flashed, 1 failed"]


def test_password_is_never_an_option():
    r = CliRunner().invoke(cli, ["flash", "--help"])
    assert "--wifi-password" not in r.output and "LAMPWATCH_WIFI_PASSWORD" in r.output


def test_a_virtual_node_reads_the_config_json_flash_writes_byte_for_byte():
    # HELLO carries the first 4 bytes of the sha256 of the config.json the node read: one
    # writer (node_files.config_json) makes the flashed file and the virtual node's the same.
    text = node_config(SPEC, KEY, wifi=("plant-iot", "pw"), collector=("10.0.0.5", 4210))
    node = VirtualNode(json.loads(text), Scenario(duration_s=10)).run_until(10)
    hello = protocol.decode(node.frames[0].data, {12: bytes.fromhex(KEY)}).body
    assert hello.config_hash == hashlib.sha256(text).digest()[:4]
