# pulses: GOOD / NG part counting that stays exact under soft-IRQ latency, GC pauses, bounce
# and chatter. Pure: edge records, counter readings and ticks come in as arguments.
#
# On the ESP32 a pin IRQ handler is scheduled: it runs tens to hundreds of us after its edge
# (a whole GC pause later if one intervenes), reads the pin when it runs, and is lost when
# the scheduler's queue of 8 is full. So an edge is known only as an interval [t - off, t]:
# t when a handler (or the main loop) first saw it, off how much earlier it may have been.
# Each record carries a running edge count: the pulse counter's (both edges, hardware mode)
# or the handler's own (IRQ-only mode), so an edge whose time is unclear is still counted.

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


LATE_US = const(500)  # a handler runs at most this long after its edge, outside a stall
_E_MASK = const(0xFFFF)  # records carry edge counts modulo 2**16
_OLD_US = const(0x10000000)  # older than this (4.5 min) is "long ago" (ticks_us wraps at 2**30)


# A part is a pulse that stays active for at least min_us: debounce by stable time, so
# bounce and chatter spikes make no part and a dropout inside a pulse splits nothing. Each
# segment between edges is long (surely >= min_us), short (surely < min_us) or unknown (a
# stall hid its edges' times). A stretch of unknown segments is settled by the next long
# one: the stable levels before and after force 0 or 1 part; more are counted only if the
# line is making parts (the nearest pulse measured, before the stretch or else after it, was
# one, not a rejected short one), and no more than the line's top rate allows (real parts
# start at least gap_us apart, from max_rate_hz with 1/8 slack).
class PulseCounter:
    """Parts on one input. edge(level, t, off): the input went to `level` at some time in
    [t - off, t] (ticks_us); tick(now, late): no edge before now - late is missing.
    total: parts; short: pulses rejected as too short; inferred: parts counted by the rate
    rule (their width could not be measured)."""

    def __init__(self, min_us, gap_us, ticks_diff, level=0, total=0, now=0):
        self.min_us = min_us
        self.gap_us = gap_us
        self._diff = ticks_diff
        self.level = level  # the input since `since`
        self.state = level  # the debounced level
        self.since = now  # when the current level began, at the latest (ticks_us)
        self.soff = 0  # ... and how much earlier it may have begun
        self.total = total
        self.short = 0
        self.inferred = 0
        self.parts = 0  # 1: the last pulse measured was a part; 0: too short, or none yet
        self.pend = 0  # parts of a stretch that wait for the next pulse measured to say so
        self.open = 0  # 1 while a stretch of unknown segments waits to be settled
        self.o_state = 0  # the debounced level before it
        self.o_rises = 0  # its active segments of unknown length
        self.o_t = 0
        self.o_off = 0  # its start: o_t - o_off at the earliest
        self.l_t = 0
        self.l_off = -1  # the last counted rise, l_t - l_off at the earliest; -1: long ago

    def edge(self, level, t, off):
        if level == self.level:
            return
        d = self._diff(t, self.since)
        v = self.level
        if d - off >= self.min_us:
            self._long(v)
        elif d + self.soff < self.min_us:
            if v and not self.state and not self.open:
                self.short += 1
                self.parts = 0
                self.pend = 0  # the line makes short pulses: a stretch's maybe-parts too
        elif v != self.state or self.open:
            if not self.open:
                self.open = 1
                self.o_state = self.state
                self.o_rises = 0
                self.o_t = self.since
                self.o_off = self.soff
            self.o_rises += v
        self.level = level
        self.since = t
        self.soff = off

    def tick(self, now, late):
        diff = self._diff
        if diff(now, self.since) - late >= self.min_us:
            self._long(self.level)
        if self.l_off >= 0 and diff(now, self.l_t) > _OLD_US:
            self.l_off = -1
        if self.open and diff(now, self.o_t) > _OLD_US:  # never settled: settle on what is
            self._resolve(self.level)

    def _long(self, v):
        # the segment of level v that began at since (- soff) has lasted min_us
        if self.open:
            self._resolve(v)
        elif v != self.state:
            self.state = v
            if v:
                self.total += 1 + self.pend
                self.inferred += self.pend
                self.pend = 0
                self.parts = 1
                self.l_t = self.since
                self.l_off = self.soff

    def _resolve(self, v):
        if v:  # this long pulse is measured: the line makes parts
            self.parts = 1
        least = 1 if v and not self.o_state else 0
        gap = self.gap_us
        # real parts of this stretch begin between its start and this segment's start...
        whole = self._diff(self.since, self.o_t) + self.o_off
        span = whole
        if self.l_off >= 0:  # ... and at least gap_us after the last counted one
            after = self._diff(self.since, self.l_t) + self.l_off - gap
            span = min(span, after)
        fit = span // gap + 1 if span >= 0 else 0
        n = max(least, min(self.o_rises + v, fit))
        if n > least and not self.parts:  # the next pulse measured decides on the rest
            self.pend += n - least
            n = least
        self.total += n + (self.pend if v else 0)
        self.inferred += n - least + (self.pend if v else 0)
        if v:
            self.pend = 0
        if n:  # the last of them began no earlier than this
            self.l_t = self.since
            self.l_off = span - (n - 1) * gap if span >= 0 else whole
        self.state = v
        self.open = 0


