"""What the UNS publisher writes to: the Sink protocol its MQTT and JetStream sinks implement."""

from __future__ import annotations

from typing import Any, Protocol

from ..errors import SinkError
from .topics import Message

__all__ = ["PublishError", "Sink"]


class PublishError(SinkError):
    """A batch the broker did not store (all of it, in order); the journal still has it."""


class Sink(Protocol):
    """An ordered, acknowledged destination for batches of messages."""

    # True when the sink must be asked `position()` before the next batch: it lost track
    # of where the broker's copy ends (just connected, or a batch failed).
    needs_position: bool

    def position(self) -> list[str]:
        """The ids of the last messages the broker holds, newest first ([]: none, or not
        known). Raises PublishError."""

    def send(self, messages: list[Message]) -> Any:
        """Hand over a batch in order; returns the handle `wait` takes."""

    def wait(self, pending: Any, timeout_s: float) -> bool:
        """True once the broker stored the whole batch; False if not yet (try again).

        Raises PublishError when the batch failed: read it again from the journal."""

    def close(self) -> None:
        """Release the connection (what was not acknowledged stays in the journal)."""
