"""The users assets materialized in process on the recorded API answers: files, table, checks, metadata."""

import json

import dagster as dg

from user_pipeline.users.assets import daily_users
from user_pipeline.users.resources import DayLimits, PartitionFiles, WarehouseResource
from user_pipeline.users.warehouse import open_warehouse
from user_pipeline_tests.conftest import FIXTURES_DIR
from user_pipeline_tests.fakes import RecordedUsersApi
from user_pipeline_tests.runs import materializations

DAY = "2026-11-23"


def materialize_day(tmp_path):
    warehouse_url = f"sqlite:///{tmp_path}/warehouse.sqlite"
    result = dg.materialize(
        [daily_users],
        partition_key=DAY,
        resources={
            "users_api": RecordedUsersApi(fixtures_dir=str(FIXTURES_DIR), users_per_partition=100),
            "files": PartitionFiles(data_dir=str(tmp_path)),
            "warehouse": WarehouseResource(url=warehouse_url),
            "day_limits": DayLimits(),
        },
    )
    return result, open_warehouse(warehouse_url)


def metadata_of(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    [event] = materializations(result, asset)
    return {key: value.value for key, value in event.metadata.items()}


def test_one_day_lands_in_files_and_table_with_metadata(tmp_path):
    result, warehouse = materialize_day(tmp_path)
    assert result.success
    recorded = json.loads((FIXTURES_DIR / "seed-2026-11-23_results-100.json").read_text(encoding="utf-8"))["results"]

    raw_lines = (tmp_path / "raw_users" / f"{DAY}.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["login"]["uuid"] for line in raw_lines] == [u["login"]["uuid"] for u in recorded]
    assert all('"password"' not in line for line in raw_lines)

    raw_metadata = metadata_of(result, "raw_users")
    assert (raw_metadata["dagster/row_count"], raw_metadata["pages"], raw_metadata["seed"]) == (100, 1, DAY)

    unique_emails = len({u["email"] for u in recorded})
    normalized_metadata = metadata_of(result, "normalized_users")
    assert normalized_metadata["dagster/row_count"] == unique_emails
    assert normalized_metadata["duplicates_dropped"] == 100 - unique_emails
    assert normalized_metadata["path"] == str(tmp_path / "normalized_users" / f"{DAY}.csv")
    assert "addison.lam@example.com" in normalized_metadata["preview"]

    assert metadata_of(result, "users_table")["dagster/row_count"] == unique_emails
    assert warehouse.count_rows(DAY) == unique_emails


def test_every_check_passes_on_good_data(tmp_path):
    result, _ = materialize_day(tmp_path)
    evaluations = result.get_asset_check_evaluations()
    assert {evaluation.check_name for evaluation in evaluations} == {
        "emails_unique_and_present",
        "user_ids_unique",
        "no_plaintext_password",
        "rows_match_raw_users",
        "row_drop_within_limit",
        "rows_match_normalized_users",
        "rejected_share_within_limit",
        "table_matches_normalized_users",
    }
    assert all(evaluation.passed for evaluation in evaluations)


def test_the_asset_descriptions_come_from_the_docstrings():
    assert daily_users.specs_by_key[dg.AssetKey("normalized_users")].description.startswith(
        "One row per user for the day"
    )
