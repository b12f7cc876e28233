"""Who may use the Andon board: Host and Origin checks, and the operator PIN with backoff per
client address. Pure: time is passed in."""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import socket
from collections import OrderedDict
from collections.abc import Iterable

__all__ = ["HostCheck", "PinGate", "client_key", "host_name"]

FREE_TRIES = 3          # wrong PINs from one address before any wait: typos happen
FIRST_WAIT_S = 1.0      # then the wait doubles with every wrong PIN...
MAX_WAIT_S = 900.0      # ...up to 15 minutes: about 100 guesses a day from one address
FORGET_S = 86400.0      # an address's record goes a day after its last wrong PIN
MAX_ADDRESSES = 10_000  # records kept at most; the least recently wrong go first


@functools.lru_cache(maxsize=4096)  # every connection asks; a flood asks for the same few
def client_key(remote: str | None) -> str:
    """The unit that backoff and connection limits count: an IPv4 address, or an IPv6 /64
    (one host usually holds a whole /64, so counting single IPv6 addresses counts nothing)."""
    try:
        ip = ipaddress.ip_address(remote or "")
    except ValueError:
        return remote or "?"
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def host_name(host_header: str) -> str:
    """The name or address in a Host header (or an Origin's authority), without the port;
    lower-case, IPv6 without brackets, no trailing dot."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    name, _, port = host.rpartition(":")
    if name and port.isdigit():
        host = name
    return host.rstrip(".")


class HostCheck:
    """Which Host headers the board answers, and which Origins may change anything.

    A foreign name in Host is how DNS rebinding reaches a LAN server from any web page a
    plant PC opens (evil.example resolves to the collector's address): such requests are
    refused. IP literals are always fine (rebinding needs a name), as are `localhost`, this
    machine's own name, the listen address and the configured names.

    Args:
        names: the configured `[board] hosts`.
        listen_host: the address the board listens on (a name or an IP literal).
    """

    def __init__(self, names: Iterable[str], listen_host: str):
        own = {"localhost", socket.gethostname(), listen_host}
        self.names = frozenset(host_name(n) for n in (*names, *own) if n)

    def host_ok(self, host_header: str | None) -> bool:
        if not host_header:
            return False
        host = host_name(host_header)
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return host in self.names
        return True

    def origin_ok(self, origin: str | None, host_header: str | None) -> bool:
        """A state-changing request must come from the board's own page: its Origin is
        http://<the Host it was sent to> (browsers send Origin with every POST)."""
        if not origin or not host_header or not self.host_ok(host_header):
            return False
        return origin.strip().lower() == f"http://{host_header.strip().lower()}"


class PinGate:
    """The operator PIN, compared in constant time, with a growing wait per client address.

    An address may get FREE_TRIES PINs wrong; after that each wrong PIN makes it wait
    FIRST_WAIT_S, doubling up to MAX_WAIT_S, before it may try again (a right PIN clears
    its record). Other addresses are never affected: one client cannot lock out the rest.
    """

    def __init__(self, pin: str):
        self._digest = hashlib.sha256(pin.encode()).digest()
        # address -> [wrong PINs, may try again at, last wrong at]; oldest first
        self._records: OrderedDict[str, list[float]] = OrderedDict()

    def wait_s(self, who: str, now_s: float) -> float:
        """Seconds `who` must still wait before its next try (0: it may try now)."""
        record = self._records.get(who)
        if record is None:
            return 0.0
        if now_s - record[2] > FORGET_S:
            del self._records[who]
            return 0.0
        return max(0.0, record[1] - now_s)

    def check(self, who: str, pin: str, now_s: float) -> bool:
        """Whether `pin` is right; a wrong one counts against `who`. Call only when
        wait_s(who) is 0. Equal-length digests and compare_digest: the time taken says
        nothing about the PIN, not even its length."""
        given = hashlib.sha256(pin.encode()).digest()
        if hmac.compare_digest(given, self._digest):
            self._records.pop(who, None)
            return True
        record = self._records.pop(who, None) or [0, 0.0, 0.0]
        record[0] += 1
        record[2] = now_s
        if record[0] > FREE_TRIES:
            record[1] = now_s + min(MAX_WAIT_S, FIRST_WAIT_S * 2 ** (record[0] - FREE_TRIES - 1))
        self._records[who] = record  # to the end: the most recently wrong
        while len(self._records) > MAX_ADDRESSES:
            self._records.popitem(last=False)
        return False
