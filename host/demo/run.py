"""`lampwatch demo`: a collector and a rice-milling line of virtual nodes on one accelerated clock.

One time base: the plant runner advances the nodes' simulated time in slices and publishes
it; the collector's clock reads that same value (plus the simulated start's epoch), so
receive times, silence, the shift calendar and the running shift's OEE all agree however
fast the simulation runs, and however often the CPU makes it fall behind `speed`.

The simulated shifts are the latest ones that are over by the real time now (they start on
a quarter hour, and the demo's calendar repeats them every day), so `lampwatch oee report
--shift today` on the journal afterwards sees a finished shift.
"""

from __future__ import annotations

import logging
import secrets
import shlex
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..config import board_address, load_config
from ..errors import ConfigError
from ..report import oee_report as report
from ..runtime import CollectorThread
from ..vnode import VirtualNode
from . import plant as demo_plant
from .config import (
    MARKER,
    DemoError,
    calendar_doc,
    config_doc,
    first_shift_start,
    prepare_files,
    to_toml,
    write_private,
)
from .table import Header, banner, format_header, rows, screen, to_text

__all__ = ["DemoError", "DemoOptions", "DemoResult", "PlantClock", "run_demo"]

log = logging.getLogger(__name__)

_LEAD_S, _TAIL_S = 30.0, 30.0  # nodes power up before the first shift, run on after the last
_REFRESH_S = 0.5  # real seconds between live-table redraws
_SPEED_WINDOW = 10  # the measured speed is over the last this many redraws (~5 s)

# (banner lines, header lines, table cells) -> the screen redrawn in place
Show = Callable[[Sequence[str], Sequence[str], Sequence[Sequence[str]]], None]


@dataclass
class DemoOptions:
    speed: float = 240.0  # simulated seconds per real second: 8 h in 2 min
    shifts: int = 1
    shift_hours: float = 8.0
    journal: Path = Path("lampwatch-demo.sqlite")
    board: str | None = "127.0.0.1:8080"  # None: no board
    operator_pin: str | None = None  # None: a random 6-digit PIN
    influx_url: str | None = None
    influx_org: str = "lampwatch"
    influx_bucket: str = "lampwatch"
    seed: int = 1
    tz: str = "Asia/Jakarta"
    first_shift: str | None = None  # local "HH:MM"; None: the quarter hour that lets the
    # shifts end just before now
    live: bool = False  # redraw in place (a TTY); else print the table every print_every_s
    print_every_s: float = 1800.0  # simulated seconds


@dataclass
class DemoResult:
    config_path: Path
    journal_path: Path
    window: tuple[float, float]  # what the final report covers (epoch s)
    finished: bool  # ran to the end of the last shift (False: stopped early)
    accepted: int
    resent: int  # duplicates: a frame resent because its ACK came late; ACKed, not applied
    rejected: int  # anything else refused
    wall_s: float
    sim_s: float
    report_command: str
    plans: list = field(default_factory=list)


class PlantClock:
    """The one time base: `t_s` simulated seconds since the nodes' power-up at `epoch0_s`."""

    def __init__(self, epoch0_s: float):
        self.epoch0_s, self.t_s = epoch0_s, 0.0

    def now(self) -> float:
        return self.epoch0_s + self.t_s


# Two: their waits for ACKs overlap enough for 240x with six nodes (a 1-hour shift: 15.3 s,
# 7.9 s of CPU); six threads keep the same pace at 11.4 s of CPU, lost in handing the
# interpreter lock around at every socket call; one after another: 25.5 s, 6.1 s of CPU.
_NODE_THREADS = 2


class PlantRunner(threading.Thread):
    """Runs the nodes side by side in slices of simulated time, paced to `speed`.

    The clock moves to a slice's end before the nodes run it, so a frame's receive time is
    never earlier than the moment it was sent (a delay >= 0, as on a real network).

    The nodes of a slice run _NODE_THREADS at a time, as on a plant's network they run side
    by side: each waits for its ACKs (real time: the collector commits them within ~5 ms),
    and one node after another those waits took 20 of a 1-hour shift's 26 s at 240x, so the
    demo ran at 143x.
    """

    def __init__(self, nodes: list[VirtualNode], clock: PlantClock, end_s: float,
                 speed: float, stop: threading.Event):
        super().__init__(name="plant", daemon=True)
        self.nodes, self.clock, self.end_s, self.speed, self.stop = nodes, clock, end_s, speed, stop
        self.slice_s = min(2.0, max(0.1, speed * 0.01))  # ~10 ms of real time
        self.error: BaseException | None = None
        self._real0: float | None = None
        self._t0 = clock.t_s

    def behind_s(self) -> float:
        """Real seconds the simulation is late on its schedule (0 when on time): the CPU
        could not run the nodes at `speed`; it catches up when it can."""
        if self._real0 is None:
            return 0.0
        return max(0.0, time.monotonic() - self._real0 - (self.clock.t_s - self._t0) / self.speed)

    def run(self) -> None:
        try:
            with ThreadPoolExecutor(_NODE_THREADS, "node") as pool:
                self._real0, t = time.monotonic(), self.clock.t_s
                while t < self.end_s and not self.stop.is_set():
                    t = min(t + self.slice_s, self.end_s)
                    self.clock.t_s = t
                    for done in [pool.submit(node.run_until, t) for node in self.nodes]:
                        done.result()  # a node's error ends the run (below)
                    ahead = (t - self._t0) / self.speed - (time.monotonic() - self._real0)
                    if ahead > 0:
                        self.stop.wait(ahead)
        except BaseException as exc:  # noqa: BLE001 - reported by run_demo in the main thread
            self.error = exc


