"""VirtualNode: the unmodified firmware on a simulated ESP32, in CPython or the MicroPython VM."""

from __future__ import annotations

import builtins
import io
import logging
import types
from pathlib import Path

from typing_extensions import Self

from .. import node_files
from . import sim as simmod
from .links import Link, MemoryLink, PtyLink, SentFrame, UdpLink
from .scenario import Scenario

log = logging.getLogger(__name__)

_CODE_CACHE: dict[tuple[Path, str], tuple[float, types.CodeType]] = {}


def _code(firmware_dir: Path, name: str) -> types.CodeType:
    path = firmware_dir / f"{name}.py"
    mtime = path.stat().st_mtime
    hit = _CODE_CACHE.get((firmware_dir, name))
    if hit is None or hit[0] != mtime:
        hit = (mtime, compile(path.read_text(encoding="utf-8"), str(path), "exec"))
        _CODE_CACHE[(firmware_dir, name)] = hit
    return hit[1]


class _MicroPythonModule:
    """`micropython` for firmware running in CPython: const and the few calls it makes."""

    @staticmethod
    def const(x):
        return x

    @staticmethod
    def kbd_intr(c):
        pass


class _Gc:
    """`gc` for firmware running in CPython: a plausible ESP32 heap figure."""

    def __init__(self, free: int):
        self.free = free

    def mem_free(self) -> int:
        return self.free

    def mem_alloc(self) -> int:
        return 110_000 - self.free

    def collect(self) -> None:
        pass


class CPythonLoader:
    """Loads the firmware into fresh module objects for each boot of one virtual node.

    The modules' builtins carry their own __import__, which hands out this node's simulated
    machine / network / time / socket / os / sys / select and this node's firmware modules,
    so any number of nodes run side by side in one process. `open` serves config.json and
    `print` goes to the node's console.
    """

    def __init__(self, sim: simmod.Sim, config_text: bytes, firmware_dir: Path,
                 console: list[str]):
        self.sim = sim
        self.config_text = config_text
        self.firmware_dir = firmware_dir
        self.console = console
        self.app = None
        self.main = None
        self.modules: dict[str, types.ModuleType] = {}

    def boot(self):
        """Run main.py on fresh module objects, as the board does at boot (sim.boot)."""
        hw = self.sim.modules()
        hw["micropython"] = _MicroPythonModule()
        hw["gc"] = _Gc(82_000)
        loaded: dict[str, types.ModuleType] = {}
        bdict = dict(builtins.__dict__)

        def imp(name, globals=None, locals=None, fromlist=(), level=0):
            if name in hw:
                return hw[name]
            if name in simmod.FIRMWARE:
                mod = loaded.get(name)
                if mod is None:
                    mod = types.ModuleType(name)
                    mod.__dict__["__builtins__"] = bdict
                    loaded[name] = mod
                    # the firmware file itself, into this node's own module object
                    exec(_code(self.firmware_dir, name), mod.__dict__)  # noqa: S102
                return mod
            return builtins.__import__(name, globals, locals, fromlist, level)

        def fopen(path, mode="r", *a, **kw):
            if str(path).endswith("config.json"):
                data = self.config_text
                return io.BytesIO(data) if "b" in mode else io.StringIO(data.decode())
            raise OSError(2, "ENOENT")

        def fprint(*args, sep=" ", end="\n", **kw):
            line = sep.join(str(a) for a in args)
            self.console.append(line)
            log.debug("node console: %s", line)

        bdict["__import__"] = imp
        bdict["open"] = fopen
        bdict["print"] = fprint
        self.modules = loaded
        self.app = None
        stub = _code(self.firmware_dir, "main")
        simmod.boot(self, imp(simmod.SEAM), stub, {"__name__": "__main__", "__builtins__": bdict})

    def started(self):
        pass


