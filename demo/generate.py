"""The embedded demo's data: three realistic sources with documented, deliberate defects.

`generate_frames` builds the three source tables in memory from one seeded numpy Generator
(same seed and scale -> identical frames, vectorised so the default scale takes seconds);
`write_demo` stores them as the SQLite files the demo config reads (customers.db, sales.db,
crm.db) plus `defects.json`, the ground truth from which a test computes the exact count of
every defect in any period.

Values are stored the way a source system hands them over: ids and timestamps as text
('YYYY-MM-DD HH:MM:SS', UTC), money as REAL with 2 decimals, counts as INTEGER.

    python -m demo.generate --out output/demo --customers 10000 --seed 7
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sqlite3
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from tasks.settings import CUSTOMER_FIELDS, INTERACTION_FIELDS, TRANSACTION_FIELDS

logger = logging.getLogger(__name__)

# Deliberate defects. The number of affected rows is rate x rows of the source, rounded half
# up (`defect_count`); no row carries two defects, so every defect is counted exactly once.
MISSING_EMAIL_RATE: Final = 0.02
"""Customers whose email is NULL."""
MALFORMED_EMAIL_RATE: Final = 0.005
"""Customers whose email fails `^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$` (no @, no TLD, a space, @@)."""
DUPLICATE_TRANSACTION_RATE: Final = 0.01
"""Transactions re-ingested: an exact copy of a clean row appended at the end of the table."""
NEGATIVE_AMOUNT_RATE: Final = 0.003
"""Completed transactions whose amount is negative (discount 0), so they would count as revenue."""
UNKNOWN_CURRENCY_RATE: Final = 0.002
"""Transactions in currency 'XYZ', which has no rate."""
ORPHAN_TRANSACTION_RATE: Final = 0.005
"""Transactions whose customer_id is not in customers (ids beyond the last customer)."""
UNPARSEABLE_ORDER_DATE_RATE: Final = 0.002
"""Order dates garbled but keeping their month prefix ('2025-07-3x 10:00:00'), so a textual
range filter still returns them in their month while a date parser rejects them."""
ORPHAN_INTERACTION_RATE: Final = 0.005
"""Interactions whose customer_id is not in customers."""
SATISFACTION_OUT_OF_RANGE_RATE: Final = 0.01
"""Interactions whose satisfaction_score is 0, 6 or 9 (valid: 1-5 or NULL)."""

# kind -> (source, column, rate); the order fixes which rows each kind draws.
DEFECT_KINDS: Final = {
    "missing_email": ("customers", "email", MISSING_EMAIL_RATE),
    "malformed_email": ("customers", "email", MALFORMED_EMAIL_RATE),
    "duplicate_transaction_id": ("transactions", "transaction_id", DUPLICATE_TRANSACTION_RATE),
    "negative_amount": ("transactions", "amount", NEGATIVE_AMOUNT_RATE),
    "unknown_currency": ("transactions", "currency", UNKNOWN_CURRENCY_RATE),
    "orphan_transaction_customer": ("transactions", "customer_id", ORPHAN_TRANSACTION_RATE),
    "unparseable_order_date": ("transactions", "order_date", UNPARSEABLE_ORDER_DATE_RATE),
    "orphan_interaction_customer": ("interactions", "customer_id", ORPHAN_INTERACTION_RATE),
    "satisfaction_out_of_range": (
        "interactions", "satisfaction_score", SATISFACTION_OUT_OF_RANGE_RATE,
    ),
}

TRANSACTIONS_PER_CUSTOMER: Final = 10
INTERACTIONS_PER_CUSTOMER: Final = 3
KNOWN_CURRENCIES: Final = ("USD", "EUR", "GBP", "CAD", "AUD")
UNKNOWN_CURRENCY: Final = "XYZ"
# Only to give local-currency amounts a realistic size; the pipeline's rates live in config.
_USD_PER_UNIT: Final = {"USD": 1.0, "EUR": 1.08, "GBP": 1.27, "CAD": 0.73, "AUD": 0.66}

# code, region, share of customers, states, home currency, tax rate, calling code
_COUNTRIES: Final = (
    ("US", "North America", 0.45, ("CA", "NY", "TX", "FL", "WA", "IL"), "USD", 0.07, "1"),
    ("CA", "North America", 0.07, ("ON", "BC", "QC", "AB"), "CAD", 0.13, "1"),
    ("DE", "Europe", 0.09, ("BY", "BE", "NW", "HH"), "EUR", 0.19, "49"),
    ("FR", "Europe", 0.07, ("IDF", "ARA", "PAC"), "EUR", 0.20, "33"),
    ("GB", "Europe", 0.08, ("ENG", "SCT", "WLS"), "GBP", 0.20, "44"),
    ("AU", "APAC", 0.06, ("NSW", "VIC", "QLD"), "AUD", 0.10, "61"),
    ("JP", "APAC", 0.05, ("Tokyo", "Osaka", "Kanagawa"), "USD", 0.10, "81"),
    ("BR", "LATAM", 0.07, ("SP", "RJ", "MG"), "USD", 0.17, "55"),
    ("MX", "LATAM", 0.06, ("CMX", "JAL", "NLE"), "USD", 0.16, "52"),
)
_FIRST_NAMES: Final = (
    "Anna", "Ben", "Carla", "David", "Elena", "Felix", "Grace", "Hugo", "Ines", "Jonas", "Kira",
    "Liam", "Maya", "Noah", "Olga", "Paul", "Quinn", "Rosa", "Sam", "Tara", "Umar", "Vera",
    "Wei", "Xenia", "Yusuf", "Zoe", "Aiko", "Bruno", "Chloe", "Diego",
)
_LAST_NAMES: Final = (
    "Smith", "Muller", "Garcia", "Martin", "Brown", "Rossi", "Silva", "Tanaka", "Wilson",
    "Dubois", "Schmidt", "Lopez", "Taylor", "Kim", "Nguyen", "Jones", "Fischer", "Moreau",
    "Santos", "Clark", "Walker", "Sato", "Hughes", "Bernard", "Weber", "Perez", "Young",
    "King", "Costa", "Wright",
)
_EMAIL_DOMAINS: Final = ("example.com", "mail.example.org", "example.net", "shop.example.io")
# segment, share, log-spend uplift
_SEGMENTS: Final = (("consumer", 0.70, 0.0), ("small_business", 0.22, 0.6),
                    ("enterprise", 0.08, 1.3))
_CATEGORIES: Final = (
    ("electronics", 0.18), ("clothing", 0.20), ("home", 0.15), ("books", 0.10),
    ("sports", 0.10), ("beauty", 0.09), ("toys", 0.08), ("grocery", 0.10),
)
_PAYMENT_METHODS: Final = (
    ("credit_card", 0.45), ("debit_card", 0.20), ("paypal", 0.20), ("bank_transfer", 0.10),
    ("gift_card", 0.05),
)
_TRANSACTION_STATUSES: Final = (
    ("completed", 0.90), ("refunded", 0.04), ("cancelled", 0.04), ("pending", 0.02),
)
# interaction type, share, median duration in seconds
_INTERACTION_TYPES: Final = (("call", 0.25, 360), ("email", 0.30, 150), ("chat", 0.30, 480),
                             ("ticket", 0.15, 1200))
_DEPARTMENTS: Final = (("support", 0.40), ("billing", 0.25), ("sales", 0.15), ("technical", 0.20))
_DAY: Final = 86_400

SQL_TYPES: Final = {  # stored column types; everything else is TEXT
    "amount": "REAL", "discount_applied": "REAL", "tax_amount": "REAL", "quantity": "INTEGER",
    "duration": "INTEGER", "satisfaction_score": "INTEGER",
}
# file, table, primary key (transactions has none: it holds re-ingested duplicates), index
_TABLES: Final = {
    "customers": ("customers.db", "customers", "customer_id", None),
    "transactions": ("sales.db", "transactions", None, "order_date"),
    "interactions": ("crm.db", "interactions", "interaction_id", "interaction_date"),
}


@dataclass
class DemoData:
    """The three source tables as stored (text timestamps, REAL money) and their defects."""

    customers: pd.DataFrame
    transactions: pd.DataFrame
    interactions: pd.DataFrame
    defects: dict[str, dict[str, Any]]  # kind -> source, column, rate, count, ids, months
    meta: dict[str, Any] = field(default_factory=dict)

    def manifest(self) -> dict[str, Any]:
        """The content of defects.json: how the data was made, and every defect row."""
        return {**self.meta, "defects": self.defects}


def defect_count(rate: float, rows: int) -> int:
    """Rows a defect affects: rate x rows, rounded half up."""
    return int(rate * rows + 0.5)


def expected_defect_count(defects: dict[str, dict[str, Any]], kind: str,
                          month: str | None = None) -> int:
    """How many rows of `kind` fall in `month` ('YYYY-MM'), or in total when month is None."""
    months = defects[kind]["months"]
    return len(months) if month is None else sum(1 for m in months if m == month)


def _ids(prefix: str, numbers: np.ndarray, width: int) -> np.ndarray:
    return np.char.add(prefix, np.char.zfill(numbers.astype(str), width))


def _text_time(seconds: np.ndarray) -> np.ndarray:
    """Epoch seconds -> 'YYYY-MM-DD HH:MM:SS' (UTC)."""
    iso = np.datetime_as_string(seconds.astype("datetime64[s]"), unit="s")
    return np.char.replace(iso, "T", " ")


def _choice(rng: np.random.Generator, table: Sequence[tuple[Any, ...]], size: int,
            slot: int = 1) -> np.ndarray:
    """Indices into `table`, drawn with the share held in each entry's `slot`."""
    shares = np.array([entry[slot] for entry in table], dtype=float)
    return rng.choice(len(table), size=size, p=shares / shares.sum())


