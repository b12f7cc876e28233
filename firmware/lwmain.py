# lwmain: the node's hardware seam. Builds pins, counters, RTC, watchdog, Wi-Fi / UDP or the
# serial link from config.json, then runs app.App in a loop that never blocks on the network
# (not even on DNS). main.py (the boot stub) calls main(); this goes to the node as lwmain.mpy.
import gc
import hashlib
import os
import socket
import sys
import time

import lwproto
import machine
import network
from app import App

FW = (0, 3, 0)  # 0.3: counts exact under IRQ latency and GC pauses; HEALTH extension
_CONNECT_TIMEOUT_MS = 20000
_BACKOFF_MIN_MS = 1000
_BACKOFF_MAX_MS = 30000
_FILTER_MAX_NS = 12787  # the ESP32 PCNT glitch filter: 1023 APB cycles of 12.5 ns


def _reset_cause():
    cause = machine.reset_cause()
    for port, code in ((machine.PWRON_RESET, lwproto.RESET_POWER_ON),
                       (machine.HARD_RESET, lwproto.RESET_HARD),
                       (machine.WDT_RESET, lwproto.RESET_WATCHDOG),
                       (machine.DEEPSLEEP_RESET, lwproto.RESET_DEEPSLEEP),
                       (machine.SOFT_RESET, lwproto.RESET_SOFT)):
        if cause == port:
            return code
    return lwproto.RESET_UNKNOWN


class Board:
    """Pins, pulse counters, RTC memory, watchdog and ticks of the ESP32, for app.App."""

    ticks_ms = staticmethod(time.ticks_ms)
    ticks_us = staticmethod(time.ticks_us)
    ticks_diff = staticmethod(time.ticks_diff)
    irq_trigger = machine.Pin.IRQ_RISING | machine.Pin.IRQ_FALLING

    def __init__(self, wdt_ms):
        self.rtc = machine.RTC()
        self.reset_cause = _reset_cause()
        self.wdt = machine.WDT(timeout=wdt_ms)

    def pin(self, gpio, active_low):
        # GPIO 34-39 have no internal pulls (hw/wiring.md: fit 10 kOhm externally).
        if gpio >= 34:
            return machine.Pin(gpio, machine.Pin.IN)
        pull = machine.Pin.PULL_UP if active_low else machine.Pin.PULL_DOWN
        return machine.Pin(gpio, machine.Pin.IN, pull)

    # The PCNT's glitch filter, at its longest (12.8 us), removes spikes before they are
    # counted; the minimum pulse width is enforced in software (pulses.PulseCounter), from
    # the exact edge count this gives.
    def counter(self, unit, pin):
        """A hardware pulse counter on both edges, or None where the port has none
        (ESP32-C3, MicroPython < 1.26)."""
        ctr = getattr(machine, "Counter", None)
        if ctr is None:
            return None
        try:
            return ctr(unit, pin, edge=ctr.RISING | ctr.FALLING, filter_ns=_FILTER_MAX_NS)
        except (OSError, ValueError, TypeError):
            return None

    def rtc_read(self):
        return self.rtc.memory()

    def rtc_write(self, buf):
        self.rtc.memory(buf)

    def feed(self):
        self.wdt.feed()

    def urandom(self, n):
        return os.urandom(n)

    def free_heap(self):
        return gc.mem_free()


def _udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setblocking(False)
    return s