class VirtualNode:
    """One node: the firmware files as they are, on a simulated ESP32 driven by a scenario.

    Each boot runs main.py, the boot stub, as a board does: it starts the node through lwmain.

    Args:
        config: the node's config.json as a dict (what `lampwatch flash` writes).
        scenario: the inputs' timelines and the faults (lampwatch.vnode.Scenario).
        engine: "cpython" (fast, many nodes per process, real sockets) or "micropython"
            (the real MicroPython VM; frames stay in the VM and are ACKed there).
        collector: ("127.0.0.1", port): send UDP datagrams to a real collector and take its
            ACKs. Without it frames stay in memory and are ACKed at once (auto_ack).
        serial: use a pty instead (config transport "serial"); open `serial_port`.
        speed: simulated seconds per real second (1.0: real time); None: as fast as possible.
        seed: makes boot ids reproducible.
        vm_mpy: micropython engine: the firmware as `lampwatch flash` builds it (main.py
            source, every other module .mpy) instead of every module from source.
        sim_options: has_counter, counter_raw16, boot_us, connect_us, irq ("soft", the ESP32
            port's scheduled handlers, or "instant" for tests about something else),
            irq_latency_us, handler_us, counter_read_us, rssi, dns, dns_us (sim.Sim).
    """

    def __init__(self, config: dict, scenario: Scenario, engine: str = "cpython", *,
                 collector: tuple[str, int] | None = None, serial: bool = False,
                 auto_ack: bool = True, speed: float | None = None, seed: int = 1,
                 ack_wait_s: float = 0.2, firmware_dir: Path | None = None,
                 vm_mpy: bool = False, vm_timeout_s: float = 120.0, **sim_options):
        if engine not in ("cpython", "micropython"):
            raise ValueError("engine must be 'cpython' or 'micropython'")
        if collector is not None and collector[0] != "127.0.0.1":
            raise ValueError("a virtual node only talks to 127.0.0.1")
        self.config = dict(config)
        if serial:
            self.config["transport"] = "serial"
        self.scenario = scenario
        self.engine = engine
        self.seed = seed
        self.vm_mpy = vm_mpy
        self.vm_timeout_s = vm_timeout_s
        self.sim_options = sim_options
        self.console: list[str] = []
        self.firmware_dir = Path(firmware_dir or node_files.firmware_dir())
        key = bytes.fromhex(self.config.get("key", "")) if self.config.get("key") else None
        node_id = self.config.get("node_id", 0)
        if serial:
            self.link: Link = PtyLink(speed, ack_wait_s)
        elif collector is not None:
            self.link = UdpLink(collector, speed, ack_wait_s)
        else:
            self.link = MemoryLink(node_id, key, speed, ack=auto_ack)
        self._compiled = scenario.compile(self.config)
        self._mp_result = None
        if engine == "cpython":
            self.sim = simmod.Sim(self._compiled, seed=seed, link=self.link, **sim_options)
            self.loader = CPythonLoader(self.sim, node_files.config_json(self.config),
                                        self.firmware_dir, self.console)

    # --- running ------------------------------------------------------------------------

    @property
    def now_s(self) -> float:
        if self.engine == "micropython":
            return self._mp_result.now_us / 1e6 if self._mp_result else 0.0
        return self.sim.now / 1e6

    def run_until(self, t_s: float) -> VirtualNode:
        """Run the simulation up to t_s seconds after the first power-up."""
        until = round(t_s * 1e6)
        if self.engine == "micropython":
            from .mpvm import run_in_vm

            self._mp_result = run_in_vm(self, until, self.vm_timeout_s)
            self.link.frames[:] = self._mp_result.frames
            self.console[:] = self._mp_result.console
            return self
        simmod.run(self.sim, self.loader, until)
        return self

    def inject(self, kind: str, at_s: float | None = None, duration_s: float = 0.0) -> None:
        """Schedule a fault (see Scenario.fault) at at_s, default now."""
        t = self.now_s if at_s is None else at_s
        if self.engine == "micropython":
            self.scenario.fault(kind, t, duration_s=duration_s)
            self._compiled = self.scenario.compile(self.config)
            return
        if t < self.now_s:
            raise ValueError("cannot inject a fault in the past")
        self.scenario.fault(kind, t, duration_s=duration_s)
        self.sim.add_fault(round(t * 1e6), kind, round(duration_s * 1e6))

    # --- what happened ------------------------------------------------------------------

    @property
    def frames(self) -> list[SentFrame]:
        return self.link.frames

    @property
    def serial_port(self) -> str | None:
        return getattr(self.link, "port", None)

    @property
    def udp_address(self) -> tuple[str, int] | None:
        return self.link.address if isinstance(self.link, UdpLink) else None

    @property
    def app(self):
        """The running firmware App (CPython engine), for inspection in tests."""
        return self.loader.app if self.engine == "cpython" else None

    def stats(self) -> dict:
        """Simulator-side counters: boots, IRQs run / dropped by the full scheduler queue, the
        deepest the queue got, GC pauses taken, DNS queries;
        micropython engine: also setup_alloc, bytes allocated by each boot's import + setup."""
        if self.engine == "micropython":
            if self._mp_result is None:
                return {}
            return dict(self._mp_result.stats, setup_alloc=self._mp_result.setup_alloc)
        s = self.sim
        return {"boots": list(s.boots), "irq_run": s.irq_run, "irq_dropped": s.irq_dropped,
                "irq_max_queue": s.irq_max_queue, "gcs": s.gcs, "dns_queries": s.dns_queries,
                "sent": s.sent, "wifi_attempts": s.wifi_attempts}

    def close(self) -> None:
        self.link.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def run_plant(nodes: list[VirtualNode], until_s: float, slice_s: float = 0.05) -> None:
    """Run several CPython-engine nodes side by side, in slices of simulated time."""
    t = min(n.now_s for n in nodes)
    while t < until_s:
        t = min(t + slice_s, until_s)
        for n in nodes:
            n.run_until(t)
