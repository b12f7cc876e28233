# app: the node's life between boot and reset: sense, frame, send, retransmit, persist.
# Pure: the board (pins, counters, RTC, watchdog, ticks) and the link come in from lwmain.py.
import lwproto
from nodestate import SEQ_LIMIT, NodeState
from outbox import Outbox
from sensor_node import SensorNode, UptimeClock

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_SAVE_MS = const(1000)  # uptime in RTC memory is at most this old after a reset
_SENDS_PER_STEP = const(4)  # frames sent per loop pass, so capture is never starved
_ACKS_PER_STEP = const(8)
_LAMP_CHUNK = const(22)  # 22 events with a blink period each fill a 200-byte frame


class App:
    """One boot of the node.

    Args:
        cfg: the validated config (config.parse).
        config_hash: 4 bytes, sent in HELLO.
        board: the hardware seam: ticks_ms/ticks_us/ticks_diff, pin(gpio, active_low),
            counter(unit, pin) (both edges; None without a hardware counter),
            irq_trigger, rtc_read()/rtc_write(buf), feed(), reset_cause (lwproto RESET_*),
            urandom(n), free_heap().
        link: transport with poll(now_ms), up, send(frame) -> bool, recv() -> bytes or None,
            rssi, reconnects, serial.
        fw: firmware version (major, minor, patch).
    """

    def __init__(self, cfg, config_hash, board, link, fw):
        self.cfg = cfg
        self.fw = fw
        self.config_hash = config_hash
        self.board = board
        self.link = link
        self.poll_ms = cfg["poll_ms"]
        self.codec = lwproto.Codec(cfg["node_id"], cfg["key"])
        st = NodeState.load(board.rtc_read())
        if st is None:  # power-up (or an invalid block): a new boot, counting from zero
            st = NodeState(self._new_boot_id(), uptime_ms=board.ticks_ms())
            restore = None
        else:
            restore = (lwproto.unpack_lamps(st.lamps), st.good, st.ng)
        self.state = st
        self.clock = UptimeClock(board.ticks_ms, board.ticks_diff, st.uptime_ms)
        lamps = [(ch, board.pin(gpio, low), low) for ch, gpio, low in cfg["lamps"]]
        counts = []
        self.hw_counter = False
        for idx, gpio, low in cfg["counts"]:
            pin = board.pin(gpio, low)
            hw = None
            if cfg["counter"] != "irq":
                hw = board.counter(idx, pin)
                self.hw_counter = self.hw_counter or hw is not None
            counts.append((idx, pin, low, hw))
        thresholds = {k: cfg[k] for k in ("flicker_gap_ms", "glitch_ms", "max_phase_ms",
                                          "min_pulse_ms", "max_rate_hz", "poll_ms")}
        self.sensor = SensorNode(self.clock, board.ticks_us, board.ticks_diff, lamps, counts,
                                 board.irq_trigger, thresholds, restore)
        self.outbox = Outbox(cfg["unacked_max"], cfg["retry_ms"])
        self._carry = (0, 0, 0)
        if restore:  # the health counters are per boot, and the boot goes on
            h = st.health
            self.outbox.dropped = h[0]
            link.reconnects = h[1]
            self.sensor.irq_resyncs = h[2]
            self.sensor.ring.idx[2] = h[3]
            self._carry = (h[4], h[5], h[6])
            self.outbox.dropped_lamp = h[7]
        self.acks_rejected = 0
        self._saved_at = -_SAVE_MS
        now = self.clock.now_ms()
        self._next_hb = now + cfg["heartbeat_ms"]
        self._next_health = now + cfg["health_ms"]
        self._link_up = False
        self._hello(board.reset_cause)

    def _new_boot_id(self):
        b = self.board.urandom(4)
        return (b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]

    # --- frames -------------------------------------------------------------------------

    def _next_seq(self, now):
        """Reserve a sequence number and store the next one in RTC memory before the frame
        exists, so no (boot_id, seq) pair is ever sent twice with different content."""
        st = self.state
        if st.next_seq >= SEQ_LIMIT:
            self._rollover(now)
        seq = st.next_seq
        st.next_seq = seq + 1
        self._save(now)
        return seq

    def _rollover(self, now):
        # The sequence space of this boot is used up: a new boot id, counts from zero.
        st = self.state
        st.boot_id = self._new_boot_id()
        st.next_seq = 0
        for c in self.sensor.counters:
            if c is not None:
                c.pc.total = 0
        seq = 0
        st.next_seq = 1
        self._save(now)
        self._queue(lwproto.T_HELLO, seq, now, self._hello_frame(seq, now, lwproto.RESET_UNKNOWN))

    def _hello_frame(self, seq, now, cause):
        cfg = self.cfg
        flags = (1 if self.hw_counter else 0) | (2 if self.link.serial else 0)
        return self.codec.hello(self.state.boot_id, seq, now, self.fw, cause,
                                self.config_hash, flags, self.sensor.lamp_mask,
                                cfg["heartbeat_ms"])

    def _hello(self, cause):
        now = self.clock.now_ms()
        seq = self._next_seq(now)
        self._queue(lwproto.T_HELLO, seq, now, self._hello_frame(seq, now, cause))

    def _queue(self, ftype, seq, now, frame):
        self.outbox.add(self.state.boot_id, seq, ftype, frame, now)

    def _lamp(self, changes, now):
        for i in range(0, len(changes), _LAMP_CHUNK):
            seq = self._next_seq(now)
            frame = self.codec.lamp(self.state.boot_id, seq, now, changes[i:i + _LAMP_CHUNK])
            self._queue(lwproto.T_LAMP, seq, now, frame)

    def _heartbeat(self, now):
        seq = self._next_seq(now)
        good, ng = self.sensor.counts()
        frame = self.codec.heartbeat(self.state.boot_id, seq, now, good, ng,
                                     self.sensor.lamp_states())
        self._queue(lwproto.T_HEARTBEAT, seq, now, frame)

    def _health(self, now):
        seq = self._next_seq(now)
        link = self.link
        s = self.sensor
        ob = self.outbox
        h = self._health_counts()
        frame = self.codec.health(self.state.boot_id, seq, now, link.rssi,
                                  self.board.free_heap(), link.reconnects, ob.dropped,
                                  s.irq_resyncs, s.events_dropped, len(ob), h[4:])
        self._queue(lwproto.T_HEALTH, seq, now, frame)

    def _health_counts(self):  # the per-boot health counters, as NodeState.health
        s = self.sensor
        c = self._carry
        m, sh, inf = s.count_health()
        ob = self.outbox
        return (ob.dropped, self.link.reconnects, s.irq_resyncs, s.events_dropped,
                c[0] + m, c[1] + sh, c[2] + inf, ob.dropped_lamp)

    # --- the loop -----------------------------------------------------------------------

    def step(self):
        """One pass of the main loop: never blocks (the link is non-blocking)."""
        self.board.feed()
        changes = self.sensor.service()
        now = self.clock.now_ms()
        if changes:
            self._lamp(changes, now)
        if now - self._next_hb >= 0:
            self._next_hb += self.cfg["heartbeat_ms"]
            if now - self._next_hb >= 0:  # after a long stall: no burst of heartbeats
                self._next_hb = now + self.cfg["heartbeat_ms"]
            self._heartbeat(now)
        if now - self._next_health >= 0:
            self._next_health = now + self.cfg["health_ms"]
            self._health(now)
        self._pump(now)
        good, ng = self.sensor.counts()
        st = self.state
        if good != st.good or ng != st.ng or now - self._saved_at >= _SAVE_MS:
            self._save(now)

    def _pump(self, now):
        link = self.link
        link.poll(now)
        if not link.up:
            self._link_up = False
            return
        if not self._link_up:  # the link is back: retry everything now
            self._link_up = True
            self.outbox.reschedule_all(now)
        self.outbox.due(now, _SENDS_PER_STEP, link.send)
        for _ in range(_ACKS_PER_STEP):
            data = link.recv()
            if data is None:
                break
            for boot in self.outbox.boots():
                seqs = self.codec.parse_ack(data, boot)
                if seqs is not None:
                    self.outbox.ack(boot, seqs)
                    break
            else:
                self.acks_rejected += 1

    def _save(self, now):
        st = self.state
        st.good, st.ng = self.sensor.counts()
        st.health = self._health_counts()
        st.uptime_ms = now
        st.lamps = lwproto.pack_lamps(self.sensor.lamp_states())
        self.board.rtc_write(st.pack())
        self._saved_at = now
