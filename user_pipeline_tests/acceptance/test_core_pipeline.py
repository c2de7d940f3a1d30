"""Acceptance: the whole day, on a real API server process, real SQLite and PostgreSQL, in process and by CLI."""

import json
import os
import re
import subprocess
from pathlib import Path

import dagster as dg
import pandas as pd
import pydantic
import pytest

from user_pipeline.users.assets import daily_users
from user_pipeline.users.resources import DayLimits, PartitionFiles, RandomUserApi, WarehouseResource
from user_pipeline.users.warehouse import open_warehouse
from user_pipeline_tests.runs import materializations, materialize_command, materialize_users

DAY = "2026-11-20"
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["sqlite", "postgresql"])
def warehouse_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/warehouse.sqlite"
    return request.getfixturevalue("postgres_url")


def materialize(base_url: str, data_dir: Path, warehouse_url: str, day: str = DAY, users: int = 100):
    return materialize_users(
        base_url, data_dir, day, warehouse_url=warehouse_url, users_per_partition=users, backoff_seconds=0.01
    )


def partition_files(data_dir: Path, day: str = DAY) -> dict[str, bytes]:
    """Every file under data_dir for the day, hidden temp files included, by relative path."""
    return {
        str(path.relative_to(data_dir)): path.read_bytes()
        for path in sorted(data_dir.rglob(f"*{day}*"))
        if path.is_file()
    }


def failure_messages(result: dg.ExecuteInProcessResult) -> str:
    return "\n".join(event.step_failure_data.error.message for event in result.get_step_failure_events())


def test_materializing_a_day_twice_leaves_exactly_what_one_run_leaves(users_api_server, tmp_path, warehouse_url):
    data_dir = tmp_path / "data"
    assert materialize(users_api_server.base_url, data_dir, warehouse_url).success
    files_once = partition_files(data_dir)
    rows_once = open_warehouse(warehouse_url).read_partition(DAY)
    assert materialize(users_api_server.base_url, data_dir, warehouse_url).success
    assert partition_files(data_dir) == files_once
    assert sorted(files_once) == [
        f"normalized_users/{DAY}.csv",
        f"normalized_users/{DAY}.fingerprints.arrow",
        f"raw_users/{DAY}.jsonl",
    ]
    pd.testing.assert_frame_equal(open_warehouse(warehouse_url).read_partition(DAY), rows_once)
    assert open_warehouse(warehouse_url).count_rows() == len(rows_once)


def test_an_error_body_fails_the_run_naming_it_and_keeps_the_previous_day(users_api_server, tmp_path, warehouse_url):
    data_dir = tmp_path / "data"
    assert materialize(users_api_server.base_url, data_dir, warehouse_url).success
    files_before = partition_files(data_dir)
    rows_before = open_warehouse(warehouse_url).read_partition(DAY)

    users_api_server.add_fault("error_body", seeds=[DAY])
    result = materialize(users_api_server.base_url, data_dir, warehouse_url)
    assert not result.success
    assert "HTTP 200 with an error" in failure_messages(result)
    assert "Uh oh, something has gone wrong" in failure_messages(result)
    assert users_api_server.stats()["by_seed"][DAY] == 2  # one good run, one failed request: no retry
    assert partition_files(data_dir) == files_before
    pd.testing.assert_frame_equal(open_warehouse(warehouse_url).read_partition(DAY), rows_before)


