"""The collector's TOML configuration: listeners, journal, InfluxDB, node registry, calendar.

`load_config(path)` reads and validates everything up front and raises ConfigError with one
line naming the file and the option, so a service never starts half-configured. The schema
is documented option by option in examples/collector.toml.
"""

from __future__ import annotations

import os
import re
import stat
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from itertools import chain
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from .errors import ConfigError, OEEInputError
from .machine_state import LampMap
from .oee import PM_POLICIES, Break, Calendar, Shift
from .secrets import read_secret
from .uns.settings import check_sources, parse_uns, parse_uns_source

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

__all__ = ["BoardPin", "Config", "InfluxTarget", "Node", "SerialPort", "board_address",
           "load_config", "parse_config"]

DEFAULT_UDP = "0.0.0.0:4210"
DEFAULT_TOKEN_ENV = "LAMPWATCH_INFLUX_TOKEN"
DEFAULT_BOARD = "127.0.0.1:8080"
# A PIN guards what operators write into the journal; with per-address backoff (host/board/
# auth.py) six digits take years to guess from one address.
MIN_PIN_LENGTH = 6
# Options whose value is a secret: an error about them never shows the value.
_SECRET_OPTIONS = frozenset({"key", "token", "operator_pin"})
_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_HOST_NAME = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True)  # a registry may hold 10,000: ~200 B less each
class Node:
    """One registry entry: a node and the machine it watches.

    `lamp_map` is in host/machine_state.py's form ({"red": "STOP", "blink:yellow":
    "STOP:setup", ...}, priority in order); None means its default map.
    """

    node_id: int
    plant: str
    line: str
    machine: str
    key: bytes = field(repr=False)
    ideal_cycle_s: float | None = None
    unit: str = "pcs"
    heartbeat_s: float = 10.0
    lamp_map: Mapping[str, str] | None = None
    # Set by `lampwatch commission` when the node passed its acceptance test (ISO date-time).
    commissioned: str | None = None
    commissioned_by: str | None = None

    @property
    def silence_timeout_s(self) -> float:
        """A node silent this long makes its machine UNKNOWN (3 heartbeat periods)."""
        return 3 * self.heartbeat_s


@dataclass(frozen=True)
class SerialPort:
    """A serial link (device path or pyserial URL such as socket:// or rfc2217://)."""

    port: str
    baud: int = 115200


@dataclass(frozen=True)
class InfluxTarget:
    """Where the forwarder writes; the token is read from `token_file` or `token_env` only."""

    url: str
    org: str
    bucket: str
    token_env: str = DEFAULT_TOKEN_ENV
    token_file: Path | None = None

    def token(self) -> str:
        """The token, read now. Raises ConfigError if it is not set or unreadable."""
        return read_secret("InfluxDB token", self.token_file, self.token_env)

    def describe_token(self) -> str:
        """Where the token comes from and whether it is there: never the token nor its length."""
        where = f"file {self.token_file}" if self.token_file else f"${self.token_env}"
        try:
            self.token()
            return f"******** (set, from {where})"
        except ConfigError:
            return f"MISSING (expected in {where})"


@dataclass(frozen=True)
class BoardPin:
    """Where the Andon board's operator PIN is read from: `pin_file` if set, else `pin_env`.

    Like the InfluxDB token it is never in the config file nor on the command line.
    """

    pin_env: str | None = None
    pin_file: Path | None = None

    def value(self) -> str:
        """The PIN, read now. Raises ConfigError if it is not set, unreadable or shorter
        than MIN_PIN_LENGTH (the message says neither the PIN nor its length)."""
        value = read_secret("board operator PIN", self.pin_file, self.pin_env)
        if len(value) < MIN_PIN_LENGTH:
            where = (f"board operator PIN file {self.pin_file}" if self.pin_file is not None
                     else f"board operator PIN from environment variable {self.pin_env}")
            raise ConfigError(f"{where} is too short: use at least {MIN_PIN_LENGTH} digits")
        return value

    def describe(self) -> str:
        """Where the PIN comes from and whether it is there: never the PIN nor its length."""
        where = f"file {self.pin_file}" if self.pin_file else f"${self.pin_env}"
        try:
            self.value()
            return f"******** (set, from {where})"
        except ConfigError:
            return f"MISSING (expected in {where})"


