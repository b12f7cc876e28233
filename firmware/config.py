# config: read and validate the node's config.json; every problem is one console line.
import json

LAMP_NAMES = ("green", "yellow", "red", "blue", "white")
COUNT_NAMES = ("good", "ng")
# ESP32 GPIOs that can take an input and are safe to use (no flash pins 6-11).
_GPIO_OK = (0, 1, 2, 3, 4, 5, 12, 13, 14, 15, 16, 17, 18, 19, 21, 22, 23, 25, 26, 27,
            32, 33, 34, 35, 36, 37, 38, 39)
_BAUDS = (9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)

# name: (default, min, max); times in ms
_NUMBERS = {
    "heartbeat_ms": (5000, 1000, 6000000),
    "health_ms": (60000, 5000, 86400000),
    "poll_ms": (5, 1, 50),
    "wdt_ms": (8000, 2000, 60000),
    "min_pulse_ms": (5, 0, 1000),
    "max_rate_hz": (50, 0.1, 400),
    "flicker_gap_ms": (16, 1, 200),
    "glitch_ms": (20, 1, 1000),
    "max_phase_ms": (1500, 100, 10000),
    "unacked_max": (48, 4, 256),
    "retry_ms": (1000, 100, 60000),
}


def _num(cfg, key, problems, out):
    default, lo, hi = _NUMBERS[key]
    v = cfg.get(key, default)
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not lo <= v <= hi:
        problems.append(f"{key} must be a number from {lo} to {hi} (got {v!r})")
        v = default
    out[key] = v


def _pins(cfg, section, names, problems, used):
    out = []
    sec = cfg.get(section, {})
    if not isinstance(sec, dict):
        problems.append(f"{section} must be an object of {{name: {{pin, active_low}}}}")
        return out
    for name in sec:
        if name not in names:
            choices = ", ".join(names)
            problems.append(f"{section}.{name}: unknown input (use {choices})")
            continue
        d = sec[name]
        if isinstance(d, int) and not isinstance(d, bool):
            d = {"pin": d}
        if not isinstance(d, dict):
            problems.append(f"{section}.{name} must be {{\"pin\": N, \"active_low\": true}}")
            continue
        pin = d.get("pin")
        if pin not in _GPIO_OK or isinstance(pin, bool):
            problems.append(f"{section}.{name}.pin: {pin!r} is not a usable ESP32 input GPIO")
            continue
        if pin in used:
            problems.append(f"{section}.{name}.pin: GPIO {pin} is already used by {used[pin]}")
            continue
        low = d.get("active_low", True)
        if not isinstance(low, bool):
            problems.append(f"{section}.{name}.active_low must be true or false")
            continue
        used[pin] = section + "." + name
        out.append((names.index(name), pin, low))
    out.sort()
    return out


def _host_ok(host):
    if len(host) > 253:
        return False
    for label in host.split("."):
        if not 0 < len(label) < 64 or label[0] == "-" or label[-1] == "-":
            return False
        for ch in label:
            if not (ch.isalpha() or ch.isdigit() or ch == "-"):
                return False
    return True


def _serial(sec, problems, used):
    """The frame link's UART: (id, tx GPIO, rx GPIO, baud). UART0 (GPIO 1 / 3) is the REPL
    console and stays so; its pins are refused."""
    if not isinstance(sec, dict):
        problems.append("serial must be {\"uart\": 2, \"tx\": 17, \"rx\": 16, \"baud\": 115200}")
        sec = {}
    uart, tx, rx, baud = sec.get("uart", 2), sec.get("tx", 17), sec.get("rx", 16), \
        sec.get("baud", 115200)
    if uart not in (1, 2) or isinstance(uart, bool):
        problems.append(f"serial.uart must be 1 or 2 (UART0 is the console; got {uart!r})")
    for name, pin in (("tx", tx), ("rx", rx)):
        if pin not in _GPIO_OK or isinstance(pin, bool) or pin in (1, 3) \
                or (name == "tx" and pin >= 34):
            problems.append(f"serial.{name}: {pin!r} is not a usable ESP32 GPIO for a UART "
                            f"{name.upper()} (not 1 / 3, the console; TX not 34-39)")
        elif pin in used:
            problems.append(f"serial.{name}: GPIO {pin} is already used by {used[pin]}")
        else:
            used[pin] = "serial." + name
    if baud not in _BAUDS:
        problems.append(f"serial.baud must be one of {', '.join(map(str, _BAUDS))} (got {baud!r})")
    return uart, tx, rx, baud


