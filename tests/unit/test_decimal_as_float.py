"""ConnectorX's DECIMAL columns become the doubles their text parses to (tasks/sql_connectorx).

The streaming reader parses the server's text ('124.30'); the ConnectorX path must give the
same double for every value, or the two readers' histories would differ by a cent's rounding.
"""

from __future__ import annotations

from decimal import Context, Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.sql_connectorx import EXACT_INTEGER, decimal_as_float


def parsed_from_text(values: pa.Array) -> pa.Array:
    """What the streaming reader's typing makes of the same values: text, then a parse."""
    return pc.cast(pc.cast(values, pa.string()), pa.float64())


def assert_same_doubles(got: pa.Array, expected: pa.Array) -> None:
    assert got.type == pa.float64()
    assert got.is_null().equals(expected.is_null())
    a = got.fill_null(0.0).to_numpy(zero_copy_only=False)
    b = expected.fill_null(0.0).to_numpy(zero_copy_only=False)
    assert a.view(np.int64).tolist() == b.view(np.int64).tolist()  # bit for bit


WIDE = Context(prec=60)  # the default context would round 38 digits to 28


def decimals(unscaled: list[int | None], scale: int = 10) -> pa.Array:
    return pa.array(
        [None if u is None else Decimal(u).scaleb(-scale, WIDE) for u in unscaled],
        pa.decimal128(38, scale),
    )


def test_money_amounts_are_the_nearest_double_where_arrows_cast_is_not():
    values = decimals([1243000000000, 2159800000000, 256500000000, 0, -1552000000000, None])
    assert_same_doubles(decimal_as_float(values), parsed_from_text(values))
    assert decimal_as_float(values).to_pylist() == [124.3, 215.98, 25.65, 0.0, -155.2, None]
    # Arrow's own cast is not the parse: the reason this function exists
    assert pc.cast(values, pa.float64())[0].as_py() != 124.3


def test_values_too_wide_for_an_exact_double_are_parsed_from_their_text():
    wide = [EXACT_INTEGER + 1, -(EXACT_INTEGER + 3), 999999999800000000, 10**37 - 1, -(10**37) + 7]
    values = decimals(wide + [EXACT_INTEGER, -EXACT_INTEGER])
    assert_same_doubles(decimal_as_float(values), parsed_from_text(values))


def test_a_slice_reads_its_own_values():
    values = decimals([1, 2, None, 1243000000000, 5, 2**64 + 1])
    for start, stop in [(1, 4), (3, 6), (2, 3), (6, 6)]:
        part = values.slice(start, stop - start)
        assert_same_doubles(decimal_as_float(part), parsed_from_text(part))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.none(),
            st.integers(-(10**12), 10**12),  # money-sized at scale 2..10
            st.integers(-(2**70), 2**70),  # past 2^53 and past 64 bits
            st.integers(-(10**38) + 1, 10**38 - 1),
        ),
        max_size=60,
    ),
    st.integers(0, 12),
)
def test_any_decimal128_is_the_double_its_text_parses_to(unscaled, scale):
    values = decimals(unscaled, scale)
    assert_same_doubles(decimal_as_float(values), parsed_from_text(values))