@dataclass(frozen=True, eq=False)
class Config:
    """A validated collector configuration."""

    path: Path | None
    udp_listen: tuple[str, int] | None
    serial: tuple[SerialPort, ...]
    journal_path: Path
    journal_sync: str
    log_level: str
    influxdb: InfluxTarget | None
    nodes: Mapping[int, Node]
    calendar: Calendar
    heartbeat_s: float = 10.0
    oee_interval_s: float = 60.0
    short_stop_s: float = 300.0
    board_listen: tuple[str, int] | None = None  # the Andon board's HTTP address
    board_pin: BoardPin | None = None  # None: the board is read-only
    # The node registry file (`lampwatch flash` and `commission` write it), if one is named.
    nodes_file: Path | None = None
    board_hosts: tuple[str, ...] = ()  # names the board answers to, besides its listen address
    board_sse_slots: int | None = None  # live board viewers at once; None: from RLIMIT_NOFILE
    # [board] lang: the board's, the shift sheet's and the tables' language (host/i18n)
    board_lang: str = "en"
    # [oee]: how stops and rejects are judged (docs/oee.md)
    startup_window_s: float = 0.0  # NG this soon after a setup / breakdown / PM: startup rejects
    planned_maintenance: str = "availability_loss"  # the PM policy (host/oee.py)
    lamp_change_s: float = 1.0  # all-off gaps shorter than this are part of a lamp change
    # The unified namespace (issue 16, host/uns/settings.py): what this collector publishes
    # ([uns], a UnsConfig or None) and the brokers a central one reads frames from.
    uns: Any = None
    uns_sources: tuple = ()
    retention_days: float = 365.0  # raw frames kept this long, then deleted (host/upkeep.py)

    def key_of(self, node_id: int) -> bytes | None:
        """The node's key, or None for a node not in the registry (protocol.decode lookup)."""
        node = self.nodes.get(node_id)
        return None if node is None else node.key


# --- parsing ----------------------------------------------------------------------------

class _Table:
    """A TOML table being validated: typed getters that name the option in every error."""

    def __init__(self, data: Any, where: str, fail):
        if not isinstance(data, dict):
            fail(where, "must be a table")
        self.data, self.where, self.fail, self.used = data, where, fail, set()

    def _at(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def get(self, key: str, kinds: type | tuple[type, ...], default: Any = ..., what: str = ""):
        self.used.add(key)
        if key not in self.data:
            if default is ...:
                self.fail(self._at(key), "is required")
            return default
        value = self.data[key]
        wrong = isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple)
                                                         else (kinds,))
        if wrong or not isinstance(value, kinds):
            shown = " (in quotes)" if key in _SECRET_OPTIONS else f", not {value!r}"
            self.fail(self._at(key), f"must be {what or _kind_name(kinds)}{shown}")
        return value

    def text(self, key: str, default: Any = ...) -> str:
        value = self.get(key, str, default)
        if isinstance(value, str) and not value.strip() and default is ...:
            self.fail(self._at(key), "must not be empty")
        return value

    def number(self, key: str, default: Any = ..., positive: bool = True) -> float | None:
        value = self.get(key, (int, float), default, "a number")
        if value is None:
            return None
        if positive and not value > 0:
            self.fail(self._at(key), f"must be greater than 0, not {value!r}")
        return float(value)

    def table(self, key: str) -> _Table | None:
        value = self.get(key, dict, None, "a table")
        return None if value is None else _Table(value, self._at(key), self.fail)

    def tables(self, key: str) -> Iterator[_Table]:
        """The array's tables, each made as it is reached: a registry of 10,000 nodes never
        holds 10,000 tables being validated at once (~0.9 KB each, while its parsed TOML
        is alive too: a peak of 19.7 MB instead of 10.7, tests/test_config.py)."""
        value = self.get(key, list, [], "an array of tables")
        where = self._at(key)
        return (_Table(v, f"{where}[{i}]", self.fail) for i, v in enumerate(value))

    def done(self) -> None:
        extra = sorted(set(self.data) - self.used)
        if "operator_pin" in extra:
            self.fail(self._at("operator_pin"), "is not allowed: put the PIN in a file "
                      "(operator_pin_file) or an environment variable (operator_pin_env)")
        if "token" in extra:
            self.fail(self._at("token"), "is not allowed: put the token in a file (token_file) "
                      "or an environment variable (token_env)")
        if extra:
            self.fail(self._at(extra[0]), "is not a known option")