def _shift_off_weekends(rng: np.random.Generator, seconds: np.ndarray, share: float) -> np.ndarray:
    """Move `share` of the weekend days to a weekday of the same week (weekday pattern)."""
    day = seconds // _DAY
    weekday = (day + 3) % 7  # 1970-01-01 was a Thursday; 0 = Monday
    move = (weekday >= 5) & (rng.random(len(day)) < share)
    target = day - weekday + rng.integers(0, 5, len(day))
    return np.where(move, target, day) * _DAY


@dataclass
class _Population:
    """Hidden per-customer traits that drive the facts (never stored)."""

    country: np.ndarray
    activity: np.ndarray  # relative purchase frequency, heavy-tailed
    spend_mu: np.ndarray  # log of the typical order value in USD
    active_from: np.ndarray  # epoch seconds: max(registration, window start)
    active_until: np.ndarray  # exclusive; earlier than the window end for churned customers


def _customers(rng: np.random.Generator, n: int, start: int,
               end: int) -> tuple[pd.DataFrame, _Population]:
    country = _choice(rng, _COUNTRIES, n, slot=2)
    n_states = np.array([len(c[3]) for c in _COUNTRIES])
    width = int(n_states.max())
    states = np.array([list(c[3]) + [""] * (width - len(c[3])) for c in _COUNTRIES], dtype=object)
    state = states[country, (rng.random(n) * n_states[country]).astype(int)]
    first = np.array(_FIRST_NAMES)[rng.integers(0, len(_FIRST_NAMES), n)]
    last = np.array(_LAST_NAMES)[rng.integers(0, len(_LAST_NAMES), n)]
    number = np.arange(1, n + 1)
    local = np.char.add(np.char.add(np.char.lower(first), "."), np.char.lower(last))
    local = np.char.add(local, number.astype(str))
    domain = np.array(_EMAIL_DOMAINS)[rng.integers(0, len(_EMAIL_DOMAINS), n)]
    segment = _choice(rng, _SEGMENTS, n)

    # Registrations spread over six years, denser lately; 3 % within the last 30 days.
    recent = rng.random(n) < 0.03
    older = end - 30 * _DAY - (rng.random(n) ** 1.5 * 6 * 365 * _DAY).astype(np.int64)
    registered = np.where(recent, end - 1 - (rng.random(n) * 30 * _DAY).astype(np.int64), older)
    # Churned: registered before the window, no purchase in the last three months of it.
    churned = (registered < start) & (rng.random(n) < 0.15)
    churn_span = max(end - start - 120 * _DAY, _DAY)
    churn_at = start + 30 * _DAY + (rng.random(n) * churn_span).astype(np.int64)
    status_shares = np.where(churned[:, None], [0.40, 0.45, 0.15], [0.95, 0.03, 0.02])
    status = (rng.random(n)[:, None] > np.cumsum(status_shares, axis=1)).sum(axis=1)
    login_gap = rng.exponential(6 * _DAY, n).astype(np.int64)
    last_login = np.where(churned, churn_at + rng.exponential(20 * _DAY, n).astype(np.int64),
                          end - 1 - login_gap)
    last_login = np.clip(last_login, registered, end - 1)
    never_logged_in = rng.random(n) < 0.015
    updated = registered + (rng.random(n) * (end - registered)).astype(np.int64)

    login_text = _text_time(last_login).astype(object)
    login_text[never_logged_in] = None
    frame = pd.DataFrame({
        "customer_id": _ids("C", number, 6),
        "name": np.char.add(np.char.add(first, " "), last),
        "email": np.char.add(np.char.add(local, "@"), domain).astype(object),
        "phone": np.char.add(
            np.char.add("+", np.array([c[6] for c in _COUNTRIES])[country]),
            np.char.add(" ", rng.integers(100_000_000, 999_999_999, n).astype(str)),
        ),
        "registration_date": _text_time(registered),
        "last_login": login_text,
        "status": np.array(["active", "inactive", "suspended"])[status],
        "region": np.array([c[1] for c in _COUNTRIES])[country],
        "segment": np.array([s[0] for s in _SEGMENTS])[segment],
        "created_at": _text_time(registered),
        "updated_at": _text_time(updated),
        "country": np.array([c[0] for c in _COUNTRIES])[country],
        "state": state,
    })
    population = _Population(
        country=country,
        activity=rng.lognormal(0.0, 1.0, n),
        spend_mu=(np.log(45.0) + rng.normal(0.0, 0.6, n)
                  + np.array([s[2] for s in _SEGMENTS])[segment]),
        active_from=np.maximum(registered, start),
        active_until=np.where(churned, churn_at, end),
    )
    return frame, population


