"""The journal: the one owner of the SQLite file (accepted frames, derived events, rejects)."""

from .reader import JournalReader, is_journal, open_readonly
from .store import FrameRow, Journal, StoredEvent, StoredFrame, event_row, heard_takes

__all__ = ["FrameRow", "Journal", "JournalReader", "StoredEvent", "StoredFrame", "event_row",
           "heard_takes", "is_journal", "open_readonly"]
