"""Exact money (SPEC §6: summed exactly, then rounded half-up to cents)."""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.money import (
    MoneyError,
    divide_cents,
    e8_to_cents,
    e8_to_dollars,
    rate_to_ppm,
    revenue_e8,
    round_half_up,
)

pytestmark = pytest.mark.unit

RATES = {"USD": Decimal("1"), "EUR": Decimal("1.08"), "GBP": Decimal("1.5")}


def rows(amounts: list[float], currency: str = "USD", discounts: list[float] | None = None) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "amount": pd.array(amounts, dtype="float64"),
            "discount_applied": pd.array(discounts or [0.0] * len(amounts), dtype="float64"),
            "currency": pd.array([currency] * len(amounts), dtype="string"),
        }
    )


def total_dollars(frame: pd.DataFrame, rates: dict[str, Decimal] = RATES) -> float:
    return float(e8_to_dollars(pd.Series([revenue_e8(frame, rates).sum()])).iloc[0])


def test_tenth_plus_fifth_is_exactly_three_tenths() -> None:
    # As floats 0.1 + 0.2 = 0.30000000000000004; as cents 10 + 20 = 30 -> 0.3 exactly.
    assert 0.1 + 0.2 != 0.3
    total = total_dollars(rows([0.1, 0.2]))
    assert total == 0.3
    assert repr(total) == "0.3"


def test_euro_rows_convert_and_sum_to_an_exact_cent_figure() -> None:
    # (19.99 − 0.50) EUR + 0.01 EUR = 19.50 EUR; × 1.08 = 21.06 USD exactly:
    # 1949 cents × 1_080_000 ppm + 1 cent × 1_080_000 ppm = 2_106_000_000 e8 = 2106 cents.
    frame = rows([19.99, 0.01], currency="EUR", discounts=[0.50, 0.0])
    assert revenue_e8(frame, RATES).tolist() == [1949 * 1_080_000, 1 * 1_080_000]
    total = total_dollars(frame)
    assert total == 21.06 and repr(total) == "21.06"


def test_half_a_cent_rounds_up_not_to_even() -> None:
    # 0.03 GBP × 1.5 = 0.045 USD: half-up gives 0.05; banker's rounding and round(0.045, 2)
    # (the float is 0.04499999...) would both give 0.04.
    assert round(0.045, 2) == 0.04
    assert total_dollars(rows([0.03], currency="GBP")) == 0.05
    # 0.01 GBP × 1.5 = 0.015 -> 0.02 (half-up; half-even would also say 0.02, kept as a pair)
    assert total_dollars(rows([0.01], currency="GBP")) == 0.02


def test_just_below_half_a_cent_rounds_down() -> None:
    # 1 cent × 1.499999 = 1.499999 cents -> 1 cent.
    assert total_dollars(rows([0.01], currency="XYZ"), {"XYZ": Decimal("1.499999")}) == 0.01


def test_negative_half_cent_rounds_away_from_zero() -> None:
    # −4.5 cents (−4_500_000 e8) -> −5 cents, like Decimal ROUND_HALF_UP.
    assert e8_to_cents(pd.Series([-4_500_000, 4_500_000, -4_499_999])).tolist() == [-5, 5, -4]


def test_rate_to_ppm_accepts_six_decimals_and_rejects_seven() -> None:
    assert rate_to_ppm("EUR", Decimal("1.0825")) == 1_082_500
    assert rate_to_ppm("JPY", Decimal("0.006712")) == 6_712
    with pytest.raises(MoneyError, match="6 decimals"):
        rate_to_ppm("EUR", Decimal("1.1234567"))


@pytest.mark.parametrize("bad", [Decimal("0"), Decimal("-1.2"), Decimal("NaN")])
def test_rate_to_ppm_rejects_non_positive_rates(bad: Decimal) -> None:
    with pytest.raises(MoneyError, match="positive"):
        rate_to_ppm("EUR", bad)


def test_unknown_currency_fails_loudly_naming_it() -> None:
    with pytest.raises(MoneyError, match="JPY"):
        revenue_e8(rows([1.0], currency="JPY"), RATES)


def test_rates_are_found_per_row_whatever_the_case_and_blanks_of_the_code() -> None:
    frame = pd.DataFrame(
        {
            "amount": [1.0, 1.0, 1.0, 1.0],
            "discount_applied": [0.0, 0.0, 0.0, 0.0],
            "currency": pd.array([" eur", "USD", "Eur ", "usd"], dtype="string"),
        }
    )
    assert revenue_e8(frame, RATES).tolist() == [100 * 1_080_000, 100 * 1_000_000] * 2


def test_null_or_unknown_currencies_fail_with_their_count_and_codes() -> None:
    frame = rows([1.0, 2.0, 3.0])
    frame["currency"] = pd.array(["USD", None, "jpy"], dtype="string")
    with pytest.raises(MoneyError, match=r"2 row\(s\) in currencies with no rate \['<NA>', 'JPY'\]"):
        revenue_e8(frame, RATES)


def test_null_amount_fails_but_null_discount_means_no_discount() -> None:
    with pytest.raises(MoneyError, match="amount"):
        revenue_e8(rows([float("nan")]), RATES)
    frame = rows([2.5])
    frame["discount_applied"] = pd.array([None], dtype="float64")
    assert revenue_e8(frame, RATES).tolist() == [250 * 1_000_000]  # 250 cents × rate 1


def test_divide_cents_rounds_half_up_and_is_null_for_zero_count() -> None:
    cents = pd.Series([100, 200, 1, 500])
    counts = pd.Series([3, 3, 2, 0])
    result = divide_cents(cents, counts).tolist()
    # 100/3 = 33.33; 200/3 = 66.666 -> 66.67; 1/2 = 0.5 cent -> 1 cent; /0 -> null
    assert result[:3] == [0.33, 0.67, 0.01]
    assert math.isnan(result[3])


def test_round_half_up_rounds_decimal_halves_away_from_zero() -> None:
    values = pd.Series([62.25, 0.045, -2.5, 18.249999999999996, float("nan"), -0.0001])
    result = round_half_up(values, 1).tolist()
    # 62.25 -> 62.3 (np.round says 62.2); 0.045 -> 0.0; −2.5 -> −2.5 (one decimal: kept)
    assert result[0] == 62.3 and np.round(62.25, 1) == 62.2
    assert result[1] == 0.0 and result[2] == -2.5
    # a float a hair below .25 (from 0.3·a + 0.2·b noise) still counts as the half
    assert result[3] == 18.3
    assert math.isnan(result[4])
    # −0.0001 -> 0.0, printed without a minus sign
    assert result[5] == 0.0 and math.copysign(1, result[5]) == 1
    assert round_half_up(pd.Series([0.045, -2.5]), 2).tolist() == [0.05, -2.5]
    assert round_half_up(pd.Series([-2.5]), 0).tolist() == [-3.0]


@settings(max_examples=200, deadline=None)
@given(
    cents=st.lists(st.integers(min_value=1, max_value=10_000_000), min_size=1, max_size=30),
    rate_ppm=st.integers(min_value=1, max_value=5_000_000),
)
def test_exact_sum_matches_decimal_arithmetic(cents: list[int], rate_ppm: int) -> None:
    # The reference: Decimal sum of amount × rate, quantized half-up to the cent.
    rate = Decimal(rate_ppm) / Decimal(1_000_000)
    expected = sum((Decimal(c) / 100 * rate for c in cents), Decimal(0))
    expected = expected.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    frame = rows([c / 100 for c in cents], currency="XYZ")
    assert Decimal(repr(total_dollars(frame, {"XYZ": rate}))) == expected