def _event_times(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray,
                 hour_mean: float, hour_sd: float, weekend_shift: float) -> np.ndarray:
    """Epoch seconds in [lo, hi): a weekday pattern and a daytime peak."""
    raw = lo + (rng.random(len(lo)) * (hi - lo)).astype(np.int64)
    day = _shift_off_weekends(rng, raw, weekend_shift)
    hours = np.mod(rng.normal(hour_mean, hour_sd, len(lo)), 24.0)  # wrap, not clip: no spike
    return np.clip(day + (hours * 3600).astype(np.int64), lo, hi - 1)


def _pick(rng: np.random.Generator, order: np.ndarray, counts: Sequence[int]) -> list[np.ndarray]:
    """Disjoint slices of a permutation: the rows of each defect kind, in kind order."""
    bounds = np.cumsum([0, *counts])
    return [np.sort(order[bounds[i]:bounds[i + 1]]) for i in range(len(counts))]


def _record(kind: str, ids: np.ndarray, months: np.ndarray) -> dict[str, Any]:
    source, column, rate = DEFECT_KINDS[kind]
    return {"source": source, "column": column, "rate": rate, "count": len(ids),
            "ids": [str(i) for i in ids], "months": [str(m) for m in months]}


def _orphan_ids(rng: np.random.Generator, n_customers: int, size: int) -> np.ndarray:
    """Customer ids past the last real one: they look valid but match no customer."""
    return _ids("C", n_customers + 1 + rng.integers(0, n_customers, size), 6)


