# sim: the virtual node's simulated ESP32 (machine, network, time, socket, os, sys, select)
# and its life (boot, resets, power loss), driven by a scenario timeline in microseconds.
# Written in the subset shared by CPython and MicroPython: the same file runs in both engines.
#
# Pin IRQs behave as on the ESP32 port (py/scheduler.c, ports/esp32/machine_pin.c): the GPIO
# ISR only mp_sched_schedule()s the handler into a queue of 8 (MICROPY_SCHEDULER_DEPTH; when
# it is full the call is lost); the VM runs queued handlers one at a time, in order, after a
# latency the scenario sets (tens to hundreds of us), never during a GC pause or VM stall, and
# each handler reads the pin when it runs, not when the edge happened. irq="instant" keeps
# the old ideal model (the handler at the edge) for tests about something else.
import heapq

try:
    from . import periph as P
except ImportError:  # inside the MicroPython VM sim.py and periph.py are top-level modules
    import periph as P

TICKS_PERIOD = 1 << 30  # ESP32: ticks_us wraps every ~17.9 min, ticks_ms every ~12.4 days
_HALF = TICKS_PERIOD >> 1
IRQ_QUEUE = 8  # the ESP32 port's scheduler queue: a full queue drops callbacks
PWRON_RESET, HARD_RESET, WDT_RESET, DEEPSLEEP_RESET, SOFT_RESET = 1, 2, 3, 4, 5
FIRMWARE = ("lwmain", "app", "sensor_node", "pulses", "config", "lwproto", "lwdns", "lwserial",
            "outbox", "nodestate")
SEAM = "lwmain"  # the module main.py (the boot stub) imports and calls
SIM_FILES = ("sim", "periph")  # this engine's own modules (copied into the MicroPython VM)


class Pause(Exception):
    """Raised out of time.sleep_ms when the simulation reached its stop time."""


class Reset(Exception):
    """The node resets (watchdog, soft reset, power loss); the engine boots it again."""

    def __init__(self, cause):
        super().__init__(cause)
        self.cause = cause


def ticks_diff(a, b):
    return ((a - b + _HALF) & (TICKS_PERIOD - 1)) - _HALF


def edges(timeline, end_us):
    """(t_us, level) edges of one input's timeline: [(t_us, mode), ...] sorted, where mode is
    ("level", v), ("square", hz, duty), ("pulses", n, width_us, period_us) or
    ("pattern", n, period_us, ((offset_us, level), ...), parts); logical levels
    (1 = lamp lit / count pulse active)."""
    level = 0
    for i in range(len(timeline)):
        t0, mode = timeline[i]
        t1 = timeline[i + 1][0] if i + 1 < len(timeline) else end_us
        kind = mode[0]
        if kind == "level":
            if mode[1] != level:
                level = mode[1]
                yield t0, level
        elif kind == "square":
            period_ns = int(1e9 / mode[1])
            on_ns = int(period_ns * mode[2])
            k = 0
            while True:
                r = t0 + k * period_ns // 1000
                if r >= t1:
                    break
                if level != 1:
                    level = 1
                    yield r, 1
                f = t0 + (k * period_ns + on_ns) // 1000
                if f < t1 and f > r:
                    level = 0
                    yield f, 0
                k += 1
            if level:
                level = 0
                yield t1, 0
        elif kind == "pulses":
            n, width, period = mode[1], mode[2], mode[3]
            if level:
                level = 0
                yield t0, 0
            for k in range(n):
                r = t0 + k * period
                if r >= t1:
                    break
                yield r, 1
                yield min(r + width, t1), 0
        elif kind == "pattern":
            n, period, pattern = mode[1], mode[2], mode[3]
            for k in range(n):
                base = t0 + k * period
                if base >= t1:
                    break
                for off, v in pattern:
                    t = base + off
                    if t >= t1:
                        break
                    if v != level:
                        level = v
                        yield t, v
            if level:
                level = 0
                yield t1, 0


