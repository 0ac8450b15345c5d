"""Exact money arithmetic for the metrics (SPEC §6: "summed exactly, then rounded half-up").

Floats cannot hold most cent amounts exactly (0.1 + 0.2 != 0.3), and a sum over a million
rows drifts. So money is carried as integers:

- an amount in its own currency becomes integer cents: round(amount × 100);
- a rate becomes integer parts per million (1.08 -> 1_080_000); a rate with more than six
  decimals cannot be represented and is rejected, not silently truncated;
- one row's revenue is (amount_cents − discount_cents) × rate_ppm, an integer in units of
  1e-8 USD ("e8"): cents × ppm = 1e-2 × 1e-6 of a dollar. Sums of e8 values are exact.
- only the final sum is rounded, half-up (away from zero, like Decimal's ROUND_HALF_UP),
  to whole cents; cents / 100 is the closest float to the decimal value, so it prints as
  written (1234.5, never 1234.4999999).

`round_half_up` rounds the non-money ratios (engagement, churn, percentages) the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from decimal import Decimal

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

PPM = 1_000_000  # rate scale: parts per million
E8_PER_CENT = 1_000_000  # 1 cent = 1e-2 USD = 1_000_000 × 1e-8 USD
_INT64_MAX = np.iinfo(np.int64).max
# Floats a few ulps below a half (62.2499999999 from 0.3·a + 0.2·b) still round up.
_HALF_TOLERANCE = 1e-9


class MoneyError(ValueError):
    """Money that cannot be converted exactly: an unknown currency, a too-precise rate, ..."""


def rate_to_ppm(currency: str, rate: Decimal | str | int) -> int:
    """One rate as integer parts per million; more than 6 decimals is a config error."""
    value = Decimal(str(rate))
    scaled = value * PPM
    if not value.is_finite() or value <= 0:
        raise MoneyError(f"currency_rates.{currency} = {rate}: a rate must be a positive number")
    if scaled != scaled.to_integral_value():
        raise MoneyError(
            f"currency_rates.{currency} = {rate}: at most 6 decimals are supported for exact "
            f"money; round the rate in the config (e.g. {value.quantize(Decimal('0.000001'))})"
        )
    return int(scaled)


def rates_to_ppm(rates: Mapping[str, Decimal]) -> dict[str, int]:
    """The whole rate table as parts per million, keyed by upper-case currency code."""
    return {code.strip().upper(): rate_to_ppm(code, rate) for code, rate in rates.items()}


def to_cents(values: pd.Series, *, null_as_zero: bool = False, name: str = "amount") -> np.ndarray:
    """Float money -> int64 cents (nearest cent). Nulls raise unless `null_as_zero`."""
    floats = values.to_numpy(dtype="float64", na_value=np.nan)
    missing = np.isnan(floats)
    if missing.any():
        if not null_as_zero:
            raise MoneyError(f"{name}: {int(missing.sum())} null value(s) cannot be money")
        floats = np.where(missing, 0.0, floats)
    if floats.size and np.abs(floats).max() * 100 >= 2.0**62:
        raise MoneyError(f"{name}: a value of {np.abs(floats).max():g} is too large for cents")
    return np.round(floats * 100).astype(np.int64)


def _ppm_per_row(currencies: pd.Series, rates: Mapping[str, Decimal]) -> np.ndarray:
    table = rates_to_ppm(rates)
    # A handful of distinct codes over a million rows: each distinct code is looked up
    # once, and the rows take their rate by code number (0.18 -> 0.03 s per million
    # rows against stripping, upper-casing and mapping every row's text).
    numbers, distinct = pd.factorize(currencies.astype("string"))
    codes = [str(code).strip().upper() for code in distinct]
    rate_of = np.array([table.get(code, -1) for code in codes] + [-1], dtype=np.int64)
    ppm = rate_of[numbers]  # -1 (no rate) for a null too: number -1 takes the last entry
    unknown = ppm < 0
    if unknown.any():
        seen = sorted({codes[n] if n >= 0 else "<NA>" for n in np.unique(numbers[unknown])})
        raise MoneyError(
            f"currency: {int(unknown.sum())} row(s) in currencies with no rate {seen}; "
            f"known: {sorted(table)} (validation should have quarantined them)"
        )
    return ppm


def cents_to_e8(cents: np.ndarray, currencies: pd.Series, rates: Mapping[str, Decimal]) -> np.ndarray:
    """Per-row cents in their own currency -> int64 1e-8 USD, refusing int64 overflow."""
    ppm = _ppm_per_row(currencies, rates)
    if cents.size:
        # Python ints: the bound itself must not overflow while being checked.
        worst_row = int(np.abs(cents).max()) * int(ppm.max())
        worst_sum = float(np.abs(cents).astype(np.float64) @ ppm.astype(np.float64))
        if worst_row > _INT64_MAX or worst_sum > _INT64_MAX / 2:
            raise MoneyError("amounts too large to sum exactly in 1e-8 USD (int64 overflow)")
    return cents * ppm


# The columns revenue_e8 reads by default: what a row's revenue is computed from.
MONEY_COLUMNS = ("amount", "discount_applied", "currency")


def revenue_e8(
    frame: pd.DataFrame,
    rates: Mapping[str, Decimal],
    *,
    amount: str = "amount",
    discount: str | None = "discount_applied",
    currency: str = "currency",
) -> pd.Series:
    """Each row's (amount − discount) × rate as int64 in 1e-8 USD, on the frame's index.

    A null discount counts as 0 (the documented default, SPEC §5); a null amount or an
    unknown currency raises: validation should never have let either through.
    """
    cents = to_cents(frame[amount], name=amount)
    if discount is not None:
        cents = cents - to_cents(frame[discount], null_as_zero=True, name=discount)
    e8 = cents_to_e8(cents, frame[currency], rates)
    return pd.Series(e8, index=frame.index, dtype=np.int64, name="revenue_e8")


def e8_to_cents(e8: pd.Series) -> pd.Series:
    """Exact 1e-8 USD -> whole cents, half-up (away from zero), int64."""
    values = e8.to_numpy(dtype=np.int64)
    magnitude = (np.abs(values) + E8_PER_CENT // 2) // E8_PER_CENT
    return pd.Series(np.sign(values) * magnitude, index=e8.index, dtype=np.int64)


def cents_to_dollars(cents: pd.Series) -> pd.Series:
    """Int cents -> float dollars; int / 100 is the float nearest the decimal, so it prints clean."""
    return pd.Series(cents.to_numpy(dtype=np.int64) / 100, index=cents.index, dtype="float64")


def e8_to_dollars(e8: pd.Series) -> pd.Series:
    """Exact 1e-8 USD -> float dollars with 2 decimals, rounded half-up."""
    return cents_to_dollars(e8_to_cents(e8))


def dollars_to_cents(dollars: pd.Series) -> pd.Series:
    """Already-rounded float dollars (e.g. a total_revenue column) back to int64 cents."""
    return pd.Series(to_cents(dollars, null_as_zero=True, name="dollars"), index=dollars.index)


def divide_cents(cents: pd.Series, count: pd.Series) -> pd.Series:
    """cents / count as float dollars, rounded half-up to the cent exactly; NaN where count = 0.

    Integer arithmetic: round(c / n) half-up = floor((2|c| + n) / 2n), sign restored.
    """
    c = cents.to_numpy(dtype=np.int64)
    n = count.to_numpy(dtype=np.int64)
    safe = np.where(n > 0, n, 1)
    quotient = np.sign(c) * ((2 * np.abs(c) + safe) // (2 * safe))
    dollars = np.where(n > 0, quotient / 100, np.nan)
    return pd.Series(dollars, index=cents.index, dtype="float64")


def round_half_up(values: pd.Series | np.ndarray, decimals: int) -> pd.Series:
    """Round floats half-up (away from zero) to `decimals`; NaN stays NaN, -0.0 becomes 0.0.

    np.round rounds half to even and works on the binary value (0.045 -> 0.04); here a value
    within a hair of a half rounds away from zero, and k / 10**d prints as written.
    """
    index = values.index if isinstance(values, pd.Series) else None
    if isinstance(values, pd.Series):
        floats = values.to_numpy(dtype="float64", na_value=np.nan)
    else:
        floats = np.asarray(values, dtype="float64")
    factor = 10.0**decimals
    scaled = floats * factor
    rounded = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5 + _HALF_TOLERANCE)
    return pd.Series(rounded / factor + 0.0, index=index, dtype="float64")
