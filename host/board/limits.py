"""The Andon board's HTTP limits: aiohttp's parser limits, connection caps per client address,
live-viewer slots sized from RLIMIT_NOFILE, and barred addresses' connections held."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import resource

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong

from ..errors import ConfigError
from .auth import client_key
from .refusals import Refusals

__all__ = ["Connection", "ConnectionGuard", "Gate", "handler_args", "viewer_slots"]

# aiohttp's request parser limits. A board request from a browser is a short line and about
# 20 headers without cookies; these bound what one connection can make the parser hold to
# MAX_HEADERS x MAX_FIELD_SIZE (kept twice: raw and decoded), about 0.5 MB.
MAX_LINE_SIZE = 8190
MAX_FIELD_SIZE = 8190
MAX_HEADERS = 32
MAX_BODY = 4096  # client_max_size: a stop reason is under 300 bytes
# aiohttp's keepalive timer runs from the moment a connection opens: one that has not sent
# a whole request by then (slow headers) is closed, as is one idle this long between requests.
KEEPALIVE_S = 10.0
LINGER_S = 1.0  # reading an unread body after answering, at most
# Bytes read from a connection per event-loop turn (asyncio's default is 256 KiB). A board
# request fits; a client streaming junk is refused after the first read, and what the
# refusal keeps alive until it is answered is this much, not a quarter of a megabyte.
# (Such a sender, still sending when the refusal closes the connection, gets a reset.)
READ_SIZE = 16 << 10
BODY_TIMEOUT_S = 5.0
SHUTDOWN_S = 1.0

# Connections without a request in progress (headers still arriving, or keep-alive). Past
# MAX_IDLE the oldest idle connection of the address holding the most is closed, so a
# flood of idle connections from one place costs only that place its own.
MAX_IDLE = 64
MAX_BUSY = 64          # plain requests (not the live stream) handled at once
MAX_PER_ADDRESS = 16   # requests in progress from one address, live streams included
# The listen backlog. asyncio accepts up to this many connections per readiness event,
# each a file descriptor before any is counted by the guard below, so it must fit in the
# reserve; and a short kernel queue makes a connection flood throttle itself (its SYNs
# wait for room) instead of costing the loop an accept per attempt.
BACKLOG = 64
# File descriptors left for the journal, UDP, serial ports, the forwarder and logging.
RESERVED_FDS = 128
MAX_AUTO_SLOTS = 1000  # live viewers when not configured: more screens than any plant has

# A barred address's connection is held unread for HOLD_S, not reset: its sender waits
# instead of reconnecting at once, so a flood of reconnects costs a few accepts a second,
# not thousands. At most HOLD_MAX are held (each is an open file); past that, reset.
HOLD_MAX = 256
HOLD_S = 10.0


def handler_args() -> dict:
    """aiohttp RequestHandler arguments: the parser limits and timeouts above, no access log."""
    return {"max_line_size": MAX_LINE_SIZE, "max_field_size": MAX_FIELD_SIZE,
            "max_headers": MAX_HEADERS, "keepalive_timeout": KEEPALIVE_S,
            "lingering_time": LINGER_S, "access_log": None}


def viewer_slots(configured: int | None, nofile: int | None = None) -> int:
    """Live board viewers (SSE streams) at once: `configured`, or by default what the open
    file limit leaves after everything else (at most MAX_AUTO_SLOTS).

    Raises ConfigError when the limit (systemd's LimitNOFILE) is too low for them.
    """
    if nofile is None:
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if nofile == resource.RLIM_INFINITY:
        nofile = 1 << 20
    others = RESERVED_FDS + BACKLOG + MAX_IDLE + MAX_BUSY + HOLD_MAX
    room = nofile - others
    want = configured if configured is not None else 1
    if want > room:
        what = f"board.sse_slots = {configured}" if configured is not None else "the board"
        raise ConfigError(f"{what} needs an open-file limit of at least {others + want} "
                          f"(systemd: LimitNOFILE); it is {nofile}")
    return configured if configured is not None else min(MAX_AUTO_SLOTS, room)


class ConnectionGuard:
    """Counts the board's connections per client address; closes idle ones past MAX_IDLE and
    refuses requests past MAX_BUSY / MAX_PER_ADDRESS (see `begin`).

    The idle connection closed to make room is the oldest of the worst-behaved address:
    the one with the least refusal budget left, then the one holding the most idle
    connections. A flood costs its senders their own connections, not a quiet screen's.
    """

    def __init__(self, refusals: Refusals, max_idle: int = MAX_IDLE, max_busy: int = MAX_BUSY,
                 per_address: int = MAX_PER_ADDRESS):
        self.refusals = refusals
        self.max_idle, self.max_busy, self.per_address = max_idle, max_busy, per_address
        self._idle: dict[str, dict[Connection, None]] = {}  # address -> idle, oldest first
        self._idle_n = 0
        self._busy: dict[str, int] = {}
        self.busy_plain = 0
        self.closed_idle = 0  # idle connections closed to make room (for tests and logs)
        self._held: collections.deque = collections.deque()  # (release at, transport)
        self._sweeper: asyncio.TimerHandle | None = None

    @property
    def held(self) -> int:
        return len(self._held)

    def hold(self, transport: asyncio.Transport) -> None:
        """Keep a barred address's connection unread for HOLD_S (HOLD_MAX at most; past
        that it is reset at once)."""
        if len(self._held) >= HOLD_MAX:
            transport.abort()
            return
        loop = asyncio.get_running_loop()
        transport.pause_reading()
        self._held.append((loop.time() + HOLD_S, transport))
        if self._sweeper is None:
            self._sweeper = loop.call_later(HOLD_S, self._release)

    def _release(self) -> None:
        now = asyncio.get_running_loop().time()
        while self._held and self._held[0][0] <= now:
            self._held.popleft()[1].abort()
        self._sweeper = None
        if self._held:
            delay = self._held[0][0] - now
            self._sweeper = asyncio.get_running_loop().call_later(delay, self._release)

    def release_all(self) -> None:
        """Reset every held connection (the board stops)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        while self._held:
            self._held.popleft()[1].abort()

    @property
    def idle(self) -> int:
        return self._idle_n

    def opened(self, conn: Connection) -> None:
        self._park(conn)
        while self._idle_n > self.max_idle:
            worst = min(self._idle, key=lambda who: (self.refusals.standing(who),
                                                     -len(self._idle[who])))
            oldest = next(iter(self._idle[worst]))
            self._unpark(oldest)
            self.closed_idle += 1
            oldest.force_close()

    def closed(self, conn: Connection) -> None:
        self._unpark(conn)

    def begin(self, conn: Connection, plain: bool) -> str | None:
        """A request starts on `conn`: None, or why it must be refused (then do not `end`)."""
        who = conn.who
        if self._busy.get(who, 0) >= self.per_address:
            return f"{self.per_address} requests from one address at once at most"
        if plain and self.busy_plain >= self.max_busy:
            return "too many requests at once"
        self._unpark(conn)
        self._busy[who] = self._busy.get(who, 0) + 1
        self.busy_plain += plain
        return None

    def end(self, conn: Connection, plain: bool) -> None:
        who = conn.who
        left = self._busy.get(who, 1) - 1
        if left:
            self._busy[who] = left
        else:
            self._busy.pop(who, None)
        self.busy_plain -= plain
        if conn.transport is not None:  # keep-alive: idle again, as the newest
            self._park(conn)

    def _park(self, conn: Connection) -> None:
        conns = self._idle.setdefault(conn.who, {})
        if conn not in conns:
            conns[conn] = None
            self._idle_n += 1

    def _unpark(self, conn: Connection) -> None:
        conns = self._idle.get(conn.who)
        if conns is not None and conn in conns:
            del conns[conn]
            self._idle_n -= 1
            if not conns:
                del self._idle[conn.who]


