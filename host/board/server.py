"""The Andon board: a small HTTP server on the collector's own loop (page, JSON, SSE, reasons).

Endpoints:
    GET  /            the page (host/board/static/: no CDN, no external fonts)
    GET  /api/board   the board as JSON (host/board/view.py)
    GET  /events      server-sent events: the board whenever a state, lamp, count or warning
                      changes (checked every POLL_S), and every KEEPALIVE_S regardless
    POST /api/reason  {"pin", "machine", "reason", "start_s"?, "end_s"?}: a stop reason,
                      journaled as a `reason` event and taken into the running shift's OEE

Without an operator PIN in the config the board is read-only (POST is always 403). A POST
must be `application/json`, which a cross-site form cannot send without a CORS preflight
this server never grants. Wrong PINs lock reason entry for LOCKOUT_S after MAX_WRONG_PINS.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import math
from pathlib import Path
from typing import Any

from .. import oee
from ..errors import LampwatchError, SinkError
from ..timeline import STOP_STATES
from .view import OperatorReason, board_view, fingerprint

__all__ = ["BoardServer", "RequestError"]

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
MAX_CLIENTS = 64
MAX_BODY = 4096
MAX_WRONG_PINS = 5
LOCKOUT_S = 60.0
_HEADER_TIMEOUT_S = 10.0
_SLOW_CLIENT_BYTES = 1 << 20  # an SSE viewer this far behind is dropped, not buffered for
_REASON_FIELDS = {"pin", "machine", "reason", "start_s", "end_s"}
_STATUS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
           405: "Method Not Allowed", 429: "Too Many Requests", 500: "Internal Server Error",
           503: "Service Unavailable"}
_HEADERS = ("Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
            "Content-Security-Policy: default-src 'self'; frame-ancestors 'none'\r\n")


class RequestError(LampwatchError):
    """A request the board refuses; `status` is its HTTP status."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class BoardServer:
    """Serves the board of one CollectorRuntime; runs on (and only touches it from) its loop.

    Args:
        runtime: reads `deriver.snapshot`, `collector.stats`, `clock`; calls `add_reason`.
        host, port: where to listen (port 0: any free port, see `url`).
        pin: the operator PIN; None makes the board read-only.
    """

    def __init__(self, runtime: Any, host: str, port: int, *, pin: str | None = None):
        self.runtime, self.host, self.port, self._pin = runtime, host, port, pin
        self.reasons: dict[str, OperatorReason] = {}
        self._server: asyncio.Server | None = None
        self._watch_task: asyncio.Task | None = None
        self._clients: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task] = set()  # one per open connection
        self._changed = False  # a reason was entered: push at the next poll
        self._wrong_pins = 0
        self._locked_until = 0.0

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        self._watch_task = asyncio.get_running_loop().create_task(self._watch())
        log.info("Andon board at %s (%s)", self.url,
                 "operator reasons need the PIN" if self._pin else "read-only: no operator PIN")

    async def stop(self) -> None:
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task
            self._watch_task = None
        if self._server is not None:
            self._server.close()
            self._server = None
        for w in list(self._clients):
            w.close()
        self._clients.clear()
        # Let open connections see their end, so none is left pending when the loop closes.
        if self._tasks:
            _, pending = await asyncio.wait(list(self._tasks), timeout=1.0)
            for task in pending:
                task.cancel()

    def view(self) -> dict:
        now = self.runtime.clock()
        return board_view(self.runtime.deriver.snapshot(now), now, operator=self._pin is not None,
                          reasons=self.reasons)

    def reason_added(self, machine: str, reason: str, start_s: float,
                     end_s: float | None) -> None:
        """CollectorRuntime.add_reason took a reason (from here or elsewhere): show it now."""
        self.reasons[machine] = OperatorReason(reason, start_s, end_s)
        self._changed = True

    # --- live updates -------------------------------------------------------------------

    async def _watch(self) -> None:
        """Push the board to SSE viewers when it changes (new events committed, a reason
        entered) and every KEEPALIVE_S; the snapshot is only computed when someone watches."""
        loop = asyncio.get_running_loop()
        seen_events, last_fp, last_push, next_view = -1, None, -math.inf, -math.inf
        while True:
            await asyncio.sleep(POLL_S)
            if not self._clients or loop.time() < next_view:
                continue
            try:
                events = self.runtime.collector.stats.events
                due = loop.time() - last_push >= KEEPALIVE_S
                if not (due or self._changed or events != seen_events):
                    continue
                self._changed = False
                seen_events = events
                t = loop.time()
                view = self.view()
                next_view = t + (loop.time() - t) / _VIEW_SHARE
                fp = fingerprint(view)
                if fp == last_fp and not due:
                    continue
                last_fp, last_push = fp, loop.time()
                self._broadcast(_sse(view))
            except Exception:  # a dying watcher must not be silent, nor stop the board
                log.exception("Andon board update failed")

    def _broadcast(self, data: bytes) -> None:
        for w in list(self._clients):
            if w.is_closing() or w.transport.get_write_buffer_size() > _SLOW_CLIENT_BYTES:
                self._clients.discard(w)
                w.close()
            else:
                w.write(data)

    # --- HTTP ---------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            try:
                method, path, headers, body = await asyncio.wait_for(
                    _read_request(reader), _HEADER_TIMEOUT_S)
                if path == "/events" and method == "GET":
                    await self._events(reader, writer)
                    return
                status, ctype, payload = await self._route(method, path, headers, body)
            except RequestError as exc:
                status, ctype, payload = exc.status, "application/json", _error(exc)
            except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                raise
            except ValueError:  # a request or header line longer than the reader's limit
                status, ctype, payload = 400, "application/json", _error("request too long")
            except Exception:  # a bug here must not go unanswered, nor unlogged
                log.exception("Andon board request failed")
                status, ctype, payload = 500, "application/json", _error("internal error")
            writer.write(_response(status, ctype, payload))
            await writer.drain()
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass  # the viewer went away or never finished its request
        finally:
            self._clients.discard(writer)
            self._tasks.discard(task)
            writer.close()

    async def _route(self, method: str, path: str, headers: dict[str, str], body: bytes):
        if path in _STATIC or path in ("/api/board", "/api/reason"):
            want = "POST" if path == "/api/reason" else "GET"
            if method != want:
                raise RequestError(405, f"{path} takes {want}")
        else:
            raise RequestError(404, f"no such page: {path}")
        if path == "/api/board":
            return 200, "application/json", json.dumps(self.view()).encode()
        if path == "/api/reason":
            return 200, "application/json", json.dumps(self._reason(headers, body)).encode()
        name, ctype = _STATIC[path]
        return 200, ctype, await asyncio.to_thread((STATIC_DIR / name).read_bytes)

    async def _events(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        if len(self._clients) >= MAX_CLIENTS:
            raise RequestError(503, "too many board viewers")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n" +
                     _HEADERS.encode() + b"Connection: keep-alive\r\n\r\nretry: 1000\n\n" +
                     _sse(self.view()))
        await writer.drain()
        self._clients.add(writer)
        while await reader.read(1024):  # until the viewer disconnects
            pass

    # --- operator reasons ---------------------------------------------------------------

    def _reason(self, headers: dict[str, str], body: bytes) -> dict:
        if self._pin is None:
            raise RequestError(403, "the board is read-only: no operator PIN is configured")
        loop = asyncio.get_running_loop()
        if loop.time() < self._locked_until:
            raise RequestError(429, "too many wrong PINs: try again in a minute")
        if headers.get("content-type", "").split(";")[0].strip() != "application/json":
            raise RequestError(400, "send JSON (Content-Type: application/json)")
        try:
            req = json.loads(body)
        except (UnicodeDecodeError, ValueError):
            raise RequestError(400, "the body is not valid JSON") from None
        if not isinstance(req, dict):
            raise RequestError(400, "send a JSON object")
        if not hmac.compare_digest(str(req.get("pin", "")).encode(), self._pin.encode()):
            self._wrong_pins += 1
            if self._wrong_pins >= MAX_WRONG_PINS:
                self._wrong_pins, self._locked_until = 0, loop.time() + LOCKOUT_S
            log.warning("Andon board: wrong operator PIN")
            raise RequestError(403, "wrong PIN")
        self._wrong_pins = 0
        machine, reason, start_s, end_s = self._checked(req)
        try:
            self.runtime.add_reason(machine, reason, start_s, end_s, by="board")
        except SinkError as exc:
            raise RequestError(500, f"not saved: {exc}") from None
        log.info("Andon board: reason %s for %s from %.3f to %s", reason, machine, start_s,
                 "the end of the stop" if end_s is None else f"{end_s:.3f}")
        return {"ok": True, "machine": machine, "reason": reason, "start_s": start_s,
                "end_s": end_s}

    def _checked(self, req: dict) -> tuple[str, str, float, float | None]:
        """Validated (machine, reason, start_s, end_s); start_s defaults to the start of the
        machine's current stop. Raises RequestError(400)."""
        extra = sorted(set(req) - _REASON_FIELDS)
        if extra:
            raise RequestError(400, f"unknown field {extra[0]!r}")
        reason = req.get("reason")
        if reason not in oee.REASONS:
            raise RequestError(400, f"reason must be one of {', '.join(oee.REASONS)}")
        machine = req.get("machine")
        now = self.runtime.clock()
        snaps = self.runtime.deriver.snapshot(now)
        if not isinstance(machine, str) or machine not in snaps:
            raise RequestError(400, f"unknown machine {machine!r}")
        start_s, end_s = _time(req, "start_s"), _time(req, "end_s")
        if start_s is None:
            snap = snaps[machine]
            if snap.state not in STOP_STATES or snap.since_s is None:
                raise RequestError(400, f"{machine} is not stopped now: give start_s")
            start_s = snap.since_s
        if start_s > now:
            raise RequestError(400, "start_s is in the future")
        if end_s is not None and end_s <= start_s:
            raise RequestError(400, "end_s must be after start_s")
        return machine, reason, start_s, end_s


