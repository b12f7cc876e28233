"""One error type per layer; the CLI turns any of them into one line on stderr."""


class LampwatchError(Exception):
    """Base of every error lampwatch reports to a user as a single line."""


class ProtocolError(LampwatchError):
    """A frame that must not be applied (truncated, bad COBS, bad tag, ...).

    `reason` is a short machine-readable word (see lampwatch.protocol.REASONS) under which
    the collector counts rejections; `node_id` is set when the frame's tag was verified, so
    the frame really is that node's (a bad body, a replay), else None.
    """

    def __init__(self, reason: str, message: str, node_id: int | None = None):
        super().__init__(message)
        self.reason, self.node_id = reason, node_id


class OEEInputError(LampwatchError, ValueError):
    """Impossible input to the OEE engine (overlapping intervals, good > total, ...)."""


class ConfigError(LampwatchError):
    """A configuration file is missing, unreadable or invalid."""


class InputFileError(LampwatchError):
    """A user-supplied data file (CSV logbook, ...) is malformed."""


class JournalReadError(LampwatchError):
    """The journal cannot be opened or read (missing, not a lampwatch journal, unreadable)."""


class SinkError(LampwatchError):
    """A sink (journal, InfluxDB) could not store data."""


class RequestError(LampwatchError):
    """A request the Andon board refuses; `status` is its HTTP status (4xx, or 503 when
    full). The message is one line for the client and the log, never holding a secret."""

    def __init__(self, status: int, message: str, retry_after_s: int | None = None):
        super().__init__(message)
        self.status, self.retry_after_s = status, retry_after_s
