"""The demo's collector config: the simulated shift, the calendar, the TOML it writes; files.

Pure helpers build the config document from the plan; `prepare_files` finds the config and
PIN paths next to the journal and replaces only a journal an earlier demo wrote.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from ..errors import LampwatchError
from ..journal import is_journal
from . import plant as demo_plant

__all__ = [
    "MARKER",
    "DemoError",
    "calendar_doc",
    "config_doc",
    "first_shift_start",
    "prepare_files",
    "to_toml",
    "write_private",
]

MARKER = "# Written by `lampwatch demo`"
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class DemoError(LampwatchError):
    """The demo cannot run as asked (options, journal path, a port)."""


# --- pure helpers ------------------------------------------------------------------------

def first_shift_start(now_s: float, tz: str, total_s: float, wall: str | None = None,
                      step_s: float = 900.0) -> float:
    """Epoch s where the demo's first shift starts, `total_s` or more before now.

    With `wall` ("06:00", local in `tz`): the latest such wall time. Without: the latest
    quarter hour (`step_s`), so the simulated shifts are the ones that ended just before
    now, and a report of today's or the current shift shows them.
    """
    if wall is None:
        return (now_s - total_s) // step_s * step_s  # UTC offsets are whole quarter hours
    zone = ZoneInfo(tz)
    hh, mm = (int(x) for x in wall.split(":"))
    day = datetime.fromtimestamp(now_s, zone).date()
    while True:
        start = datetime(day.year, day.month, day.day, hh, mm, tzinfo=zone).timestamp()
        if start + total_s <= now_s:
            return start
        day -= timedelta(days=1)


def calendar_doc(start_s: float, tz: str, shift_s: float, shifts: int) -> dict:
    """[calendar]: `shifts` back-to-back shifts named A, B, C from start_s's wall time, every
    day of the week (so `oee report --shift today` finds them whatever the day)."""
    zone = ZoneInfo(tz)
    out = []
    for k in range(shifts):
        a = datetime.fromtimestamp(start_s + k * shift_s, zone)
        b = datetime.fromtimestamp(start_s + (k + 1) * shift_s, zone)
        out.append({"name": "ABC"[k], "start": a.strftime("%H:%M"), "end": b.strftime("%H:%M"),
                    "days": list(_DAYS)})
    return {"time_zone": tz, "shifts": out}


def config_doc(plans: list, keys: dict[int, str], calendar: dict, journal_name: str,
               board: dict | None, influx: dict | None) -> dict:
    """The demo's collector config as a TOML document (host/config.py's schema)."""
    doc: dict = {"collector": {"udp_listen": "127.0.0.1:0", "journal": journal_name,
                               "journal_sync": "normal", "log_level": "warning",
                               "heartbeat_s": demo_plant.HEARTBEAT_MS / 1000},
                 "oee": {"refresh_s": 60}, "calendar": calendar}
    if board is not None:
        doc["board"] = board
    if influx is not None:
        doc["influxdb"] = influx
    doc["nodes"] = [{"id": p.spec.node_id, "key": keys[p.spec.node_id],
                     "plant": demo_plant.PLANT, "line": demo_plant.LINE,
                     "machine": p.spec.machine, "ideal_cycle_s": p.spec.ideal_cycle_s,
                     "unit": p.spec.unit, "heartbeat_s": demo_plant.HEARTBEAT_MS / 1000,
                     "lamp_map": dict(demo_plant.LAMP_MAP)} for p in plans]
    return doc


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_value(k)} = {_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {v!r} as TOML")


def to_toml(doc: dict, header: str = "") -> str:
    """A small TOML writer for config_doc's shapes: tables, arrays of tables, inline tables."""
    lines = [header] if header else []
    for name, value in doc.items():
        if isinstance(value, list):
            for item in value:
                lines += ["", f"[[{name}]]"] + [f"{k} = {_value(v)}" for k, v in item.items()]
            continue
        lines += ["", f"[{name}]"]
        nested = {k: v for k, v in value.items() if isinstance(v, list) and v
                  and isinstance(v[0], dict)}
        lines += [f"{k} = {_value(v)}" for k, v in value.items() if k not in nested]
        for sub, items in nested.items():
            for item in items:
                lines += ["", f"[[{name}.{sub}]]"] + [f"{k} = {_value(v)}"
                                                      for k, v in item.items()]
    return "\n".join(lines) + "\n"


# --- files and ports ---------------------------------------------------------------------

def prepare_files(journal: Path) -> tuple[Path, Path]:
    """The config and PIN paths next to the journal; a previous demo's journal is replaced,
    anything else at that path is refused (never delete a real plant's journal)."""
    config_path, pin_path = journal.with_suffix(".toml"), journal.with_suffix(".pin")
    if journal.exists():
        written_by_demo = (config_path.is_file()
                           and config_path.read_text(errors="replace").startswith(MARKER))
        if not (written_by_demo and is_journal(journal)):
            raise DemoError(f"{journal} exists and is not a previous demo's journal: "
                            "choose another --journal")
        for p in (journal, Path(f"{journal}-wal"), Path(f"{journal}-shm")):
            p.unlink(missing_ok=True)
    elif config_path.exists() and not config_path.read_text(errors="replace").startswith(MARKER):
        raise DemoError(f"{config_path} exists and was not written by the demo: "
                        "choose another --journal")
    try:
        journal.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DemoError(f"cannot create {journal.parent}: {exc.strerror or exc}") from None
    return config_path, pin_path


def write_private(path: Path, text: str) -> None:
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(text, encoding="utf-8")
