"""Writes line protocol to InfluxDB's /api/v2/write, and says how a failed write must be handled.

A failed write is classified once, here, as Telegraf's influxdb_v2 output and
influxdb-client's retry do: the server *rejected* the data (drop it and log), it is
*throttled* or *unavailable* (retry later with backoff, never sooner than its Retry-After),
or the batch is *too large* (split it and write the halves).
"""

from __future__ import annotations

import enum
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import urllib3
from influxdb_client import InfluxDBClient, WritePrecision
from influxdb_client.client.exceptions import InfluxDBError
from influxdb_client.client.write_api import SYNCHRONOUS

from ..errors import SinkError

__all__ = ["Failure", "InfluxWriter", "RetryPolicy", "WriteError", "classify"]

# A server asking for more than this is still asked again after this long: a collector that
# waits an hour on one header would look dead, and the journal keeps everything meanwhile.
RETRY_AFTER_MAX_S = 600.0


class Failure(enum.Enum):
    """What a failed write means for the data in it."""

    REJECTED = "rejected"    # 400, 422: this data will never be accepted; skip it, log it
    TOO_LARGE = "too large"  # 413: the same data in smaller batches will be
    RETRY = "retry"          # no answer, 429, 5xx, auth or bucket trouble: later, unchanged


def classify(status: int | None) -> Failure:
    """The handling an HTTP status (None: no response at all) asks for.

    401/403/404 are retried, not dropped: a wrong token or a missing bucket is a setting to
    fix, and the journal keeps every event until then.
    """
    if status in (400, 422):
        return Failure.REJECTED
    if status == 413:
        return Failure.TOO_LARGE
    return Failure.RETRY


def retry_after_s(value: str | None, now_s: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return min(RETRY_AFTER_MAX_S, max(0.0, float(value)))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    now = time.time() if now_s is None else now_s
    return min(RETRY_AFTER_MAX_S, max(0.0, when - now))


class WriteError(SinkError):
    """A write InfluxDB did not confirm.

    Attributes:
        status: the HTTP status (None: no response). failure: its Failure class.
        retry_after_s: the server's Retry-After in seconds, when it sent one.
    """

    def __init__(self, message: str, status: int | None = None,
                 retry_after_s: float | None = None):
        super().__init__(message)
        self.status = status
        self.failure = classify(status)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, capped: how long to wait before write attempt n+1.

    Attributes:
        initial_s: wait after the first failure, seconds.
        multiplier: growth factor per further failure.
        max_s: cap on any wait, seconds (jitter never exceeds it).
        jitter: fraction (0..1) by which a wait is randomly shortened, so many collectors
            recovering together do not hit the server in step.
    """

    initial_s: float = 1.0
    multiplier: float = 2.0
    max_s: float = 60.0
    jitter: float = 0.2

    def __post_init__(self):
        if not (0 < self.initial_s <= self.max_s) or self.multiplier < 1:
            raise ValueError("RetryPolicy needs 0 < initial_s <= max_s and multiplier >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("RetryPolicy jitter must be in range 0-1")

    def delay_s(self, failures: int, rand: Callable[[], float] = random.random,
                retry_after_s: float | None = None) -> float:
        """Wait in seconds after `failures` consecutive failed attempts (>= 1); never less
        than the server's Retry-After when it gave one."""
        exponent = min(max(failures, 1) - 1, 64)  # no float overflow after a long outage
        base = min(self.max_s, self.initial_s * self.multiplier ** exponent)
        wait = base * (1.0 - self.jitter * rand())
        return wait if retry_after_s is None else max(wait, retry_after_s)


class InfluxWriter:
    """Synchronous writes through influxdb-client's /api/v2/write; every failure raises.

    Works with InfluxDB 2.x, 3.x, Cloud, and 1.8+ (use `for_influxdb1`). The token is kept
    only inside the client and never appears in repr or log output.
    """

    def __init__(self, url: str, token: str, org: str, bucket: str, *, timeout_ms: int = 10_000,
                 verify_ssl: bool = True):
        self.url, self.org, self.bucket = url, org, bucket
        # retries=False: the forwarder owns the retry policy, a write call never hides one.
        self._client = InfluxDBClient(url=url, token=token, org=org, timeout=timeout_ms,
                                      verify_ssl=verify_ssl, retries=False)
        self._api = self._client.write_api(write_options=SYNCHRONOUS)

    @classmethod
    def for_influxdb1(cls, url: str, database: str, retention_policy: str = "autogen",
                      username: str = "", password: str = "", **kwargs) -> InfluxWriter:
        """InfluxDB 1.8+ through its 2.x-compatible API: bucket "db/rp", token "user:pass"."""
        return cls(url, f"{username}:{password}", "-", f"{database}/{retention_policy}",
                   **kwargs)

    def __repr__(self):
        return f"InfluxWriter(url={self.url!r}, org={self.org!r}, bucket={self.bucket!r})"

    def write(self, lines: list[str]) -> None:
        """Write line protocol (ns precision) and return only once the server accepted it.

        Raises:
            WriteError: no response (refused, timeout, DNS) or a non-2xx status.
        """
        try:
            self._api.write(bucket=self.bucket, org=self.org, record=lines,
                            write_precision=WritePrecision.NS)
        except InfluxDBError as exc:
            status = getattr(exc, "status", None) or getattr(exc.response, "status", None)
            raise WriteError(f"InfluxDB {self.url} answered {status}: {exc.message}", status,
                             retry_after_s(exc.retry_after)) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise WriteError(f"InfluxDB {self.url} unreachable: {type(exc).__name__}") from None

    def close(self) -> None:
        self._client.close()
