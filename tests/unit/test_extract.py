"""Raw frames reach the staging area whatever the source's loose typing."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from tasks.extract import arrow_safe
from tasks.normalize import normalize
from tasks.staging import read_frame, write_frame

pytestmark = pytest.mark.unit


def test_mixed_columns_are_staged_as_text_and_parse_back(tmp_path: Path) -> None:
    raw = pd.DataFrame(
        {
            "transaction_id": ["T1", "T2", "T3"],
            "amount": [12.5, "12,50", None],  # SQLite keeps what it was given
            "order_date": [datetime(2025, 7, 1, 10), "2025-07-3x", None],
            "quantity": [1, 2, 3],  # uniform: left alone
        }
    )
    safe = arrow_safe(raw)
    write_frame(safe, tmp_path / "raw.arrow")  # the original frame would raise ArrowInvalid
    stg = normalize("transactions", read_frame(tmp_path / "raw.arrow"))
    assert stg["amount"].tolist()[0] == 12.5 and stg["amount__invalid"][1] == "12,50"
    assert stg["order_date"][0] == pd.Timestamp("2025-07-01 10:00", tz="UTC")
    assert stg["order_date__invalid"][1] == "2025-07-3x"
    assert pd.isna(stg["amount"][2]) and pd.isna(stg["amount__invalid"][2])
    assert safe["quantity"].dtype == raw["quantity"].dtype
