"""CSV export: formula injection neutralised, stable columns and formatting, atomic writes."""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
from pathlib import Path

import pandas as pd
import pytest

from tasks import export_csv
from tasks.export_csv import CsvExportError, csv_name, neutralise_formulas, write_csv

pytestmark = pytest.mark.unit


def read_rows(path: Path) -> list[list[str]]:
    """The file as a spreadsheet importer sees it: header first, every cell as text."""
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle))


# --- formula injection ----------------------------------------------------------------


def test_a_hyperlink_formula_in_a_customer_name_arrives_as_text(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "customer_id": ["c1", "c2"],
            # c1: the classic exfiltration payload; c2: a normal name, left alone.
            "name": ['=HYPERLINK("http://x","y")', "Ada Lovelace"],
        }
    )
    path = write_csv(frame, tmp_path / "out.csv", ["customer_id", "name"])

    rows = read_rows(path)
    # The quote makes Excel/LibreOffice show the text instead of evaluating it.
    assert rows[1] == ["c1", '\'=HYPERLINK("http://x","y")']
    assert rows[2] == ["c2", "Ada Lovelace"]
    # No cell of the file starts with '=' any more.
    assert not any(cell.startswith("=") for row in rows for cell in row)


def test_negative_numbers_stay_numbers_while_dash_text_is_neutralised() -> None:
    frame = pd.DataFrame(
        {
            # A float column: -5.0 is a number, never touched.
            "amount": [-5.0, 3.0, float("nan"), 1.0, 2.0, 4.0],
            # An object column mixing types: the int -5 stays an int; the strings are
            # payloads, one per risky first character (-, +, @, TAB, CR), plus a null.
            "mixed": [-5, "-cmd", None, "+1+cmd", "@SUM(A1)", "\tx"],
            # A pandas string column: CR first, a safe value, and the inner '=' that is
            # harmless because it is not the first character.
            "text": ["\rx", "safe", pd.NA, "a=b", "x", "y"],
        }
    ).astype({"text": "string"})

    result = neutralise_formulas(frame)

    assert result["amount"].tolist()[:2] == [-5.0, 3.0] and math.isnan(result["amount"][2])
    assert result["mixed"].tolist() == [-5, "'-cmd", None, "'+1+cmd", "'@SUM(A1)", "'\tx"]
    assert isinstance(result["mixed"][0], int)
    assert result["text"].tolist()[:2] == ["'\rx", "safe"] and pd.isna(result["text"][2])
    assert result["text"].tolist()[3:] == ["a=b", "x", "y"]
    assert result["text"].dtype == frame["text"].dtype  # the column keeps its dtype
    # The input is not modified: callers may still use their frame afterwards.
    assert frame["mixed"][1] == "-cmd"


def test_negative_number_is_written_bare_but_dash_text_quoted(tmp_path: Path) -> None:
    frame = pd.DataFrame({"value": [-5, 7], "label": ["-cmd", "ok"]})
    rows = read_rows(write_csv(frame, tmp_path / "out.csv", ["value", "label"]))
    # -5 must stay a number a spreadsheet can sum; "-cmd" must not start a formula.
    assert rows[1:] == [["-5", "'-cmd"], ["7", "ok"]]


# --- columns ----------------------------------------------------------------------------


def test_columns_are_written_in_the_requested_order_and_extras_dropped(tmp_path: Path) -> None:
    # The frame's own order (b, internal, a) differs from the contract's (a, b).
    frame = pd.DataFrame({"b": [2], "internal": ["not exported"], "a": [1]})
    rows = read_rows(write_csv(frame, tmp_path / "out.csv", ["a", "b"]))
    assert rows == [["a", "b"], ["1", "2"]]


def test_a_missing_column_is_an_error_naming_it_and_writes_nothing(tmp_path: Path) -> None:
    frame = pd.DataFrame({"customer_id": ["c1"], "name": ["Ada"]})
    target = tmp_path / "customer_performance_july2025.csv"
    with pytest.raises(CsvExportError) as caught:
        write_csv(frame, target, ["customer_id", "total_revenue", "name"])
    message = str(caught.value)
    assert "'total_revenue'" in message and "customer_performance_july2025.csv" in message
    assert list(tmp_path.iterdir()) == []


