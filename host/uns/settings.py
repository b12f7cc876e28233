"""The `[uns]` and `[[uns_source]]` tables of the collector config (examples/collector.toml).

Parsed by host/config.py through its table reader (`t.text`, `t.get`, `t.number`, `t.done`,
`t.fail`, `t.where`), so every error names the file and the option in one line. Passwords
come from an environment variable or a file, never from the config text.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError
from ..secrets import read_secret
from .topics import level_problem

__all__ = ["Auth", "Broker", "UnsConfig", "UnsSourceConfig", "check", "check_sources",
           "describe", "parse_uns", "parse_uns_source", "stream_name"]

DEFAULT_ROOT = "lampwatch"
_PORTS = {"mqtt": 1883, "mqtts": 8883, "nats": 4222, "tls": 4222}
_STREAM_OK = re.compile(r"^[A-Za-z0-9_-]{1,200}$")


@dataclass(frozen=True)
class Broker:
    """Where a broker is: `mqtt`/`mqtts` (one host) or `nats`/`tls` (one host or more)."""

    url: str
    scheme: str
    servers: tuple[tuple[str, int], ...]

    @property
    def tls(self) -> bool:
        return self.scheme in ("mqtts", "tls")

    @property
    def is_nats(self) -> bool:
        return self.scheme in ("nats", "tls")

    def urls(self) -> list[str]:
        """nats-py's server list (`nats://host:port` or `tls://host:port`)."""
        return [f"{self.scheme}://{_host(h)}:{p}" for h, p in self.servers]


@dataclass(frozen=True)
class Auth:
    """Who we are to the broker and how the link is protected (TLS files)."""

    username: str | None = None
    password_env: str | None = None
    password_file: Path | None = None
    creds_file: Path | None = None  # NATS: a .creds file (user JWT and nkey seed)
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    def password(self) -> str | None:
        """The password, read now (None if none is configured). Raises ConfigError."""
        if self.password_file is None and self.password_env is None:
            return None
        return read_secret("UNS password", self.password_file, self.password_env)

    def describe(self) -> str:
        """Who, and where the password comes from, never the password itself."""
        who = f"user {self.username!r}" if self.username else "no user"
        if self.creds_file is not None:
            who += f", NATS credentials {self.creds_file}"
        if self.password_file is None and self.password_env is None:
            return who
        where = f"file {self.password_file}" if self.password_file else f"${self.password_env}"
        try:
            return f"{who}, password {'*' * 8} ({len(self.password() or '')} chars, from {where})"
        except ConfigError:
            return f"{who}, password MISSING (expected in {where})"

    def check(self) -> None:
        """Read the password and check the files exist, so a service fails at start."""
        self.password()
        for f in (self.creds_file, self.ca_file, self.cert_file, self.key_file):
            if f is not None and not f.is_file():
                raise ConfigError(f"UNS: file {f} not found")


@dataclass(frozen=True)
class UnsConfig:
    """[uns]: what this collector publishes, and where."""

    broker: Broker
    client_id: str
    topic_root: str = DEFAULT_ROOT
    raw: bool = True
    raw_broker: Broker | None = None  # NATS: `_raw` into a JetStream stream
    raw_stream: str = ""
    raw_replicas: int = 3
    raw_max_age_days: float = 30.0
    batch: int = 500
    retry_max_s: float = 30.0
    auth: Auth = field(default_factory=Auth)


@dataclass(frozen=True)
class UnsSourceConfig:
    """[[uns_source]]: a broker this (central) collector takes raw frames from."""

    broker: Broker
    name: str  # the consumer (NATS durable) or the MQTT client id: our place in the feed
    topic_root: str = DEFAULT_ROOT
    plant: str = "+"
    stream: str = ""
    batch: int = 500
    auth: Auth = field(default_factory=Auth)

    @property
    def label(self) -> str:
        """How frames and rejects from this feed are named (`uns:<stream or plant>`)."""
        return f"uns:{self.stream or self.plant}"


def _host(h: str) -> str:
    return f"[{h}]" if ":" in h else h


