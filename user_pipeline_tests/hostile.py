"""Hostile values for the lossless tests: the strings every layer must keep byte for byte, and
hypothesis strategies for rows of USER_COLUMNS with arbitrary text in every text column."""

from __future__ import annotations

import pandas as pd
from hypothesis import strategies as st

from user_pipeline.users.normalize import USER_COLUMNS, email_keys

# What broke the CSV hop (#12, finding 1) and its siblings. U+0000 is kept apart: PostgreSQL
# text cannot hold it, and the contract refuses it at the API boundary.
HOSTILE_TEXTS: list[str] = [
    "Zoe\rAnn",
    "line\nbreak",
    "crlf\r\nvalue",
    "\r",
    "\n",
    "tab\there",
    "vertical\x0btab",
    "line\u2028separator",
    'quote " inside',
    '"',
    '""',
    "\\N",
    "back\\slash\\",
    "comma, inside",
    " leading and trailing spaces ",
    "NULL",
    "NA",
    "nan",
    "emoji \U0001f600\U0001f469\u200d\U0001f4bb",
    "\u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627",
    "e\u0301 combining",
    "\ufeffbom",
    "",
    "x" * 100_000,
]
NUL_TEXT = "Null\x00Byte"

TEXT_COLUMNS = [name for name, dtype in USER_COLUMNS.items() if dtype == "string" and name != "partition_date"]

# Any text but U+0000 (what every store holds); `user_rows(allow_nul=True)` adds it back.
hostile_text = st.one_of(
    st.text(alphabet=st.characters(exclude_characters="\x00", exclude_categories=["Cs"])),
    st.sampled_from(HOSTILE_TEXTS),
    st.text(alphabet=st.sampled_from(list('\r\n\t\x0b\u2028"\\N, a\u0301\U0001f600')), max_size=30),
)


# normalize_users adds 0.0 to coordinates: SQLite cannot keep the sign of -0.0.
coordinates = st.floats(allow_nan=False).map(lambda value: value + 0.0)


def nullable(strategy):
    return st.one_of(st.none(), strategy)


@st.composite
def user_rows(draw, day: str, *, allow_nul: bool = False, max_rows: int = 6) -> pd.DataFrame:
    """A frame of USER_COLUMNS rows for `day`: any text (or null) in every text column; user_id
    and email present; email keys unique (the table's key)."""
    text = st.one_of(hostile_text, st.text(), st.just(NUL_TEXT)) if allow_nul else hostile_text
    count = draw(st.integers(min_value=0, max_value=max_rows))
    rows = []
    for index in range(count):
        row = {name: draw(nullable(text)) for name in TEXT_COLUMNS}
        # A row-number prefix keeps ids and email keys unique whatever text follows.
        row["user_id"] = f"{index}\x1f{draw(text)}"
        row["email"] = f"{index}\x1f{draw(text)}"
        row["age"] = draw(nullable(st.integers(min_value=-(2**31), max_value=2**31 - 1)))
        row["street_number"] = draw(nullable(st.integers(min_value=-(2**31), max_value=2**31 - 1)))
        row["latitude"] = draw(nullable(coordinates))
        row["longitude"] = draw(nullable(coordinates))
        rows.append(row)
    return users_frame(rows, day)


def users_frame(rows: list[dict], day: str) -> pd.DataFrame:
    """Rows of every column but partition_date and email_key, as a typed day of normalized users."""
    frame = pd.DataFrame(rows, columns=[name for name in USER_COLUMNS if name != "partition_date"])
    frame.insert(0, "partition_date", day)
    frame = frame.astype(USER_COLUMNS)
    frame["email_key"] = email_keys(frame["email"])
    return frame


def hostile_frame(day: str, *, with_nul: bool = False) -> pd.DataFrame:
    """One row per hostile text, which fills every text column of its row (user_id and email
    keep a row-number prefix so that they stay unique); numbers alternate with nulls."""
    texts = HOSTILE_TEXTS + ([NUL_TEXT] if with_nul else [])
    rows = []
    for index, text in enumerate(texts):
        row = dict.fromkeys(TEXT_COLUMNS, text)
        row.update(
            user_id=f"{index}\x1f{text}",
            email=f"{index}\x1f{text}",
            age=None if index % 2 else index,
            street_number=None if index % 3 else -index,
            latitude=None if index % 2 else index / 7,
            longitude=(index - 3) / 10,
        )
        rows.append(row)
    return users_frame(rows, day)
