"""Normalization of real recorded API answers: columns, types, duplicates, no plaintext password."""

import json

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from user_pipeline.users.normalize import (
    USER_COLUMNS,
    audit_normalized_csv,
    drop_duplicate_emails,
    normalize_users,
    read_normalized_csv,
    write_normalized_csv,
)
from user_pipeline_tests.conftest import FIXTURES_DIR


def recorded_users(name: str) -> list[dict]:
    return json.loads((FIXTURES_DIR / name).read_text(encoding="utf-8"))["results"]


@pytest.fixture(scope="module")
def two_pages() -> list[list[dict]]:
    return [recorded_users(f"seed-fixture_results-1000_page-{page}.json") for page in (1, 2)]


def test_a_recorded_user_becomes_one_typed_row():
    frame = normalize_users(recorded_users("seed-2026-11-23_results-1.json"), "2026-11-23")
    assert list(frame.columns) == list(USER_COLUMNS)
    row = frame.iloc[0]
    assert row["user_id"] == "07662137-a9b3-4023-a24c-72673aaff6f0"
    assert row["email"] == "addison.lam@example.com"
    assert (row["first_name"], row["last_name"], row["country"]) == ("Addison", "Lam", "Canada")
    assert row["postcode"] == "V0V 4U7"
    assert row["age"] == 59
    assert row["latitude"] == -65.9485
    assert row["password_sha256"] == "4c85441d65182e265622e84747f459b0bfee90fb190a6ce551e7fa9519157631"
    assert "dexter" not in frame.astype(str).to_numpy().ravel().tolist()


def test_integer_postcodes_become_text_without_a_decimal_point(two_pages):
    frame = normalize_users(two_pages[0], "2026-11-23")
    integer_postcodes = [
        user["location"]["postcode"] for user in two_pages[0] if isinstance(user["location"]["postcode"], int)
    ]
    assert integer_postcodes
    assert frame["postcode"].dtype == "string"
    assert set(map(str, integer_postcodes)) <= set(frame["postcode"])
    assert not frame["postcode"].str.contains(r"\.0$").any()


def test_duplicate_emails_across_pages_keep_the_first_occurrence(tmp_path, two_pages):
    csv_path = tmp_path / "2026-11-23.csv"
    summary = write_normalized_csv(two_pages, csv_path, "2026-11-23")
    emails = [user["email"] for page in two_pages for user in page]
    assert summary.users_read == 2000
    assert summary.duplicates_dropped == len(emails) - len(set(emails)) == 6
    frame = read_normalized_csv(csv_path)
    assert len(frame) == summary.rows_written == 1994
    first_ids = {}
    for page in two_pages:
        for user in page:
            first_ids.setdefault(user["email"], user["login"]["uuid"])
    assert dict(zip(frame["email"], frame["user_id"], strict=True)) == first_ids


def test_the_csv_keeps_non_latin_names_and_text_postcodes(tmp_path, two_pages):
    csv_path = tmp_path / "2026-11-23.csv"
    write_normalized_csv(two_pages, csv_path, "2026-11-23")
    text = csv_path.read_text(encoding="utf-8")
    assert text.startswith(",".join(USER_COLUMNS) + "\n")
    persian = [user for user in two_pages[0] if user["nat"] == "IR"][0]
    assert persian["name"]["first"] in text
    frame = read_normalized_csv(csv_path)
    assert frame.loc[frame["user_id"] == persian["login"]["uuid"], "first_name"].item() == persian["name"]["first"]
    reread = pd.read_csv(csv_path, dtype={"postcode": "string"}, keep_default_na=False)
    assert set(reread["postcode"]) == set(frame["postcode"])


def test_an_empty_partition_writes_the_header_only(tmp_path):
    csv_path = tmp_path / "2026-11-23.csv"
    summary = write_normalized_csv([], csv_path, "2026-11-23")
    assert (summary.users_read, summary.rows_written) == (0, 0)
    assert csv_path.read_text() == ",".join(USER_COLUMNS) + "\n"


def test_the_audit_finds_missing_and_duplicate_emails_and_password_columns(tmp_path):
    csv_path = tmp_path / "bad.csv"
    csv_path.write_text("email,password\na@x.com,p\nA@x.com ,q\n,r\n", encoding="utf-8")
    audit = audit_normalized_csv(csv_path)
    assert (audit.rows, audit.missing_emails, audit.duplicate_emails) == (3, 1, 1)
    assert audit.plaintext_password_columns == ["password"]


def test_emails_are_one_identity_trimmed_and_case_folded(tmp_path):
    users = recorded_users("seed-fixture_results-1000_page-1.json")[:4]
    emails = ["Case.Test@Example.com", " case.test@example.COM\t", "STRASSE@x.com", "straße@X.com"]
    users = [{**user, "email": email} for user, email in zip(users, emails, strict=True)]
    summary = write_normalized_csv([users], tmp_path / "day.csv", "2026-11-23")
    frame = read_normalized_csv(tmp_path / "day.csv")
    assert summary.duplicates_dropped == 2
    assert frame[["email", "email_key"]].values.tolist() == [
        ["Case.Test@Example.com", "case.test@example.com"],
        ["STRASSE@x.com", "strasse@x.com"],
    ]


def _drop_duplicate_emails_by_isin(frame: pd.DataFrame, seen_emails: set) -> pd.DataFrame:
    """The previous implementation, pandas' own membership test: the reference."""
    keys = frame["email_key"]
    keep = ~keys.duplicated() & ~keys.isin(seen_emails)
    seen_emails.update(keys[keep])
    return frame[keep]


@settings(max_examples=200, deadline=None)
@given(
    pages=st.lists(
        st.lists(st.one_of(st.none(), st.sampled_from(["a@x.io", "b@x.io", "c@x.io", "", "A@x.io"])), max_size=6),
        max_size=4,
    )
)
def test_duplicate_emails_are_dropped_across_pages_as_pandas_isin_drops_them(pages):
    seen, reference_seen = set(), set()
    for keys in pages:
        frame = pd.DataFrame({"email_key": pd.array(keys, dtype="string"), "row": range(len(keys))})
        kept = drop_duplicate_emails(frame, seen)
        pd.testing.assert_frame_equal(kept, _drop_duplicate_emails_by_isin(frame, reference_seen))
    assert seen == reference_seen
