"""The journal: the one owner of the SQLite file (accepted frames, derived events, rejects)."""

from .store import FrameRow, Journal, StoredEvent, StoredFrame, event_row

__all__ = ["FrameRow", "Journal", "StoredEvent", "StoredFrame", "event_row"]