class Gate(asyncio.Protocol):
    """The first protocol of every board connection: one from a barred address is held
    unread by the guard, then reset (it costs an accept: no parser, no task, no answer);
    any other is handed to a new Connection (asyncio's transport.set_protocol)."""

    def __init__(self, guard: ConnectionGuard, refusals: Refusals, make_connection):
        self.guard, self.refusals, self.make_connection = guard, refusals, make_connection

    def connection_made(self, transport) -> None:
        peer = transport.get_extra_info("peername")
        who = client_key(peer[0] if peer else None)
        if self.refusals.barred(who):
            self.guard.hold(transport)
            return
        conn = self.make_connection()
        conn.who = who
        transport.set_protocol(conn)
        conn.connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        pass  # a barred connection: nothing was made for it


class Connection(web.RequestHandler):
    """aiohttp's per-connection protocol, counted by a ConnectionGuard, answering a request
    the parser refuses (line or header too long, too many headers, not HTTP) with a JSON 400
    and one rate-limited log line instead of a traceback."""

    def __init__(self, guard: ConnectionGuard, refusals: Refusals, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.guard, self.refusals, self.who = guard, refusals, "?"  # `who`: set by the Gate
        self._refused = False

    def connection_made(self, transport) -> None:
        # asyncio's selector transports read `max_size` bytes per recv (a class attribute).
        with contextlib.suppress(AttributeError):
            transport.max_size = READ_SIZE
        super().connection_made(transport)
        self.guard.opened(self)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.guard.closed(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # After a refusal the connection only gets its answer and closes. aiohttp would
        # go on parsing what still arrives, queueing an error (whose traceback holds the
        # chunk read) per chunk: 150 clients streaming headers held hundreds of MB.
        if not self._refused:
            super().data_received(data)

    def handle_error(self, request, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if status >= 500:  # a bug: aiohttp logs it with its traceback
            return super().handle_error(request, status, exc, message)
        self._refused = True
        if self.transport is not None:
            self.transport.pause_reading()
        if exc is not None:
            # The parser error's traceback holds aiohttp's data_received frame, which holds
            # the error: a cycle keeping the chunk read alive until the cyclic GC runs.
            exc.__traceback__ = None
        if isinstance(exc, LineTooLong):
            what = f"request line or header longer than {MAX_FIELD_SIZE} bytes"
        else:
            what = str(getattr(exc, "message", "") or message or "bad request")
            # aiohttp quotes the offending bytes ("...: b'...' ^"): they stay out of the
            # log, which must never hold what a client sent in place of a header.
            what = " ".join(what.split())
            what = what.split(": b'")[0].split(': b"')[0][:120]
        self.refusals.refused(self.who, status, what)
        resp = web.json_response({"error": what}, status=status)
        resp.force_close()
        return resp
