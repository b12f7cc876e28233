"""The MicroPython engine: the firmware and the simulator (sim.py) run inside the real
MicroPython VM (the official WebAssembly port, npm @micropython/micropython-webassembly-pyscript,
under Node.js; installed in tests/mpvm by `scripts/install.sh --test`).

Each run starts a fresh VM and plays the scenario from power-up to the stop time, so runs are
reproducible; frames are ACKed inside the VM (there is no socket in this port).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import LampwatchError
from ..paths import REPO_DIR
from .links import SentFrame

MPVM_DIR = REPO_DIR / "tests" / "mpvm"
RUNNER = MPVM_DIR / "run.mjs"
SIM_SOURCE = Path(__file__).resolve().parent / "sim.py"
_MARK = "@@ "

# The program run in the VM: simulated modules into sys.modules, the firmware imported fresh
# at each boot (as after a reset), results printed as marked lines.
_PROGRAM = """
import sys, gc, hashlib, struct
for _n, _hex in {mpy}.items():
    with open(_n + ".mpy", "wb") as _f:
        _f.write(bytes.fromhex(_hex))
import sim as S

SC = {scenario}
OPTS = {options}
NODE_ID = {node_id}
KEY = bytes.fromhex({key!r})
AUTO_ACK = {auto_ack}
HW = ("machine", "network", "time", "socket", "os", "select")

def hmac_sha256(key, msg):
    k = bytearray(64)
    k[:len(key)] = key
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in k))
    inner.update(msg)
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in k))
    outer.update(inner.digest())
    return outer.digest()

class Link:
    def __init__(self):
        self.acks = []
    def on_sleep(self, sim):
        pass
    def transmit(self, sim, data):
        print("@@ F", sim.now, data.hex())
        if AUTO_ACK:
            boot = struct.unpack_from(">I", data, 3)[0]
            seq = (data[7] << 16) | (data[8] << 8) | data[9]
            self.acks.append(S.ack_frame(NODE_ID, KEY, boot, seq, hmac_sha256))
    def receive(self, sim):
        return self.acks.pop(0) if self.acks else None

class Boot:
    def __init__(self, main):
        self.main = main
    def start(self):
        app = self.main.start()
        print("@@ M", gc.mem_alloc() - LOADER.a0)
        return app
    def run(self, app):
        self.main.run(app)

class Loader:
    app = None
    main = None
    a0 = 0
    def fresh(self):
        for n in S.FIRMWARE:
            if n in sys.modules:
                del sys.modules[n]
        mods = SIM.modules()
        for n in HW:
            sys.modules[n] = mods[n]
        gc.collect()
        self.a0 = gc.mem_alloc()
        return Boot(__import__("main"))

SIM = S.Sim(SC, link=Link(), **OPTS)
LOADER = Loader()
"""
_RUN = """
S.run(SIM, LOADER, {until})
for t, cause in SIM.boots:
    print("@@ B", t, cause)
