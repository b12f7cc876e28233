# outbox: the bounded ring of frames waiting for an ACK, retransmitted until acknowledged.
# Pure: frames, times and the send function come in as arguments.

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_T_LAMP = const(2)

# What a frame is worth when the ring overflows, by type: a HEALTH least, then a HEARTBEAT
# (counts and lamp states are cumulative: the next one repairs a lost one), then a LAMP frame
# (a lost lamp change is lost for good), then HELLO (it tells the host about the reset).
# The victim is the oldest frame of the least worth, the new frame included: a LAMP frame is
# never dropped while a heartbeat could be.
_WORTH = b"\x00\x03\x02\x01\x00"  # by type: -, HELLO, LAMP, HEARTBEAT, HEALTH


class Outbox:
    """Unacknowledged frames, oldest first: [boot_id, seq, type, frame, next_send_ms, tries].

    Args:
        capacity: frames held at most; on overflow one is dropped and counted in `dropped`.
        retry_ms: first retransmission delay; it doubles per try up to retry_max_ms.
    """

    def __init__(self, capacity=48, retry_ms=1000, retry_max_ms=16000):
        if capacity < 4:
            raise ValueError("outbox capacity must be at least 4")
        self.capacity = capacity
        self.retry_ms = retry_ms
        self.retry_max_ms = retry_max_ms
        self.items = []
        self.dropped = 0
        self.dropped_lamp = 0

    def __len__(self):
        return len(self.items)

    def add(self, boot_id, seq, ftype, frame, now_ms):
        """Queue a new frame; it is due at once. A full ring drops its least valuable frame,
        which may be this one."""
        items = self.items
        if len(items) >= self.capacity:
            worth = 4
            victim = 0
            for i in range(len(items)):  # the oldest of the least worth
                w = _WORTH[items[i][2]]
                if w < worth:
                    worth = w
                    victim = i
            if worth > _WORTH[ftype]:  # everything queued is worth more: the new frame goes
                self._count(ftype)
                return
            self._count(items[victim][2])
            del items[victim]
        items.append([boot_id, seq, ftype, frame, now_ms, 0])

    def _count(self, ftype):
        self.dropped += 1
        if ftype == _T_LAMP:
            self.dropped_lamp += 1

    def due(self, now_ms, limit, send=None):
        """Up to `limit` frames whose (re)send time has come, oldest first; each one returned
        is rescheduled with exponential backoff. With `send`, each frame is passed to it,
        and the first it refuses (False: the link is busy) ends the pass unrescheduled."""
        out = []
        for it in self.items:
            if len(out) >= limit:
                break
            if now_ms - it[4] >= 0:
                if send is not None and not send(it[3]):
                    break
                delay = self.retry_ms << min(it[5], 8)
                it[4] = now_ms + (min(self.retry_max_ms, delay))
                it[5] += 1
                out.append(it[3])
        return out

    def boots(self):
        """The boot ids that have frames waiting (ACKs are checked against each)."""
        out = []
        for it in self.items:
            if it[0] not in out:
                out.append(it[0])
        return out

    def ack(self, boot_id, seqs):
        """Forget the acknowledged frames. Returns how many were removed."""
        n = len(self.items)
        self.items = [it for it in self.items if not (it[0] == boot_id and it[1] in seqs)]
        return n - len(self.items)

    def reschedule_all(self, now_ms):
        """Make everything due now (the link has just come back)."""
        for it in self.items:
            it[4] = now_ms
            it[5] = 0
