"""`lampwatch commission`: the at-the-machine acceptance check, its journal watch and its report.

The check runs next to a running collector and reads what the node reported from the
collector's journal (a second reader on a WAL database). Each step remembers the journal's
last event id when its prompt is shown, so a lamp switched before Enter still counts, and a
change from before the prompt never does. Everything but JournalWatch and run_check is pure;
time comes in as arguments.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from .. import journal
from ..errors import JournalReadError, LampwatchError
from ..protocol import LAMP_NAMES

__all__ = ["CheckResult", "CommissionError", "CommissionFailed", "JournalWatch", "Step",
           "build_report", "lamps_from_mask", "plan_steps", "render_markdown", "run_check",
           "write_report"]

LAMP_CHECKS = ("ON", "BLINK", "OFF")
_POLL_S = 0.2


class CommissionError(LampwatchError):
    """The check cannot run (no journal, node not in the registry, never heard, ...)."""


class CommissionFailed(LampwatchError):
    """The check ran and at least one input failed: the node is not commissioned."""


@dataclass(frozen=True)
class Step:
    """One check: a lamp state to see ("ON" / "BLINK" / "OFF"), or a number of parts."""

    input: str  # a lamp name, "good" or "ng"
    want: str | int

    @property
    def is_lamp(self) -> bool:
        return self.input in LAMP_NAMES

    @property
    def label(self) -> str:
        return str(self.want) if self.is_lamp else f"{self.want} parts"

    def prompt(self) -> str:
        name = self.input.upper()
        if not self.is_lamp:
            return f"Make {self.want} {name} part(s), then press Enter"
        verb = {"ON": "Switch the {} lamp ON", "BLINK": "Make the {} lamp BLINK",
                "OFF": "Switch the {} lamp OFF"}[str(self.want)]
        return verb.format(name) + ", then press Enter"


@dataclass
class CheckResult:
    step: Step
    passed: bool
    attempts: int = 1
    after_s: float | None = None  # from Enter until the journal showed it
    hz: float | None = None
    counted: int | None = None


def lamps_from_mask(mask: int) -> list[str]:
    """The lamp names a HELLO's lamp_mask says are wired."""
    return [name for i, name in enumerate(LAMP_NAMES) if mask & (1 << i)]


def plan_steps(lamps: Sequence[str], parts: int) -> list[Step]:
    """ON, BLINK, OFF for each lamp in turn, then `parts` GOOD and `parts` NG (none if 0)."""
    steps = [Step(lamp, check) for lamp in lamps for check in LAMP_CHECKS]
    if parts:
        steps += [Step("good", parts), Step("ng", parts)]
    return steps


def lamp_seen(step: Step, events: Iterable[tuple[str, dict]]) -> tuple[bool, float | None]:
    """Whether (kind, data) events show the step's lamp entering the wanted state, and the
    blink frequency the node measured (None when it sent none)."""
    for kind, data in events:
        if kind == "lamp" and data.get("lamp") == step.input and data.get("state") == step.want:
            return True, data.get("hz")
    return False, None


def parts_counted(step: Step, events: Iterable[tuple[str, dict]]) -> int:
    """GOOD or NG parts in the `count` events (deltas) among (kind, data) events."""
    return sum(int(data.get(step.input, 0)) for kind, data in events if kind == "count")


class JournalWatch:
    """Reads one node's new events and heartbeats from the collector's journal, read-only;
    a read that fails raises JournalReadError."""

    def __init__(self, path: str | Path, node_id: int):
        self.node_id = node_id
        try:
            self._journal = journal.open_readonly(path)
        except JournalReadError as exc:
            raise CommissionError(f"{exc}: is the collector running with this config?") \
                from None

    def close(self) -> None:
        self._journal.close()

    def last_event_id(self) -> int:
        return self._journal.last_event_id()

    def last_hello(self) -> dict | None:
        return self._journal.last_hello(self.node_id)

    def last_heartbeat_id(self) -> int:
        return self._journal.last_heartbeat_id(self.node_id)

    def events_after(self, event_id: int) -> list[tuple[str, dict]]:
        return self._journal.node_events_after(self.node_id, event_id)


class UI(Protocol):
    def ask(self, text: str) -> str | None:  # None: end of input
        ...

    def say(self, text: str) -> None:
        ...


def run_check(step: Step, watch: JournalWatch, ui: UI, timeout_s: float,
              clock: Callable[[], float], sleep: Callable[[float], None]) -> CheckResult:
    """Prompt for one step and watch the journal; on a miss offer retry or skip."""
    attempts = 0
    while True:
        attempts += 1
        mark = watch.last_event_id()
        ui.ask(step.prompt() + " ")
        result = _watch(step, watch, mark, timeout_s, clock, sleep)
        result.attempts = attempts
        ui.say("  " + describe(result))
        if result.passed:
            return result
        answer = ui.ask("  [r]etry or [s]kip? ")
        if answer is None or not answer.strip().lower().startswith("r"):
            return result


