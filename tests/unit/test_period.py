"""Period semantics (SPEC §4): half-open months, labels, the scheduled default."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from tasks.period import Period, PeriodError

pytestmark = pytest.mark.unit


def test_label_and_bounds() -> None:
    period = Period.parse("2025-07")
    assert period.label == "july2025"
    assert period.start == pd.Timestamp("2025-07-01", tz="UTC")
    assert period.end == pd.Timestamp("2025-08-01", tz="UTC")
    assert str(period.previous()) == "2025-06" and str(Period.parse("2025-01").previous()) == "2024-12"


def test_timezone_moves_the_bounds() -> None:
    # Midnight in Berlin (UTC+2 in summer) is 22:00 UTC the day before.
    assert Period.parse("2025-07", "Europe/Berlin").start == pd.Timestamp("2025-06-30 22:00", tz="UTC")


@pytest.mark.parametrize("text", ["2025-13", "2025-7", "July", "", "2025-00"])
def test_bad_period(text: str) -> None:
    with pytest.raises(PeriodError):
        Period.parse(text)


def test_scheduled_run_on_the_first_closes_the_previous_month() -> None:
    two_am_aug_1 = datetime(2025, 8, 1, 2, 0, tzinfo=UTC)
    assert str(Period.containing_yesterday("UTC", now=two_am_aug_1)) == "2025-07"


def test_as_of_is_the_earlier_of_end_and_now() -> None:
    period = Period.parse("2025-07")
    assert period.as_of(pd.Timestamp("2026-01-01", tz="UTC")) == period.end
    assert period.as_of(pd.Timestamp("2025-07-15", tz="UTC")) == pd.Timestamp("2025-07-15", tz="UTC")
