"""What a deriver is given and gives: its config, the live snapshot, and DeriverProtocol.

host/derive.py holds the Deriver; everything that only talks to a deriver (collector,
runtime, board, demo, tests) needs no more than this module.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from . import oee
from .clock_anchor import AnchorFigures
from .events import Event
from .machine_state import DEFAULT_LAMP_CHANGE_S
from .protocol import Frame, Header
from .timeline import oee_data

__all__ = ["DeriveConfig", "DeriverProtocol", "MachineSnapshot", "NodeConfig", "NullDeriver"]


@dataclass(frozen=True)
class NodeConfig:
    """What the deriver needs of one registry entry (the collector config may pass its own
    objects with these attributes)."""

    node_id: int
    machine: str
    ideal_cycle_s: float | None = None
    lamp_map: Mapping[str, str] | None = None


@dataclass(frozen=True)
class DeriveConfig:
    """What the deriver reads of the collector config; any object with these attributes does.

    nodes: node id -> NodeConfig (or an iterable of them). calendar: shifts for the live OEE
    (None: no `oee` events). heartbeat_s: heartbeat period assumed until a node's HELLO says
    otherwise. oee_interval_s: running-shift OEE refresh. short_stop_s: minor-stop threshold.
    startup_window_s, planned_maintenance: as host/oee.evaluate. lamp_change_s: an all-off
    gap shorter than this between two lamp states is part of the change (machine_state).
    """

    nodes: Mapping[int, Any] | Iterable[Any] = ()
    calendar: oee.Calendar | None = None
    heartbeat_s: float = 10.0
    oee_interval_s: float = 60.0
    short_stop_s: float = oee.DEFAULT_SHORT_STOP_S
    startup_window_s: float = 0.0
    planned_maintenance: str = oee.DEFAULT_PM_POLICY
    lamp_change_s: float = DEFAULT_LAMP_CHANGE_S


@dataclass(frozen=True)
class MachineSnapshot:
    """Live view of one machine for the Andon board and the demo (times epoch s)."""

    machine: str
    node_id: int
    state: str | None
    reason: str | None
    since_s: float | None
    lamps: dict[str, str | None]
    last_heard_s: float | None
    silent: bool
    shift: str | None
    result: oee.OEEResult | None
    ideal_known: bool
    clock: AnchorFigures | None

    @property
    def good(self) -> float:
        """GOOD made in the shift's planned time, with what was made in unknown time (a count
        spread over both is split between them: the sum is rounded to 1e-9, so whole parts
        read whole, not 0.9999999999999999)."""
        return round(self.result.good + self.result.unknown_good, 9) if self.result else 0.0

    @property
    def ng(self) -> float:
        return round(self.result.ng + self.result.unknown_ng, 9) if self.result else 0.0

    @property
    def coverage(self) -> float | None:
        return self.result.coverage if self.result else None

    def oee_data(self) -> dict:
        """A / P / Q / OEE, counts, coverage and losses as in an `oee` event ({} off shift)."""
        return oee_data(self.result, self.ideal_known) if self.result else {}


class DeriverProtocol(Protocol):
    """What the collector, the runtime, the board and the demo ask of a deriver.

    Every implementation implements all of it (Deriver, NullDeriver, test doubles), so
    callers never ask `hasattr`. Time is always passed in.
    """

    def on_frame(self, frame: Frame, rx_s: float) -> list[Event]:
        """Events derived from one accepted frame received at host time `rx_s`."""
        ...

    def tick(self, now_s: float) -> list[Event]:
        """Time-driven events (silence, the running shift's OEE), about once a second."""
        ...

    def snapshot(self, now_s: float) -> dict[str, MachineSnapshot]:
        """The live view per machine."""
        ...

    def replay(self, frames: Iterable[tuple[Frame | Header, float]],
               events: Iterable[Event] = ()) -> None:
        """Rebuild memory from the journal after a restart, emitting nothing. `frames` and
        `events` may be streams read once (a restart mid-shift: over a million events). A
        Header in `frames` stands for an older frame of a node's tail that only its clock
        anchor takes (runtime.replay)."""
        ...

    def add_reason(self, event: Event) -> None:
        """Take an operator's journaled `reason` event into the running shift's figures."""
        ...

    def drain(self, now_s: float) -> list[Event]:
        """Events held back for their order (a node's resends), now: the collector stops."""
        ...


class NullDeriver:
    """A deriver that derives nothing: frames are only journaled (benchmarks, tests)."""

    def on_frame(self, frame: Frame, rx_s: float) -> list[Event]:
        return []

    def tick(self, now_s: float) -> list[Event]:
        return []

    def snapshot(self, now_s: float) -> dict[str, MachineSnapshot]:
        return {}

    def replay(self, frames: Iterable[tuple[Frame | Header, float]],
               events: Iterable[Event] = ()) -> None:
        return None

    def add_reason(self, event: Event) -> None:
        return None

    def drain(self, now_s: float) -> list[Event]:
        return []
