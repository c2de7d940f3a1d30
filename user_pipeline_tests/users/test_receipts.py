"""Partition receipts on real runs: an unchanged re-run diffs to zero, a changed API answer gives the
exact counts, and a large drop in rows fails the blocking check and keeps the previous day."""

import dagster as dg
import pandas as pd
import requests

from user_pipeline.users.normalize import read_normalized_csv
from user_pipeline.users.warehouse import open_warehouse
from user_pipeline_tests.runs import materializations, materialize_users

DAY = "2026-10-05"


def run_day(base_url: str, data_dir, users: int) -> dg.ExecuteInProcessResult:
    return materialize_users(base_url, data_dir, DAY, users_per_partition=users, page_size=100)


def receipt(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    [event] = materializations(result, asset)
    return {
        key.removeprefix("receipt/"): value.value for key, value in event.metadata.items() if key.startswith("receipt/")
    }


def expected_diff(before: pd.DataFrame, after: pd.DataFrame) -> dict:
    """Added/removed/changed by user_id, computed directly from the two CSVs."""
    old, new = before.set_index("user_id"), after.set_index("user_id")
    common = old.index.intersection(new.index)
    changed = (old.loc[common].astype(str) != new.loc[common, old.columns].astype(str)).any(axis=1).sum()
    return {
        "rows_added": len(new.index.difference(old.index)),
        "rows_removed": len(old.index.difference(new.index)),
        "rows_changed": int(changed),
    }


def test_an_unchanged_rerun_has_a_zero_receipt(users_api_server, tmp_path):
    first = run_day(users_api_server.base_url, tmp_path, 100)
    second = run_day(users_api_server.base_url, tmp_path, 100)
    assert first.success and second.success
    for asset in ("normalized_users", "users_table"):
        rerun = receipt(second, asset)
        assert (rerun["rows_added"], rerun["rows_removed"], rerun["rows_changed"]) == (0, 0, 0)
        assert rerun["changed_since_previous"] is False
        assert rerun["content_hash"] == receipt(first, asset)["content_hash"]
        assert receipt(first, asset)["previous_rows"] == "none (first materialization)"
    # The CSV and the table hold the same content, so their receipts hash alike.
    assert receipt(second, "normalized_users")["content_hash"] == receipt(second, "users_table")["content_hash"]


def test_a_changed_api_answer_gives_the_exact_counts_and_is_flagged(users_api_server, tmp_path):
    assert run_day(users_api_server.base_url, tmp_path, 100).success
    before = read_normalized_csv(tmp_path / "normalized_users" / f"{DAY}.csv")
    users_api_server.add_fault("changed_users", seeds=[DAY], every=10)
    result = run_day(users_api_server.base_url, tmp_path, 120)
    assert result.success
    after = read_normalized_csv(tmp_path / "normalized_users" / f"{DAY}.csv")
    diff = expected_diff(before, after)
    assert diff["rows_added"] > 0 and diff["rows_changed"] > 0
    for asset in ("normalized_users", "users_table"):
        changed = receipt(result, asset)
        assert {key: changed[key] for key in diff} == diff
        assert changed["changed_since_previous"] is True
        assert changed["previous_rows"] == len(before)


def test_a_fifty_percent_drop_fails_the_blocking_check_and_keeps_the_previous_day(users_api_server, tmp_path):
    assert run_day(users_api_server.base_url, tmp_path, 100).success
    csv_before = (tmp_path / "normalized_users" / f"{DAY}.csv").read_bytes()
    rows_before = open_warehouse(f"sqlite:///{tmp_path}/warehouse.sqlite").read_partition(DAY)

    result = run_day(users_api_server.base_url, tmp_path, 50)
    assert not result.success
    [check] = [
        evaluation
        for evaluation in result.get_asset_check_evaluations()
        if evaluation.check_name == "row_drop_within_limit"
    ]
    assert not check.passed
    before = read_normalized_csv(tmp_path / "normalized_users" / f"{DAY}.csv")
    first_fifty = requests.get(users_api_server.base_url, params={"results": 50, "seed": DAY}, timeout=30).json()[
        "results"
    ]
    kept = set(before["user_id"]) & {user["login"]["uuid"] for user in first_fifty}
    assert check.metadata["receipt/rows_removed"].value == len(before) - len(kept)
    assert check.metadata["receipt/rows"].value == len(kept)
    assert "the previous CSV was kept" in check.description
    assert materializations(result, "normalized_users") == []
    assert "users_table" not in {event.step_key for event in result.all_events if event.is_step_success}
    assert (tmp_path / "normalized_users" / f"{DAY}.csv").read_bytes() == csv_before
    pd.testing.assert_frame_equal(
        open_warehouse(f"sqlite:///{tmp_path}/warehouse.sqlite").read_partition(DAY), rows_before
    )


def test_receipts_diff_repeated_user_ids_as_multisets_without_failing():
    """Finding 4: the previous day repeated a user_id; the new one does not (or the other way round)."""
    from user_pipeline.users.receipts import content_hash, make_receipt

    previous = pd.Series([1, 2, 3], index=["a", "a", "b"], dtype="uint64")
    current = pd.Series([1, 3, 4], index=["a", "b", "c"], dtype="uint64")
    receipt = make_receipt(previous, current)
    assert (receipt.added, receipt.removed, receipt.changed, receipt.previous_rows) == (1, 0, 1, 3)
    assert make_receipt(current, previous).changed == 1
    unchanged = make_receipt(previous, previous.iloc[[1, 0, 2]])
    assert (unchanged.added, unchanged.removed, unchanged.changed) == (0, 0, 0)
    # Order-independent, also within a repeated id.
    assert content_hash(previous) == content_hash(previous.iloc[[1, 0, 2]])
    assert content_hash(previous) != content_hash(current)