def _malformed(rng: np.random.Generator, emails: np.ndarray) -> np.ndarray:
    local = np.array([e.split("@")[0] for e in emails], dtype=str)
    domain = np.array([e.split("@")[1] for e in emails], dtype=str)
    variants = np.stack([
        np.char.add(np.char.add(local, "."), domain),  # no @
        np.char.add(local, "@example"),  # no top-level domain
        np.char.add(np.char.add(local, " @"), domain),  # a space
        np.char.add(np.char.add(local, "@@"), domain),  # two @
    ])
    return variants[rng.integers(0, 4, len(emails)), np.arange(len(emails))].astype(object)


def _transactions(rng: np.random.Generator, people: _Population, n_customers: int,
                  total: int) -> tuple[pd.DataFrame, dict[str, dict[str, Any]]]:
    counts = {kind: defect_count(rate, total) for kind, (source, _, rate) in DEFECT_KINDS.items()
              if source == "transactions"}
    base = total - counts["duplicate_transaction_id"]
    weight = people.activity * (people.active_until - people.active_from)
    buyer = rng.choice(n_customers, size=base, p=weight / weight.sum())
    at = _event_times(rng, people.active_from[buyer], people.active_until[buyer], 14.0, 4.0, 0.35)
    order = np.argsort(at, kind="stable")  # ids follow time, as an order system assigns them
    buyer, at = buyer[order], at[order]
    country = people.country[buyer]

    home = np.array([c[4] for c in _COUNTRIES])[country]
    currency = np.where(rng.random(base) < 0.9, home, "USD").astype(object)
    rate = np.vectorize(_USD_PER_UNIT.get, otypes=[float])(currency)
    usd = np.exp(people.spend_mu[buyer] + rng.normal(0.0, 0.55, base))
    amount = np.round(np.maximum(usd / rate, 1.0), 2)
    discounted = rng.random(base) < 0.3
    discount = np.where(discounted, np.round(amount * rng.uniform(0.05, 0.3, base), 2), 0.0)
    tax = np.round(amount * np.array([c[5] for c in _COUNTRIES])[country], 2)
    status = np.array([s[0] for s in _TRANSACTION_STATUSES], dtype=object)[
        _choice(rng, _TRANSACTION_STATUSES, base)]
    order_text = _text_time(at).astype(object)
    months = np.array([t[:7] for t in order_text])
    frame = pd.DataFrame({
        "transaction_id": _ids("T", np.arange(1, base + 1), 7),
        "customer_id": _ids("C", buyer + 1, 6).astype(object),
        "order_date": order_text,
        "amount": amount,
        "currency": currency,
        "product_category": np.array([c[0] for c in _CATEGORIES])[_choice(rng, _CATEGORIES, base)],
        "quantity": 1 + rng.poisson(0.5, base),
        "payment_method": np.array([p[0] for p in _PAYMENT_METHODS])[
            _choice(rng, _PAYMENT_METHODS, base)],
        "status": status,
        "discount_applied": discount,
        "tax_amount": tax,
        "created_at": _text_time(at + rng.integers(0, 300, base)),
    })

    kinds = list(counts)
    picked = _pick(rng, rng.permutation(base), [counts[k] for k in kinds])
    rows = dict(zip(kinds, picked, strict=True))
    negative = rows["negative_amount"]
    frame.loc[negative, "amount"] = -frame.loc[negative, "amount"]
    frame.loc[negative, "discount_applied"] = 0.0
    frame.loc[negative, "status"] = "completed"
    frame.loc[rows["unknown_currency"], "currency"] = UNKNOWN_CURRENCY
    orphan = rows["orphan_transaction_customer"]
    frame.loc[orphan, "customer_id"] = _orphan_ids(rng, n_customers, len(orphan))
    garbled = rows["unparseable_order_date"]
    frame.loc[garbled, "order_date"] = [t[:9] + "x" + t[10:] for t in order_text[garbled]]
    copies = frame.iloc[rows["duplicate_transaction_id"]]
    frame = pd.concat([frame, copies], ignore_index=True)  # re-ingested at the end

    ids = frame["transaction_id"].to_numpy()
    defects = {kind: _record(kind, ids[idx], months[idx]) for kind, idx in rows.items()}
    return frame, defects


