"""A wheel built from this repository, installed into a fresh venv (not editable), carries the
firmware and the VM's Node.js side: from that venv `lampwatch flash` flashes the virtual board
and the virtual node runs the firmware as shipped, in CPython and in the MicroPython VM."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from lampwatch.node_files import firmware_dir
from lampwatch.vnode import vm
from lampwatch.vnode.repl import ReplServer

ROOT = Path(__file__).resolve().parent.parent
BUILD_INPUTS = ("pyproject.toml", "README.md", "host", "firmware")  # what setuptools reads
NOT_SOURCES = shutil.ignore_patterns("node_modules", "__pycache__", "*.egg-info")
BOARD_FILES = {"main.py", "lwmain.mpy", "app.mpy", "config.mpy", "lwdns.mpy", "lwproto.mpy",
               "lwserial.mpy", "nodestate.mpy", "outbox.mpy", "pulses.mpy", "sensor_node.mpy",
               "config.json"}
VM_SIDE = {"run.mjs", "repl_bridge.mjs", "package.json", "package-lock.json", "sim.py",
           "periph.py"}
PASSWORD = "s3cret-wifi-pw"

# Run by the wheel's own Python: the flashed board's config.json, booted in both engines.
RUN_NODE = """
import json, sys
from pathlib import Path
import lampwatch
from lampwatch import node_files, protocol
from lampwatch.vnode import Scenario, VirtualNode

board = Path(sys.argv[1])
config = json.loads((board / "config.json").read_bytes())
keys = {config["node_id"]: bytes.fromhex(config["key"])}
out = {"lampwatch": lampwatch.__file__, "firmware": str(node_files.firmware_dir())}
# cpython: the firmware's sources as the wheel ships them; micropython: the flashed bytes
for engine, folder in (("cpython", None), ("micropython", board)):
    sc = (Scenario(duration_s=12).lamp("green", 0.5, "on")
          .pulses("good", 1.0, n=5, every_s=1.0, width_s=0.1))
    node = VirtualNode(config, sc, engine=engine, firmware_dir=folder).run_until(12)
    frames = [protocol.decode(f.data, keys) for f in node.frames]
    beats = [f.body for f in frames if isinstance(f.body, protocol.Heartbeat)]
    out[engine] = {
        "first": frames[0].header.type_name, "config_hash": frames[0].body.config_hash.hex(),
        "good": beats[-1].good, "expected_good": sc.expected_pulses("good"),
        "lamps": [[e.lamp, e.state_name] for f in frames if isinstance(f.body, protocol.Lamp)
                  for e in f.body.events]}
print(json.dumps(out))
"""


def run(args: list, timeout: float, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout, check=False, **kw)
    assert proc.returncode == 0, f"{args[:4]} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of the sources (a build writes build/ and *.egg-info
    beside its input; the checkout stays as it is)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in BUILD_INPUTS:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=NOT_SOURCES)
        else:
            shutil.copy2(ROOT / name, src / name)
    # no build isolation: the test venv's setuptools (pyproject's test extra), no download
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "-q", "-w", tmp / "dist", src], timeout=300)
    (whl,) = (tmp / "dist").glob("lampwatch-*.whl")
    return whl


def test_the_wheel_carries_the_firmware_and_the_vm_side_but_no_node_modules(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    shipped_fw = {n.split("/", 2)[2] for n in names if n.startswith("lampwatch/firmware/")}
    assert shipped_fw == {p.name for p in firmware_dir().iterdir() if p.is_file()}
    assert VM_SIDE <= {n.split("/", 2)[2] for n in names if n.startswith("lampwatch/vnode/")}
    assert not [n for n in names if "node_modules" in n]


def test_a_fresh_venv_from_the_wheel_flashes_and_runs_a_virtual_node(wheel, tmp_path):
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv], timeout=120)
    python = venv / "bin" / "python"
    # a real install: pip resolves the wheel's declared dependencies (its cache is reused)
    run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--prefer-binary",
         wheel], timeout=600)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(LAMPWATCH_WIFI_PASSWORD=PASSWORD,
               # the wheel has no node_modules: point it at the one the tests use
               **{vm.NODE_MODULES_ENV: str(vm.vm_package_dir().parents[1])})
    site = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                    timeout=60, env=env, cwd=tmp_path).stdout.strip())

    reg = tmp_path / "nodes.toml"
    with ReplServer(root_dir=tmp_path / "board") as board:
        flashed = run([venv / "bin" / "lampwatch", "flash", "--port",
                       f"socket://127.0.0.1:{board.port}", "--node-id", "12", "--machine",
                       "husker-1", "--wifi-ssid", "plant-iot", "--collector", "127.0.0.1:4210",
                       "--registry", reg], timeout=180, env=env, cwd=tmp_path)
    assert f"{len(BOARD_FILES)} file(s) copied" in flashed.stdout
    assert "new key" in flashed.stdout
    files = {p.name: p.read_bytes() for p in (tmp_path / "board").iterdir()}
    assert set(files) == BOARD_FILES
    assert files["main.py"] == (site / "lampwatch" / "firmware" / "main.py").read_bytes()

    out = json.loads(run([python, "-c", RUN_NODE, tmp_path / "board"], timeout=300, env=env,
                         cwd=tmp_path).stdout)
    assert Path(out["lampwatch"]).parent == site / "lampwatch"  # the wheel, not the checkout
    assert Path(out["firmware"]) == site / "lampwatch" / "firmware"
    config_hash = hashlib.sha256(files["config.json"]).digest()[:4].hex()
    for engine in ("cpython", "micropython"):
        got = out[engine]
        assert got["first"] == "HELLO" and got["config_hash"] == config_hash, (engine, got)
        assert got["good"] == got["expected_good"] == 5, (engine, got)
        assert ["green", "ON"] in got["lamps"], (engine, got)
