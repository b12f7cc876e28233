"""NATS JetStream through nats-py: the site's durable, replicated `_raw` stream, written in
order by the publisher (`JetStreamSink`) and read by a central collector (`JetStreamFeed`).

Order is kept by the stream itself: a batch goes in as one atomic publish (nats-server 2.12+,
ADR-50: stored whole or not at all) whose first message carries Nats-Expected-Last-Sequence,
so a batch is stored only right after the one before it, never after a gap. Each message's
Nats-Msg-Id is its frame (node.boot.seq). (Not pipelined single publishes: when one of them
is refused the later ones can still land, out of order; and not Nats-Expected-Last-Msg-Id:
on nats-server 2.15.1 a refused one stalls an R3 stream.)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import ssl
import threading
import uuid
from dataclasses import dataclass
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
_ATOMIC_MAX = 1000  # messages per atomic batch (nats-server's limit)
_LOOK_BACK = 64  # messages read back from the stream's end to find where our copy ends
_NATS_ERRORS = (nats.errors.Error, asyncio.TimeoutError, OSError)
_STREAM_EXISTS = 10058  # with other settings than ours


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


class JetStreamSink:
    """Writes `_raw` messages into the stream `stream`, which it creates if missing.

    Runs nats-py on a loop of its own in a daemon thread; the methods are called from the
    publisher's thread. `position()` (needed first, and after any failure: see
    `needs_position`) says which messages the stream ends with, so the publisher resumes
    right after the last of its own.
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
                           max_age=self.max_age_s, duplicate_window=_DUPLICATE_WINDOW_S,
                           allow_atomic=True)
        try:
            await self._js.add_stream(cfg)
        except nats.js.errors.APIError as exc:
            if exc.err_code != _STREAM_EXISTS:
                hint = (" (fewer servers than raw_replicas?)"
                        if "insufficient" in str(exc.description) else "")
                raise PublishError(f"JetStream stream {self.stream}: {exc.description}"
                                   f"{hint}") from None
            info = await self._js.stream_info(self.stream)  # made by IT: keep their settings
            if not info.config.allow_atomic:
                info.config.allow_atomic = True
                await self._js.update_stream(info.config)

    def position(self) -> list[str]:
        """The Nats-Msg-Ids the stream ends with, newest first (at most 64; [] if empty).

        Raises PublishError."""
        return self._call(self._position(), 4 * _ACK_TIMEOUT_S)

    async def _position(self) -> list[str]:
        keys: list[str] = []
        try:
            await self._ensure()
            info = await self._js.stream_info(self.stream)
            self._last_seq = info.state.last_seq
            for seq in range(self._last_seq, max(info.state.first_seq, 1) - 1, -1):
                if len(keys) == _LOOK_BACK:
                    break
                try:
                    msg = await self._js.get_msg(self.stream, seq)
                except nats.js.errors.NotFoundError:
                    continue  # deleted or aged out: the sequence still goes on
                keys.append((msg.headers or {}).get("Nats-Msg-Id", ""))
        except (*_NATS_ERRORS, nats.js.errors.Error) as exc:
            raise PublishError(f"JetStream stream {self.stream}: {_why(exc)}") from None
        self.needs_position = False
        return keys

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
        while pending.done < len(pending.messages):
            chunk = pending.messages[pending.done:pending.done + _ATOMIC_MAX]
            self._last_seq = await self._atomic(chunk)
            pending.done += len(chunk)

    async def _atomic(self, chunk: list[Message]) -> int:
        """One atomic batch right after the stream's last sequence; returns the new last."""
        nc, batch = self._nc, uuid.uuid4().hex
        try:
            inbox = nc.new_inbox()
            sub = await nc.subscribe(inbox, max_msgs=1)
            try:
                for i, m in enumerate(chunk, 1):
                    headers = {"Nats-Batch-Id": batch, "Nats-Batch-Sequence": str(i),
                               "Nats-Msg-Id": m.id}
                    if i == 1:
                        headers["Nats-Expected-Last-Sequence"] = str(self._last_seq)
                    if i == len(chunk):
                        headers["Nats-Batch-Commit"] = "1"
                    await nc.publish(subject(m.topic), m.payload, headers=headers,
                                     reply=inbox if i == len(chunk) else "")
                reply = await sub.next_msg(timeout=_ACK_TIMEOUT_S)
            finally:
                await sub.unsubscribe()
        except _NATS_ERRORS as exc:
            raise PublishError(f"JetStream stream {self.stream}: {_why(exc)} (batch of "
                               f"{len(chunk)} from {chunk[0].id})") from None
        if (reply.headers or {}).get("Status") == "503":
            raise PublishError(f"JetStream stream {self.stream}: no stream leader to answer")
        try:
            answer = json.loads(reply.data)
        except ValueError:
            raise PublishError(f"JetStream stream {self.stream}: a reply that is not "
                               f"JSON: {reply.data[:80]!r}") from None
        if "error" in answer:
            raise PublishError(f"JetStream stream {self.stream} refused a batch: "
                               f"{answer['error'].get('description')}")
        return int(answer["seq"])

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
        except asyncio.TimeoutError:  # nats-py raises its own and asyncio's: nothing new
            return []
        except (*_NATS_ERRORS, nats.js.errors.Error) as exc:
            sub, self._sub = self._sub, None
            try:
                await sub.unsubscribe()
            except (*_NATS_ERRORS, nats.js.errors.Error):
                pass  # the connection is gone with it
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
