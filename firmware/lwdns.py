# lwdns: the one DNS query the node makes, the collector's name, as a datagram it sends and
# reads back without blocking (socket.getaddrinfo would stop the loop for seconds and starve
# the watchdog). Pure: the socket comes in; imported only when the collector is a name.
import struct

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_WAIT_MS = const(2000)  # one query's answer time
_RETRY_MIN_MS = const(1000)  # no answer: ask again after this, doubling ...
_RETRY_MAX_MS = const(30000)  # ... up to this
_REFRESH_MS = const(3600000)  # an answer holds for an hour (the old address stays meanwhile)


class Resolver:
    """The collector's address by name, one bounded step per main-loop pass.

    step(now_ms, open_udp, server) -> "a.b.c.d" when an answer arrived, else None. open_udp()
    returns a non-blocking UDP socket; server is the DNS server's address. Each step sends
    at most one datagram or reads at most one; a query unanswered for 2 s is asked again
    after 1, 2, 4 ... 30 s.
    """

    def __init__(self, host):
        self.host = host
        self._s = None  # the socket of the query under way
        self._qid = 0
        self._at = 0  # when it was sent, or when to ask next
        self._wait = _RETRY_MIN_MS

    def step(self, now, open_udp, server):
        s = self._s
        if s is not None:
            try:
                data = s.recv(512)
            except OSError:  # EAGAIN: no answer yet
                data = None
            ip = answer(data, self._qid) if data else None
            if ip is None and now - self._at < _WAIT_MS:
                return None
            s.close()
            self._s = None
            if ip is None:
                self._at = now + self._wait
                self._wait = min(self._wait * 2, _RETRY_MAX_MS)
                return None
            self._at = now + _REFRESH_MS
            self._wait = _RETRY_MIN_MS
            return ip
        if now - self._at < 0:
            return None
        self._qid = (self._qid + 1) & 0xFFFF
        try:
            s = open_udp()
            s.sendto(query(self._qid, self.host), (server, 53))
        except OSError:
            self._at = now + self._wait
            return None
        self._s = s
        self._at = now
        return None


def query(qid, name):
    """A DNS query for the A record of `name` (RFC 1035), recursion desired."""
    q = bytearray(struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0))
    for label in name.split("."):
        q.append(len(label))
        q += label.encode()
    q += b"\x00\x00\x01\x00\x01"
    return q


def answer(data, qid):
    """The first IPv4 address in the answer to query `qid`, as "a.b.c.d"; None for anything
    else (another id, an error, no A record, a malformed datagram)."""
    n = len(data)
    if n < 12:
        return None
    rid, flags, qd, an = struct.unpack_from(">HHHH", data, 0)
    if rid != qid or not flags & 0x8000 or flags & 0x0F:
        return None
    i = 12
    try:
        for _ in range(qd + an):
            while data[i] and data[i] < 0xC0:  # skip a name: labels, ending 0 or a pointer
                i += data[i] + 1
            i += 2 if data[i] else 1
            if qd:
                qd -= 1
                i += 4
                continue
            if i + 10 > n:
                return None
            typ, cls, _, rdlen = struct.unpack_from(">HHIH", data, i)
            i += 10
            if typ == 1 and cls == 1 and rdlen == 4 and i + 4 <= n:
                return f"{data[i]}.{data[i + 1]}.{data[i + 2]}.{data[i + 3]}"
            i += rdlen
    except IndexError:
        pass
    return None
