"""The MicroPython engine: the firmware and the simulator (sim.py) run inside the real
MicroPython VM (the official WebAssembly port under Node.js, run through vm.run_micropython).

Each run starts a fresh VM and plays the scenario from power-up to the stop time, so runs are
reproducible; frames are ACKed inside the VM (there is no socket in this port), by the host's
one ACK encoder (ackcodec.py, loaded into the VM) with the VM's own hmac module: the node's
codec checks them, so a fault in its HMAC cannot hide behind an ACK made with the same code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .. import ackcodec
from ..flash.flasher import build_firmware
from ..node_files import config_json, firmware_sources
from .links import SentFrame
from .sim import SIM_FILES
from .vm import MicroPythonEngineError, package_file, run_micropython

ACKCODEC = Path(ackcodec.__file__)  # the host's ACK encoder, loaded into the VM as a file
_MARK = "@@ "

# The program run in the VM: simulated modules into sys.modules; at each boot (as after a
# reset) main.py runs and imports the firmware fresh; results printed as marked lines.
_PROGRAM = """
import sys, gc, hashlib, hmac, struct
for _n, _hex in {mpy}.items():
    with open(_n + ".mpy", "wb") as _f:
        _f.write(bytes.fromhex(_hex))
import sim as S
import ackcodec

SC = {scenario}
OPTS = {options}
NODE_ID = {node_id}
KEY = bytes.fromhex({key!r})
AUTO_ACK = {auto_ack}
HW = ("machine", "network", "time", "socket", "os", "select")

def hmac_sha256(key, msg):
    return hmac.new(key, msg, hashlib.sha256).digest()

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
            self.acks += ackcodec.encode_acks(NODE_ID, boot, [seq], KEY, hmac_sha256)
    def receive(self, sim):
        return self.acks.pop(0) if self.acks else None

class Loader:
    app = None
    main = None
    a0 = 0
    stub = None
    env = None
    def boot(self):
        for n in S.FIRMWARE:
            if n in sys.modules:
                del sys.modules[n]
        mods = SIM.modules()
        for n in HW:
            sys.modules[n] = mods[n]
        self.app = None
        self.stub = self.env = None
        gc.collect()
        self.a0 = gc.mem_alloc()
        # main.py compiles at boot, as on a board; its code and globals stay live while it runs
        with open("main.py") as f:
            self.stub = compile(f.read(), "main.py", "exec")
        self.env = {{"__name__": "__main__"}}
        S.boot(self, __import__(S.SEAM), self.stub, self.env)
    def started(self):
        print("@@ M", gc.mem_alloc() - self.a0)

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
print("@@ S irq_max_queue", SIM.irq_max_queue)
print("@@ S gcs", SIM.gcs)
print("@@ S dns_queries", SIM.dns_queries)
print("@@ S sent", SIM.sent)
"""


@dataclass
class VMResult:
    frames: list[SentFrame] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    now_us: int = 0
    setup_alloc: list[int] = field(default_factory=list)  # bytes allocated per boot's setup


def vm_files(node) -> tuple[dict[str, str], dict[str, str]]:
    """(files written as text, {module: hex of its .mpy}): the node's file system in the VM.

    With node.vm_mpy, the firmware as `lampwatch flash` builds it (main.py source, every other
    module .mpy); else the files in node.firmware_dir as they are: the firmware's sources, or a
    flashed board's files byte for byte. Plus the simulator's modules and config.json.
    """
    if node.vm_mpy:
        built = build_firmware(node.firmware_dir)
    else:
        built = {p.name: p.read_bytes()
                 for p in [*firmware_sources(node.firmware_dir),
                           *sorted(node.firmware_dir.glob("*.mpy"))]}
    files = {n: d.decode("utf-8") for n, d in built.items() if n.endswith(".py")}
    mpy = {n[:-4]: d.hex() for n, d in built.items() if n.endswith(".mpy")}
    for name in SIM_FILES:
        files[f"{name}.py"] = package_file(f"{name}.py").read_text(encoding="utf-8")
    files["ackcodec.py"] = ACKCODEC.read_text(encoding="utf-8")
    files["config.json"] = config_json(node.config).decode()
    return files, mpy


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
    files, mpy = vm_files(node)
    # Each top-level run starts with a collection, but the stack of the run before may still
    # pin some of its garbage: a few empty runs let the heap settle on both sides.
    settle = ["gc.collect()"] * 3
    steps = [*settle, "A0 = gc.mem_alloc()", _RUN.format(until=until_us), *settle,
             "print('@@ L', gc.mem_alloc() - A0)"]
    out = run_micropython(_program(node, mpy), files, timeout, then=steps)
    for line in out.splitlines():
        if line.startswith(_MARK + "L "):
            return int(line.split()[2])
    raise MicroPythonEngineError("the heap measurement printed nothing")


def run_in_vm(node, until_us: int, timeout: float = 120.0) -> VMResult:
    """Play node's scenario from power-up to until_us in a fresh MicroPython VM; with
    node.vm_mpy the firmware goes in as `lampwatch flash` builds it (vm_files)."""
    files, mpy = vm_files(node)
    out = run_micropython(_program(node, mpy) + _RUN.format(until=until_us), files, timeout)
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