def _board(text: str | None) -> tuple[dict | None, str | None]:
    """[board] for the config, and a note when the asked port is taken (then port 0: the
    board takes a free one and reports it as runtime.board_url)."""
    if text is None:
        return None, None
    host, port = board_address(text)
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            note = (f"board: {host}:{port} is not available ({exc.strerror or exc}); "
                    "using a free port")
            return {"listen": f"{host}:0"}, note
    return {"listen": f"{host}:{port}"}, None


def _board_url(ct: CollectorThread) -> str | None:
    """The running board's URL (None while the runtime has no board)."""
    return getattr(ct.runtime, "board_url", None)


def run_demo(opts: DemoOptions, out: Callable[[str], None] = print,
             stop: threading.Event | None = None, show: Show | None = None) -> DemoResult:
    """Run the demo until the last shift ends or `stop` is set; print as it goes.

    With `opts.live` and `show`, the screen is handed to `show` about twice a second, to
    redraw in place; otherwise the banner and then, every `print_every_s` of simulated time,
    the table go to `out` as text.
    Raises DemoError / ConfigError for what the user can fix (one line at the CLI).
    """
    if not opts.speed > 0:
        raise DemoError(f"--speed must be greater than 0, not {opts.speed:g}")
    minutes = opts.shift_hours * 60
    if minutes < 1 or minutes != int(minutes) or opts.shifts * opts.shift_hours > 24:
        raise DemoError("--shift-hours must be whole minutes (0.25 = 15 min), and all "
                        "shifts together at most 24 h")
    stop = stop or threading.Event()
    shift_s = minutes * 60.0
    start_s = first_shift_start(time.time(), opts.tz, opts.shifts * shift_s + _TAIL_S + 60,
                                opts.first_shift)
    plans = demo_plant.build_plant(shift_s, opts.shifts, lead_s=_LEAD_S, tail_s=_TAIL_S,
                                   seed=opts.seed)
    journal = opts.journal.expanduser().absolute()
    config_path, pin_path = prepare_files(journal)
    board, board_note = _board(opts.board)
    pin = opts.operator_pin or f"{secrets.randbelow(1_000_000):06d}"
    if board is not None:
        write_private(pin_path, pin + "\n")
        board["operator_pin_file"] = pin_path.name
    influx = None
    if opts.influx_url:
        influx = {"url": opts.influx_url, "org": opts.influx_org, "bucket": opts.influx_bucket}
    keys = {p.spec.node_id: secrets.token_hex(16) for p in plans}
    doc = config_doc(plans, keys, calendar_doc(start_s, opts.tz, shift_s, opts.shifts),
                     journal.name, board, influx)
    write_private(config_path, to_toml(doc, f"{MARKER}: the demo plant's collector config.\n"
                                       "# Reuse it: lampwatch oee report --config THIS, "
                                       "lampwatch collect --config THIS"))
    cfg = load_config(config_path)
    if cfg.influxdb is not None:
        cfg.influxdb.token()  # missing token: one line now, not a failing forwarder later

    clock = PlantClock(start_s - _LEAD_S)
    try:
        ct = CollectorThread(cfg, clock=clock.now).start()
    except OSError as exc:
        raise ConfigError(f"cannot start the collector: {exc}") from None
    nodes: list[VirtualNode] = []
    t0 = time.monotonic()
    try:
        for p in plans:
            node_cfg = demo_plant.node_config(p.spec, keys[p.spec.node_id], ct.udp_address[1])
            nodes.append(VirtualNode(node_cfg, p.scenario, collector=ct.udp_address,
                                     seed=opts.seed * 1000 + p.spec.node_id))
        runner = PlantRunner(nodes, clock, plans[0].scenario.duration_s, opts.speed, stop)
        banner = _banner(opts, ct, board, board_note, pin, config_path, journal)
        live = show if opts.live else None
        for line in ([] if live else banner):
            out(line)
        runner.start()
        _show(runner, ct, clock, plans, opts, banner, out, live, start_s, shift_s)
        runner.join()
        if runner.error is not None:
            raise runner.error
    finally:
        stop.set()
        for n in nodes:
            n.close()
        stats = ct.stats() if ct.runtime.collector is not None else None
        ct.stop()
    end_s = clock.now()
    finished = clock.t_s >= plans[0].scenario.duration_s
    window = (start_s, min(end_s, start_s + opts.shifts * shift_s))
    cal = cfg.calendar
    command = (f"lampwatch oee report --config {shlex.quote(str(config_path))} "
               f"--from {cal.iso(window[0])} --to {cal.iso(window[1])}")
    return DemoResult(config_path, journal, window, finished,
                      stats.accepted if stats else 0, stats.duplicates if stats else 0,
                      stats.rejected - stats.duplicates if stats else 0,
                      time.monotonic() - t0, clock.t_s, command, plans)


