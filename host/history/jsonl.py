"""Raw frames as JSON Lines: `{"rx": unix seconds, "src": "address", "frame": "hex"}` a line.

`rx` is written as Python writes a float (repr), so it reads back to the same number; the
frame is the datagram as the node sent it (its tag included), in lowercase hex.
"""

from __future__ import annotations

import json
import math
from typing import NamedTuple

from ..errors import InputFileError

__all__ = ["RawLine", "format_line", "parse_line"]

_MAX_FRAME_HEX = 2 * 2048  # far above any frame (docs/protocol.md); a longer one is not one
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True).encode


class RawLine(NamedTuple):
    rx_s: float
    source: str
    frame: bytes


def format_line(rx_s: float, source: str, frame: bytes) -> str:
    """One line (without its newline)."""
    return _encode({"rx": float(rx_s), "src": source, "frame": bytes(frame).hex()})


def parse_line(text: str, where: str) -> RawLine:
    """A line of a raw-frames file; `where` names it in the error ("dump.jsonl:12").

    Raises InputFileError (one line) for anything but an object with a finite number `rx`,
    a string `src` and an even-length hex string `frame`.
    """
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise InputFileError(f"{where}: not JSON ({exc.args[0].split(':')[0]})") from None
    if not isinstance(obj, dict):
        raise InputFileError(f"{where}: not a JSON object")
    rx, src, frame = obj.get("rx"), obj.get("src"), obj.get("frame")
    if isinstance(rx, bool) or not isinstance(rx, (int, float)) or not math.isfinite(rx):
        raise InputFileError(f"{where}: \"rx\" must be unix seconds (a number), not {rx!r}")
    if not isinstance(src, str) or not src:
        raise InputFileError(f"{where}: \"src\" must be the address it came from (a string)")
    if not isinstance(frame, str) or len(frame) > _MAX_FRAME_HEX:
        raise InputFileError(f"{where}: \"frame\" must be the frame in hex (a string of at "
                             f"most {_MAX_FRAME_HEX} digits)")
    try:
        raw = bytes.fromhex(frame)
    except ValueError:
        raise InputFileError(f"{where}: \"frame\" is not hexadecimal") from None
    return RawLine(float(rx), src, raw)
