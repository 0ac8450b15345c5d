"""The reporting period: a calendar month in the pipeline's time zone, half-open [start, end)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pandas as pd

_PERIOD_RE = re.compile(r"^(\d{4})-(\d{2})$")
_MONTHS = (
    "january", "february", "march", "april", "may", "june", "july", "august", "september",
    "october", "november", "december",
)


class PeriodError(ValueError):
    """A period string that is not YYYY-MM."""


@dataclass(frozen=True, order=True)
class Period:
    year: int
    month: int
    timezone: str = "UTC"

    @classmethod
    def parse(cls, text: str, timezone: str = "UTC") -> Period:
        match = _PERIOD_RE.match(str(text).strip())
        if not match or not 1 <= int(match.group(2)) <= 12 or int(match.group(1)) < 1900:
            raise PeriodError(f"period {text!r} is not a month in the form YYYY-MM (e.g. 2025-07)")
        return cls(int(match.group(1)), int(match.group(2)), timezone)

    @classmethod
    def containing_yesterday(cls, timezone: str = "UTC", now: datetime | None = None) -> Period:
        """The scheduled default: the month of 'yesterday', so the run on the 1st closes the month."""
        current = now.astimezone(ZoneInfo(timezone)) if now else datetime.now(ZoneInfo(timezone))
        yesterday = current.date() - timedelta(days=1)
        return cls(yesterday.year, yesterday.month, timezone)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def label(self) -> str:
        """Output-name form: lower-case English month and year, e.g. 'july2025'."""
        return f"{_MONTHS[self.month - 1]}{self.year}"

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def start(self) -> pd.Timestamp:
        """Inclusive start, as a UTC timestamp (midnight in the pipeline's time zone)."""
        return pd.Timestamp(self.first_day, tz=self.timezone).tz_convert("UTC")

    @property
    def end(self) -> pd.Timestamp:
        """Exclusive end: the first instant of the next month."""
        return self.next().start

    def next(self) -> Period:
        year, month = (self.year + 1, 1) if self.month == 12 else (self.year, self.month + 1)
        return Period(year, month, self.timezone)

    def previous(self) -> Period:
        year, month = (self.year - 1, 12) if self.month == 1 else (self.year, self.month - 1)
        return Period(year, month, self.timezone)

    def minus_months(self, months: int) -> Period:
        index = self.year * 12 + (self.month - 1) - months
        return Period(index // 12, index % 12 + 1, self.timezone)

    def as_of(self, now: pd.Timestamp | None = None) -> pd.Timestamp:
        """SPEC §6: the period's end, or the run time if that is earlier."""
        now = now if now is not None else pd.Timestamp.now(tz="UTC")
        return min(self.end, now.tz_convert("UTC"))