def _banner(opts, ct, board, board_note, pin, config_path, journal) -> list[str]:
    influx = (f"{opts.influx_url} org {opts.influx_org} bucket {opts.influx_bucket}"
              if opts.influx_url else None)
    return banner(f"{demo_plant.LINE} of {demo_plant.PLANT}", len(demo_plant.MACHINES),
                  "{}:{}".format(*ct.udp_address), board_note, _board_url(ct),
                  board and board["listen"], pin, journal, config_path, influx)


def _show(runner, ct, clock, plans, opts, banner, out, live, start_s, shift_s) -> None:
    """Hand the screen to `live` about twice a second, or print the table every
    `print_every_s` of simulated time, until the runner ends."""
    units = {p.spec.machine: p.spec.unit for p in plans}
    order = [p.spec.machine for p in plans]
    next_print = start_s
    samples: deque[tuple[float, float]] = deque(maxlen=_SPEED_WINDOW)
    while True:
        runner.join(_REFRESH_S)
        alive = runner.is_alive()
        samples.append((time.monotonic(), clock.t_s))
        (real0, sim0), (real1, sim1) = samples[0], samples[-1]
        actual = (sim1 - sim0) / (real1 - real0) if real1 > real0 else None
        now_s = clock.now()
        if alive and live is None and now_s < next_print:
            continue
        if not alive and runner.error is not None:
            return
        header, cells = _screen(ct, now_s, start_s, shift_s, opts, actual,
                                runner.behind_s(), units, order)
        if live is not None:
            live(banner, header, cells)
        else:
            out(to_text(screen([], header, cells)) + "\n")
            while next_print <= now_s:
                next_print += opts.print_every_s
        if not alive:
            return


def _screen(ct, now_s, start_s, shift_s, opts, actual, behind_s, units, order):
    end_s = start_s + opts.shifts * shift_s
    # In the tail after the last shift, show that shift as it ended, not "between shifts".
    at_s = min(now_s, end_s - 1e-3) if now_s >= start_s else now_s
    k = int((at_s - start_s) // shift_s)
    in_shift = 0 <= k < opts.shifts
    a = start_s + k * shift_s
    stats = ct.stats()
    head = Header(opts.tz, "ABC"[k] if in_shift else None, a if in_shift else None,
                  a + shift_s if in_shift else None, opts.speed, actual, stats.accepted,
                  stats.duplicates, stats.rejected - stats.duplicates, behind_s)
    snaps = ct.call(lambda: ct.runtime.deriver.snapshot(at_s))
    return format_header(head, at_s), rows(snaps, at_s, units, order)


def final_report(result: DemoResult) -> str:
    """`lampwatch oee report`'s table for the demo's window, read from the journal."""
    cfg = load_config(result.config_path)
    events, last_rx = report.read_journal(result.journal_path, *result.window)
    settings = {n.machine: report.MachineSettings(n.ideal_cycle_s, n.heartbeat_s, n.unit)
                for n in cfg.nodes.values()}
    rep = report.build_report(events, last_rx, *result.window, calendar=cfg.calendar,
                              settings=settings, now_s=time.time(),
                              short_stop_s=cfg.short_stop_s,
                              startup_window_s=cfg.startup_window_s,
                              planned_maintenance=cfg.planned_maintenance,
                              versions=report.read_versions(result.journal_path,
                                                            *result.window))  # issue 14
    return report.format_table(rep)
