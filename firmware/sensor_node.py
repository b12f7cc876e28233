# sensor_node: lamp edge capture, flicker-proof lamp classification, pulse counting, uptime.
# Pure logic: pins, hardware counters and tick functions come in as arguments, so the very
# same code runs on the ESP32, in CPython and in the virtual node (docs/firmware.md).
from array import array

from pulses import LATE_US, CountInput, PulseCounter

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


OFF = const(0)
ON = const(1)
BLINK = const(2)

_RING = const(64)  # edge records; a power of two
_MASK = const(63)
_MASK2 = const(127)  # indices run modulo 2 * _RING so "full" and "empty" differ
_COUNT_BASE = const(5)  # capture codes: lamp channels 0..4, then GOOD 5, NG 6
_STALL_US = const(1500)  # a pass this much later than poll_ms: the VM stalled (GC, C call)
_TAIL_US = const(2000)  # after a stall the queued handlers have run within this


class UptimeClock:
    """Milliseconds since power-up, extended past the ticks_ms wrap (12.4 days on ESP32).

    Args:
        ticks_ms, ticks_diff: the port's functions (time.ticks_ms, time.ticks_diff).
        start_ms: uptime at this moment (continues the uptime saved before a soft or
            watchdog reset).
    Call now_ms() at least once per half wrap (6 days); the main loop does every few ms.
    """

    def __init__(self, ticks_ms, ticks_diff, start_ms=0):
        self._ticks_ms = ticks_ms
        self._diff = ticks_diff
        self._last = ticks_ms()
        self._ms = start_ms

    def now_ms(self):
        t = self._ticks_ms()
        d = self._diff(t, self._last)
        if d > 0:  # never run backwards, even if ticks were read out of order
            self._ms += d
            self._last = t
        return self._ms


class _Tap:
    """One lamp's IRQ handler. Bound once at init (binding a method per call allocates);
    the handler only stores the capture code with the pin level and ticks_us into the
    preallocated ring: no heap allocation, so it is safe however the port schedules it."""

    def __init__(self, ring, code):
        self.ring = ring
        self.code = code << 1

    def irq(self, pin):
        r = self.ring
        t = r.ticks_us()
        idx = r.idx
        head = idx[0]
        if (head - idx[1]) & _MASK2 == _RING:
            idx[2] += 1  # full: the record is lost, and counted
            return
        i = head & _MASK
        r.tbuf[i] = t
        r.cbuf[i] = self.code | pin.value()
        idx[0] = (head + 1) & _MASK2


# A count input's IRQ handler: like _Tap, plus the running edge count, so an edge whose
# record is late, or lost with a full ring, is still counted: the pulse counter's (both
# edges) or, without one, how often this handler ran. Allocation-free too.
class _CountTap:

    def __init__(self, ring, code, hw):
        self.ring = ring
        self.code = code << 1
        self.hw = hw
        self.n = 0

    def irq(self, pin):
        r = self.ring
        t = r.ticks_us()
        self.n += 1
        hw = self.hw
        e = hw.value() if hw is not None else self.n
        idx = r.idx
        head = idx[0]
        if (head - idx[1]) & _MASK2 == _RING:
            idx[2] += 1
            return
        i = head & _MASK
        r.tbuf[i] = t
        r.ebuf[i] = e & 0xFFFF
        r.cbuf[i] = self.code | pin.value()
        idx[0] = (head + 1) & _MASK2


class EdgeRing:
    """Single-producer (IRQ) single-consumer (main loop) ring of edge records.

    Each index is written by one side only, so a soft IRQ landing in the middle of a
    drain cannot corrupt it. idx = [head (IRQ), tail (main loop), dropped records].
    """

    def __init__(self, ticks_us):
        self.ticks_us = ticks_us
        self.tbuf = array("I", [0] * _RING)
        self.ebuf = array("H", [0] * _RING)
        self.cbuf = bytearray(_RING)
        self.idx = array("I", [0, 0, 0])
        self.t = 0  # ticks_us of the record pop() returned last
        self.e = 0  # ... and its edge count (count inputs)

    def tap(self, code):
        return _Tap(self, code).irq

    def pop(self):
        """The next record as code << 1 | level, its ticks_us in self.t; -1 when empty."""
        idx = self.idx
        tail = idx[1]
        if tail == idx[0]:
            return -1
        i = tail & _MASK
        self.t = self.tbuf[i]
        self.e = self.ebuf[i]
        c = self.cbuf[i]
        idx[1] = (tail + 1) & _MASK2
        return c

    @property
    def dropped(self):
        return self.idx[2]