print("@@ S now", SIM.now)
print("@@ S irq_run", SIM.irq_run)
print("@@ S irq_dropped", SIM.irq_dropped)
print("@@ S sent", SIM.sent)
"""


class MicroPythonEngineError(LampwatchError):
    """The MicroPython VM is missing, or the firmware failed inside it."""


@dataclass
class VMResult:
    frames: list[SentFrame] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    now_us: int = 0
    setup_alloc: list[int] = field(default_factory=list)  # bytes allocated per boot's setup


def vm_files(config_text: str, firmware_dir: Path, mpy: bool) -> dict[str, str]:
    files = {} if mpy else {p.name: p.read_text(encoding="utf-8")
                            for p in sorted(firmware_dir.glob("*.py"))}
    files["sim.py"] = SIM_SOURCE.read_text(encoding="utf-8")
    files["config.json"] = config_text
    return files


def compile_mpy(firmware_dir: Path) -> dict[str, str]:
    """{module: hex of its .mpy} by mpy-cross (bytecode, as deployed without a native arch)."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for src in sorted(firmware_dir.glob("*.py")):
            dst = Path(tmp) / f"{src.stem}.mpy"
            proc = subprocess.run([sys.executable, "-m", "mpy_cross", "-o", str(dst), str(src)],
                                  capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise MicroPythonEngineError(f"mpy-cross {src.name}: {proc.stderr.strip()}")
            out[src.stem] = dst.read_bytes().hex()
    return out


def firmware_mpy(node) -> dict[str, str]:
    """{module: hex of its .mpy}: compiled from the sources with node.vm_mpy, else the .mpy
    files already in node.firmware_dir, byte for byte (a board's flash as `lampwatch flash`
    left it: main.py source beside the other modules' .mpy)."""
    if node.vm_mpy:
        return compile_mpy(node.firmware_dir)
    return {p.stem: p.read_bytes().hex() for p in sorted(node.firmware_dir.glob("*.mpy"))}


def run_job(code: str, files: dict[str, str], timeout: float, then=()) -> str:
    """Run one job through tests/mpvm/run.mjs (`then`: further top-level steps); returns
    stdout."""
    if shutil.which("node") is None or not RUNNER.is_file():
        raise MicroPythonEngineError(
            "the MicroPython VM is not installed: run `bash scripts/install.sh --test`")
    job = json.dumps({"code": code, "files": files, "then": list(then)})
    try:
        proc = subprocess.run(["node", str(RUNNER)], input=job.encode(), capture_output=True,
                              timeout=timeout, cwd=MPVM_DIR, check=False)
    except subprocess.TimeoutExpired:
        raise MicroPythonEngineError(f"the MicroPython VM ran longer than {timeout} s") from None
    out = proc.stdout.decode("utf-8", "replace")
    if proc.returncode != 0:
        raise MicroPythonEngineError(
            f"firmware failed in the MicroPython VM:\n{proc.stderr.decode('utf-8', 'replace')}")
    return out


def _program(node, mpy: dict[str, str]) -> str:
    opts = dict(node.sim_options)
    opts["seed"] = node.seed
    return _PROGRAM.format(
        mpy=repr(mpy), scenario=repr(node._compiled), options=repr(opts),
        node_id=node.config["node_id"], key=node.config["key"],
        auto_ack=bool(getattr(node.link, "ack", True)))


def live_heap_after_setup(node, until_us: int = 2_000_000, timeout: float = 60.0) -> int:
    """Bytes the firmware holds on the heap once booted and set up (run to `until_us`).

    This VM collects garbage only between top-level runs, so the measurement is taken in
    steps: set up the simulator and collect; note gc.mem_alloc(); boot the firmware; collect
    again. The difference is what the firmware keeps: its module code (source or .mpy), its
    buffers and objects, the frames waiting for an ACK; not the simulator's own memory.
    """
    mpy = firmware_mpy(node)
    # Each top-level run starts with a collection, but the stack of the run before may still
    # pin some of its garbage: a few empty runs let the heap settle on both sides.
    settle = ["gc.collect()"] * 3
    steps = [*settle, "A0 = gc.mem_alloc()", _RUN.format(until=until_us), *settle,
             "print('@@ L', gc.mem_alloc() - A0)"]
    out = run_job(_program(node, mpy), vm_files(json.dumps(node.config), node.firmware_dir,
                                                 node.vm_mpy), timeout, then=steps)
    for line in out.splitlines():
        if line.startswith(_MARK + "L "):
            return int(line.split()[2])
    raise MicroPythonEngineError("the heap measurement printed nothing")


def run_in_vm(node, until_us: int, timeout: float = 120.0) -> VMResult:
    """Play node's scenario from power-up to until_us in a fresh MicroPython VM; with
    node.vm_mpy the firmware goes in as .mpy files (compiled by mpy-cross) instead of source."""
    mpy = firmware_mpy(node)
    code = _program(node, mpy) + _RUN.format(until=until_us)
    out = run_job(code, vm_files(json.dumps(node.config), node.firmware_dir, node.vm_mpy),
                  timeout)
    res = VMResult()
    boots = []
    for line in out.splitlines():
        if not line.startswith(_MARK):
            res.console.append(line)
            continue
        kind, *rest = line[len(_MARK):].split()
        if kind == "F":
            res.frames.append(SentFrame(int(rest[0]) / 1e6, bytes.fromhex(rest[1])))
        elif kind == "B":
            boots.append((int(rest[0]), int(rest[1])))
        elif kind == "M":
            res.setup_alloc.append(int(rest[0]))
        elif kind == "S":
            res.stats[rest[0]] = int(rest[1])
    res.stats["boots"] = boots
    res.now_us = res.stats.get("now", 0)
    return res
