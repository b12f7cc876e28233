"""`lampwatch flash` with the real mpremote against the virtual board's real MicroPython REPL."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import serial
from lampwatch import registry
from lampwatch.config import load_config
from lampwatch.node_files import firmware_dir
from lampwatch.runtime import CollectorThread
from lampwatch.vnode import Scenario, VirtualNode
from lampwatch.vnode.repl import ReplServer

MPREMOTE = Path(sys.executable).with_name("mpremote")
LAMPWATCH = Path(sys.executable).with_name("lampwatch")
PASSWORD = "s3cret-wifi-pw"
ENV = dict(os.environ, LAMPWATCH_WIFI_PASSWORD=PASSWORD)
FIRMWARE_FILES = {"main.py", "lwmain.mpy", "app.mpy", "config.mpy", "lwproto.mpy",
                  "lwdns.mpy", "lwserial.mpy", "nodestate.mpy", "outbox.mpy", "pulses.mpy",
                  "sensor_node.mpy", "config.json"}
STUB = (firmware_dir() / "main.py").read_bytes()


def mpremote(port: int, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run([str(MPREMOTE), "connect", f"socket://127.0.0.1:{port}", *args],
                          capture_output=True, text=True, timeout=timeout, check=False)


def flash_args(port: int | str, registry_path: Path, node_id: int = 12,
               machine: str = "husker-1", *extra: str) -> list[str]:
    url = port if isinstance(port, str) else f"socket://127.0.0.1:{port}"
    return [str(LAMPWATCH), "flash", "--port", url, "--node-id", str(node_id), "--machine",
            machine, "--wifi-ssid", "plant-iot", "--collector", "127.0.0.1:4210",
            "--registry", str(registry_path), *extra]


def lampwatch(args: list[str], timeout: float = 120.0, stdin: str = ""
              ) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=ENV,
                          input=stdin, check=False)


def test_bridge_serves_mpremote_and_persists_files(tmp_path):
    src = tmp_path / "hello.py"
    src.write_bytes(b"print('hi')\n")
    root = tmp_path / "flash"
    with ReplServer(root_dir=root, files={"old.txt": b"x"}) as b:
        r = mpremote(b.port, "fs", "cp", str(src), ":hello.py", "+", "fs", "ls",
                     "+", "exec", "import hello", "+", "fs", "rm", ":old.txt")
        assert r.returncode == 0, r.stderr
        assert "hello.py" in r.stdout and "hi" in r.stdout
        assert b.files() == {"hello.py": b"print('hi')\n"}
        # a missing file is ENOENT (2) as on a board, so mpremote's error mapping works
        r = mpremote(b.port, "fs", "cat", ":nope.py")
        assert r.returncode != 0 and "No such file" in r.stderr
    assert {p.name: p.read_bytes() for p in root.iterdir()} == {"hello.py": b"print('hi')\n"}
    with ReplServer(root_dir=root) as b:  # restored from the host directory
        r = mpremote(b.port, "exec", "import hello")
        assert r.stdout.strip() == "hi"


def test_bridge_quota_makes_the_file_system_full(tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(40_000))
    with ReplServer(quota_bytes=32 * 1024) as b:
        r = mpremote(b.port, "exec", "import os; s = os.statvfs('/'); print(s[0] * s[4])")
        assert int(r.stdout) == 32 * 1024
        r = mpremote(b.port, "fs", "cp", str(big), ":big.bin")
        assert r.returncode != 0 and "No space left" in r.stderr


def collector_config(tmp_path: Path, registry_path: Path) -> Path:
    path = tmp_path / "collector.toml"
    path.write_text(f"""
[collector]
udp_listen = "127.0.0.1:0"
journal = "journal.sqlite"
journal_sync = "normal"
nodes_file = "{registry_path}"

[calendar]
time_zone = "UTC"
""")
    return path


def boot_flashed(files: dict[str, bytes], root: Path, until_s: float = 3.0) -> VirtualNode:
    """Boot the board's files, byte for byte, as a node in the MicroPython VM."""
    root.mkdir()
    for name, data in files.items():
        (root / name).write_bytes(data)
    config = json.loads(files["config.json"])
    node = VirtualNode(config, Scenario(duration_s=until_s).lamp("green", 0.5, "on"),
                       engine="micropython", firmware_dir=root)
    return node.run_until(until_s)