def _interactions(rng: np.random.Generator, people: _Population, n_customers: int, end: int,
                  total: int) -> tuple[pd.DataFrame, dict[str, dict[str, Any]]]:
    weight = (0.3 + people.activity) * (end - people.active_from)
    who = rng.choice(n_customers, size=total, p=weight / weight.sum())
    at = np.sort(_event_times(rng, people.active_from[who], np.full(total, end), 12.5, 2.5, 0.6))
    kind = _choice(rng, _INTERACTION_TYPES, total)
    median = np.array([t[2] for t in _INTERACTION_TYPES])[kind]
    duration = np.maximum(np.round(median * rng.lognormal(0.0, 0.7, total)), 10).astype(np.int64)
    rated = rng.random(total) >= 0.35
    stars = rng.choice(np.arange(1, 6), total, p=[0.06, 0.09, 0.2, 0.35, 0.3])
    score = pd.array(np.where(rated, stars, 0), dtype="Int64")
    score[~rated] = pd.NA
    recent = (end - at) < 14 * _DAY  # recent contacts are more often still open
    shares = np.where(recent[:, None], [0.35, 0.15, 0.30, 0.20], [0.60, 0.36, 0.02, 0.02])
    resolution = (rng.random(total)[:, None] > np.cumsum(shares, axis=1)).sum(axis=1)
    at_text = _text_time(at)
    frame = pd.DataFrame({
        "customer_id": _ids("C", who + 1, 6).astype(object),
        "interaction_type": np.array([t[0] for t in _INTERACTION_TYPES])[kind],
        "interaction_date": at_text,
        "duration": duration,
        "satisfaction_score": score,
        "resolution_status": np.array(["resolved", "closed", "open", "pending"])[resolution],
        "agent_id": _ids("A", rng.integers(1, 81, total), 3),
        "department": np.array([d[0] for d in _DEPARTMENTS])[_choice(rng, _DEPARTMENTS, total)],
        "interaction_id": _ids("I", np.arange(1, total + 1), 6),
    })
    kinds = [k for k, (source, _, _) in DEFECT_KINDS.items() if source == "interactions"]
    counts = [defect_count(DEFECT_KINDS[k][2], total) for k in kinds]
    rows = dict(zip(kinds, _pick(rng, rng.permutation(total), counts), strict=True))
    orphan = rows["orphan_interaction_customer"]
    frame.loc[orphan, "customer_id"] = _orphan_ids(rng, n_customers, len(orphan))
    bad_score = rows["satisfaction_out_of_range"]
    frame.loc[bad_score, "satisfaction_score"] = rng.choice([0, 6, 9], len(bad_score))
    ids, months = frame["interaction_id"].to_numpy(), np.array([t[:7] for t in at_text])
    return frame, {kind: _record(kind, ids[idx], months[idx]) for kind, idx in rows.items()}


