"""The Andon board's JSON view of the deriver's live snapshot; pure (time is passed in)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .. import oee
from ..i18n import Catalogue, catalogue
from ..timeline import STOP_STATES, oee_data

__all__ = ["LOW_COVERAGE", "OperatorReason", "board_view", "fingerprint", "machine_view"]

# Below this share of the shift so far with a known state, a tile warns that its figures
# rest on too little data (a node that was off or out of Wi-Fi reach for a while).
LOW_COVERAGE = 0.9
_GROUPS = {"RUN": "running", "IDLE": "idle", "STOP": "stopped", "OFF": "off"}
_RATIOS = ("availability", "performance", "quality", "oee")


@dataclass(frozen=True)
class OperatorReason:
    """A stop reason entered on the board: covers [start_s, end_s), or the whole stop
    containing start_s when end_s is None (host/timeline.py's rule)."""

    reason: str
    start_s: float
    end_s: float | None = None


def _operator_reason(snap: Any, r: OperatorReason | None, now_s: float) -> str | None:
    """The operator's reason if it covers the machine's current stop, else None.

    Open-ended reasons are shown while the machine stays in the state it was in when the
    reason was entered (the board only remembers what it was given since it started).
    """
    if r is None or snap.state not in STOP_STATES:
        return None
    if r.end_s is None:
        return r.reason if snap.since_s is not None and r.start_s >= snap.since_s else None
    return r.reason if r.start_s <= now_s < r.end_s else None


def machine_view(snap: Any, now_s: float, operator_reason: OperatorReason | None = None,
                 low_coverage: float = LOW_COVERAGE, cat: Catalogue | None = None) -> dict:
    """One tile: a MachineSnapshot (host/derive.py) as JSON-ready data at `now_s`.

    `state` is "UNKNOWN" for a machine never heard; `blink` is true when a lit lamp
    blinks; ratios are fractions (None when unknown, e.g. no ideal cycle time or off shift).
    `cat`: the language of the warnings (default English).
    """
    cat = cat or catalogue("en")
    state = snap.state or "UNKNOWN"
    data = snap.oee_data() if snap.result is not None else {}
    coverage = data.get("coverage")
    low = coverage is not None and coverage < low_coverage
    warnings = []
    if snap.last_heard_s is None:
        warnings.append(cat.t("board.w.no_data"))
    elif snap.silent:
        warnings.append(cat.t("board.w.silent"))
    elif snap.state is None:
        warnings.append(cat.t("board.w.no_state"))
    if low:
        warnings.append(cat.t("board.w.coverage", coverage=cat.percent(coverage, 0)))
    lamps = {name: st for name, st in snap.lamps.items() if st is not None}
    return {
        "machine": snap.machine,
        "node_id": snap.node_id,
        "state": state,
        "reason": _operator_reason(snap, operator_reason, now_s) or snap.reason,
        "can_reason": state in STOP_STATES,
        "since_s": snap.since_s,
        "in_state_s": None if snap.since_s is None else max(0.0, now_s - snap.since_s),
        "lamps": lamps,
        "blink": any(st == "BLINK" for st in lamps.values()),
        "silent": bool(snap.silent),
        "last_heard_s": snap.last_heard_s,
        "shift": snap.shift,
        **{k: data.get(k) for k in _RATIOS},
        "good": snap.good,
        "ng": snap.ng,
        "coverage": coverage,
        "low_coverage": low,
        "losses": data.get("losses"),
        "warnings": warnings,
    }


def board_view(snaps: Mapping[str, Any], now_s: float, *, operator: bool = False,
               reasons: Mapping[str, OperatorReason] | None = None,
               low_coverage: float = LOW_COVERAGE, lang: str = "en") -> dict:
    """The whole board: every machine's tile and the plant summary.

    Args:
        snaps: machine -> MachineSnapshot (Deriver.snapshot(now_s)), in display order.
        operator: an operator PIN is configured, so the page offers reason entry.
        reasons: machine -> the last OperatorReason entered on the board.
        lang: the language of the tiles' warnings (host/i18n).
    Returns a JSON-ready dict. The plant OEE is host/oee.py's roll-up of the summed times
    and counts (never an average of percentages); its performance and OEE are unknown
    unless every machine in it has an ideal cycle time.
    """
    reasons = reasons or {}
    cat = catalogue(lang)
    machines = [machine_view(s, now_s, reasons.get(m), low_coverage, cat)
                for m, s in snaps.items()]
    counts = dict.fromkeys(("running", "idle", "stopped", "off", "unknown"), 0)
    for m in machines:
        counts[_GROUPS.get(m["state"], "unknown")] += 1
    results = [s for s in snaps.values() if s.result is not None]
    plant: dict[str, Any] = {"machines": len(machines), **counts}
    if results:
        total = oee.rollup([s.result for s in results], "plant")
        data = oee_data(total, all(s.ideal_known for s in results))
        plant.update({k: data[k] for k in (*_RATIOS, "good", "ng", "coverage")})
    else:
        plant.update({k: None for k in _RATIOS}, good=0.0, ng=0.0, coverage=None)
    shifts = {s.shift for s in snaps.values() if s.shift}
    return {
        "now_s": now_s,
        "shift": shifts.pop() if len(shifts) == 1 else None,
        "operator": operator,
        "reasons": list(oee.REASONS),
        "plant": plant,
        "machines": machines,
    }


def fingerprint(view: Mapping[str, Any]) -> str:
    """What a viewer must see at once when it changes: states, lamps, reasons, warnings,
    counts. Ratios and times drift every second and are refreshed on a slower beat."""
    keys = ("machine", "state", "reason", "since_s", "lamps", "silent", "good", "ng",
            "low_coverage", "can_reason")
    return json.dumps([[m[k] for k in keys] for m in view["machines"]], sort_keys=True)