def parse(text):
    """Validate config.json text. Returns (config dict, list of problems); the node refuses
    to run unless the list is empty."""
    problems = []
    try:
        cfg = json.loads(text)
    except ValueError:
        return None, ["config.json is not valid JSON"]
    if not isinstance(cfg, dict):
        return None, ["config.json must hold one JSON object"]
    out = {}
    node_id = cfg.get("node_id")
    if not isinstance(node_id, int) or isinstance(node_id, bool) or not 0 < node_id < 65536:
        problems.append(f"node_id must be an integer 1..65535 (got {node_id!r})")
    out["node_id"] = node_id
    key = cfg.get("key", "")
    try:
        kb = bytes.fromhex(key) if isinstance(key, str) else b""
    except ValueError:
        kb = b""
    if len(kb) not in (16, 32):
        problems.append("key must be 32 or 64 hex digits (a 16- or 32-byte key)")
    out["key"] = kb
    transport = cfg.get("transport", "udp")
    if transport not in ("udp", "serial"):
        problems.append(f"transport must be \"udp\" or \"serial\" (got {transport!r})")
    out["transport"] = transport
    if transport == "udp":
        wifi = cfg.get("wifi")
        if not isinstance(wifi, dict) or not isinstance(wifi.get("ssid"), str) \
                or not wifi.get("ssid"):
            problems.append("wifi.ssid is required for the udp transport")
            wifi = {}
        elif not isinstance(wifi.get("password", ""), str):
            problems.append("wifi.password must be a string")
        out["wifi"] = (wifi.get("ssid", ""), wifi.get("password", ""))
        col = cfg.get("collector")
        if not isinstance(col, dict) or not isinstance(col.get("host"), str) \
                or not col.get("host"):
            problems.append("collector.host is required for the udp transport")
            col = {}
        host = col.get("host", "")
        if host and not _host_ok(host):
            problems.append(f"collector.host: {host!r} is neither an IPv4 address nor a host name")
        port = col.get("port", 4210)
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            problems.append(f"collector.port must be 1..65535 (got {port!r})")
            port = 4210
        out["collector"] = (col.get("host", ""), port)
    used = {}
    out["serial"] = _serial(cfg.get("serial", {}), problems, used if transport == "serial" else {})
    out["lamps"] = _pins(cfg, "lamps", LAMP_NAMES, problems, used)
    out["counts"] = _pins(cfg, "counts", COUNT_NAMES, problems, used)
    if not out["lamps"] and not out["counts"]:
        problems.append("no inputs: configure at least one of lamps / counts")
    for k in _NUMBERS:
        _num(cfg, k, problems, out)
    if not out["flicker_gap_ms"] <= out["glitch_ms"] < out["max_phase_ms"]:
        problems.append("need flicker_gap_ms <= glitch_ms < max_phase_ms")
    if out["heartbeat_ms"] % 100:
        problems.append("heartbeat_ms must be a multiple of 100")
    counter = cfg.get("counter", "auto")
    if counter not in ("auto", "hw", "irq"):
        problems.append(f"counter must be \"auto\", \"hw\" or \"irq\" (got {counter!r})")
    out["counter"] = counter
    known = ("node_id", "key", "transport", "wifi", "collector", "lamps", "counts", "counter",
             "serial", "machine", "comment")
    for k in cfg:
        if k not in known and k not in _NUMBERS:
            problems.append(f"unknown setting {k!r}")
    return out, problems
