"""A real HTTP proxy on loopback in front of a real server, answering some requests itself.

It plays what VictoriaMetrics never does on its own but InfluxDB and its hosted services do:
413 for a body over a size, 429 / 503 with Retry-After, 401. Everything else is forwarded
byte for byte, so the data path under test is the real client against the real server.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FaultProxy:
    """`FaultProxy(upstream_url).start()`; `.url` for the client; faults set per test.

    Attributes:
        max_body: bodies over this many bytes get 413 (None: no limit).
        answers: [(status, headers)] answered, in order, instead of forwarding.
        log: [(monotonic time, status answered, body bytes)] for every request.
    """

    def __init__(self, upstream: str):
        self.upstream = upstream.rstrip("/")
        self.max_body: int | None = None
        self.answers: list[tuple[int, dict[str, str]]] = []
        self.log: list[tuple[float, int, int]] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status, headers, payload = proxy._answer(self.path, dict(self.headers), body)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def _answer(self, path: str, headers: dict, body: bytes) -> tuple[int, dict, bytes]:
        with self._lock:
            canned = self.answers.pop(0) if self.answers else None
            too_large = self.max_body is not None and len(body) > self.max_body
        if canned is not None:
            status, extra = canned
            out = (status, {"Content-Type": "application/json", **extra},
                   b'{"code":"fault","message":"played by the test proxy"}')
        elif too_large:
            out = (413, {"Content-Type": "application/json"},
                   b'{"code":"request too large","message":"body over the limit"}')
        else:
            keep = {k: v for k, v in headers.items()
                    if k.lower() in ("content-type", "content-encoding", "authorization")}
            req = urllib.request.Request(self.upstream + path, data=body, headers=keep)
            try:
                with urllib.request.urlopen(req, timeout=10) as resp:
                    out = (resp.status, {}, resp.read())
            except urllib.error.HTTPError as exc:
                out = (exc.code, {}, exc.read())
        with self._lock:
            self.log.append((time.monotonic(), out[0], len(body)))
        return out

    def start(self) -> FaultProxy:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