def _time(req: dict, key: str) -> float | None:
    value = req.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RequestError(400, f"{key} must be epoch seconds (a number) or null")
    return float(value)


async def _read_request(reader: asyncio.StreamReader):
    """(method, path without query, lower-cased headers, body) of one HTTP/1.x request."""
    line = (await reader.readline()).decode("latin-1").split()
    if not line:
        raise asyncio.IncompleteReadError(b"", None)
    if len(line) != 3 or not line[2].startswith("HTTP/1."):
        raise RequestError(400, "not an HTTP/1.x request")
    headers: dict[str, str] = {}
    while True:
        h = (await reader.readline()).decode("latin-1").strip()
        if not h:
            break
        if len(headers) > 100:
            raise RequestError(400, "too many headers")
        name, _, value = h.partition(":")
        headers[name.strip().lower()] = value.strip()
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError:
        raise RequestError(400, "bad Content-Length") from None
    if not 0 <= length <= MAX_BODY:
        raise RequestError(400, f"the body must be at most {MAX_BODY} bytes")
    body = await reader.readexactly(length) if length else b""
    return line[0].upper(), line[1].split("?", 1)[0], headers, body


def _sse(view: dict) -> bytes:
    return b"data: " + json.dumps(view, separators=(",", ":")).encode() + b"\n\n"


def _error(exc: Exception | str) -> bytes:
    return json.dumps({"error": str(exc)}).encode()


def _response(status: int, ctype: str, body: bytes) -> bytes:
    head = (f"HTTP/1.1 {status} {_STATUS.get(status, 'Error')}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\n{_HEADERS}Connection: close\r\n\r\n")
    return head.encode() + body
