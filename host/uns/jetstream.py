"""NATS JetStream through nats-py: the site's durable, replicated `_raw` stream, written in
order by the publisher (`JetStreamSink`) and read by a central collector (`JetStreamFeed`).

Order is kept by the stream itself: message i of a pipelined batch carries
Nats-Expected-Last-Sequence = (stream's last sequence) + i, so once one is refused (a leader
election, a node down) every later one is refused too and nothing is stored out of order;
Nats-Msg-Id (node.boot.seq) makes a resent copy a no-op within the duplicate window. (Not
Nats-Expected-Last-Msg-Id: on nats-server 2.15.1 a refused one stalls an R3 stream.)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import ssl
import threading
from dataclasses import dataclass, field
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamConfig

from .settings import Auth, Broker
from .sinks import PublishError
from .topics import Message, subject

__all__ = ["JetStreamFeed", "JetStreamSink", "connect"]

log = logging.getLogger(__name__)

_ACK_TIMEOUT_S = 5.0
_DUPLICATE_WINDOW_S = 120.0
_NATS_ERRORS = (nats.errors.Error, asyncio.TimeoutError, OSError)
_WRONG_LAST_SEQUENCE = 10071
_STREAM_EXISTS = 10058  # with other settings than ours: use it as it is


def ssl_context(auth: Auth) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(auth.ca_file) if auth.ca_file else None)
    if auth.cert_file:
        ctx.load_cert_chain(str(auth.cert_file), str(auth.key_file) if auth.key_file else None)
    return ctx


async def connect(broker: Broker, auth: Auth, name: str, what: str) -> Any:
    """A nats-py connection that reconnects forever (to any of the servers), logged once per
    change. Raises PublishError if no server answers now."""
    state: dict[str, Any] = {"down": False, "nc": None}

    async def disconnected():
        if state["nc"] is not None and state["nc"].is_closed:
            return  # our own close
        if not state["down"]:
            log.warning("%s: lost NATS %s; reconnecting", what, broker.url)
            state["down"] = True

    async def reconnected():
        log.info("%s: connected to NATS again (%s)", what, nc.connected_url.netloc)
        state["down"] = False

    async def error(exc):
        log.debug("%s: NATS: %s", what, exc)

    kwargs: dict[str, Any] = {}
    if auth.username:
        kwargs.update(user=auth.username, password=auth.password())
    if auth.creds_file:
        kwargs["user_credentials"] = str(auth.creds_file)
    if broker.tls:
        kwargs["tls"] = ssl_context(auth)
    try:
        nc = await nats.connect(broker.urls(), name=name, allow_reconnect=True,
                                max_reconnect_attempts=-1, reconnect_time_wait=1,
                                connect_timeout=2, error_cb=error,
                                disconnected_cb=disconnected, reconnected_cb=reconnected,
                                **kwargs)
    except (*_NATS_ERRORS, ssl.SSLError) as exc:
        raise PublishError(f"NATS {broker.url}: {_why(exc)}") from None
    state["nc"] = nc
    log.info("%s: connected to NATS %s", what, nc.connected_url.netloc)
    return nc


def _why(exc: BaseException) -> str:
    """A nats-py error as a short phrase (their str() is often a repr of empty fields)."""
    desc = getattr(exc, "description", None)
    name = type(exc).__name__.removesuffix("Error") or type(exc).__name__
    if desc:
        return str(desc)
    text = str(exc).removeprefix("nats: ")
    return name if not text or "code=None" in text else f"{name}: {text}"


@dataclass
class _Pending:
    messages: list[Message]
    done: int = 0
    futures: list = field(default_factory=list)


class JetStreamSink:
    """Writes `_raw` messages into the stream `stream`, which it creates if missing.

    Runs nats-py on a loop of its own in a daemon thread; the methods are called from the
    publisher's thread. `position()` (needed first, and after any failure: see
    `needs_position`) says which message the stream ends with, so the publisher resumes
    right after it.
    """

    def __init__(self, broker: Broker, auth: Auth, stream: str, subjects: list[str], *,
                 replicas: int = 3, max_age_s: float = 30 * 86400.0, name: str = "lampwatch",
                 what: str = "UNS raw publisher"):
        self.broker, self.auth, self.stream, self.subjects = broker, auth, stream, subjects
        self.replicas, self.max_age_s, self.name, self.what = replicas, max_age_s, name, what
        self.needs_position = True
        self._nc: Any = None
        self._js: Any = None
        self._last_seq = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="uns-nats",
                                        daemon=True)
        self._thread.start()

    def _call(self, coro, timeout_s: float):
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return fut.result(timeout_s)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise PublishError(f"NATS {self.broker.url}: no answer in {timeout_s:.0f} s") from None

    async def _ensure(self) -> None:
        if self._nc is None or self._nc.is_closed:
            self._nc = await connect(self.broker, self.auth, self.name, self.what)
            self._js = self._nc.jetstream(timeout=_ACK_TIMEOUT_S)
        cfg = StreamConfig(name=self.stream, subjects=self.subjects, num_replicas=self.replicas,
                           max_age=self.max_age_s, duplicate_window=_DUPLICATE_WINDOW_S)
        try:
            await self._js.add_stream(cfg)
        except nats.js.errors.APIError as exc:
            if exc.err_code != _STREAM_EXISTS:
                hint = (" (fewer servers than raw_replicas?)"
                        if "insufficient" in str(exc.description) else "")
                raise PublishError(f"JetStream stream {self.stream}: {exc.description}"
                                   f"{hint}") from None

    def position(self) -> str | None:
        """The Nats-Msg-Id of the stream's last message (None: empty). Raises PublishError."""
        return self._call(self._position(), 3 * _ACK_TIMEOUT_S)

    async def _position(self) -> str | None:
        try:
            await self._ensure()
            info = await self._js.stream_info(self.stream)
            self._last_seq = info.state.last_seq
            key = None
            if self._last_seq:
                try:
                    msg = await self._js.get_msg(self.stream, self._last_seq)
                    key = (msg.headers or {}).get("Nats-Msg-Id")
                except nats.js.errors.NotFoundError:
                    pass  # aged out: the sequence still goes on from last_seq
        except (*_NATS_ERRORS, nats.js.errors.Error) as exc:
            raise PublishError(f"JetStream stream {self.stream}: {_why(exc)}") from None
        self.needs_position = False
        return key

    def send(self, messages: list[Message]) -> _Pending:
        return _Pending(messages)

    def wait(self, pending: _Pending, timeout_s: float) -> bool:
        """Store the batch in order; True when all are stored. Raises PublishError (then
        `needs_position` is set: ask where the stream ends before the next batch)."""
        try:
            self._call(self._publish(pending), 2 * _ACK_TIMEOUT_S)
        except PublishError:
            self.needs_position = True
            raise
        return True

    async def _publish(self, pending: _Pending) -> None:
        js, base = self._js, self._last_seq
        todo = pending.messages[pending.done:]
        futures: list = []
        try:
            for i, m in enumerate(todo):
                futures.append(await js.publish_async(
                    subject(m.topic), m.payload,
                    headers={"Nats-Msg-Id": m.id, "Nats-Expected-Last-Sequence": str(base + i)}))
            done, _ = await asyncio.wait(futures, timeout=_ACK_TIMEOUT_S)
            for m, fut in zip(todo, futures):
                if fut not in done:
                    raise PublishError(f"JetStream stream {self.stream}: no acknowledgement "
                                       f"of {m.id} in {_ACK_TIMEOUT_S:.0f} s")
                ack = fut.result()
                self._last_seq = max(self._last_seq, ack.seq)
                pending.done += 1
        except nats.js.errors.APIError as exc:
            why = ("the stream moved on without us" if exc.err_code == _WRONG_LAST_SEQUENCE
                   else exc.description)
            raise PublishError(f"JetStream stream {self.stream} refused a message: {why}"
                               ) from None
        except _NATS_ERRORS as exc:
            raise PublishError(f"JetStream stream {self.stream}: {_why(exc)}") from None
        finally:
            for fut in futures:
                if not fut.done():
                    fut.cancel()
                elif not fut.cancelled():
                    fut.exception()  # retrieved: no "never retrieved" warning

    def close(self) -> None:
        async def close():
            if self._nc is not None and not self._nc.is_closed:
                await self._nc.close()
        try:
            self._call(close(), 5.0)
        except PublishError:
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5.0)


