"""Bad configuration fails before any data is touched; concurrent runs of one day never interleave,
and many days at once all land."""

import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from user_pipeline.users.assets import daily_users
from user_pipeline.users.resources import DayLimits, PartitionFiles, RandomUserApi, WarehouseResource
from user_pipeline.users.warehouse import open_warehouse
from user_pipeline_tests.runs import materialize_command

REPO_ROOT = Path(__file__).resolve().parents[2]
DAY = "2026-09-25"


def cli_materialize(data_dir: Path, tmp_path: Path, base_url: str, partition: str = DAY, **env_overrides: str):
    env = {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "USER_PIPELINE_API_URL": base_url,
        "USER_PIPELINE_USERS_PER_PARTITION": "200",
        "USER_PIPELINE_DATA_DIR": str(data_dir),
        "USER_PIPELINE_WAREHOUSE_URL": f"sqlite:///{data_dir}/warehouse.sqlite",
        **env_overrides,
    }
    (tmp_path / "dagster_home").mkdir(exist_ok=True)
    return subprocess.Popen(
        materialize_command(partition),
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.parametrize(
    ("env", "partition", "message"),
    [
        (
            {"USER_PIPELINE_USERS_PER_PARTITION": "abc"},
            DAY,
            'Value stored in env variable "USER_PIPELINE_USERS_PER_PARTITION" cannot be coerced into an int',
        ),
        (
            {"USER_PIPELINE_WAREHOUSE_URL": "mysql://app@db/users"},
            DAY,
            "USER_PIPELINE_WAREHOUSE_URL='mysql://app@db/users': expected a sqlite",
        ),
        ({}, "2026-02-30", "2026-02-30"),
    ],
)
def test_bad_configuration_from_the_cli_fails_before_any_data_is_touched(
    users_api_server, tmp_path, env, partition, message
):
    data_dir = tmp_path / "data"
    process = cli_materialize(data_dir, tmp_path, users_api_server.base_url, partition, **env)
    output, _ = process.communicate(timeout=300)
    assert process.returncode != 0
    assert message in output
    assert users_api_server.stats()["api_requests"] == 0
    assert not (data_dir / "raw_users").exists() and not (data_dir / "normalized_users").exists()


def test_two_runs_of_one_day_at_once_leave_exactly_one_runs_data(users_api_server, tmp_path):
    reference_dir = tmp_path / "reference"
    reference = cli_materialize(reference_dir, tmp_path, users_api_server.base_url)
    assert reference.wait(timeout=300) == 0

    data_dir = tmp_path / "data"
    first, second = (cli_materialize(data_dir, tmp_path, users_api_server.base_url) for _ in range(2))
    assert (first.wait(timeout=300), second.wait(timeout=300)) == (0, 0), (
        first.stdout.read()[-2000:] + second.stdout.read()[-2000:]
    )
    for name in (f"raw_users/{DAY}.jsonl", f"normalized_users/{DAY}.csv"):
        assert (data_dir / name).read_bytes() == (reference_dir / name).read_bytes()
    assert not list(data_dir.rglob(".*.tmp"))
    rows = open_warehouse(f"sqlite:///{data_dir}/warehouse.sqlite").read_partition(DAY)
    pd.testing.assert_frame_equal(
        rows, open_warehouse(f"sqlite:///{reference_dir}/warehouse.sqlite").read_partition(DAY)
    )
    assert open_warehouse(f"sqlite:///{data_dir}/warehouse.sqlite").count_rows() == len(rows)


def test_ten_days_at_once_all_land(users_api_server, tmp_path):
    days = [f"2026-08-{day:02d}" for day in range(1, 11)]
    warehouse_url = f"sqlite:///{tmp_path}/warehouse.sqlite"

    def run(day: str) -> bool:
        return dg.materialize(
            [daily_users],
            partition_key=day,
            resources={
                "users_api": RandomUserApi(base_url=users_api_server.base_url, users_per_partition=100),
                "files": PartitionFiles(data_dir=str(tmp_path)),
                "warehouse": WarehouseResource(url=warehouse_url),
                "day_limits": DayLimits(),
            },
        ).success

    with ThreadPoolExecutor(max_workers=10) as pool:
        assert all(pool.map(run, days))
    warehouse = open_warehouse(warehouse_url)
    for day in days:
        assert warehouse.count_rows(day) == len(pd.read_csv(tmp_path / "normalized_users" / f"{day}.csv"))
    assert warehouse.count_rows() == sum(warehouse.count_rows(day) for day in days)