# --- formatting ---------------------------------------------------------------------------


def test_formatting_is_utf8_iso_utc_empty_nulls_and_lf_line_ends(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            # Row 1: a non-ASCII name, a Berlin timestamp (09:30+02:00 = 07:30 UTC),
            #        a date, a float that has no short decimal form, a nullable int.
            # Row 2: every value null.
            "name": ["Zoë", None],
            "seen_at": pd.to_datetime(["2025-07-01T09:30:00+02:00", None], utc=True),
            "day": [dt.date(2025, 7, 1), None],
            "ratio": [0.1 + 0.2, None],
            "count": pd.array([3, None], dtype="Int64"),
        }
    )
    path = write_csv(frame, tmp_path / "out.csv", list(frame.columns))
    raw = path.read_bytes()

    assert b"\r" not in raw and raw.endswith(b"\n")
    expected = (
        f"name,seen_at,day,ratio,count\nZoë,2025-07-01T07:30:00Z,2025-07-01,{0.1 + 0.2!r},3\n,,,,\n"
    )
    assert raw == expected.encode("utf-8")


def test_naive_timestamps_are_taken_as_utc(tmp_path: Path) -> None:
    # The data contract keeps timestamps in UTC; a naive one must not shift.
    frame = pd.DataFrame({"at": pd.to_datetime(["2025-07-31 23:59:59"])})
    rows = read_rows(write_csv(frame, tmp_path / "out.csv", ["at"]))
    assert rows[1] == ["2025-07-31T23:59:59Z"]


def test_the_same_frame_gives_the_same_bytes(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": [1.5, -2.25], "b": ["x", "=y"]})
    first = write_csv(frame, tmp_path / "one.csv", ["a", "b"]).read_bytes()
    second = write_csv(frame, tmp_path / "two.csv", ["a", "b"]).read_bytes()
    assert first == second


def test_embedded_commas_quotes_and_newlines_round_trip(tmp_path: Path) -> None:
    # A name with every character CSV has to quote: comma, double quote, newline.
    name = 'Smith, "Jr."\nLine two'
    frame = pd.DataFrame({"name": [name]})
    path = write_csv(frame, tmp_path / "out.csv", ["name"])
    assert pd.read_csv(io.BytesIO(path.read_bytes()))["name"].tolist() == [name]


# --- atomic write -----------------------------------------------------------------------------


def test_an_existing_file_is_replaced_whole_and_no_temp_file_is_left(tmp_path: Path) -> None:
    target = tmp_path / "report.csv"
    long_frame = pd.DataFrame({"a": range(1000)})
    write_csv(long_frame, target, ["a"])
    # The second export is much shorter: a non-truncating write would leave old rows.
    write_csv(pd.DataFrame({"a": [42]}), target, ["a"])
    assert target.read_bytes() == b"a\n42\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.csv"]


