"""`store.PendingRecords.holds_any` (a set of ids) against `Series.isin`, its former form."""

from __future__ import annotations

import pandas as pd
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from geo_lead.store import PendingRecords

_IDS = st.lists(st.sampled_from(["a", "b", "c", "d", "1", "", None]), max_size=6)


@hsettings(max_examples=200, deadline=None)
@given(st.lists(_IDS, max_size=3), _IDS, st.sampled_from(["str", "object"]))
def test_holds_any_equals_isin(frames: list[list[str | None]], ids: list[str | None], dtype: str) -> None:
    pending = PendingRecords(enrich=lambda f: f, max_rows=100,
                             frames=[pd.DataFrame({"record_id": pd.Series(f, dtype=dtype)}) for f in frames])
    wanted = pd.Series(ids, dtype=dtype)
    expect = any(bool(f["record_id"].isin(wanted).any()) for f in pending.frames)
    assert pending.holds_any(wanted) is expect