# Records are (ticks_us when the handler ran, edge count then mod 2**16, pin level then).
# hw: the pulse counter (machine.Counter on both edges) or None (IRQ-only: the count is the
# handler's own, so an edge whose handler the scheduler dropped is missing until the level
# check finds it). The level after edge i is base ^ (i & 1).
class CountInput:
    """One GOOD or NG input: edge records -> edges with time bounds -> PulseCounter."""

    def __init__(self, pc, pin, invert, hw, level, e0, now):
        self.pc = pc
        self.pin = pin
        self.inv = invert
        self.hw = hw
        self.e = e0
        self.base = level ^ (e0 & 1)
        self.t_obs = now  # the last time the edge count was known (hardware mode)
        self.t_rec = now  # when the last record's handler ran, and the level it read
        self.read = level
        self.recs = 0
        self.p_e = -1  # hardware mode: edge count read by the main loop, not yet explained
        self.p_t = 0
        self.mis_recs = -1  # IRQ-only: record count when the pin first disagreed
        self.t_ok = now
        self.missed = 0  # edges the IRQ path missed (hardware-vs-software discrepancy)

    def _apply(self, e, t, off):
        pc = self.pc
        i = self.e
        while i != e:
            i += 1
            pc.edge(self.base ^ (i & 1), t, off)
        self.e = e

    def record(self, t, e16, read, blind_off):
        # blind_off >= 0: it ran in a stall's shadow, its edge up to blind_off before t
        self.recs += 1
        prev = self.t_rec
        self.t_rec = t
        self.read = read
        e = self.e + ((e16 - self.e) & _E_MASK)
        if self.hw is None:  # one record, one edge (its own)
            off = LATE_US if blind_off < 0 else blind_off
            if e - self.e > 1:  # the ring was full: the lost records' edges came earlier
                off = self.pc._diff(t, prev) + LATE_US
            self._apply(e, t, off)
            return
        if e != self.e:
            off = self.pc._diff(t, self.t_obs)  # after the last reading, exactly
            if blind_off < 0 and off > LATE_US:
                # a handler runs within LATE_US of its edge, and this one's edge is the
                # oldest of these (readings are dense while handlers queue up)
                off = LATE_US
            self._apply(e, t, off)
        self.t_obs = t

    def poll(self, now, stalled):
        # once per main-loop pass, after the records: the main loop's own reading
        pc = self.pc
        hw = self.hw
        if hw is not None:
            if self.p_e >= 0 and self.e - self.p_e < 0:
                # edges counted at the last pass that no handler reported since: dropped
                self.missed += self.p_e - self.e
                self._apply(self.p_e, self.p_t, pc._diff(self.p_t, self.t_obs))
                self.t_obs = self.p_t
            self.p_e = -1
            e = self.e + ((hw.value() - self.e) & _E_MASK)
            if e == self.e:
                self.t_obs = now
                pc.tick(now, 0)  # the counter proves no edge since
            else:
                self.p_e = e
                self.p_t = now
            return
        if stalled:  # handlers of the stall may still be queued
            self.mis_recs = -1
            return
        level = self.base ^ (self.e & 1)
        if pc._diff(now, self.t_rec) > LATE_US and self.read != level:
            self._resync(now)  # the last handler read another level, nothing followed
            return
        if self.pin.value() ^ self.inv == level:
            self.mis_recs = -1
            self.t_ok = now
            pc.tick(now, LATE_US)  # only while the level is not in doubt
        elif self.mis_recs != self.recs:
            self.mis_recs = self.recs  # may be an edge whose handler is still queued
        else:
            self._resync(now)  # a whole pass later, still no record: the edge was lost

    def _resync(self, now):
        # an odd number of edges was lost since the level last agreed: count one, timed
        # anywhere since then
        self.missed += 1
        self.base ^= 1
        self.pc.edge(self.base ^ (self.e & 1), now, self.pc._diff(now, self.t_ok))
        self.t_ok = now
        self.read = self.base ^ (self.e & 1)
        self.mis_recs = -1