def test_a_failed_rename_keeps_the_old_file_and_removes_the_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "report.csv"
    write_csv(pd.DataFrame({"a": [1]}), target, ["a"])

    def failing_replace(src: str, dst: str) -> None:
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(export_csv.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        write_csv(pd.DataFrame({"a": [2]}), target, ["a"])

    assert target.read_bytes() == b"a\n1\n"  # readers still see the complete old export
    assert [p.name for p in tmp_path.iterdir()] == ["report.csv"]


def test_the_output_folder_is_created(tmp_path: Path) -> None:
    target = tmp_path / "output" / "july" / "x.csv"
    write_csv(pd.DataFrame({"a": [1]}), target, ["a"])
    assert target.read_bytes() == b"a\n1\n"


# --- names ---------------------------------------------------------------------------------------


def test_csv_name_follows_the_spec() -> None:
    assert csv_name("customer_performance", "july2025") == "customer_performance_july2025.csv"
    assert csv_name("data_quality_report", "july2025") == "data_quality_report_july2025.csv"


@pytest.mark.parametrize("kind, label", [("../etc", "july2025"), ("x", "July 2025"), ("", "x")])
def test_csv_name_rejects_anything_that_is_not_a_plain_name(kind: str, label: str) -> None:
    with pytest.raises(CsvExportError):
        csv_name(kind, label)


# --- the Arrow renderer gives the reference bytes ----------------------------------------------


def awkward_frame() -> pd.DataFrame:
    """Every kind of column a report has, with the values that trip formatters up."""
    floats = [0.0, -0.0, 1.0, 0.1 + 0.2, 1e-05, 0.0001, 1e15, 1e16, 123456789012.345, 345584192064786.0,
              -17477209205.516193, float("inf"), float("-inf"), float("nan"), 2.5, 100.0]
    n = len(floats)
    text = ["plain", "a,b", 'say "hi"', "two\nlines", "cr\ronly", "=1+1", "+x", "-y", "@z", "\tt",
            "\rr", "\nn", "\0z", "", None, "Zoë"]
    return pd.DataFrame(
        {
            "name": pd.array(text, dtype="string"),
            "amount": floats,
            "nullable_float": pd.array(floats[:-3] + [None, None, None], dtype="Float64"),
            "count": range(n),
            "nullable_count": pd.array([None if i % 3 == 0 else -i for i in range(n)], dtype="Int64"),
            "flag": [i % 2 == 0 for i in range(n)],
            "nullable_flag": pd.array([None if i % 4 == 0 else i % 2 == 0 for i in range(n)], dtype="boolean"),
            # pre-1970 with a fraction: strftime floors the second, a cast would truncate
            "seen_at": pd.to_datetime(
                ["1969-12-31T23:59:59.5+00:00", "2025-07-01T09:30:00.999+02:00", None] + ["2025-01-01T00:00:00Z"] * (n - 3),
                utc=True, format="ISO8601",
            ),
            "naive_at": pd.to_datetime(["2025-07-31 23:59:59.75"] * (n - 1) + [None]),
        }
    )


def test_the_arrow_renderer_gives_byte_for_byte_what_pandas_to_csv_gives() -> None:
    frame = awkward_frame()
    assert export_csv.csv_text_columns(frame) is not None  # the fast path really runs
    columns = list(frame.columns)
    assert export_csv.render_csv(frame, columns) == export_csv.render_csv_pandas(frame, columns)


def test_floats_of_every_magnitude_are_written_like_numpy_writes_them(monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    rng = np.random.default_rng(7)
    values = np.concatenate(
        [
            rng.standard_normal(20_000) * 10.0 ** rng.integers(-8, 20, 20_000),
            np.round(rng.standard_normal(20_000) * 1e6, 2),
            rng.integers(-(2**62), 2**62, 20_000).view(np.float64),  # arbitrary bit patterns
        ]
    )
    with np.errstate(invalid="ignore"):  # the NaN bit patterns
        rounded = np.round(np.clip(values, -1e12, 1e12), 3)
    frame = pd.DataFrame({"value": values, "rounded": rounded})
    monkeypatch.setattr(export_csv, "CHUNK_ROWS", 7_000)  # several chunks, one cut mid-frame
    assert export_csv.render_csv(frame, ["value", "rounded"]) == export_csv.render_csv_pandas(frame, ["value", "rounded"])


def test_a_frame_with_an_object_column_takes_the_pandas_path() -> None:
    frame = pd.DataFrame({"day": [dt.date(2025, 7, 1), None], "n": [1, 2]})
    assert export_csv.csv_text_columns(frame) is None
    assert export_csv.render_csv(frame, ["day", "n"]) == b"day,n\n2025-07-01,1\n,2\n"


def test_unsigned_and_narrow_numbers_are_written_as_pandas_writes_them() -> None:
    import numpy as np

    frame = pd.DataFrame(
        {
            "big": np.array([2**64 - 1, 0, 7], dtype=np.uint64),
            "small": np.array([-3, 0, 5], dtype=np.int8),
            "single": np.array([0.1, 1.0, np.nan], dtype=np.float32),  # float32 has its own repr
            "name": pd.array(["a", "b", "c"], dtype="string"),
        }
    )
    columns = list(frame.columns)
    assert export_csv.render_csv(frame, columns) == export_csv.render_csv_pandas(frame, columns)
