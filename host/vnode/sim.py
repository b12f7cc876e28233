# sim: the virtual node's simulated ESP32 (machine, network, time, socket, os, sys, select)
# and its life (boot, resets, power loss), driven by a scenario timeline in microseconds.
# Written in the subset shared by CPython and MicroPython: the same file runs in both engines.
import heapq

TICKS_PERIOD = 1 << 30  # ESP32: ticks_us wraps every ~17.9 min, ticks_ms every ~12.4 days
_HALF = TICKS_PERIOD >> 1
IRQ_QUEUE = 8  # the ESP32 port's scheduler queue: a full queue drops callbacks
PWRON_RESET, HARD_RESET, WDT_RESET, DEEPSLEEP_RESET, SOFT_RESET = 1, 2, 3, 4, 5
FIRMWARE = ("lwmain", "app", "sensor_node", "config", "lwproto", "outbox", "nodestate")
SEAM = "lwmain"  # the module main.py (the boot stub) imports and calls
_EAGAIN = 11


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
    ("level", v), ("square", hz, duty) or ("pulses", n, width_us, period_us); logical levels
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


class _Obj:
    """A namespace standing in for a module (sys.modules accepts any object)."""


class Pin:
    IN = 1
    OUT = 3
    PULL_UP = 2
    PULL_DOWN = 1
    IRQ_RISING = 1
    IRQ_FALLING = 2

    def __init__(self, sim, gpio, invert):
        self.sim = sim
        self.gpio = gpio
        self.invert = invert
        self.level = invert  # logical 0
        self.handler = None
        self.trigger = 0

    def value(self, v=None):
        return self.level

    def irq(self, handler=None, trigger=3, hard=False):
        if hard:
            raise ValueError("hard IRQs are not supported on this port")
        self.handler = handler
        self.trigger = trigger


class Counter:
    RISING = 1
    FALLING = 2
    UP = 1

    def __init__(self, sim, unit, src, edge=1, filter_ns=0, direction=1):
        self.sim = sim
        self.gpio = src.gpio
        self.edge = edge
        self.filter_us = filter_ns // 1000
        self.count = 0
        self._last_change = -1 << 40

    def on_edge(self, level, t):
        short = t - self._last_change < self.filter_us
        self._last_change = t
        if short:
            return
        if (level and self.edge & 1) or (not level and self.edge & 2):
            self.count += 1

    def value(self, v=None):
        c = self.count
        if self.sim.counter_raw16:
            c &= 0xFFFF
        if v is not None:
            self.count = v
        return c

    def deinit(self):
        pass


class WDT:
    def __init__(self, sim, timeout=5000, id=0):
        self.sim = sim
        sim.wdt_us = timeout * 1000
        sim.wdt_fed = sim.now

    def feed(self):
        self.sim.wdt_fed = self.sim.now


class RTC:
    def __init__(self, sim):
        self.sim = sim

    def memory(self, data=None):
        if data is None:
            return self.sim.rtc_mem
        if len(data) > 2048:
            raise ValueError("RTC memory holds 2048 bytes")
        self.sim.rtc_mem = bytes(data)


class WLAN:
    def __init__(self, sim):
        self.sim = sim
        self._active = False
        self._connect_at = -1

    def active(self, v=None):
        if v is None:
            return self._active
        self._active = bool(v)

    def connect(self, ssid=None, key=None):
        s = self.sim
        s.wifi_attempts += 1
        self._connect_at = s.now + s.connect_us

    def disconnect(self):
        self._connect_at = -1

    def isconnected(self):
        s = self.sim
        if s.wifi_down:
            return False
        return self._active and self._connect_at >= 0 and s.now >= self._connect_at

    def ap_lost(self):
        if self._connect_at >= 0 and self.sim.now >= self._connect_at:
            self._connect_at = -1  # the association is gone: the firmware must reconnect

    def ap_back(self):
        if self._connect_at >= 0:  # an attempt under way completes once the AP answers
            self._connect_at = max(self._connect_at, self.sim.now + self.sim.connect_us)

    def status(self, param=None):
        if param == "rssi":
            return self.sim.rssi
        return 1010 if self.isconnected() else 1001


