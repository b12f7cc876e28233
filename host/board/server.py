"""The Andon board: aiohttp on the collector's own loop (page, JSON, SSE, reasons), limits set.

Endpoints:
    GET  /            the page (host/board/static/: no CDN, no external fonts)
    GET  /api/board   the board as JSON (host/board/view.py)
    GET  /events      server-sent events: the board whenever a state, lamp, count or warning
                      changes (checked every POLL_S), and every KEEPALIVE_S regardless
    POST /api/reason  {"pin", "machine", "reason", "start_s"?, "end_s"?}: a stop reason,
                      journaled as a `reason` event and taken into the running shift's OEE
    GET  /print       the shift sheet (host/report/sheet.py) of ?shift=NAME&date=D, else of
                      the running shift (or the last one that ended), to print on A4

The page speaks the config's [board] lang: its texts are filled in from the catalogue
(host/i18n) when the board starts, and the ones board.js writes travel in the page as JSON.

Why aiohttp: it is a kept HTTP/1.1 server whose parser has the limits a plant LAN needs
(line, header size and count, body size, a deadline for a request's headers), and it runs
in the collector's event loop through AppRunner, so the board reads the deriver without
threads or locks. The connection caps and live-viewer slots are ours (host/board/limits.py);
Host, Origin and the PIN are host/board/auth.py; the posted reason host/board/reasons.py.
Without an operator PIN in the config the board is read-only (POST is always 403).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import math
from pathlib import Path
from typing import Any

from aiohttp import web

from ..errors import LampwatchError, RequestError, SinkError
from ..i18n import catalogue
from . import limits, pages
from .auth import HostCheck, PinGate
from .reasons import checked, parse_body, pin_of
from .refusals import Refusals
from .view import OperatorReason, board_view, fingerprint

__all__ = ["BoardServer"]

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
_STATIC = {"/": ("index.html", "text/html; charset=utf-8"),
           "/board.css": ("board.css", "text/css; charset=utf-8"),
           "/board.js": ("board.js", "text/javascript; charset=utf-8")}
POLL_S = 0.1
# The snapshot evaluates every machine's shift OEE; however busy the plant, building views
# may take at most this share of the collector's loop.
_VIEW_SHARE = 0.2
KEEPALIVE_S = 2.0
# A view older than this is computed again for a request or a new viewer (if the share
# above allows); the page's clocks tick on their own in between.
_VIEW_MAX_AGE_S = 1.0
RETRY_AFTER_S = 5  # what a viewer over the slot limit is told (board.js retries about so)
_WRITE_TIMEOUT_S = 30.0  # a live viewer that takes longer to take one update is dropped
_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'"}


class BoardServer:
    """Serves the board of one CollectorRuntime; runs on (and only touches it from) its loop.

    Args:
        runtime: reads `deriver.snapshot`, `collector.stats`, `clock`; calls `add_reason`.
        host, port: where to listen (port 0: any free port, see `url`).
        pin: the operator PIN; None makes the board read-only.
        hosts: further host names the board answers to (besides its listen address,
            localhost, this machine's name and any IP literal).
        sse_slots: live viewers at once; None: sized from RLIMIT_NOFILE (limits.viewer_slots).
        lang: the page's language, "en" or "id" (host/i18n).
    """

    def __init__(self, runtime: Any, host: str, port: int, *, pin: str | None = None,
                 hosts: tuple[str, ...] = (), sse_slots: int | None = None, lang: str = "en"):
        self.runtime, self.host, self.port = runtime, host, port
        self.cat = catalogue(lang)
        self.reasons: dict[str, OperatorReason] = {}
        self.slots = limits.viewer_slots(sse_slots)  # ConfigError before anything listens
        self.hosts = HostCheck(hosts, host)
        self.refusals = Refusals()
        self.conns = limits.ConnectionGuard(self.refusals)
        self._gate = PinGate(pin) if pin is not None else None
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.AbstractServer | None = None
        self._watch_task: asyncio.Task | None = None
        self._static: dict[str, tuple[bytes, str]] = {}
        self.viewers = 0
        self._pushed = asyncio.Event()  # replaced at each push; viewers wait on it
        self._latest = b""              # the last pushed event
        self._closing = False
        self._changed = False  # a reason was entered: push at the next poll
        # The last view, shared by the watcher, /api/board and new viewers: (view, JSON,
        # loop time computed, collector events then, reasons version then).
        self._cached: tuple[dict, bytes, float, int, int] | None = None
        self._reasons_version = 0
        self._next_view = -math.inf  # no view is computed before this (loop time)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    async def start(self) -> None:
        self._static = {path: ((STATIC_DIR / name).read_bytes(), ctype)
                        for path, (name, ctype) in _STATIC.items()}
        self._static["/"] = (pages.index_page(self.cat), self._static["/"][1])
        app = web.Application(client_max_size=limits.MAX_BODY, middlewares=[self._guarded])
        app.router.add_get("/", self._static_file)
        app.router.add_get("/board.css", self._static_file)
        app.router.add_get("/board.js", self._static_file)
        app.router.add_get("/api/board", self._board)
        app.router.add_get("/events", self._events, allow_head=False)
        app.router.add_post("/api/reason", self._reason)
        app.router.add_get("/print", self._print)
        # handler_cancellation: a viewer that goes away frees its slot at once.
        self._runner = web.AppRunner(app, handler_cancellation=True,
                                     shutdown_timeout=limits.SHUTDOWN_S, **limits.handler_args())
        await self._runner.setup()
        loop = asyncio.get_running_loop()
        # Our own listener, so every connection passes the Gate and is a limits.Connection
        # the guard counts.
        make = functools.partial(limits.Connection, self.conns, self.refusals,
                                 self._runner.server, loop=loop, **limits.handler_args())
        factory = functools.partial(limits.Gate, self.conns, self.refusals, make)
        try:
            self._listener = await loop.create_server(factory, self.host, self.port,
                                                      reuse_address=True,
                                                      backlog=limits.BACKLOG)
        except BaseException:
            await self._runner.cleanup()
            raise
        self.port = self._listener.sockets[0].getsockname()[1]
        self._watch_task = loop.create_task(self._watch())
        log.info("Andon board at %s (%s; %d live viewer slots)", self.url,
                 "operator reasons need the PIN" if self._gate else
                 "read-only: no operator PIN", self.slots)

    async def stop(self) -> None:
        self._closing = True
        self._pushed.set()  # live viewers end their streams
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task
            self._watch_task = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self.conns.release_all()
        if self._runner is not None:
            await self._runner.cleanup()  # closes connections, waits SHUTDOWN_S for handlers
            self._runner = None

    def view(self) -> dict:
        now = self.runtime.clock()
        return board_view(self.runtime.deriver.snapshot(now), now, operator=self._gate is not None,
                          reasons=self.reasons, lang=self.cat.lang)

    def reason_added(self, machine: str, reason: str, start_s: float,
                     end_s: float | None) -> None:
        """CollectorRuntime.add_reason took a reason (from here or elsewhere): show it now."""
        self.reasons[machine] = OperatorReason(reason, start_s, end_s)
        self._changed = True
        self._reasons_version += 1
        self._next_view = -math.inf  # an operator waits for it: the next view may be now

    def _current(self, fresh: bool = False) -> tuple[dict, bytes]:
        """The view and its JSON: cached unless it is stale (older than _VIEW_MAX_AGE_S, or
        events committed / a reason entered since) or `fresh`, and only computed again when
        the last computation's time allows it (views take at most _VIEW_SHARE of the loop,
        however many requests ask: on a plant of 1,000 machines one takes 30-200 ms)."""
        loop = asyncio.get_running_loop()
        now, c = loop.time(), self._cached
        if c is not None and (not (fresh or self._stale(now)) or now < self._next_view):
            return c[0], c[1]
        events = self.runtime.collector.stats.events  # as of before the view: never newer
        view = self.view()
        took = loop.time() - now
        self._next_view = now + took / _VIEW_SHARE
        data = json.dumps(view, separators=(",", ":")).encode()
        self._cached = (view, data, now, events, self._reasons_version)
        return view, data

    def _stale(self, now: float) -> bool:
        """The cached view is older than _VIEW_MAX_AGE_S, or events were committed or a
        reason entered since it was computed."""
        c = self._cached
        return c is None or now - c[2] > _VIEW_MAX_AGE_S \
            or c[3] != self.runtime.collector.stats.events or c[4] != self._reasons_version

    # --- live updates -------------------------------------------------------------------

    async def _watch(self) -> None:
        """Push the board to live viewers when it changes (new events committed, a reason
        entered) and every KEEPALIVE_S; the snapshot is only computed when someone watches."""
        loop = asyncio.get_running_loop()
        seen_events, last_fp, last_push = -1, None, -math.inf
        while True:
            await asyncio.sleep(POLL_S)
            if not self.viewers or loop.time() < self._next_view:
                continue
            try:
                events = self.runtime.collector.stats.events
                due = loop.time() - last_push >= KEEPALIVE_S
                if not (due or self._changed or events != seen_events):
                    continue
                self._changed = False
                seen_events = events
                view, data = self._current(fresh=True)
                fp = fingerprint(view)
                if fp == last_fp and not due:
                    continue
                last_fp, last_push = fp, loop.time()
                self._push(b"data: " + data + b"\n\n")
            except Exception:  # a dying watcher must not be silent, nor stop the board
                log.exception("Andon board update failed")

    def _push(self, data: bytes) -> None:
        """Every viewer sends the latest event when it can: a slow one skips to the newest
        instead of queueing, so it holds one event and its socket buffer, never a backlog."""
        self._latest = data
        pushed, self._pushed = self._pushed, asyncio.Event()
        pushed.set()

    async def _events(self, request: web.Request) -> web.StreamResponse:
        if self.viewers >= self.slots:
            raise RequestError(503, f"all {self.slots} live board slots are taken",
                               retry_after_s=RETRY_AFTER_S)
        self.viewers += 1
        try:
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", **_HEADERS})
            await resp.prepare(request)
            data = b"retry: 1000\n\ndata: " + self._current()[1] + b"\n\n"
            while not self._closing:
                await asyncio.wait_for(resp.write(data), _WRITE_TIMEOUT_S)
                pushed = self._pushed
                await pushed.wait()
                data = self._latest
        except (ConnectionError, asyncio.TimeoutError):
            pass  # the viewer went away, or was too slow to keep
        finally:
            self.viewers -= 1
        return resp

    # --- HTTP ---------------------------------------------------------------------------

    @web.middleware
    async def _guarded(self, request: web.Request, handler) -> web.StreamResponse:
        """Host, Origin and the connection guard before any handler; every refusal a JSON
        error and one (rate-limited) log line, never a traceback."""
        conn = request.protocol  # a limits.Connection: this server makes no other
        who = conn.who
        try:
            host = request.headers.get("Host")
            if not self.hosts.host_ok(host):
                raise RequestError(421, "this board does not answer to that Host name; add "
                                        "it to [board] hosts if it is this collector's")
            if request.method not in ("GET", "HEAD") and not self.hosts.origin_ok(
                    request.headers.get("Origin"), host):
                raise RequestError(403, "the request must come from the board's own page "
                                        "(Origin)")
            plain = request.path != "/events"
            refused = self.conns.begin(conn, plain)
            if refused:
                raise RequestError(429, refused, retry_after_s=1)
            try:
                resp = await handler(request)
            finally:
                self.conns.end(conn, plain)
        except RequestError as exc:
            return self._refuse(who, exc.status, str(exc), exc.retry_after_s)
        except web.HTTPException as exc:  # the router's 404 / 405, the body's 413
            allowed = ", ".join(sorted(getattr(exc, "allowed_methods", ())))
            what = {404: f"no such page: {request.path[:60]}",
                    405: f"{request.path[:60]} takes {allowed}",
                    413: f"the body must be at most {limits.MAX_BODY} bytes"}.get(
                        exc.status, exc.reason)
            return self._refuse(who, exc.status, what)
        if not resp.prepared:
            for name, value in _HEADERS.items():  # a handler's own policy stands (/print)
                resp.headers.setdefault(name, value)
        return resp

    def _refuse(self, who: str, status: int, what: str, retry_after_s: int | None = None):
        self.refusals.refused(who, status, what)
        resp = web.json_response({"error": what}, status=status, headers=_HEADERS)
        if retry_after_s is not None:
            resp.headers["Retry-After"] = str(retry_after_s)
        return resp

    async def _static_file(self, request: web.Request) -> web.Response:
        body, ctype = self._static[request.path]
        return web.Response(body=body, headers={"Content-Type": ctype})

    async def _print(self, request: web.Request) -> web.Response:
        """The shift sheet; read from the journal in a worker thread (the loop goes on)."""
        shift, day = request.query.get("shift"), request.query.get("date")
        try:
            page = await asyncio.to_thread(pages.shift_sheet, self.runtime.config, shift, day,
                                           self.runtime.clock(), self.cat.lang)
        except LampwatchError as exc:
            raise RequestError(404, str(exc)) from None
        return web.Response(text=page, content_type="text/html",
                            headers={"Content-Security-Policy": pages.PRINT_CSP})

    async def _board(self, request: web.Request) -> web.Response:
        # A page that loads the board once (its live stream refused) must not get a view
        # from before the events it was asked after: a stale view that the share does not
        # yet allow to compute again is waited for (at most took / _VIEW_SHARE), not served.
        loop = asyncio.get_running_loop()
        wait = self._next_view - loop.time()
        if wait > 0 and self._stale(loop.time()):
            await asyncio.sleep(wait)
        return web.Response(body=self._current()[1], content_type="application/json")

    async def _reason(self, request: web.Request) -> web.Response:
        if self._gate is None:
            raise RequestError(403, "the board is read-only: no operator PIN is configured")
        if request.content_type != "application/json":
            raise RequestError(400, "send JSON (Content-Type: application/json)")
        who, now = request.protocol.who, self.runtime.clock()
        wait = self._gate.wait_s(who, now)
        if wait > 0:
            raise RequestError(429, "too many wrong PINs from this address: wait "
                               f"{math.ceil(wait)} s", retry_after_s=math.ceil(wait))
        try:
            body = await asyncio.wait_for(request.read(), limits.BODY_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise RequestError(408, "the body took too long") from None
        req = parse_body(body)
        if not self._gate.check(who, pin_of(req), now):
            raise RequestError(403, "wrong PIN")
        r = checked(req, self.runtime.deriver.snapshot(now), now)  # NullDeriver: {}
        try:
            self.runtime.add_reason(r.machine, r.reason, r.start_s, r.end_s, by="board")
        except SinkError as exc:
            raise RequestError(503, f"not saved: {exc}", retry_after_s=RETRY_AFTER_S) from None
        log.info("Andon board: reason %s for %s from %.3f to %s (from %s)", r.reason, r.machine,
                 r.start_s, "the end of the stop" if r.end_s is None else f"{r.end_s:.3f}", who)
        return web.json_response({"ok": True, "machine": r.machine, "reason": r.reason,
                                  "start_s": r.start_s, "end_s": r.end_s})