def relay(frames, address) -> None:
    """The VM has no socket: its datagrams go to the collector from here, as sent."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for f in frames:
            s.sendto(f.data, address)


def test_flash_reflash_and_boot_to_a_running_collector(tmp_path):
    reg = tmp_path / "nodes.toml"
    # a board flashed before the boot stub: main.py held the whole seam, as source
    (tmp_path / "board").mkdir()
    old_main = (firmware_dir() / "lwmain.py").read_bytes()
    (tmp_path / "board" / "main.py").write_bytes(old_main)
    with ReplServer(root_dir=tmp_path / "board") as b:
        t0 = time.monotonic()
        first = lampwatch(flash_args(b.port, reg))
        first_s = time.monotonic() - t0
        assert first.returncode == 0, first.stderr
        assert "12 file(s) copied" in first.stdout and "new key" in first.stdout
        assert b.files()["main.py"] == STUB != old_main
        print(f"\nfirst flash {first_s:.1f} s: {first.stdout.strip()}")
        # what mpremote itself sees on the board
        ls = mpremote(b.port, "fs", "ls")
        assert FIRMWARE_FILES <= {ln.split()[-1] for ln in ls.stdout.splitlines()[1:]}
        cat = mpremote(b.port, "fs", "cat", ":config.json")
        cfg = json.loads(cat.stdout)
        (entry,) = registry.read_nodes(reg)
        assert cfg["node_id"] == 12 and cfg["machine"] == "husker-1"
        assert cfg["key"] == entry["key"] and len(bytes.fromhex(entry["key"])) == 32
        assert cfg["wifi"] == {"ssid": "plant-iot", "password": PASSWORD}
        assert (entry["machine"], entry["plant"], entry["heartbeat_s"]) == \
            ("husker-1", "plant", 5.0)
        assert reg.stat().st_mode & 0o777 == 0o600

        t0 = time.monotonic()
        again = lampwatch(flash_args(b.port, reg))
        again_s = time.monotonic() - t0
        assert again.returncode == 0, again.stderr
        assert "0 file(s) copied (0 bytes), 12 unchanged, key kept" in again.stdout
        assert "copying" not in again.stderr
        print(f"re-flash {again_s:.1f} s: {again.stdout.strip()}")
        assert registry.read_nodes(reg)[0]["key"] == entry["key"]
        for out in (first, again):
            assert entry["key"] not in out.stdout + out.stderr
            assert PASSWORD not in out.stdout + out.stderr

        # Booted: the flashed bytes in the MicroPython VM; its HELLO at a running collector,
        # which verifies it with the key from the registry flash wrote; --verify sees it.
        ct = CollectorThread(load_config(collector_config(tmp_path, reg))).start()
        try:
            proc = subprocess.Popen(flash_args(b.port, reg) + [
                "--verify", "--config", str(tmp_path / "collector.toml"),
                "--verify-timeout", "120"], env=ENV, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True)
            err_lines = []
            for line in proc.stderr:  # bounded: the process ends by its own timeout
                err_lines.append(line)
                if "waiting for HELLO" in line:
                    break
            files = b.files()
            node = boot_flashed(files, tmp_path / "booted")
            assert node.frames, node.console
            relay(node.frames, ct.udp_address)
            out, err = proc.communicate(timeout=150)
        finally:
            ct.stop()
    assert proc.returncode == 0, "".join(err_lines) + err
    assert "verified: firmware 0.3.0, reset cause power_on" in out, out
    assert entry["key"] not in out + err + "".join(err_lines)
    journal = load_config(tmp_path / "collector.toml").journal_path
    import sqlite3
    with sqlite3.connect(journal) as db:
        (data,) = db.execute("SELECT data FROM events WHERE kind = 'hello' AND node_id = 12"
                             ).fetchone()
    hello = json.loads(data)
    assert hello["config_hash"] == hashlib.sha256(files["config.json"]).digest()[:4].hex()
    # the board's flash survived the stop, as files on the host
    assert {p.name for p in (tmp_path / "board").iterdir()} == FIRMWARE_FILES


def test_new_key_replaces_the_key_on_board_and_registry(tmp_path):
    reg = tmp_path / "nodes.toml"
    with ReplServer() as b:
        assert lampwatch(flash_args(b.port, reg)).returncode == 0
        old = registry.read_nodes(reg)[0]["key"]
        r = lampwatch(flash_args(b.port, reg, 12, "husker-1", "--new-key"))
        assert r.returncode == 0, r.stderr
        assert "1 file(s) copied" in r.stdout and "new key" in r.stdout
        new = registry.read_nodes(reg)[0]["key"]
        assert new != old
        assert json.loads(b.files()["config.json"])["key"] == new
        assert new not in r.stdout + r.stderr


def test_port_not_found(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]  # closed again: nothing listens there
    r = lampwatch(flash_args(dead, tmp_path / "nodes.toml"))
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1] == (
        f"lampwatch: port socket://127.0.0.1:{dead} not found: nothing accepts connections "
        "there")
    r = lampwatch(flash_args("/dev/ttyUSB-lampwatch-none", tmp_path / "nodes.toml"))
    assert r.stderr.strip().splitlines()[-1].startswith(
        "lampwatch: port /dev/ttyUSB-lampwatch-none not found: is the board plugged in?")
    assert not (tmp_path / "nodes.toml").exists()


def test_port_busy(tmp_path):
    master, slave = os.openpty()
    path = os.ttyname(slave)
    other = serial.Serial(path, exclusive=True)  # another program holds the port
    try:
        r = lampwatch(flash_args(path, tmp_path / "nodes.toml"))
    finally:
        other.close()
        os.close(master)
        os.close(slave)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1].startswith(f"lampwatch: port {path} is busy")


def test_not_micropython(tmp_path):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(30)

    def chatter():  # a device that talks, but no raw REPL
        try:
            conn, _ = srv.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(0.2)
            for _ in range(100):
                try:
                    conn.sendall(b"AT OK\r\n")
                    conn.recv(256)
                except TimeoutError:
                    pass
                except OSError:
                    return

    th = threading.Thread(target=chatter, daemon=True)
    th.start()
    try:
        r = lampwatch(flash_args(srv.getsockname()[1], tmp_path / "nodes.toml"))
    finally:
        srv.close()
        th.join(30)
    assert r.returncode == 1
    (line,) = [ln for ln in r.stderr.splitlines() if ln.startswith("lampwatch:")]
    assert line.startswith("lampwatch: no MicroPython raw REPL on socket://127.0.0.1:")
    assert "not running MicroPython" in line
    assert "AT OK" not in r.stdout + r.stderr  # mpremote's debug print is not shown


def test_file_system_full(tmp_path):
    with ReplServer(quota_bytes=16 * 1024) as b:
        r = lampwatch(flash_args(b.port, tmp_path / "nodes.toml"))
        assert b.files() == {}  # refused before copying
    assert r.returncode == 1
    # the firmware's size changes with every edit: about 19 KB (the stub, seven .mpy, config.json)
    full = re.match(r"lampwatch: the board's file system is full: (\d+) KB to write, 16 KB free",
                    r.stderr.strip().splitlines()[-1])
    assert full and 16 < int(full[1]) < 32, r.stderr
    assert not (tmp_path / "nodes.toml").exists()


def test_verify_without_hello_says_wifi(tmp_path):
    reg = tmp_path / "nodes.toml"
    conf = collector_config(tmp_path, reg)
    registry.upsert_node(reg, {"id": 99, "plant": "p", "line": "l", "machine": "other",
                               "key": registry.new_key()})
    ct = CollectorThread(load_config(conf)).start()
    try:
        with ReplServer() as b:
            r = lampwatch(flash_args(b.port, reg) + ["--verify", "--config", str(conf),
                                                     "--verify-timeout", "2"])
    finally:
        ct.stop()
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1] == (
        "lampwatch: no HELLO from node 12 within 2 s: Wi-Fi credentials rejected, wrong "
        "--collector address, or the node is not powered (its console shows why)")


def test_batch_flashes_one_after_another_and_sums_up(tmp_path):
    reg = tmp_path / "nodes.toml"
    with ReplServer() as b:
        csv = tmp_path / "nodes.csv"
        csv.write_text("port,node_id,machine,plant,line,ideal_cycle_s\n"
                       f"socket://127.0.0.1:{b.port},21,whitener-1,mill,line-2,1.5\n"
                       "/dev/ttyUSB-lampwatch-none,22,polisher-1,mill,line-2,\n"
                       f"socket://127.0.0.1:{b.port},23,grader-1,mill,line-2,2\n")
        r = lampwatch([str(LAMPWATCH), "flash", "--batch", str(csv), "--wifi-ssid",
                       "plant-iot", "--collector", "127.0.0.1:4210", "--registry", str(reg)],
                      timeout=300, stdin="\n\n\n")
        board_cfg = json.loads(b.files()["config.json"])
    assert r.returncode == 1
    assert "Connect board for whitener-1" in r.stderr and "[3/3] node 23" in r.stderr
    table = r.stdout.strip().splitlines()
    assert table[1].split()[:3] == ["21", "whitener-1", "OK"]
    assert table[2].split()[:3] == ["22", "polisher-1", "FAILED"]
    assert "port /dev/ttyUSB-lampwatch-none not found" in table[2]
    assert table[3].split()[:3] == ["23", "grader-1", "OK"]
    assert table[-1] == "2 of 3 node(s) flashed, 1 failed"
    assert r.stderr.strip().splitlines()[-1] == "lampwatch: 1 of 3 node(s) failed (see above)"
    nodes = {n["id"]: n for n in registry.read_nodes(reg)}
    assert set(nodes) == {21, 23} and nodes[21]["ideal_cycle_s"] == 1.5
    assert board_cfg["node_id"] == 23 and board_cfg["key"] == nodes[23]["key"]
    for n in nodes.values():
        assert n["key"] not in r.stdout + r.stderr
