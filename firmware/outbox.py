# outbox: the bounded ring of frames waiting for an ACK, retransmitted until acknowledged.
# Pure: frames, times and the send function come in as arguments.

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_T_HELLO = const(1)
_T_LAMP = const(2)
_T_HEARTBEAT = const(3)
_T_HEALTH = const(4)

# Overflow victims, best first: a HEALTH, then a HEARTBEAT that a newer one supersedes
# (counts are cumulative, so the newer one repairs it), then the oldest LAMP frame.
# HELLO goes last: it tells the host about the reset.
_VICTIMS = (_T_HEALTH, _T_HEARTBEAT, _T_LAMP, _T_HELLO)


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
        """Queue a new frame; it is due at once."""
        if len(self.items) >= self.capacity:
            self._drop_one()
        self.items.append([boot_id, seq, ftype, frame, now_ms, 0])

    def _drop_one(self):
        items = self.items
        for victim in _VICTIMS:
            last = -1
            if victim == _T_HEARTBEAT:  # never the newest heartbeat
                for i in range(len(items) - 1, -1, -1):
                    if items[i][2] == victim:
                        last = i
                        break
            for i in range(len(items)):
                if items[i][2] == victim and i != last:
                    if victim == _T_LAMP:
                        self.dropped_lamp += 1
                    del items[i]
                    self.dropped += 1
                    return
        del items[0]
        self.dropped += 1

    def due(self, now_ms, limit):
        """Up to `limit` frames whose (re)send time has come, oldest first; each returned
        frame is rescheduled with exponential backoff."""
        out = []
        for it in self.items:
            if len(out) >= limit:
                break
            if now_ms - it[4] >= 0:
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
