# periph: the simulated ESP32's peripherals (Pin, pulse counter, UART, WDT, RTC, Wi-Fi, UDP
# socket, a DNS server on the LAN), as the firmware sees them through machine / network / socket.
# Written in the subset shared by CPython and MicroPython: it also runs inside the VM (sim.py).
import struct

_EAGAIN = 11
PCNT_FILTER_MAX_NS = 12787  # 1023 APB cycles of 12.5 ns: the longest glitch filter the PCNT has


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
        if hard:  # the ESP32 port's Pin.irq() has no hard IRQs: handlers are always scheduled
            raise TypeError("unexpected keyword argument 'hard'")
        self.handler = handler
        self.trigger = trigger


class Counter:
    """machine.Counter on the ESP32's PCNT: counts edges of the input after the glitch filter,
    which passes a level only once it has been stable for filter_ns (at most 12787 ns).
    edge: RISING (1), FALLING (2) or both (3), of the physical pin level. value() is the
    port's extended count (counter_raw16: a raw 16-bit unit instead). Read inside an IRQ
    handler, value() costs the handler sim.counter_read_us (a Python method on the port)."""

    RISING = 1
    FALLING = 2
    UP = 1

    def __init__(self, sim, unit, src, edge=1, filter_ns=0, direction=1):
        self.sim = sim
        self.gpio = src.gpio
        self.edge = edge
        self.filter_ns = min(max(0, filter_ns), PCNT_FILTER_MAX_NS)
        self.count = 0
        self.level = src.level  # the filtered physical level
        self._pending = -1  # a raw change waiting to pass the filter: its time (us), or -1

    def on_edge(self, level, t):
        """The raw physical level changed to `level` at t."""
        self._settle(t)
        if self._pending >= 0:
            self._pending = -1  # back before it was stable for filter_ns: a glitch, removed
        elif level != self.level:
            self._pending = t
            if self.filter_ns == 0:
                self._settle(t)

    def _settle(self, t):
        p = self._pending
        if p >= 0 and (t - p) * 1000 >= self.filter_ns:
            self._pending = -1
            self.level ^= 1
            if (self.level and self.edge & 1) or (not self.level and self.edge & 2):
                self.count += 1

    def value(self, v=None):
        s = self.sim
        self._settle(s.now)
        if s.in_handler:
            s.handler_cost += s.counter_read_us
        c = self.count
        if s.counter_raw16:
            c &= 0xFFFF
        if v is not None:
            self.count = v
        return c

    def deinit(self):
        pass


class UART:
    """machine.UART. UART0 is the REPL console (the console stream); any other UART is the
    serial frame link, at `baudrate`: a write occupies the line for 10 bits per byte."""

    def __init__(self, sim, uid, baudrate=115200, tx=None, rx=None, **kw):
        if uid not in (0, 1, 2):
            raise ValueError(f"UART({uid}) does not exist")
        self.sim = sim
        self.id = uid
        self.baudrate = baudrate
        self.tx = tx
        self.rx = rx
        self._done_at = 0

    def write(self, data):
        s = self.sim
        if self.id == 0:
            s.console_write(data)
        else:
            s.serial_out(bytes(data))
        self._done_at = max(self._done_at, s.now) + len(data) * 10000000 // self.baudrate
        return len(data)

    def txdone(self):
        return self.sim.now >= self._done_at

    def any(self):
        if self.id == 0:
            return 0
        return 64 if self.sim.serial_waiting() else 0

    def read(self, n=None):
        if self.id == 0:
            return None
        data = self.sim.serial_in(n or 256)
        return data or None


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

    def ifconfig(self):
        return (LAN_NODE_IP, "255.255.255.0", LAN_GATEWAY, LAN_DNS)


LAN_NODE_IP = "192.168.10.77"
LAN_GATEWAY = "192.168.10.1"
LAN_DNS = "192.168.10.1"


class Socket:
    """A UDP socket. Datagrams to port 53 go to the LAN's DNS server (sim.dns_answer);
    everything else is a frame for the collector (sim.transmit)."""

    def __init__(self, sim):
        self.sim = sim
        self.inbox = []  # (deliver at us, datagram) from the DNS server

    def setblocking(self, flag):
        pass

    def sendto(self, data, addr):
        s = self.sim
        if s.wifi_down:
            raise OSError(113)  # EHOSTUNREACH
        if addr[1] == 53:
            s.dns_query(self, bytes(data))
        else:
            s.transmit(bytes(data))
        return len(data)

    def recv(self, n):
        box = self.inbox
        if box and box[0][0] <= self.sim.now:
            return box.pop(0)[1][:n]
        if box:
            raise OSError(_EAGAIN)
        data = self.sim.receive()
        if data is None:
            raise OSError(_EAGAIN)
        return data[:n]

    def close(self):
        pass


def dns_reply(query, names):
    """The LAN DNS server's answer to a query: the A record of `names` ({name: "a.b.c.d"}),
    or NXDOMAIN; None for a datagram that is not a query."""
    if len(query) < 17:
        return None
    i = 12
    labels = []
    while i < len(query) and query[i]:
        n = query[i]
        labels.append(bytes(query[i + 1:i + 1 + n]).decode())
        i += 1 + n
    name = ".".join(labels)
    question = query[12:i + 5]
    ip = names.get(name)
    head = struct.pack(">HHHHHH", struct.unpack_from(">H", query, 0)[0],
                       0x8180 if ip else 0x8183, 1, 1 if ip else 0, 0, 0)
    if not ip:
        return head + question
    rdata = bytes([int(p) for p in ip.split(".")])
    return head + question + struct.pack(">HHHIH", 0xC00C, 1, 1, 300, 4) + rdata


class _Obj:
    """A namespace standing in for a module (sys.modules accepts any object)."""


class Console:
    """sys.stdout.buffer on the board: raw bytes to UART0, the REPL console."""

    def __init__(self, sim):
        self.sim = sim

    def write(self, data):
        self.sim.console_write(data)
        return len(data)


class _NoInput:
    def read(self, n):
        return b""


class _Poll:
    def register(self, obj, mask=1):
        pass

    def poll(self, timeout=-1):
        return []


def stdio(sim):
    """`sys` for the firmware: stdout / stdin are the console (UART0), never the frame link."""
    y = _Obj()
    y.stdout = _Obj()
    y.stdout.buffer = Console(sim)
    y.stdin = _Obj()
    y.stdin.buffer = _NoInput()
    y.implementation = _Obj()
    y.implementation.name = "micropython"
    y.modules = {}  # the CPython engine's loader keeps its modules elsewhere
    e = _Obj()
    e.POLLIN = 1
    e.poll = lambda: _Poll()
    return y, e