def generate_frames(customers: int = 10_000, seed: int = 7, start: str = "2024-07-01",
                    months: int = 13) -> DemoData:
    """Build the demo's three sources: `customers` rows, 10x transactions, 3x interactions.

    Facts span `months` calendar months from `start` (UTC); the defaults cover 2024-07 to
    2025-07, so the July 2025 demo period and June 2025 both have a previous month.
    """
    if customers < 10:
        raise ValueError(f"customers={customers}: the demo needs at least 10 customers")
    rng = np.random.default_rng(seed)
    first_month = np.datetime64(start[:7], "M")
    begin = int(first_month.astype("datetime64[s]").astype(np.int64))
    end = int((first_month + months).astype("datetime64[s]").astype(np.int64))
    customer_frame, people = _customers(rng, customers, begin, end)

    counts = [defect_count(DEFECT_KINDS[k][2], customers)
              for k in ("missing_email", "malformed_email")]
    missing, malformed = _pick(rng, rng.permutation(customers), counts)
    emails = customer_frame["email"].to_numpy(dtype=object)
    emails[malformed] = _malformed(rng, emails[malformed].astype(str))
    emails[missing] = None
    customer_frame["email"] = emails
    ids = customer_frame["customer_id"].to_numpy()
    created_months = customer_frame["created_at"].str[:7].to_numpy()
    defects = {kind: _record(kind, ids[rows], created_months[rows])
               for kind, rows in (("missing_email", missing), ("malformed_email", malformed))}

    transactions, transaction_defects = _transactions(
        rng, people, customers, TRANSACTIONS_PER_CUSTOMER * customers)
    interactions, interaction_defects = _interactions(
        rng, people, customers, end, INTERACTIONS_PER_CUSTOMER * customers)
    meta = {
        "seed": seed, "customers": customers, "start": str(first_month),
        "end_exclusive": str(first_month + months), "months": months,
        "rows": {"customers": customers, "transactions": len(transactions),
                 "interactions": len(interactions)},
        "months_of": "customers: created_at; transactions: order_date (intended, for garbled "
                     "dates); interactions: interaction_date",
    }
    return DemoData(
        customers=customer_frame[list(CUSTOMER_FIELDS)],
        transactions=transactions[list(TRANSACTION_FIELDS)],
        interactions=interactions[list(INTERACTION_FIELDS)],
        defects={**defects, **transaction_defects, **interaction_defects},
        meta=meta,
    )