class Socket:
    def __init__(self, sim):
        self.sim = sim

    def setblocking(self, flag):
        pass

    def sendto(self, data, addr):
        s = self.sim
        if s.wifi_down:
            raise OSError(113)  # EHOSTUNREACH
        s.transmit(bytes(data))
        return len(data)

    def recv(self, n):
        data = self.sim.receive()
        if data is None:
            raise OSError(_EAGAIN)
        return data[:n]

    def close(self):
        pass


class _SerialOut:
    def __init__(self, sim):
        self.sim = sim

    def write(self, data):
        self.sim.serial_out(bytes(data))
        return len(data)


class _SerialIn:
    def __init__(self, sim):
        self.sim = sim

    def read(self, n):
        return self.sim.serial_in(n)


class _Poll:
    def __init__(self, sim):
        self.sim = sim

    def register(self, obj, mask=1):
        pass

    def poll(self, timeout=-1):
        return [(0, 1)] if self.sim.serial_waiting() else []


class Sim:
    """One simulated ESP32 and everything around it.

    Args:
        scenario: {"inputs": {gpio: (invert, timeline)}, "faults": [(t_us, kind, arg)],
            "end_us": int} (see lampwatch.vnode.scenario).
        seed: makes os.urandom (and so boot ids) reproducible.
        link: the transport outside the node: transmit(bytes), receive() -> bytes or None,
            serial_out/serial_in/serial_waiting for the serial transport; on_sleep(sim).
    """

    def __init__(self, scenario, seed=1, link=None, has_counter=True, counter_raw16=False,
                 boot_us=600000, connect_us=1500000, irq_latency_us=30, rssi=-61):
        self.now = 0
        self.stop_at = 0
        self.link = link
        self.has_counter = has_counter
        self.counter_raw16 = counter_raw16
        self.boot_us = boot_us
        self.connect_us = connect_us
        self.irq_latency_us = irq_latency_us
        self.rssi = rssi
        self._rand = seed & 0xFFFFFFFF or 1
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
        self.power_off_until = 0
        self.irq_queue = []
        self.irq_dropped = 0
        self.irq_run = 0
        self.sent = 0
        self.console = []
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

    def ticks_us(self):
        return (self.now - self.ticks_base) & (TICKS_PERIOD - 1)

    def ticks_ms(self):
        return ((self.now - self.ticks_base) // 1000) & (TICKS_PERIOD - 1)

    def sleep_ms(self, ms):
        if self.link is not None:
            self.link.on_sleep(self)
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

    def pin(self, gpio, mode=1, pull=None):
        p = self.pins.get(gpio)
        if p is None:
            inv = self.inputs[gpio][0] if gpio in self.inputs else 0
            p = Pin(self, gpio, inv)
            p.level = self.logical.get(gpio, 0) ^ inv
            self.pins[gpio] = p
        return p

    def counter(self, unit, src, edge=1, filter_ns=0, direction=1):
        if not self.has_counter:
            raise ValueError("no PCNT")
        c = Counter(self, unit, src, edge, filter_ns)
        self.counters.append(c)
        return c

    def modules(self):
        """{name: module stand-in} for machine, network, time, socket, os, sys, select."""
        sim = self
        m = _Obj()
        m.Pin = _PinFactory(sim)
        if self.has_counter:
            m.Counter = _CounterFactory(sim)
        m.RTC = lambda *a: RTC(sim)
        m.WDT = lambda id=0, timeout=5000: WDT(sim, timeout)
        m.reset_cause = lambda: sim.reset_cause
        m.PWRON_RESET, m.HARD_RESET, m.WDT_RESET = PWRON_RESET, HARD_RESET, WDT_RESET
        m.DEEPSLEEP_RESET, m.SOFT_RESET = DEEPSLEEP_RESET, SOFT_RESET
        m.unique_id = lambda: b"\x24\x0a\xc4\x00\x00\x01"
        n = _Obj()
        n.STA_IF = 0
        n.WLAN = lambda i=0: sim._get_wlan()
        t = _Obj()
        t.ticks_us = sim.ticks_us
        t.ticks_ms = sim.ticks_ms
        t.ticks_diff = ticks_diff
        t.ticks_add = lambda a, b: (a + b) & (TICKS_PERIOD - 1)
        t.sleep_ms = sim.sleep_ms
        t.sleep_us = lambda us: sim.sleep_ms(us // 1000)
        t.sleep = lambda s: sim.sleep_ms(int(s * 1000))
        s = _Obj()
        s.AF_INET = 2
        s.SOCK_DGRAM = 2
        s.socket = lambda *a: Socket(sim)
        s.getaddrinfo = lambda host, port, *a: [(2, 2, 0, "", (host, port))]
        o = _Obj()
        o.urandom = sim.urandom
        y = _Obj()
        y.stdout = _Obj()
        y.stdout.buffer = _SerialOut(sim)
        y.stdin = _Obj()
        y.stdin.buffer = _SerialIn(sim)
        y.implementation = _Obj()
        y.implementation.name = "micropython"
        y.modules = {}  # the CPython engine's loader keeps its modules elsewhere
        e = _Obj()
        e.POLLIN = 1
        e.poll = lambda: _Poll(sim)
        return {"machine": m, "network": n, "time": t, "socket": s, "os": o, "sys": y,
                "select": e}

    def _get_wlan(self):
        if self.wlan is None:
            self.wlan = WLAN(self)
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

    # --- the passage of time ------------------------------------------------------------

    def _pull(self, gpio):
        try:
            t, level = next(self._gens[gpio])
        except StopIteration:
            return
        self._n += 1
        heapq.heappush(self._heap, (t, self._n, gpio, level))

    def advance(self, until):
        """Run the world to `until` (us): edges, IRQs, faults; raise Reset on a reset."""
        heap = self._heap
        inf = 1 << 62
        while True:
            t_edge = heap[0][0] if heap else inf
            t_fault = self.faults[self._fault_i][0] if self._fault_i < len(self.faults) else inf
            t_busy = self.busy_until if self.busy_until >= 0 else inf
            t_wdt = self.wdt_fed + self.wdt_us if self.wdt_us else inf
            t = min(t_edge, t_fault, t_busy, t_wdt)
            if t > until:
                break
            self.now = max(self.now, t)
            if t == t_wdt:
                raise Reset(WDT_RESET)
            if t == t_busy:
                self.busy_until = -1
                self._run_queued()
            elif t == t_fault:
                self._fault_i += 1
                self._fault(self.faults[self._fault_i - 1])
            else:
                t, _, gpio, level = heapq.heappop(heap)
                self._pull(gpio)
                self._edge(gpio, level)
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
        if self.busy_until >= self.now:
            if len(self.irq_queue) < IRQ_QUEUE:
                self.irq_queue.append(p)
            else:
                self.irq_dropped += 1
            return
        t = self.now
        self.now = t + self.irq_latency_us
        self.irq_run += 1
        p.handler(p)
        self.now = t

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
        elif kind == "stall":  # the VM hangs (GC, a blocking C call): IRQs wait too
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
    IN = Pin.IN
    OUT = Pin.OUT
    PULL_UP = Pin.PULL_UP
    PULL_DOWN = Pin.PULL_DOWN
    IRQ_RISING = Pin.IRQ_RISING
    IRQ_FALLING = Pin.IRQ_FALLING

    def __init__(self, sim):
        self.sim = sim

    def __call__(self, gpio, mode=1, pull=None, value=None):
        return self.sim.pin(gpio, mode, pull)


class _CounterFactory:
    RISING = Counter.RISING
    FALLING = Counter.FALLING
    UP = Counter.UP

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