def _watch(step: Step, watch: JournalWatch, mark: int, timeout_s: float,
           clock: Callable[[], float], sleep: Callable[[float], None]) -> CheckResult:
    start = clock()
    reached_s: float | None = None
    beat_mark = 0
    while True:
        # Heartbeats before events: a count is committed with its heartbeat, so a heartbeat
        # read first never runs ahead of the counts the events read next will show.
        beat = watch.last_heartbeat_id()
        events = watch.events_after(mark)
        now = clock()
        if step.is_lamp:
            seen, hz = lamp_seen(step, events)
            if seen:
                return CheckResult(step, True, after_s=round(now - start, 1), hz=hz)
        else:
            n = parts_counted(step, events)
            if n >= int(step.want) and reached_s is None:
                reached_s, beat_mark = now, beat
            # Settled once a later heartbeat brought nothing more: bounce shows as extra parts.
            if reached_s is not None and (beat > beat_mark or now - start >= timeout_s):
                return CheckResult(step, n == step.want, after_s=round(reached_s - start, 1),
                                   counted=n)
            if now - start >= timeout_s:
                return CheckResult(step, False, counted=n)
        if now - start >= timeout_s:
            return CheckResult(step, False)
        sleep(_POLL_S)


def describe(r: CheckResult) -> str:
    """One line for the technician: what was seen, with the measured frequency or count."""
    if r.step.is_lamp:
        if not r.passed:
            return f"{r.step.input} {r.step.want}: NOT seen ✗"
        hz = ""
        if r.step.want == "BLINK":
            hz = f" at {r.hz:.2f} Hz" if r.hz else " (this firmware does not report a frequency)"
        return f"{r.step.input} {r.step.want}: seen ✓{hz} (after {r.after_s:.1f} s)"
    mark = "✓" if r.passed else "✗"
    return f"{r.step.input.upper()}: counted {r.counted or 0} of {r.step.want} {mark}"


@dataclass
class Session:
    """What the report says besides the checks."""

    node_id: int
    machine: str
    plant: str
    line: str
    hello: dict | None
    checked_by: str
    started: datetime
    finished: datetime
    timeout_s: float
    results: list[CheckResult] = field(default_factory=list)


def build_report(s: Session) -> dict[str, Any]:
    """The acceptance report as JSON-ready data; inputs in the order they were checked."""
    inputs: dict[str, dict[str, Any]] = {}
    for r in s.results:
        entry = inputs.setdefault(r.step.input, {
            "input": r.step.input, "kind": "lamp" if r.step.is_lamp else "count",
            "result": "pass", "checks": []})
        check: dict[str, Any] = {"check": r.step.label, "result": "pass" if r.passed else "fail",
                                 "attempts": r.attempts, "after_s": r.after_s}
        if r.step.want == "BLINK":
            check["hz"] = r.hz
        if not r.step.is_lamp:
            check.update(expected=r.step.want, counted=r.counted or 0)
        entry["checks"].append(check)
        if not r.passed:
            entry["result"] = "fail"
    passed = bool(inputs) and all(e["result"] == "pass" for e in inputs.values())
    hello = s.hello or {}
    return {"node_id": s.node_id, "machine": s.machine, "plant": s.plant, "line": s.line,
            "firmware": hello.get("fw"), "config_hash": hello.get("config_hash"),
            "boot_id": hello.get("boot_id"), "result": "PASSED" if passed else "FAILED",
            "checked_by": s.checked_by, "started": s.started.isoformat(),
            "finished": s.finished.isoformat(), "timeout_s": s.timeout_s,
            "inputs": list(inputs.values())}


def render_markdown(rep: dict[str, Any]) -> str:
    """The report for people: a header table, then one row per check."""
    boot = f"{rep['boot_id']:#010x}" if rep.get("boot_id") is not None else "-"
    lines = [f"# Commissioning report: node {rep['node_id']} on {rep['machine']}", "",
             f"**Result: {rep['result']}**", "", "| | |", "|---|---|",
             f"| node | {rep['node_id']} |",
             f"| machine | {rep['plant']} / {rep['line']} / {rep['machine']} |",
             f"| firmware | {rep['firmware'] or 'unknown'} (config "
             + f"{rep['config_hash'] or '-'}, boot {boot}) |",
             f"| started | {rep['started']} |", f"| finished | {rep['finished']} |",
             f"| checked by | {rep['checked_by']} |", "",
             "| input | check | result | measured | attempts |", "|---|---|---|---|---|"]
    for inp in rep["inputs"]:
        for c in inp["checks"]:
            got = []
            if "counted" in c:
                got.append(f"counted {c['counted']} of {c['expected']}")
            if c.get("hz"):
                got.append(f"{c['hz']:.2f} Hz")
            if c["after_s"] is not None:
                got.append(f"after {c['after_s']:.1f} s")
            lines.append(f"| {inp['input']} | {c['check']} | {c['result']} | "
                         f"{', '.join(got) or '-'} | {c['attempts']} |")
    lines += ["", f"Each check waited up to {rep['timeout_s']:g} s for the node's report in "
              + "the collector's journal (`lampwatch commission`)."]
    return "\n".join(lines) + "\n"


def write_report(folder: str | Path, rep: dict[str, Any], when: datetime) -> tuple[Path, Path]:
    """Write <machine>-node<id>-<time>.md and .json into `folder`; returns both paths."""
    folder = Path(folder)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", rep["machine"]) or "machine"
    stem = f"{safe}-node{rep['node_id']}-{when:%Y%m%dT%H%M%S}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        md, js = folder / f"{stem}.md", folder / f"{stem}.json"
        md.write_text(render_markdown(rep), encoding="utf-8")
        js.write_text(json.dumps(rep, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    except OSError as exc:
        raise CommissionError(f"cannot write the report into {folder}: "
                              f"{exc.strerror or exc}") from None
    return md, js