def _temp_beside(path: Path) -> Path:
    """A fresh temporary name in the target's folder, so os.replace is an atomic rename."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")


def _write_table(path: Path, table: str, frame: pd.DataFrame, primary_key: str | None,
                 index: str | None) -> None:
    """Write one table to a fresh SQLite file, atomically (temp file + rename)."""
    columns = ", ".join(
        f'"{c}" {SQL_TYPES.get(c, "TEXT")}{" PRIMARY KEY" if c == primary_key else ""}'
        for c in frame.columns
    )
    values = [frame[c].astype(object).where(frame[c].notna(), None).tolist() for c in frame.columns]
    temp = _temp_beside(path)
    try:
        with sqlite3.connect(temp) as connection:
            connection.execute(f'CREATE TABLE "{table}" ({columns})')
            marks = ", ".join("?" for _ in frame.columns)
            insert = f'INSERT INTO "{table}" VALUES ({marks})'
            connection.executemany(insert, zip(*values, strict=True))
            if index:
                connection.execute(f'CREATE INDEX "ix_{table}_{index}" ON "{table}" ("{index}")')
        connection.close()
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def write_demo(out_dir: Path, customers: int = 10_000, seed: int = 7) -> Path:
    """Write customers.db, sales.db, crm.db and defects.json under `out_dir`; return it."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = generate_frames(customers=customers, seed=seed)
    for source, (file_name, table, primary_key, index) in _TABLES.items():
        _write_table(out_dir / file_name, table, getattr(data, source), primary_key, index)
    temp = _temp_beside(out_dir / "defects.json")
    temp.write_text(json.dumps(data.manifest(), indent=1) + "\n", encoding="utf-8")
    os.replace(temp, out_dir / "defects.json")
    logger.info("demo data in %s: %s", out_dir, data.meta["rows"])
    return out_dir


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate the embedded demo's source databases.")
    parser.add_argument("--out", type=Path, default=Path("output/demo"))
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    write_demo(args.out, customers=args.customers, seed=args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