class Sim:
    """One simulated ESP32 and everything around it.

    Args:
        scenario: {"inputs": {gpio: (invert, timeline)}, "faults": [(t_us, kind, arg)],
            "end_us": int, "latency": [(t_us, lo_us, hi_us)]} (lampwatch.vnode.scenario).
        seed: makes os.urandom (and so boot ids) and the IRQ latencies reproducible.
        link: the transport outside the node: transmit(bytes), receive() -> bytes or None,
            serial_out/serial_in/serial_waiting for the serial transport; on_sleep(sim).
        irq: "soft" (the ESP32 port's scheduled handlers) or "instant" (the handler runs at
            the edge, irq_latency_us later by the clock; for tests about something else).
        irq_latency_us: (lo, hi): each handler starts lo..hi us after its edge (uniform),
            unless the scenario's latency timeline says otherwise; a single number: lo = hi.
            Default (50, 100); instant: 30.
        handler_us: how long one handler runs (the next queued one starts after it);
            counter_read_us: added per Counter.value() call inside a handler.
        dns: {host name: "a.b.c.d"} served by the LAN's DNS server; dns_us: its answer time
            (a blocking socket.getaddrinfo() takes as long).
    """

    def __init__(self, scenario, seed=1, link=None, has_counter=True, counter_raw16=False,
                 boot_us=600000, connect_us=1500000, irq="soft", irq_latency_us=None,
                 handler_us=25, counter_read_us=40, rssi=-61, dns=None, dns_us=20000):
        if irq not in ("soft", "instant"):
            raise ValueError("irq must be 'soft' or 'instant'")
        self.now = 0
        self.stop_at = 0
        self.link = link
        self.has_counter = has_counter
        self.counter_raw16 = counter_raw16
        self.boot_us = boot_us
        self.connect_us = connect_us
        self.irq = irq
        if irq_latency_us is None:
            irq_latency_us = (50, 100) if irq == "soft" else 30
        if isinstance(irq_latency_us, int):
            irq_latency_us = (irq_latency_us, irq_latency_us)
        self.latency = [(0, irq_latency_us[0], irq_latency_us[1])]
        self.latency += sorted(scenario.get("latency", ()))
        self._lat_i = 0
        self.handler_us = handler_us
        self.counter_read_us = counter_read_us
        self.rssi = rssi
        self.dns_names = dns or {}
        self.dns_us = dns_us
        self.dns_down_until = -1
        self.dns_queries = 0
        self._rand = seed & 0xFFFFFFFF or 1
        self._lat_rand = (seed * 2654435761 + 12345) & 0xFFFFFFFF or 1
        self.inputs = scenario["inputs"]
        self.end_us = scenario["end_us"]
        self.faults = sorted(scenario["faults"])
        self._fault_i = 0
        self._heap = []
        self._n = 0
        self._gens = {}
        for gpio in self.inputs:
            self._gens[gpio] = edges(self.inputs[gpio][1], self.end_us)
            self._pull(gpio)
        self.logical = {}
        for gpio in self.inputs:
            self.logical[gpio] = 0
        self.rtc_mem = b""
        self.reset_cause = PWRON_RESET
        self.ticks_base = 0
        self.boots = []  # (t_us, reset cause)
        self.wifi_down = False
        self.wifi_attempts = 0
        self.busy_until = -1  # soft IRQs wait (GC, long C call) until then
        self.blocked_until = -1  # the main loop is not running until then
        self.gc_pending = 0  # a GC pause (us) the main loop takes at the end of its pass
        self.gcs = 0
        self.power_off_until = 0
        self.sched = []  # [ready us, pin]: the scheduler queue, oldest first
        self.sched_free = 0  # when the handler running last returns
        self.in_handler = False
        self.handler_cost = 0
        self.irq_queue = []  # instant mode: IRQs waiting out a stall
        self.irq_dropped = 0
        self.irq_run = 0
        self.irq_max_queue = 0
        self.sent = 0
        self.console = []
        self.uart0 = bytearray()  # raw bytes the firmware wrote to the console UART
        self._new_boot_hw()

    # --- randomness and time ------------------------------------------------------------

    def urandom(self, n):
        out = bytearray(n)
        for i in range(n):  # xorshift32
            x = self._rand
            x ^= (x << 13) & 0xFFFFFFFF
            x ^= x >> 17
            x ^= (x << 5) & 0xFFFFFFFF
            self._rand = x
            out[i] = x & 0xFF
        return bytes(out)

    def _latency(self, t):
        """The latency of a handler scheduled at t, from the latency timeline (its own random
        stream, so boot ids do not change with the IRQ model)."""
        lat = self.latency
        i = self._lat_i
        while i + 1 < len(lat) and lat[i + 1][0] <= t:
            i += 1
        self._lat_i = i
        lo, hi = lat[i][1], lat[i][2]
        if hi <= lo:
            return lo
        x = self._lat_rand
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self._lat_rand = x
        return lo + x % (hi - lo + 1)

    def ticks_us(self):
        return (self.now - self.ticks_base) & (TICKS_PERIOD - 1)

    def ticks_ms(self):
        return ((self.now - self.ticks_base) // 1000) & (TICKS_PERIOD - 1)

    def sleep_ms(self, ms):
        if self.link is not None:
            self.link.on_sleep(self)
        if self.gc_pending:  # the pass allocated and the GC ran before the loop slept
            d = self.gc_pending
            self.gc_pending = 0
            self.gcs += 1
            self.busy_until = max(self.busy_until, self.now + d)
            self.advance(self.now + d)
        self.advance(self.now + int(ms) * 1000)
        while self.blocked_until > self.now:  # the main loop runs again only after a stall
            self.advance(self.blocked_until)
        if self.now >= self.stop_at:
            raise Pause()

    # --- the hardware of one boot -------------------------------------------------------

    def _new_boot_hw(self):
        self.pins = {}
        self.counters = []
        self.wdt_us = 0
        self.wdt_fed = 0
        self.wlan = None
        self.irq_queue = []
        self.sched = []
        self.gc_pending = 0

    def pin(self, gpio, mode=1, pull=None):
        p = self.pins.get(gpio)
        if p is None:
            inv = self.inputs[gpio][0] if gpio in self.inputs else 0
            p = P.Pin(self, gpio, inv)
            p.level = self.logical.get(gpio, 0) ^ inv
            self.pins[gpio] = p
        return p

    def counter(self, unit, src, edge=1, filter_ns=0, direction=1):
        if not self.has_counter:
            raise ValueError("no PCNT")
        c = P.Counter(self, unit, src, edge, filter_ns)
        self.counters.append(c)
        return c

    def modules(self):
        """{name: module stand-in} for machine, network, time, socket, os, sys, select."""
        sim = self
        m = P._Obj()
        m.Pin = _PinFactory(sim)
        if self.has_counter:
            m.Counter = _CounterFactory(sim)
        m.UART = lambda uid, baudrate=115200, **kw: P.UART(sim, uid, baudrate, **kw)
        m.RTC = lambda *a: P.RTC(sim)
        m.WDT = lambda id=0, timeout=5000: P.WDT(sim, timeout)
        m.reset_cause = lambda: sim.reset_cause
        m.PWRON_RESET, m.HARD_RESET, m.WDT_RESET = PWRON_RESET, HARD_RESET, WDT_RESET
        m.DEEPSLEEP_RESET, m.SOFT_RESET = DEEPSLEEP_RESET, SOFT_RESET
        m.unique_id = lambda: b"\x24\x0a\xc4\x00\x00\x01"
        n = P._Obj()
        n.STA_IF = 0
        n.WLAN = lambda i=0: sim._get_wlan()
        t = P._Obj()
        t.ticks_us = sim.ticks_us
        t.ticks_ms = sim.ticks_ms
        t.ticks_diff = ticks_diff
        t.ticks_add = lambda a, b: (a + b) & (TICKS_PERIOD - 1)
        t.sleep_ms = sim.sleep_ms
        t.sleep_us = lambda us: sim.sleep_ms(us // 1000)
        t.sleep = lambda s: sim.sleep_ms(int(s * 1000))
        s = P._Obj()
        s.AF_INET = 2
        s.SOCK_DGRAM = 2
        s.socket = lambda *a: P.Socket(sim)
        s.getaddrinfo = sim.getaddrinfo
        o = P._Obj()
        o.urandom = sim.urandom
        y, e = P.stdio(sim)
        return {"machine": m, "network": n, "time": t, "socket": s, "os": o, "sys": y,
                "select": e}

    def _get_wlan(self):
        if self.wlan is None:
            self.wlan = P.WLAN(self)
        return self.wlan

    # --- transport ----------------------------------------------------------------------

    def transmit(self, data):
        self.sent += 1
        if self.link is not None:
            self.link.transmit(self, data)

    def receive(self):
        return self.link.receive(self) if self.link is not None else None

    def serial_out(self, data):
        self.sent += 1
        if self.link is not None:
            self.link.serial_out(self, data)

    def serial_in(self, n):
        return self.link.serial_in(self, n) if self.link is not None else b""

    def serial_waiting(self):
        return self.link is not None and self.link.serial_waiting(self)

    def console_write(self, data):
        self.uart0 += data

    def dns_query(self, sock, data):
        """A datagram to the LAN's DNS server: answered dns_us later, or lost while it is
        down (fault dns_down)."""
        self.dns_queries += 1
        if self.now < self.dns_down_until:
            return
        reply = P.dns_reply(data, self.dns_names)
        if reply is not None:
            sock.inbox.append((self.now + self.dns_us, reply))

    def getaddrinfo(self, host, port, *a):
        """socket.getaddrinfo: an address at once, a name only after a blocking DNS lookup
        (the main loop stops; IRQ handlers still run; the watchdog does not wait)."""
        if not host.replace(".", "").isdigit():  # a name, not an address
            wait = self.dns_us
            if self.now < self.dns_down_until:
                wait += self.dns_down_until - self.now
            self.blocked_until = max(self.blocked_until, self.now + wait)
            self.advance(self.now + wait)
            self.dns_queries += 1
            host = self.dns_names.get(host)
            if host is None:
                raise OSError(-202)  # lwIP: host not found
        return [(2, 2, 0, "", (host, port))]

    # --- the passage of time ------------------------------------------------------------

    def _pull(self, gpio):
        try:
            t, level = next(self._gens[gpio])
        except StopIteration:
            return
        self._n += 1
        heapq.heappush(self._heap, (t, self._n, gpio, level))

    def _next_handler(self, inf):
        """When the scheduler starts the oldest queued handler (soft IRQs)."""
        if not self.sched:
            return inf
        return max(self.sched[0][0], self.sched_free, self.busy_until)

    def advance(self, until):
        """Run the world to `until` (us): edges, IRQs, faults; raise Reset on a reset."""
        heap = self._heap
        inf = 1 << 62
        soft = self.irq == "soft"
        while True:
            t_edge = heap[0][0] if heap else inf
            t_fault = self.faults[self._fault_i][0] if self._fault_i < len(self.faults) else inf
            t_busy = self.busy_until if self.busy_until >= 0 else inf
            t_wdt = self.wdt_fed + self.wdt_us if self.wdt_us else inf
            t_irq = self._next_handler(inf) if soft else inf
            t = min(t_edge, t_fault, t_busy, t_wdt, t_irq)
            if t > until:
                break
            self.now = max(self.now, t)
            if t == t_wdt:
                raise Reset(WDT_RESET)
            if t == t_busy:
                self.busy_until = -1
                if not soft:
                    self._run_queued()
            elif t == t_fault:
                self._fault_i += 1
                self._fault(self.faults[self._fault_i - 1])
            elif t == t_edge:
                t, _, gpio, level = heapq.heappop(heap)
                self._pull(gpio)
                self._edge(gpio, level)
            else:
                self._run_handler()
        self.now = max(self.now, until)

    def _edge(self, gpio, level):
        self.logical[gpio] = level
        p = self.pins.get(gpio)
        if p is None:
            return
        p.level = level ^ p.invert
        for c in self.counters:
            if c.gpio == gpio:
                c.on_edge(p.level, self.now)
        if p.handler is None or not p.trigger & (1 if p.level else 2):
            return
        if self.irq == "soft":  # the GPIO ISR: mp_sched_schedule(handler, pin)
            if len(self.sched) < IRQ_QUEUE:
                self.sched.append([self.now + self._latency(self.now), p])
                self.irq_max_queue = max(self.irq_max_queue, len(self.sched))
            else:
                self.irq_dropped += 1
            return
        if self.busy_until >= self.now:
            if len(self.irq_queue) < IRQ_QUEUE:
                self.irq_queue.append(p)
            else:
                self.irq_dropped += 1
            return
        t = self.now
        self.now = t + self.latency[0][1]
        self.irq_run += 1
        p.handler(p)
        self.now = t

    def _run_handler(self):
        p = self.sched.pop(0)[1]
        self.irq_run += 1
        self.in_handler = True
        self.handler_cost = self.handler_us
        try:
            p.handler(p)
        finally:
            self.in_handler = False
        self.sched_free = self.now + self.handler_cost

    def _run_queued(self):
        q = self.irq_queue
        self.irq_queue = []
        for p in q:
            self.irq_run += 1
            p.handler(p)

    def add_fault(self, t, kind, arg=0):
        """Schedule a fault at t (us, not in the past)."""
        i = self._fault_i
        tail = self.faults[i:]
        tail.append((t, kind, arg))
        tail.sort()
        self.faults = self.faults[:i] + tail

    def _fault(self, fault):
        t, kind, arg = fault
        if kind == "wifi_down":
            self.wifi_down = True
            if self.wlan is not None:
                self.wlan.ap_lost()
            self.add_fault(t + arg, "wifi_up", 0)
        elif kind == "wifi_up":
            self.wifi_down = False
            if self.wlan is not None:
                self.wlan.ap_back()
        elif kind == "dns_down":
            self.dns_down_until = max(self.dns_down_until, t + arg)
        elif kind == "gc":  # a garbage collection: the main loop takes it at its next pass
            self.gc_pending += arg
        elif kind == "stall":  # the VM hangs (a blocking C call): IRQs wait too
            self.busy_until = max(self.busy_until, t + arg)
            self.blocked_until = max(self.blocked_until, t + arg)
        elif kind == "busy":  # the main loop is busy in Python code: IRQs run, nobody drains
            self.blocked_until = max(self.blocked_until, t + arg)
        elif kind == "watchdog":
            raise Reset(WDT_RESET)
        elif kind == "soft_reset":
            raise Reset(SOFT_RESET)
        elif kind == "power_loss":
            self.power_off_until = t + arg
            raise Reset(PWRON_RESET)

    # --- life: boot, run, reset ---------------------------------------------------------

    def reboot(self, cause):
        """Reset the hardware: after a power loss RTC memory is gone and the node stays dark
        until power returns; ticks restart except on a soft reset."""
        self._new_boot_hw()
        self.busy_until = -1
        self.blocked_until = -1
        if cause == PWRON_RESET and self.boots:
            self.rtc_mem = b""
            self.advance(self.power_off_until)  # dark: inputs change, nobody looks
        if cause != SOFT_RESET:
            self.ticks_base = self.now
        self.reset_cause = cause
        self.advance(self.now + self.boot_us)
        self.boots.append((self.now, cause))


class _PinFactory:
    IN = P.Pin.IN
    OUT = P.Pin.OUT
    PULL_UP = P.Pin.PULL_UP
    PULL_DOWN = P.Pin.PULL_DOWN
    IRQ_RISING = P.Pin.IRQ_RISING
    IRQ_FALLING = P.Pin.IRQ_FALLING

    def __init__(self, sim):
        self.sim = sim

    def __call__(self, gpio, mode=1, pull=None, value=None):
        return self.sim.pin(gpio, mode, pull)


class _CounterFactory:
    RISING = P.Counter.RISING
    FALLING = P.Counter.FALLING
    UP = P.Counter.UP

    def __init__(self, sim):
        self.sim = sim

    def __call__(self, unit, src, edge=1, filter_ns=0, direction=1):
        return self.sim.counter(unit, src, edge, filter_ns, direction)


def boot(loader, seam, stub, env):
    """Boot as a board does: run main.py (`stub`, compiled) in `env` (its globals).

    The stub imports `seam` and calls seam.main(), which starts the node and runs its loop
    until the simulation pauses or resets it. seam.start is wrapped for that one call so the
    App it returns is kept in loader.app (and loader.started() runs): after a pause the
    engine resumes with seam.run(loader.app), the loop main() was in.
    """
    start = seam.start

    def started(*args):
        seam.start = start
        loader.app = start(*args)
        loader.started()
        return loader.app

    seam.start = started
    loader.main = seam
    exec(stub, env)  # noqa: S102  main.py, as the board runs it


def run(sim, loader, until_us):
    """Run the node until `until_us`: boot it when needed, and boot it again after each reset.

    loader.boot() runs main.py with fresh firmware modules (as after a reset), through boot()
    above; loader.app is the running App (None before the first boot).
    """
    sim.stop_at = until_us
    while sim.now < until_us:
        try:
            if loader.app is None:
                if not sim.boots:
                    sim.reboot(PWRON_RESET)
                    if sim.now >= until_us:
                        return
                loader.boot()
                # main.py returned: an invalid config, the node stays idle at the REPL
                sim.advance(until_us)
                return
            loader.main.run(loader.app)
        except Pause:
            return
        except Reset as r:
            loader.app = None
            sim.reboot(r.cause)