class JetStreamFeed:
    """A durable pull consumer `name` on a site's stream: raw frames in stream order.

    Acknowledged with AckAll after each batch is in the journal; what was not acknowledged
    comes again (after `ack_wait`, or to the next run under the same name).
    """

    def __init__(self, broker: Broker, auth: Auth, stream: str, name: str, filter_subject: str,
                 *, what: str = "UNS source"):
        self.broker, self.auth, self.stream, self.name = broker, auth, stream, name
        self.filter_subject, self.what = filter_subject, what
        self._nc: Any = None
        self._sub: Any = None

    async def open(self) -> None:
        """Connect and bind the consumer (created on first use). Raises PublishError."""
        if self._nc is None or self._nc.is_closed:
            self._nc = await connect(self.broker, self.auth, self.name, self.what)
        js = self._nc.jetstream(timeout=_ACK_TIMEOUT_S)
        cfg = ConsumerConfig(durable_name=self.name, ack_policy=AckPolicy.ALL,
                             deliver_policy=DeliverPolicy.ALL, ack_wait=60.0,
                             max_ack_pending=20_000)
        try:
            self._sub = await js.pull_subscribe(self.filter_subject, durable=self.name,
                                                stream=self.stream, config=cfg)
        except (*_NATS_ERRORS, nats.js.errors.Error) as exc:
            raise PublishError(f"JetStream stream {self.stream}, consumer {self.name}: "
                               f"{_why(exc)}") from None

    async def fetch(self, batch: int, timeout_s: float) -> list:
        """Up to `batch` messages ([] after timeout_s with none). Raises PublishError."""
        if self._sub is None:
            await self.open()
        try:
            return await self._sub.fetch(batch, timeout=timeout_s)
        except nats.errors.TimeoutError:
            return []
        except (*_NATS_ERRORS, nats.js.errors.Error) as exc:
            self._sub = None
            raise PublishError(f"JetStream stream {self.stream}: {_why(exc)}") from None

    async def ack(self, msg: Any) -> None:
        """Acknowledge `msg` and everything before it (AckAll); a lost ack means a resend."""
        try:
            await msg.ack_sync(timeout=_ACK_TIMEOUT_S)
        except (*_NATS_ERRORS, nats.js.errors.Error) as exc:
            log.debug("%s: ack not confirmed (the stream will resend): %s", self.what, exc)

    async def close(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            await self._nc.close()
        self._nc = self._sub = None