def stream_name(root: str, plants) -> str:
    """The default JetStream stream of a site collector: `<root>_raw_<plant>[_<plant>...]`."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", "_".join([root, "raw", *sorted(plants)]))[:200]


def _broker(t, key: str, schemes: tuple[str, ...]) -> Broker:
    text = t.text(key)
    where = f"{t.where}.{key}"
    parts = [p.strip() for p in text.split(",") if p.strip()]
    servers, scheme = [], None
    for part in parts:
        try:
            u = urlsplit(part)
            port = u.port
        except ValueError as exc:
            t.fail(where, f"is not a valid URL ({exc}): {part!r}")
        if u.scheme not in schemes:
            t.fail(where, f"must start with {' or '.join(s + '://' for s in schemes)}, "
                   f"not {part!r}")
        if u.username or u.password:
            t.fail(where, "must not hold credentials: set username and password_env or "
                   "password_file")
        if not u.hostname or u.path not in ("", "/") or u.query:
            t.fail(where, f"must be scheme://host:port, not {part!r}")
        if scheme is not None and u.scheme != scheme:
            t.fail(where, "must use one scheme for all its servers")
        scheme = u.scheme
        servers.append((u.hostname, port or _PORTS[u.scheme]))
    if not servers:
        t.fail(where, "must name a server")
    if scheme in ("mqtt", "mqtts") and len(servers) > 1:
        t.fail(where, "must name one MQTT broker")
    return Broker(text, scheme, tuple(servers))


def _auth(t, base: Path) -> Auth:
    def path(key: str) -> Path | None:
        value = t.text(key, "")
        return base / Path(value).expanduser() if value else None

    for secret in ("password", "token"):
        if secret in t.data:
            t.fail(f"{t.where}.{secret}", "is not allowed: put it in a file (password_file) or "
                   "an environment variable (password_env)")
    return Auth(t.text("username", "") or None, t.text("password_env", "") or None,
                path("password_file"), path("creds_file"), path("ca_file"), path("cert_file"),
                path("key_file"))


def _root(t) -> str:
    root = t.text("topic_root", DEFAULT_ROOT)
    for level in root.split("/"):
        problem = level_problem(level, nats=True)
        if problem:
            t.fail(f"{t.where}.topic_root", f"{problem}: {root!r}")
    return root


def parse_uns(t, base: Path, nodes) -> UnsConfig:
    """[uns] as a UnsConfig; `nodes` (the registry) must have names that fit in topics."""
    broker = _broker(t, "url", ("mqtt", "mqtts"))
    raw_broker = _broker(t, "raw_url", ("nats", "tls")) if "raw_url" in t.data else None
    root = _root(t)
    for n in nodes:
        for what in ("plant", "line", "machine"):
            # The plant is in the `_raw` subject on NATS, so it must be a subject token.
            problem = level_problem(getattr(n, what), nats=what == "plant")
            if problem:
                t.fail(t.where, f"needs topic-safe names: node {n.node_id}'s {what} "
                       f"{getattr(n, what)!r} {problem}")
    stream = t.text("raw_stream", "") or stream_name(root, {n.plant for n in nodes})
    if not _STREAM_OK.match(stream):
        t.fail(f"{t.where}.raw_stream", f"may hold only letters, digits, '-' and '_': {stream!r}")
    replicas = t.get("raw_replicas", int, 3)
    if not 1 <= replicas <= 5:
        t.fail(f"{t.where}.raw_replicas", f"must be 1 to 5, not {replicas}")
    batch = t.get("batch", int, 500)
    if not 1 <= batch <= 10_000:
        t.fail(f"{t.where}.batch", f"must be 1 to 10000, not {batch}")
    cfg = UnsConfig(broker, t.text("client_id", "") or f"lampwatch-{socket.gethostname()}",
                    root, t.get("raw", bool, True), raw_broker, stream, replicas,
                    t.number("raw_max_age_days", 30.0), batch, t.number("retry_max_s", 30.0),
                    _auth(t, base))
    t.done()
    return cfg


def parse_uns_source(t, base: Path) -> UnsSourceConfig:
    """One [[uns_source]] table."""
    broker = _broker(t, "url", ("mqtt", "mqtts", "nats", "tls"))
    root = _root(t)
    plant = t.text("plant", "+")
    if plant != "+" and level_problem(plant, nats=True):
        t.fail(f"{t.where}.plant", f"{level_problem(plant, nats=True)}: {plant!r}")
    stream = t.text("stream", "")
    if broker.is_nats and not stream:
        t.fail(f"{t.where}.stream", "is required with a nats:// url (the site's raw_stream)")
    if stream and not _STREAM_OK.match(stream):
        t.fail(f"{t.where}.stream", f"may hold only letters, digits, '-' and '_': {stream!r}")
    name = t.text("name", "") or f"lampwatch-central-{socket.gethostname()}"
    if not _STREAM_OK.match(name):
        t.fail(f"{t.where}.name", f"may hold only letters, digits, '-' and '_': {name!r}")
    batch = t.get("batch", int, 500)
    if not 1 <= batch <= 10_000:
        t.fail(f"{t.where}.batch", f"must be 1 to 10000, not {batch}")
    cfg = UnsSourceConfig(broker, name, root, plant, stream, batch, _auth(t, base))
    t.done()
    return cfg


def check_sources(sources: list[Any], udp_given: bool, serial: int, fail) -> None:
    """A collector fed by brokers runs on its sites' time: no UDP or serial beside them."""
    if sources and (udp_given or serial):
        fail("uns_source", "cannot be combined with collector.udp_listen or [[serial]]: a "
             "central collector runs on the time its sites received the frames; set "
             "udp_listen = false and remove [[serial]], or run a second collector")
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        fail("uns_source", "names must differ (each is a place in a feed)")


def describe(cfg: Any) -> list[str]:
    """What a collector Config publishes and reads through brokers, one line each, never a
    secret (for `lampwatch collect --check`)."""
    lines = []
    uns = getattr(cfg, "uns", None)
    if uns is not None:
        raw = ("off" if not uns.raw else
               f"JetStream stream {uns.raw_stream} (R{uns.raw_replicas}) on {uns.raw_broker.url}"
               if uns.raw_broker is not None else "on MQTT")
        lines.append(f"uns: publish to {uns.broker.url} under {uns.topic_root}/ as "
                     f"{uns.client_id!r}; raw frames {raw}; {uns.auth.describe()}")
    for s in getattr(cfg, "uns_sources", ()):
        where = f"stream {s.stream}" if s.stream else f"{s.topic_root}/{s.plant}/_raw/+"
        lines.append(f"uns_source: frames from {s.broker.url} ({where}) as {s.name!r}; "
                     f"{s.auth.describe()}")
    return lines


def check(cfg: Any) -> None:
    """Read every UNS password and check the files, so a service fails at its start."""
    auths = [s.auth for s in getattr(cfg, "uns_sources", ())]
    if getattr(cfg, "uns", None) is not None:
        auths.append(cfg.uns.auth)
    for auth in auths:
        auth.check()
