"""Work calendar: shifts and breaks in local wall time, planned stops, DST-correct epoch times."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from .errors import OEEInputError

_DAY_S = 86400


def finite(value: float, what: str) -> float:
    """`value` as a float; OEEInputError unless it is a finite number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise OEEInputError(f"{what} must be a finite number, not {value!r}")
    return float(value)


def _wall(value: time | str, what: str) -> time:
    if isinstance(value, time):
        return value
    try:
        return time.fromisoformat(value)
    except (TypeError, ValueError):
        raise OEEInputError(f"{what} {value!r} is not a wall time like '06:00'") from None


def _secs(t: time) -> int:
    return t.hour * 3600 + t.minute * 60 + t.second


@dataclass(frozen=True)
class Break:
    """A break inside a shift, in local wall time ("10:00"-"10:30")."""

    start: time | str
    end: time | str


@dataclass(frozen=True)
class Shift:
    """A shift in local wall time; `end <= start` ends the next day (equal: a 24 h shift).

    `weekdays` are the days the shift starts on (Monday = 0); one Shift per distinct
    schedule, so different times per weekday are several Shift entries with the same name.
    """

    name: str
    start: time | str
    end: time | str
    weekdays: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6)
    breaks: tuple[Break, ...] = ()

    def offsets(self) -> tuple[int, int, list[tuple[int, int]]]:
        """Start, end and breaks in seconds after midnight of the day the shift starts."""
        s0 = _secs(_wall(self.start, f"shift {self.name!r} start"))
        s1 = _secs(_wall(self.end, f"shift {self.name!r} end"))
        s1 += _DAY_S if s1 <= s0 else 0
        spans = []
        for b in self.breaks:
            b0 = _secs(_wall(b.start, f"break in shift {self.name!r}"))
            b1 = _secs(_wall(b.end, f"break in shift {self.name!r}"))
            b0 += _DAY_S if b0 < s0 else 0
            b1 += _DAY_S if b1 < b0 else 0
            if not s0 <= b0 < b1 <= s1:
                raise OEEInputError(f"break {b.start}-{b.end} is outside shift {self.name!r} "
                                    f"{self.start}-{self.end}")
            spans.append((b0, b1))
        return s0, s1, spans


@dataclass(frozen=True)
class ShiftInstance:
    """One occurrence of a shift: `day` is the local date it starts; times are epoch s UTC."""

    name: str
    day: date
    start: float
    end: float
    breaks: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True)
class Calendar:
    """Shifts in the IANA zone `tz`, plus absolute planned-stop windows (epoch s UTC).

    Wall times that a DST change skips are moved forward by the change (02:30 on a
    spring-forward night is 03:30 summer time); repeated wall times mean the first one.
    """

    tz: str
    shifts: tuple[Shift, ...] = ()
    planned_stops: tuple[tuple[float, float], ...] = ()

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.tz)
        except (ValueError, LookupError, TypeError):
            raise OEEInputError(f"unknown time zone {self.tz!r}") from None
        object.__setattr__(self, "shifts", tuple(self.shifts))
        object.__setattr__(self, "planned_stops", tuple(tuple(p) for p in self.planned_stops))
        for sh in self.shifts:
            sh.offsets()
            if not set(sh.weekdays) <= set(range(7)):
                raise OEEInputError(f"shift {sh.name!r} weekdays must be 0 (Mon) to 6 (Sun)")
        for a, b in self.planned_stops:
            if finite(b, "planned stop end") < finite(a, "planned stop start"):
                raise OEEInputError(f"planned stop ends before it starts at {self.iso(a)}")

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    def iso(self, ts: float) -> str:
        """`ts` as local ISO 8601 with offset, for messages."""
        return datetime.fromtimestamp(ts, self.zone).isoformat(timespec="seconds")

    def at(self, day: date, seconds: float) -> float:
        """Epoch seconds of the wall time `seconds` after local midnight of `day`."""
        wall = datetime.combine(day, time()) + timedelta(seconds=seconds)
        return wall.replace(tzinfo=self.zone).timestamp()

    def _instances(self, first: date, last: date) -> Iterable[ShiftInstance]:
        day = first
        while day <= last:
            yield from self._on(day)
            day += timedelta(days=1)

    def _on(self, day: date) -> tuple[ShiftInstance, ...]:
        """The shift instances starting on `day`, memoised: the live OEE asks for the running
        shift for every machine every minute, and each instance costs a few zone lookups."""
        memo = self.__dict__.setdefault("_memo", {})  # not a field: no part of eq or hash
        found = memo.get(day)
        if found is None:
            if len(memo) >= 4096:
                memo.clear()
            found = memo[day] = tuple(self._build(day))
        return found

    def _build(self, day: date) -> Iterable[ShiftInstance]:
        for sh in self.shifts:
            if day.weekday() in sh.weekdays:
                s0, s1, spans = sh.offsets()
                brk = tuple((self.at(day, b0), self.at(day, b1)) for b0, b1 in spans)
                yield ShiftInstance(sh.name, day, self.at(day, s0), self.at(day, s1), brk)

    def _days(self, start_ts: float, end_ts: float) -> tuple[date, date]:
        # A shift lasts at most 24 h, so one that starts the day before can still reach in.
        first = datetime.fromtimestamp(start_ts, self.zone).date() - timedelta(days=1)
        return first, datetime.fromtimestamp(end_ts, self.zone).date()

    def shifts_between(self, start_ts: float, end_ts: float) -> list[ShiftInstance]:
        """Shift instances overlapping [start_ts, end_ts), unclipped, sorted by start."""
        if finite(end_ts, "end") < finite(start_ts, "start"):
            raise OEEInputError(f"range ends before it starts at {self.iso(start_ts)}")
        found = [i for i in self._instances(*self._days(start_ts, end_ts))
                 if i.start < end_ts and i.end > start_ts]
        return sorted(found, key=lambda i: (i.start, i.name))

    def shift_at(self, ts: float) -> ShiftInstance | None:
        """The shift instance containing `ts` (start <= ts < end), or None between shifts."""
        finite(ts, "timestamp")
        found = [i for i in self._instances(*self._days(ts, ts)) if i.start <= ts < i.end]
        return min(found, key=lambda i: (i.start, i.name)) if found else None

    def day(self, day: date) -> tuple[float, float]:
        """Local midnight to midnight (23 or 25 h on DST change days)."""
        return self.at(day, 0), self.at(day + timedelta(days=1), 0)

    def week(self, day: date) -> tuple[float, float]:
        """Monday 00:00 to the next Monday 00:00 of the ISO week containing `day`."""
        monday = day - timedelta(days=day.weekday())
        return self.at(monday, 0), self.at(monday + timedelta(days=7), 0)
