"""A stop reason posted on the board, checked before anything is done with it: nesting,
JSON, types, numbers and time ranges; every refusal a one-line RequestError(400)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, NamedTuple

from .. import oee
from ..errors import RequestError
from ..timeline import STOP_STATES

__all__ = ["Reason", "checked", "parse_body", "pin_of"]

MAX_DEPTH = 4               # the body is one flat object; deeper nesting is refused unparsed
MAX_AGE_S = 31 * 86400.0    # a reason may be given for a stop up to a month back...
MAX_AHEAD_S = 86400.0       # ...and may end (end_s) up to a day ahead
_FIELDS = {"pin", "machine", "reason", "start_s", "end_s"}


class Reason(NamedTuple):
    machine: str
    reason: str
    start_s: float
    end_s: float | None


def _depth_ok(body: bytes) -> bool:
    """Whether no array or object in `body` nests deeper than MAX_DEPTH, checked without
    parsing (json.loads recurses: 2,000 levels raise RecursionError)."""
    depth, in_string, escaped = 0, False, False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > MAX_DEPTH:
                return False
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return True


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number")


def parse_body(body: bytes) -> dict[str, Any]:
    """The posted JSON object. Raises RequestError(400)."""
    if not _depth_ok(body):
        raise RequestError(400, f"the JSON nests deeper than {MAX_DEPTH} levels")
    try:
        req = json.loads(body, parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise RequestError(400, "the body is not valid JSON") from None
    if not isinstance(req, dict):
        raise RequestError(400, "send a JSON object")
    extra = sorted(set(req) - _FIELDS)
    if extra:
        raise RequestError(400, f"unknown field {_short(extra[0])}")
    return req


def pin_of(req: Mapping[str, Any]) -> str:
    """The PIN in a parsed body (never echoed in an error). Raises RequestError(400)."""
    pin = req.get("pin", "")
    if not isinstance(pin, str):
        raise RequestError(400, "pin must be a string")
    return pin


def checked(req: Mapping[str, Any], snaps: Mapping[str, Any], now_s: float) -> Reason:
    """The validated reason; start_s defaults to the start of the machine's current stop.

    Args:
        req: parse_body's result. snaps: machine -> MachineSnapshot now. now_s: wall time.
    Raises RequestError(400).
    """
    reason = req.get("reason")
    if not isinstance(reason, str) or reason not in oee.REASONS:
        raise RequestError(400, f"reason must be one of {', '.join(oee.REASONS)}")
    machine = req.get("machine")
    if not isinstance(machine, str):
        raise RequestError(400, "machine must be a string")
    if machine not in snaps:
        raise RequestError(400, f"unknown machine {_short(machine)}")
    start_s, end_s = _time(req, "start_s", now_s), _time(req, "end_s", now_s)
    if start_s is None:
        snap = snaps[machine]
        if snap.state not in STOP_STATES or snap.since_s is None:
            raise RequestError(400, f"{machine} is not stopped now: give start_s")
        start_s = snap.since_s
    if start_s > now_s:
        raise RequestError(400, "start_s is in the future")
    if end_s is not None and end_s <= start_s:
        raise RequestError(400, "end_s must be after start_s")
    return Reason(machine, reason, start_s, end_s)


def _time(req: Mapping[str, Any], key: str, now_s: float) -> float | None:
    value = req.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestError(400, f"{key} must be epoch seconds (a number) or null")
    # An int of 4,000 digits is valid JSON; compare before float() could overflow.
    if not (isinstance(value, int) or math.isfinite(value)) or \
            not now_s - MAX_AGE_S <= value <= now_s + MAX_AHEAD_S:
        raise RequestError(400, f"{key} must be within {MAX_AGE_S / 86400:.0f} days before "
                           f"and {MAX_AHEAD_S / 86400:.0f} day after now")
    return float(value)


def _short(value: str) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
