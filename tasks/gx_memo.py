"""Great Expectations' largest fixed cost, removed: an expectation's configuration built
once per validation instead of on every read.

`tasks.gx_suites` installs the memo when it builds its GX context and opens a memoised
scope around each suite validation; nothing else changes how GX validates.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_memo = threading.local()  # .configurations: {id(expectation): (expectation, configuration)}


def install_configuration_memo() -> None:
    """Make `Expectation.configuration` answer from `configurations_memoised`'s memo.

    GX 1.24 rebuilds an expectation's whole configuration (a pydantic `.dict()` and a new
    ExpectationConfiguration) on every access, and its metric-graph code reads it once per
    kwarg it looks up: ~125 times per expectation per validation. That is GX's largest
    fixed cost here: a 21-rule suite took 0.61 s on 50 rows and 0.63 s on 91 k rows, and
    0.37 s / 0.45 s with the memo (medians of 6, alternating). Outside a memoised scope,
    and on any other thread, the property behaves exactly as GX's own.
    """
    from great_expectations.expectations.expectation import Expectation

    original = Expectation.__dict__["configuration"]
    if getattr(original.fget, "memoised", False):
        return

    def configuration(self: Any) -> Any:
        memo = getattr(_memo, "configurations", None)
        if memo is None:
            return original.fget(self)
        hit = memo.get(id(self))
        if hit is None or hit[0] is not self:
            # The expectation is kept in the memo with its configuration, so its id cannot
            # be reused by another object while the scope lasts.
            hit = memo[id(self)] = (self, original.fget(self))
        return hit[1]

    configuration.memoised = True  # type: ignore[attr-defined]
    Expectation.configuration = property(configuration, doc=original.__doc__)  # type: ignore[method-assign]


@contextmanager
def configurations_memoised() -> Iterator[None]:
    """Within this scope (one suite validation, on this thread) an expectation's
    configuration is built once. Safe because nothing changes an expectation while GX
    validates it: the validator fills the parameters into the suite's configurations (the
    suite's own expectations are left as they are) and validates new expectation objects
    made from them; the memo ends with the scope, so the next validation starts afresh."""
    _memo.configurations = {}
    try:
        yield
    finally:
        _memo.configurations = None
