"""Row fingerprints made the fast way equal pandas' hash_pandas_object (text without U+0000), from frames and database records (hypothesis)."""

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from user_pipeline.users.normalize import USER_COLUMNS
from user_pipeline.users.receipts import record_fingerprints, row_fingerprints
from user_pipeline_tests.hostile import hostile_frame, user_rows

DAY = "2026-11-20"
PROPERTY = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def pandas_fingerprints(frame: pd.DataFrame) -> pd.Series:
    """The definition: pandas' own row hash (text categorized first), indexed by user_id."""
    return pd.Series(
        pd.util.hash_pandas_object(frame[list(USER_COLUMNS)], index=False).to_numpy(),
        index=frame["user_id"].to_numpy(),
    )


def records_of(frame: pd.DataFrame) -> list[tuple]:
    """The rows as a database cursor returns them: str, int, float or None."""
    columns = [frame[name].to_numpy(dtype=object, na_value=None).tolist() for name in USER_COLUMNS]
    return list(zip(*columns, strict=True))


def records_frame(records: list[tuple]) -> pd.DataFrame:
    """The frame the warehouse makes of records when it cannot take the fast path."""
    frame = pd.DataFrame.from_records(records, columns=list(USER_COLUMNS))
    frame["partition_date"] = frame["partition_date"].map(str)
    return frame.astype(USER_COLUMNS)


def assert_same(fast: pd.Series, slow: pd.Series) -> None:
    assert fast.dtype == np.uint64
    np.testing.assert_array_equal(fast.to_numpy(), slow.to_numpy())
    pd.testing.assert_index_equal(fast.index, slow.index)


@PROPERTY
@given(frame=user_rows(DAY, max_rows=8))
def test_fingerprints_of_a_frame_equal_pandas_hash(frame):
    assert_same(row_fingerprints([frame]), pandas_fingerprints(frame))


@PROPERTY
@given(frame=user_rows(DAY, allow_nul=True, max_rows=8))
def test_a_rows_fingerprint_does_not_depend_on_the_other_rows(frame):
    # pandas' categorized hash makes "" and "\x00x" one category within a call: not here.
    alone = [row_fingerprints([frame[position : position + 1]]) for position in range(len(frame))]
    if alone:
        assert_same(row_fingerprints([frame]), pd.concat(alone))


def test_text_holding_nul_is_hashed_by_its_own_value():
    frame = hostile_frame(DAY).head(2)
    frame["cell"] = pd.array(["", "\x00x"], dtype="string")
    fingerprints = row_fingerprints([frame])
    assert fingerprints.iloc[1] == row_fingerprints([frame.tail(1)]).iloc[0]
    assert fingerprints.iloc[1] != pandas_fingerprints(frame).iloc[1]  # pandas gives it the hash of ""


@PROPERTY
@given(frame=user_rows(DAY, allow_nul=True, max_rows=8))
def test_fingerprints_of_records_equal_those_of_their_frame(frame):
    records = records_of(frame)
    fast = record_fingerprints(records)
    assert fast is not None
    assert_same(fast, row_fingerprints([records_frame(records)]) if records else pd.Series([], dtype="uint64"))


def test_hostile_text_and_missing_values_fingerprint_as_pandas_does():
    frame = hostile_frame(DAY)
    frame.loc[1, ["title", "id_value", "postcode"]] = pd.NA
    assert_same(row_fingerprints([frame]), pandas_fingerprints(frame))
    assert_same(record_fingerprints(records_of(frame)), pandas_fingerprints(frame))


@given(
    value=st.one_of(
        st.booleans(),
        st.binary(max_size=3),
        st.integers(min_value=2**63, max_value=2**70),
        st.integers(max_value=-(2**63) - 1, min_value=-(2**70)),
    ),
    column=st.sampled_from(["title", "age", "latitude"]),
)
def test_records_of_an_unexpected_type_are_left_to_the_frame(value, column):
    frame = hostile_frame(DAY)
    records = records_of(frame)
    position = list(USER_COLUMNS).index(column)
    records[0] = (*records[0][:position], value, *records[0][position + 1 :])
    if column == "latitude" and isinstance(value, int):
        return  # a whole number in a float column is that float, as in the frame
    assert record_fingerprints(records) is None


def test_a_frame_of_other_dtypes_takes_pandas_own_path():
    frame = hostile_frame(DAY).astype({"age": "float64", "title": object})
    assert_same(row_fingerprints([frame]), pandas_fingerprints(frame))


def test_partition_dates_as_dates_fingerprint_as_their_text():
    frame = hostile_frame(DAY)
    records = [(pd.Timestamp(DAY).date(), *record[1:]) for record in records_of(frame)]
    assert_same(record_fingerprints(records), pandas_fingerprints(frame))