def _kind_name(kinds) -> str:
    names = {str: "a string", int: "an integer", float: "a number", dict: "a table",
             list: "an array", bool: "true or false"}
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def load_config(path: str | os.PathLike, *, problems: list[str] | None = None) -> Config:
    """Read and validate a collector config file. Raises ConfigError (one line).

    With `problems`, what would stop the collector but not the reading of the config (a
    node registry open to others) is appended there instead of raised (`collect --check`
    lists every problem at once)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    return parse_config(data, path, problems=problems)


def parse_config(data: Mapping[str, Any], path: Path | None = None, *,
                 problems: list[str] | None = None) -> Config:
    """Validate an already parsed TOML document; relative paths are relative to `path`.
    `problems`: as in load_config."""
    label = str(path) if path else "config"
    base = path.parent if path else Path.cwd()

    def fail(where: str, msg: str):
        raise ConfigError(f"{label}: {where} {msg}" if where else f"{label}: {msg}")

    root = _Table(dict(data), "", fail)
    col = root.table("collector") or _Table({}, "collector", fail)
    udp = col.get("udp_listen", (str, bool), DEFAULT_UDP, "'host:port', or false")
    udp_listen = None if udp is False or udp == "" else _address(udp, fail)
    if udp is True:
        udp_listen = _address(DEFAULT_UDP, fail)
    journal = base / Path(col.text("journal", "journal.sqlite")).expanduser()
    sync = col.text("journal_sync", "full").lower()
    if sync not in ("full", "normal"):
        fail("collector.journal_sync", f"must be 'full' or 'normal', not {sync!r}")
    level = col.text("log_level", "info").lower()
    if level not in ("debug", "info", "warning", "error"):
        fail("collector.log_level", f"must be debug, info, warning or error, not {level!r}")
    nodes_file = col.text("nodes_file", "")
    heartbeat_s = col.number("heartbeat_s", 10.0)
    retention_days = col.number("retention_days", 365.0)
    col.done()

    serial = []
    for t in root.tables("serial"):
        baud = t.get("baud", int, 115200)
        if baud <= 0:
            fail(f"{t.where}.baud", f"must be a positive integer, not {baud}")
        serial.append(SerialPort(t.text("port"), baud))
        t.done()

    influx = None
    it = root.table("influxdb")
    if it is not None:
        token_file = it.text("token_file", "")
        influx = InfluxTarget(it.text("url"), it.text("org"), it.text("bucket"),
                              it.text("token_env", DEFAULT_TOKEN_ENV),
                              base / Path(token_file).expanduser() if token_file else None)
        if not influx.url.startswith(("http://", "https://")):
            fail("influxdb.url", f"must start with http:// or https://, not {influx.url!r}")
        it.done()

    entries: Iterable[_Table] = root.tables("nodes")
    registry = base / Path(nodes_file).expanduser() if nodes_file else None
    if registry is not None:
        entries = chain(entries, _registry_file(registry, problems))
    nodes: dict[int, Node] = {}
    machines: dict[str, int] = {}
    for t in entries:
        node = _node(t, heartbeat_s)
        if node.node_id in nodes:
            t.fail(t.where, f"node {node.node_id} is in the registry twice")
        if node.machine in machines:
            t.fail(t.where, f"machine {node.machine!r} is already watched by node "
                   f"{machines[node.machine]}")
        nodes[node.node_id] = node
        machines[node.machine] = node.node_id

    uns, uns_sources = _uns(root, base, nodes, fail)
    if uns_sources and "udp_listen" not in col.data:
        udp_listen = None  # a central collector listens to its brokers only
    check_sources(uns_sources, udp_listen is not None, len(serial), fail)

    cal = root.table("calendar")
    calendar = _calendar(cal) if cal is not None else Calendar("UTC")
    ot = root.table("oee") or _Table({}, "oee", fail)
    refresh_s, short_stop_s = ot.number("refresh_s", 60.0), ot.number("short_stop_s", 300.0)
    startup_window_s = ot.number("startup_window_s", 0.0, positive=False)
    if startup_window_s < 0:
        fail("oee.startup_window_s", f"must not be negative, not {startup_window_s:g}")
    lamp_change_s = ot.number("lamp_change_s", 1.0, positive=False)
    if lamp_change_s < 0:
        fail("oee.lamp_change_s", f"must not be negative, not {lamp_change_s:g}")
    pm = ot.text("planned_maintenance", "availability_loss")
    if pm not in PM_POLICIES:
        fail("oee.planned_maintenance", f"must be one of {', '.join(PM_POLICIES)}, not {pm!r}")
    ot.done()
    board_listen, board_pin, hosts, slots, lang = _board(root.table("board"), base, fail)
    root.done()
    return Config(path, udp_listen, tuple(serial), journal, sync, level, influx, nodes,
                  calendar, heartbeat_s, refresh_s, short_stop_s, board_listen, board_pin,
                  registry, hosts, slots, startup_window_s=startup_window_s,
                  planned_maintenance=pm, lamp_change_s=lamp_change_s, uns=uns,
                  uns_sources=uns_sources, retention_days=retention_days, board_lang=lang)


def _uns(root: _Table, base: Path, nodes: Mapping[int, Node], fail) -> tuple[Any, tuple]:
    """[uns] and [[uns_source]] (issue 16), parsed by host/uns/settings.py."""
    t = root.table("uns")
    uns = parse_uns(t, base, nodes.values()) if t is not None else None
    return uns, tuple(parse_uns_source(s, base) for s in root.tables("uns_source"))


# host/i18n.LANGS (tests/test_i18n.py holds them equal; config stays free of babel)
BOARD_LANGS = ("en", "id")


def _board(t: _Table | None, base: Path, fail):
    """[board]: the Andon board's listen address, where its operator PIN comes from, the
    host names it answers to and its live viewer slots."""
    if t is None:
        return None, None, (), None, "en"
    lang = t.text("lang", "en")
    if lang not in BOARD_LANGS:
        fail("board.lang", f"must be one of {', '.join(BOARD_LANGS)}, not {lang!r}")
    listen = t.get("listen", (str, bool), DEFAULT_BOARD, "'host:port', or false")
    address = None
    if listen is True or (listen is not False and listen != ""):
        address = _address(DEFAULT_BOARD if listen is True else listen, fail, "board.listen")
    pin_env, pin_file = t.text("operator_pin_env", ""), t.text("operator_pin_file", "")
    hosts = t.get("hosts", list, [], "an array of host names like ['andon.plant.local']")
    for name in hosts:
        if not isinstance(name, str) or not _HOST_NAME.match(name.lower().rstrip(".")):
            fail("board.hosts", f"must hold host names like 'andon.plant.local' (no scheme, "
                 f"no port), not {name!r}")
    slots = t.get("sse_slots", int, None, "a whole number of live viewers")
    if slots is not None and not 1 <= slots <= 100_000:
        fail("board.sse_slots", f"must be 1 to 100000, not {slots}")
    t.done()
    names = tuple(dict.fromkeys(h.lower().rstrip(".") for h in hosts))
    if not (pin_env or pin_file):
        return address, None, names, slots, lang  # no PIN: the board is read-only
    return address, BoardPin(pin_env or None,
                             base / Path(pin_file).expanduser() if pin_file else None), \
        names, slots, lang


def board_address(text: str) -> tuple[str, int]:
    """A `--board HOST:PORT` argument as (host, port). Raises ConfigError."""
    def fail(where: str, msg: str):
        raise ConfigError(f"{where} {msg}")
    return _address(text, fail, "--board")


def _failer(label: str):
    def fail(where: str, msg: str):
        raise ConfigError(f"{label}: {where} {msg}")
    return fail


def _registry_file(path: Path, problems: list[str] | None = None) -> Iterator[_Table]:
    """Node entries from a separate registry (nodes.toml, as `lampwatch flash` writes it);
    its mode is a problem appended to `problems`, or raised when that is None."""
    try:
        with open(path, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            text = f.read()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the node registry: {exc.strerror or exc}") from None
    if mode & 0o077:
        # Like ssh with a private key: every node's key is in this file.
        msg = (f"{path}: the node registry holds the nodes' keys but is open to group or "
               f"others (mode {stat.S_IMODE(mode):04o}): chmod 600 {path}")
        if problems is None:
            raise ConfigError(msg)
        problems.append(msg)
    try:
        data = tomllib.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    root = _Table(data, "", _failer(str(path)))
    tables = root.tables("nodes")
    root.done()
    return tables


def _address(text: str, fail, where: str = "collector.udp_listen") -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        example = "0.0.0.0:4210" if where == "collector.udp_listen" else DEFAULT_BOARD
        fail(where, f"must be 'host:port' like '{example}', not {text!r}")
    return host, int(port)


def _node(t: _Table, heartbeat_s: float) -> Node:
    fail = t.fail
    node_id = t.get("id", int)
    if not 0 < node_id < 0x10000:
        fail(f"{t.where}.id", f"must be 1..65535, not {node_id}")
    key_hex = t.text("key")
    try:
        key = bytes.fromhex(key_hex)
    except ValueError:
        fail(f"{t.where}.key", "must be hexadecimal")
    if not 16 <= len(key) <= 64:
        fail(f"{t.where}.key", "must be 16 to 64 bytes (32 to 128 hex digits)")
    lamp_map = t.get("lamp_map", dict, None, "a table like { red = \"STOP\", green = \"RUN\" }")
    if lamp_map is not None:
        if not all(isinstance(v, str) for v in lamp_map.values()):
            fail(f"{t.where}.lamp_map", "values must be strings like \"STOP\" or \"STOP:setup\"")
        try:
            LampMap(lamp_map)
        except ConfigError as exc:
            fail(f"{t.where}.lamp_map", f"is invalid: {exc}")
    # interned: a plant's nodes share one string for its plant, line and unit
    node = Node(node_id, sys.intern(t.text("plant")), sys.intern(t.text("line")),
                t.text("machine"), key, t.number("ideal_cycle_s", None),
                sys.intern(t.text("unit", "pcs")),
                t.number("heartbeat_s", heartbeat_s), lamp_map,
                _datetime_text(t, "commissioned"), t.text("commissioned_by", None))
    t.done()
    return node


def _datetime_text(t: _Table, key: str) -> str | None:
    """An optional TOML date-time (or ISO string) kept as ISO text, e.g. `commissioned`."""
    value = t.get(key, (str, datetime), None, "a date-time like 2026-11-23T10:00:00+07:00")
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            t.fail(f"{t.where}.{key}", f"must be a date-time like 2026-11-23T10:00:00+07:00, "
                   f"not {value!r}")
    return None if value is None else value.isoformat()


def _calendar(t: _Table) -> Calendar:
    fail = t.fail
    tz = t.text("time_zone")
    try:
        zone = ZoneInfo(tz)
    except (ValueError, LookupError):
        fail("calendar.time_zone", f"{tz!r} is not a known IANA time zone like 'Asia/Jakarta'")
    shifts = []
    for s in t.tables("shifts"):
        days = s.get("days", list, list(_DAYS), "an array of day names like ['mon', 'tue']")
        if not days or any(not isinstance(d, str) or d.lower()[:3] not in _DAYS for d in days):
            fail(f"{s.where}.days", f"must name days among {', '.join(_DAYS)}, not {days!r}")
        breaks = []
        for b in s.tables("breaks"):
            breaks.append(Break(_wall(b, "start"), _wall(b, "end")))
            b.done()
        shifts.append(Shift(s.text("name"), _wall(s, "start"), _wall(s, "end"),
                            tuple(sorted({_DAYS.index(d.lower()[:3]) for d in days})),
                            tuple(breaks)))
        s.done()
    stops = []
    for p in t.tables("planned_stops"):
        start, end = _instant(p, "start", zone), _instant(p, "end", zone)
        p.text("note", "")
        stops.append((start, end))
        p.done()
    t.done()
    try:
        return Calendar(tz, tuple(shifts), tuple(stops))
    except OEEInputError as exc:
        fail("calendar", f"is invalid: {exc}")


def _wall(t: _Table, key: str) -> time:
    value = t.get(key, (str, time), ..., "a wall time like '06:00'")
    try:
        return value if isinstance(value, time) else time.fromisoformat(value)
    except ValueError:
        t.fail(f"{t.where}.{key}", f"must be a wall time like '06:00', not {value!r}")


def _instant(t: _Table, key: str, zone: ZoneInfo) -> float:
    """A TOML date-time (or ISO string) as epoch seconds; no offset means calendar time."""
    value = t.get(key, (str, datetime, date), ..., "a date-time like 2025-05-01T06:00:00")
    try:
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        elif not isinstance(value, datetime):
            value = datetime.combine(value, time())
    except ValueError:
        t.fail(f"{t.where}.{key}", f"must be a date-time like 2025-05-01T06:00:00, not {value!r}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    return value.timestamp()