def test_duplicates_non_latin_names_and_postcodes_reach_the_table_intact(users_api_server, tmp_path, warehouse_url):
    data_dir = tmp_path / "data"
    result = materialize(users_api_server.base_url, data_dir, warehouse_url, users=5000)
    assert result.success
    raw = [
        json.loads(line) for line in (data_dir / "raw_users" / f"{DAY}.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    first_by_email: dict[str, dict] = {}
    for user in raw:
        first_by_email.setdefault(user["email"].lower(), user)
    duplicates = len(raw) - len(first_by_email)
    assert duplicates > 0, "the server's 5000 users of a seed should repeat some emails"
    [normalized] = materializations(result, "normalized_users")
    assert normalized.metadata["duplicates_dropped"].value == duplicates

    table = open_warehouse(warehouse_url).read_partition(DAY).set_index("user_id")
    assert len(table) == len(first_by_email)
    expected = pd.DataFrame(
        [
            {
                "user_id": user["login"]["uuid"],
                "first_name": user["name"]["first"],
                "last_name": user["name"]["last"],
                "city": user["location"]["city"],
                "postcode": str(user["location"]["postcode"]),
            }
            for user in first_by_email.values()
        ]
    ).set_index("user_id")
    stored = table.loc[expected.index, expected.columns]
    assert stored.astype(object).to_dict("index") == expected.to_dict("index")
    assert any(not name.isascii() and max(map(ord, name)) > 0xFF for name in expected["first_name"])
    assert {type(user["location"]["postcode"]) for user in raw} == {int, str}


@pytest.mark.parametrize(
    ("setting", "value", "expected"),
    [
        ("users_per_partition", 0, "Input should be greater than or equal to 1"),
        ("users_per_partition", -1, "Input should be greater than or equal to 1"),
        ("page_size", 5001, "Input should be less than or equal to 5000"),
        ("base_url", "not a url", "invalid base_url='not a url': expected an http(s) URL"),
        ("nationalities", "US,XX", "invalid nationalities='US,XX'"),
    ],
)
def test_a_bad_setting_is_refused_before_any_data_is_touched(users_api_server, tmp_path, setting, value, expected):
    """Built in Python, the resource refuses it at once; set in a run's config (the launchpad), the
    run fails setting the resource up, before any step, naming the field and its bounds."""
    with pytest.raises(pydantic.ValidationError, match=re.escape(expected)):
        RandomUserApi(**{"base_url": users_api_server.base_url, setting: value})
    data_dir = tmp_path / "data"
    result = dg.materialize(
        [daily_users],
        partition_key=DAY,
        resources={
            "users_api": RandomUserApi(base_url=users_api_server.base_url),
            "files": PartitionFiles(data_dir=str(data_dir)),
            "warehouse": WarehouseResource(url=f"sqlite:///{data_dir}/warehouse.sqlite"),
            "day_limits": DayLimits(),
        },
        run_config={"resources": {"users_api": {"config": {setting: value}}}},
        raise_on_error=False,
    )
    assert not result.success
    [failure] = [event for event in result.all_events if event.event_type == dg.DagsterEventType.RUN_FAILURE]
    assert setting in failure.event_specific_data.error.cause.message
    assert expected in failure.event_specific_data.error.cause.message
    assert not result.get_step_success_events()
    assert users_api_server.stats()["api_requests"] == 0
    assert not data_dir.exists()


def test_an_unknown_partition_key_is_refused(users_api_server, tmp_path):
    with pytest.raises(dg.DagsterUnknownPartitionError, match="2026-13-01"):
        materialize(users_api_server.base_url, tmp_path / "data", f"sqlite:///{tmp_path}/w.sqlite", day="2026-13-01")
    assert not (tmp_path / "data").exists()


def test_the_cli_materializes_a_partition_identically_to_an_in_process_run(users_api_server, tmp_path, warehouse_url):
    in_process_dir = tmp_path / "in_process"
    assert materialize(users_api_server.base_url, in_process_dir, f"sqlite:///{tmp_path}/in_process.sqlite").success

    cli_dir = tmp_path / "cli"
    env = {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "USER_PIPELINE_API_URL": users_api_server.base_url,
        "USER_PIPELINE_DATA_DIR": str(cli_dir),
        "USER_PIPELINE_WAREHOUSE_URL": warehouse_url,
    }
    (tmp_path / "dagster_home").mkdir()
    completed = subprocess.run(
        materialize_command(DAY),
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "RUN_SUCCESS" in completed.stderr
    assert partition_files(cli_dir) == partition_files(in_process_dir)
    pd.testing.assert_frame_equal(
        open_warehouse(warehouse_url).read_partition(DAY),
        open_warehouse(f"sqlite:///{tmp_path}/in_process.sqlite").read_partition(DAY),
    )
    assert os.environ.get("PGPASSWORD", "never-set") not in completed.stdout + completed.stderr


def test_a_multi_day_run_writes_each_day_exactly_as_single_day_runs_do(users_api_server, tmp_path):
    days = ["2026-11-10", "2026-11-11", "2026-11-12"]
    singles_dir = tmp_path / "singles"
    for day in days:
        assert materialize(
            users_api_server.base_url, singles_dir, f"sqlite:///{tmp_path}/singles.sqlite", day=day
        ).success

    range_dir = tmp_path / "range"
    result = dg.materialize(
        [daily_users],
        resources={
            "users_api": RandomUserApi(base_url=users_api_server.base_url),
            "files": PartitionFiles(data_dir=str(range_dir)),
            "warehouse": WarehouseResource(url=f"sqlite:///{tmp_path}/range.sqlite"),
            "day_limits": DayLimits(),
        },
        tags={"dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[-1]},
    )
    assert result.success
    assert sorted(event.partition for event in materializations(result, "users_table")) == days
    # Each day's materialization carries that day's own figures (its path, rows and receipt).
    for asset in ("raw_users", "normalized_users"):
        events = materializations(result, asset)
        assert [event.partition for event in events] == days
        assert [Path(event.metadata["path"].value).name for event in events] == [
            f"{day}.{'jsonl' if asset == 'raw_users' else 'csv'}" for day in days
        ]
    for event in materializations(result, "users_table"):
        assert event.metadata["dagster/row_count"].value == open_warehouse(
            f"sqlite:///{tmp_path}/range.sqlite"
        ).count_rows(event.partition)
    assert all(evaluation.passed for evaluation in result.get_asset_check_evaluations())
    for day in days:
        assert partition_files(range_dir, day) == partition_files(singles_dir, day)
        pd.testing.assert_frame_equal(
            open_warehouse(f"sqlite:///{tmp_path}/range.sqlite").read_partition(day),
            open_warehouse(f"sqlite:///{tmp_path}/singles.sqlite").read_partition(day),
        )
