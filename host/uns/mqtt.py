"""MQTT through paho-mqtt 2.x: the publisher's sink (acknowledged QoS 1) and a raw-frame feed.

paho's own network thread owns the socket, reconnects with capped backoff and, after a
reconnect, resends every QoS 1 message the broker had not acknowledged: so a batch handed to
`MqttSink.send` is never dropped and never re-sent by us while this process lives. MQTT
3.1.1, as both Debian's mosquitto and NATS's MQTT listener speak it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from .settings import Auth, Broker
from .topics import Message

__all__ = ["MqttFeed", "MqttSink", "make_client"]

log = logging.getLogger(__name__)

_KEEPALIVE_S = 30
_INFLIGHT = 1000  # unacknowledged QoS 1 messages on the wire: a whole batch (NATS takes 1024)


def make_client(broker: Broker, auth: Auth, client_id: str, *, clean_session: bool,
                retry_max_s: float = 30.0, manual_ack: bool = False) -> paho.Client:
    """A paho client for `broker` with credentials and TLS set, not yet connected.

    Raises ConfigError if the password is configured but missing.
    """
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                         clean_session=clean_session, protocol=paho.MQTTv311,
                         manual_ack=manual_ack)
    if auth.username:
        client.username_pw_set(auth.username, auth.password())
    if broker.tls:
        client.tls_set(ca_certs=str(auth.ca_file) if auth.ca_file else None,
                       certfile=str(auth.cert_file) if auth.cert_file else None,
                       keyfile=str(auth.key_file) if auth.key_file else None)
    client.reconnect_delay_set(1, max(1, int(retry_max_s)))
    client.max_inflight_messages_set(_INFLIGHT)
    return client


class _Link:
    """Connection state and its log lines, shared by the sink and the feed."""

    def __init__(self, broker: Broker, what: str):
        self.broker, self.what = broker, what
        self.connected = threading.Event()
        self.down_since: float | None = time.monotonic()
        self.connects = 0
        self.closing = False  # our own disconnect: not worth a warning
        self._last_error = ""

    def on_connect(self, client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            text = str(reason)
            if text != self._last_error:  # a wrong password must not flood the log
                log.error("%s: MQTT broker %s refused the connection: %s", self.what,
                          self.broker.url, text)
                self._last_error = text
            return
        self._last_error = ""
        self.connects += 1
        down = time.monotonic() - self.down_since if self.down_since is not None else 0.0
        if self.connects == 1:
            log.info("%s: connected to MQTT broker %s", self.what, self.broker.url)
        else:
            log.info("%s: connected to MQTT broker %s again after %.1f s", self.what,
                     self.broker.url, down)
        self.down_since = None
        self.connected.set()

    def on_disconnect(self, client, userdata, flags, reason, properties) -> None:
        if self.connected.is_set() and not self.closing:
            log.warning("%s: lost MQTT broker %s (%s); retrying", self.what, self.broker.url,
                        reason)
            self.down_since = time.monotonic()
        self.connected.clear()


class MqttSink:
    """Publishes message batches at QoS 1 and says when the broker acknowledged all of them.

    One batch is outstanding at a time (the publisher waits), so memory is bounded while the
    broker is away. Args: see make_client; `what` names it in log lines.
    """

    needs_position = False  # the broker keeps no order we could resume from

    def __init__(self, broker: Broker, auth: Auth, client_id: str, *, retry_max_s: float = 30.0,
                 what: str = "UNS publisher"):
        self._client = make_client(broker, auth, client_id, clean_session=True,
                                   retry_max_s=retry_max_s)
        self.link = _Link(broker, what)
        self._client.on_connect = self.link.on_connect
        self._client.on_disconnect = self.link.on_disconnect
        self._client.on_publish = self._on_publish
        self._acked: set[int] = set()
        self._cond = threading.Condition()
        host, port = broker.servers[0]
        self._client.connect_async(host, port, keepalive=_KEEPALIVE_S)
        self._client.loop_start()

    def _on_publish(self, client, userdata, mid, reason, properties) -> None:
        with self._cond:
            self._acked.add(mid)
            self._cond.notify_all()

    def position(self) -> list[str]:
        return []

    def send(self, messages: list[Message]) -> set[int]:
        """Queue a batch in order (sent now, or as soon as the broker is back)."""
        return {self._client.publish(m.topic, m.payload, qos=1, retain=m.retain).mid
                for m in messages}

    def wait(self, pending: set[int], timeout_s: float) -> bool:
        """True once the broker acknowledged every message of `pending` (which shrinks)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                done = pending & self._acked
                self._acked -= done
                pending -= done
                left = deadline - time.monotonic()
                if not pending or left <= 0:
                    return not pending
                self._cond.wait(left)

    def close(self) -> None:
        self.link.closing = True
        self._client.disconnect()
        self._client.loop_stop()


class MqttFeed:
    """Raw frames from an MQTT broker: a persistent session (QoS 1), acknowledged by us.

    `deliver(payloads)` runs on the caller's event loop and returns True once the batch is
    safely in the journal; only then are its messages acknowledged. On False the batch is
    kept and delivered again a second later, before anything newer. The session lives under
    `client_id` while we are away, so the broker queues what arrives meanwhile (mosquitto:
    `persistence true`, see docs/uns.md).
    """

    def __init__(self, broker: Broker, auth: Auth, client_id: str, topic: str,
                 deliver: Callable[[list[bytes]], bool], loop: Any, *,
                 what: str = "UNS source"):
        self.topic, self._deliver, self._loop = topic, deliver, loop
        self._client = make_client(broker, auth, client_id, clean_session=False,
                                   manual_ack=True)
        self.link = _Link(broker, what)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self.link.on_disconnect
        self._client.on_message = self._on_message
        self._inbox: list[tuple[int, bytes]] = []
        self._held: list[tuple[int, bytes]] = []  # a batch the journal did not take (loop only)
        self._lock = threading.Lock()
        self._scheduled = False
        self._broker = broker

    def start(self) -> None:
        host, port = self._broker.servers[0]
        self._client.connect_async(host, port, keepalive=_KEEPALIVE_S)
        self._client.loop_start()

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        self.link.on_connect(client, userdata, flags, reason, properties)
        if not reason.is_failure:
            # Every time: a broker that lost our session (or never had it) needs it again.
            client.subscribe(self.topic, qos=1)

    def _on_message(self, client, userdata, msg) -> None:
        with self._lock:
            self._inbox.append((msg.mid, msg.payload))
            if self._scheduled:
                return
            self._scheduled = True
        try:
            self._loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # the loop is closed: we are stopping, the broker resends
            pass

    def _drain(self) -> None:
        with self._lock:
            batch, self._inbox, self._scheduled = self._held + self._inbox, [], False
        self._held = []
        if not batch:
            return
        if self._deliver([payload for _, payload in batch]):
            for mid, _ in batch:
                self._client.ack(mid, 1)
            return
        self._held = batch
        self._loop.call_later(1.0, self._retry)

    def _retry(self) -> None:
        with self._lock:
            if self._scheduled:
                return
            self._scheduled = True
        self._drain()

    def stop(self) -> None:
        self.link.closing = True
        self._client.disconnect()
        self._client.loop_stop()