# A collector given by name is resolved by a DNS query of our own (lwdns), sent and read
# without blocking: socket.getaddrinfo would stop the loop and starve the watchdog. Frames
# wait in the outbox until the first answer; later answers only refresh the address.
class WifiLink:
    """Wi-Fi station + one non-blocking UDP socket. poll() drives the connection: connect,
    wait, give up after a timeout, back off (doubling, with jitter) and try again, forever."""

    serial = False

    def __init__(self, ssid, password, host, port):
        self._ssid = ssid
        self._password = password
        self._host = host
        self._port = port
        self.wlan = network.WLAN(network.STA_IF)
        self.wlan.active(True)
        self.up = False
        self.reconnects = 0
        self.rssi = 0
        self._ever_up = False
        self._connecting = False
        self._since = 0
        self._next_try = 0
        self._backoff = _BACKOFF_MIN_MS
        self._sock = None
        self._addr = None
        self._dns = None
        if lwproto.is_ip(host):
            self._addr = (host, port)
        else:
            import lwdns

            self._dns = lwdns.Resolver(host)

    def poll(self, now):
        connected = self.wlan.isconnected()
        if connected and self._sock is None:
            self._open()
        elif not connected and self._sock is not None:
            print("lampwatch: Wi-Fi lost")
            self._close()
            self._next_try = now
        if connected:
            try:
                self.rssi = self.wlan.status("rssi")
            except (OSError, ValueError, TypeError):
                pass
            if self._dns is not None:
                ip = self._dns.step(now, _udp, self.wlan.ifconfig()[3])
                if ip is not None:
                    if self._addr is None or self._addr[0] != ip:
                        print("lampwatch:", self._host, "is", ip)
                    self._addr = (ip, self._port)
            self.up = self._sock is not None and self._addr is not None
            return
        if self._connecting:
            if now - self._since > _CONNECT_TIMEOUT_MS:
                self._connecting = False
                try:
                    self.wlan.disconnect()
                except OSError:
                    pass
                jitter = os.urandom(1)[0] * self._backoff // 1024
                self._next_try = now + self._backoff + jitter
                self._backoff = min(self._backoff * 2, _BACKOFF_MAX_MS)
        elif now - self._next_try >= 0:
            self._connecting = True
            self._since = now
            try:
                self.wlan.connect(self._ssid, self._password)
            except OSError as e:
                print("lampwatch: Wi-Fi connect failed:", e)

    def _open(self):
        try:
            s = _udp()
        except OSError as e:
            print("lampwatch: cannot open UDP to collector:", e)
            return
        self._sock = s
        self._connecting = False
        self._backoff = _BACKOFF_MIN_MS
        if self._ever_up:
            self.reconnects += 1
        self._ever_up = True
        print("lampwatch: Wi-Fi up, sending to", self._host, self._port)

    def _close(self):
        self.up = False
        if self._sock is not None:
            self._sock.close()
        self._sock = None

    def send(self, frame):
        s = self._sock
        if s is None or self._addr is None:
            return False
        try:
            s.sendto(frame, self._addr)
            return True
        except OSError:  # EAGAIN / ENOMEM while Wi-Fi buffers are full: retried later
            return False

    def recv(self):
        s = self._sock
        if s is None:
            return None
        try:
            return s.recv(64)
        except OSError:  # EAGAIN: nothing waiting
            return None


def start(path="config.json"):
    """Read and check the config, build the board and the link, send HELLO.
    Returns the App, or None (after one console line per problem) on an invalid config."""
    try:
        with open(path, "rb") as f:
            text = f.read()
    except OSError:
        print("lampwatch: cannot read", path, "- copy config.example.json and edit it")
        return None
    # The validator runs once: imported here and dropped after, its code (about 4 KB of
    # heap) is garbage for the rest of the boot.
    import config

    cfg, problems = config.parse(text)
    sys.modules.pop("config", None)
    if problems:
        for p in problems:
            print("lampwatch: config.json:", p)
        print("lampwatch: not starting; fix config.json and reset")
        return None
    board = Board(cfg["wdt_ms"])
    if cfg["transport"] == "serial":
        import lwserial

        uid, tx, rx, baud = cfg["serial"]
        link = lwserial.SerialLink(machine.UART(uid, baudrate=baud, tx=tx, rx=rx, timeout=0))
        print(f"lampwatch: frames on UART{uid} (tx GPIO {tx}, rx GPIO {rx}, {baud} baud)")
    else:
        ssid, password = cfg["wifi"]
        host, port = cfg["collector"]
        link = WifiLink(ssid, password, host, port)
    return App(cfg, hashlib.sha256(text).digest()[:4], board, link, FW)


def run(app):
    """The main loop: one non-blocking pass, then sleep poll_ms."""
    while True:
        app.step()
        time.sleep_ms(app.poll_ms)


def main():
    """Boot: start the node and run it; returns only if config.json stops it (the console
    then stays at the REPL)."""
    app = start()
    if app is not None:
        run(app)
