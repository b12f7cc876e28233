"""`lampwatch flash --batch nodes.csv`: the node list, checked whole before any board is touched, and the summary."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputFileError
from .flasher import NodeSpec

REQUIRED = ("port", "node_id", "machine")
OPTIONAL = ("plant", "line", "ideal_cycle_s", "transport")


@dataclass
class Outcome:
    """One row of the summary: the node, OK or FAILED, and a one-line detail."""

    spec: NodeSpec
    ok: bool
    detail: str


def read_batch(path: Path, defaults: dict | None = None) -> list[NodeSpec]:
    """The nodes of a batch CSV (header: port,node_id,machine[,plant,line,ideal_cycle_s,
    transport]); empty optional cells take `defaults` (NodeSpec keyword arguments).

    Raises:
        InputFileError: one line naming the row (the header is row 1) and the column.
    """
    defaults = defaults or {}
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}"
                             ) from None
    rows = list(csv.reader(text.splitlines()))
    if not rows:
        raise InputFileError(f"{path}: empty file (need a header: {','.join(REQUIRED)})")
    header = [h.strip().lower() for h in rows[0]]
    for i, name in enumerate(header):
        if name not in REQUIRED + OPTIONAL:
            raise InputFileError(f"{path} row 1, column {i + 1}: unknown column {name!r} "
                                 f"(use {', '.join(REQUIRED + OPTIONAL)})")
    for name in REQUIRED:
        if name not in header:
            raise InputFileError(f"{path} row 1: missing column {name!r}")
    specs: list[NodeSpec] = []
    seen: dict[int, int] = {}
    for r, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise InputFileError(f"{path} row {r}: {len(row)} cells, the header has "
                                 f"{len(header)}")
        cell = {h: c.strip() for h, c in zip(header, row)}

        def fail(col: str, msg: str, r: int = r) -> InputFileError:
            return InputFileError(f"{path} row {r}, column {col}: {msg}")

        for name in REQUIRED:
            if not cell[name]:
                raise fail(name, "is empty")
        try:
            node_id = int(cell["node_id"])
        except ValueError:
            node_id = 0
        if not 0 < node_id < 65536:
            raise fail("node_id", f"must be an integer 1..65535, not {cell['node_id']!r}")
        if node_id in seen:
            raise fail("node_id", f"node {node_id} is already on row {seen[node_id]}")
        seen[node_id] = r
        kw = dict(defaults)
        for name in ("plant", "line"):
            if cell.get(name):
                kw[name] = cell[name]
        if cell.get("transport"):
            if cell["transport"] not in ("udp", "serial"):
                raise fail("transport", f"must be udp or serial, not {cell['transport']!r}")
            kw["transport"] = cell["transport"]
        if cell.get("ideal_cycle_s"):
            try:
                kw["ideal_cycle_s"] = float(cell["ideal_cycle_s"])
            except ValueError:
                kw["ideal_cycle_s"] = -1.0
            if not kw["ideal_cycle_s"] > 0:
                raise fail("ideal_cycle_s", f"must be a number of seconds > 0, not "
                                            f"{cell['ideal_cycle_s']!r}")
        specs.append(NodeSpec(cell["port"], node_id, cell["machine"], **kw))
    if not specs:
        raise InputFileError(f"{path}: no nodes after the header")
    return specs


def summary(outcomes: list[Outcome]) -> str:
    """The table printed after a batch: one line per node, then the totals."""
    width = max([len(o.spec.machine) for o in outcomes] + [7])
    lines = [f"{'node':>5}  {'machine':<{width}}  result  detail"]
    for o in outcomes:
        lines.append(f"{o.spec.node_id:>5}  {o.spec.machine:<{width}}  "
                     f"{'OK' if o.ok else 'FAILED':<6}  {o.detail}")
    ok = sum(o.ok for o in outcomes)
    lines.append(f"{ok} of {len(outcomes)} node(s) flashed, {len(outcomes) - ok} failed")
    return "\n".join(lines)