class LampClassifier:
    """Turns one lamp's edges into OFF / ON / BLINK with the time each state began.

    The signal is first merged: a dark gap shorter than flicker_gap_ms is bridged, so AC or
    PWM flicker (>= ~50 Hz) is one lit segment. A lit segment shorter than glitch_ms is
    ignored. A segment lit (or dark) longer than max_phase_ms means ON (or OFF); lit
    segments of glitch_ms..max_phase_ms with dark gaps no longer than max_phase_ms are
    flashing: BLINK, confirmed when the second flash has lasted glitch_ms. The defaults
    make 0.4-15 Hz flashing at about 1:1 read BLINK. Times are uptime ms.

    edge(lit, t_ms) and tick(now_ms) append (state, began_ms) to self.changes; began_ms is
    the first edge of the new state: the first flash, the rise of a steady light, the fall
    that ended the light (ON -> OFF, BLINK -> OFF, ON -> BLINK). blink_ms is the blink period
    measured when BLINK was last confirmed: rise to rise, averaged over the flashes seen.
    """

    def __init__(self, flicker_gap_ms=16, glitch_ms=20, max_phase_ms=1500, state=OFF,
                 lit=0, now_ms=0):
        if not 0 < flicker_gap_ms <= glitch_ms < max_phase_ms:
            raise ValueError("need 0 < flicker_gap_ms <= glitch_ms < max_phase_ms")
        self.gap = flicker_gap_ms
        self.glitch = glitch_ms
        self.max_phase = max_phase_ms
        self.state = state
        self.changes = []
        self.raw = lit
        self.lit = lit  # merged level
        self.seg_start = now_ms  # start of the merged lit segment, when lit
        self.fall_t = now_ms  # last raw fall: the merged fall, once the gap is confirmed
        self.dark_since = now_ms
        self._dark_before = now_ms  # dark_since before this segment (restored on a glitch)
        self.flashes = 0  # qualifying short lit segments since the last steady state
        self.first_flash = 0
        self.departed = now_ms  # the fall that ended the last steady light
        self.blind_until = now_ms  # end of the last stall: no edges were recorded before it
        self.blink_ms = 0

    def edge(self, lit, t_ms):
        self.tick(t_ms)
        if lit == self.raw:
            return
        self.raw = lit
        if not lit:
            self.fall_t = t_ms
        elif not self.lit:
            self.lit = 1
            self.seg_start = t_ms
            self._dark_before = self.dark_since
        # a rise within the flicker gap bridges it: the segment goes on

    def tick(self, now_ms):
        if self.lit:
            # A dark gap counts from the end of a stall at the earliest: while the VM was
            # stalled (GC, a long C call) soft IRQs waited, so the gap may be an artefact.
            fall = max(self.blind_until, self.fall_t)
            if not self.raw and now_ms - fall >= self.gap:
                self.lit = 0
                self.dark_since = self.fall_t
                self._segment(self.seg_start, self.fall_t)
            else:
                end = now_ms if self.raw else self.fall_t
                if end - self.seg_start > self.max_phase:
                    self.flashes = 0
                    self._change(ON, self.seg_start)
                elif self.flashes and end - self.seg_start >= self.glitch:
                    if self.state != BLINK:  # measured once per BLINK, not on every pass
                        f = self.flashes
                        self.blink_ms = (self.seg_start - self.first_flash + f // 2) // f
                    self._change(BLINK, self.first_flash if self.state == OFF
                                 else self.departed)
        if not self.lit and now_ms - self.dark_since > self.max_phase:
            self.flashes = 0
            self._change(OFF, self.dark_since)

    def _segment(self, start, end):
        n = end - start
        if n < self.glitch:
            self.dark_since = self._dark_before  # a glitch: as if it never happened
        elif n > self.max_phase:
            self.departed = end
            self.flashes = 0
        else:
            if not self.flashes:
                self.first_flash = start
            self.flashes += 1

    def _change(self, state, began):
        if state != self.state:
            self.state = state
            self.changes.append((state, began))


def _stamp(now_ms, now_us, t_us, diff):
    # uptime ms of a record: the ms its handler ran in (edges and passes share one clock)
    age = diff(now_us, t_us)
    return now_ms - ((age + 999) // 1000 if age > 0 else 0)


# The minimum width of a part's pulse: min_pulse_ms, but never more than a quarter period
# at the line's top rate, so a fast line is never silently zero.
def min_pulse_us(min_pulse_ms, max_rate_hz):
    return int(min(min_pulse_ms * 1000, 250000 / max_rate_hz))


class SensorNode:
    """Everything the node senses: lamp classifiers, pulse counters, capture and polling.

    Args:
        clock: UptimeClock. ticks_us, ticks_diff: the port's functions.
        lamps: list of (channel 0..4, pin, active_low).
        counts: list of (0 GOOD / 1 NG, pin, active_low, hardware counter or None); a
            hardware counter counts both edges.
        irq_trigger: Pin.IRQ_RISING | Pin.IRQ_FALLING of the port.
        thresholds: dict with flicker_gap_ms, glitch_ms, max_phase_ms, min_pulse_ms,
            max_rate_hz, poll_ms.
        restore: (lamp states [5], good, ng) continued from RTC memory, or None.
    """

    def __init__(self, clock, ticks_us, ticks_diff, lamps, counts, irq_trigger, thresholds,
                 restore=None):
        self.clock = clock
        self._us = ticks_us
        self._diff = ticks_diff
        self.ring = EdgeRing(ticks_us)
        self.irq_resyncs = 0
        now = clock.now_ms()
        now_us = ticks_us()
        self._last_ms = now
        self._last_us = now_us
        poll_ms = thresholds.get("poll_ms", 5)
        # a pass later than this after the previous one means the VM stalled
        self._blind_ms = poll_ms + thresholds.get("flicker_gap_ms", 16) // 2
        self._stall_us = poll_ms * 1000 + _STALL_US
        self._bl = 0  # a stall's shadow: records in (_bl_from, _bl_to + _TAIL_US] are late
        self._bl_from = 0
        self._bl_to = 0
        states = restore[0] if restore else [OFF] * 5
        # per lamp: [code, pin, invert, known level, first mismatch ms or -1, its ticks_us,
        #            records seen, records seen at the first mismatch]
        self.inputs = []
        self.lamps = {}  # channel: LampClassifier
        self.lamp_mask = 0
        for ch, pin, low in lamps:
            lit = pin.value() ^ low
            self.lamps[ch] = LampClassifier(
                thresholds.get("flicker_gap_ms", 16), thresholds.get("glitch_ms", 20),
                thresholds.get("max_phase_ms", 1500), states[ch], lit, now)
            self.lamp_mask |= 1 << ch
            self.inputs.append([ch, pin, 1 if low else 0, lit, -1, 0, 0, 0])
        for inp in self.inputs:
            inp[1].irq(handler=self.ring.tap(inp[0]), trigger=irq_trigger)
        rate = thresholds.get("max_rate_hz", 50)
        self.min_us = min_pulse_us(thresholds.get("min_pulse_ms", 5), rate)
        gap_us = int(875000 / rate)  # real parts start at least 7/8 of a period apart
        self.counters: list = [None, None]  # GOOD, NG: CountInput
        for idx, pin, low, hw in counts:
            level = pin.value() ^ low
            base = restore[1 + idx] if restore else 0
            e0 = hw.value() & 0xFFFF if hw is not None else 0
            pc = PulseCounter(self.min_us, gap_us, ticks_diff, level, base, now_us)
            self.counters[idx] = CountInput(pc, pin, 1 if low else 0, hw, level, e0, now_us)
            tap = _CountTap(self.ring, _COUNT_BASE + idx, hw)
            pin.irq(handler=tap.irq, trigger=irq_trigger)

    @property
    def events_dropped(self):
        return self.ring.dropped

    # (edges the IRQ path missed: the hardware counter saw them, or without one the level
    # check found them; pulses rejected as too short; parts counted by the line-rate rule
    # across a stall), both inputs
    def count_health(self):
        m = sh = inf = 0
        for ci in self.counters:
            if ci is not None:
                m += ci.missed
                sh += ci.pc.short
                inf += ci.pc.inferred
        return m, sh, inf

    def service(self):
        """Drain the edge ring, run the polling safety net, classify and count.

        Returns the lamp changes classified since the last call, oldest first, as
        (channel, state, began_ms).
        """
        now_ms = self.clock.now_ms()
        now_us = self._us()
        diff = self._diff
        if now_ms - self._last_ms > self._blind_ms:
            for lc in self.lamps.values():
                lc.blind_until = now_ms
        stalled = diff(now_us, self._last_us) > self._stall_us
        if stalled:
            self._bl = 1
            self._bl_from = self._last_us
            self._bl_to = now_us
        self._last_ms = now_ms
        self._last_us = now_us
        ring = self.ring
        inputs = self.inputs
        counters = self.counters
        while True:
            c = ring.pop()
            if c < 0:
                break
            code = c >> 1
            if code >= _COUNT_BASE:
                ci = counters[code - _COUNT_BASE]
                t = ring.t
                late = -1
                if self._bl and diff(t, self._bl_from) > 0 \
                        and diff(t, self._bl_to) <= _TAIL_US:
                    late = diff(t, self._bl_from) + LATE_US
                ci.record(t, ring.e, (c & 1) ^ ci.inv, late)
                continue
            for inp in inputs:
                if inp[0] == code:
                    inp[6] += 1
                    level = (c & 1) ^ inp[2]
                    if level != inp[3]:
                        inp[3] = level
                        inp[4] = -1
                        self.lamps[code].edge(level, _stamp(now_ms, now_us, ring.t, diff))
                    break
        if self._bl and diff(now_us, self._bl_to) > _TAIL_US:
            self._bl = 0
        # Safety net: a level that differs from the last edge on two polls in a row, with no
        # record of that input in between, is an edge the IRQ path lost (one poll could race
        # a handler that is merely queued).
        for inp in inputs:
            level = inp[1].value() ^ inp[2]
            if level == inp[3]:
                inp[4] = -1
            elif inp[4] < 0 or inp[7] != inp[6]:
                inp[4] = now_ms
                inp[5] = now_us
                inp[7] = inp[6]
            else:
                inp[3] = level
                self.irq_resyncs += 1
                self.lamps[inp[0]].edge(level, inp[4])
                inp[4] = -1
        for ci in counters:
            if ci is not None:
                ci.poll(now_us, stalled)
        out = []
        for ch in range(5):
            lc = self.lamps.get(ch)
            if lc is not None:
                lc.tick(now_ms)
                if lc.changes:
                    for st, began in lc.changes:
                        # A BLINK carries its period. (Two BLINKs of one lamp in one pass
                        # need a stall > max_phase_ms; both would carry the later period.)
                        out.append((ch, st, began, lc.blink_ms) if st == BLINK
                                   else (ch, st, began))
                    lc.changes.clear()
        if len(out) > 1:
            out.sort(key=lambda e: e[2])
        return out

    def counts(self):
        """[GOOD, NG] pulses of record (0 for an input that is not wired)."""
        return [ci.pc.total if ci is not None else 0 for ci in self.counters]

    def lamp_states(self):
        return [self.lamps[ch].state if ch in self.lamps else OFF for ch in range(5)]
