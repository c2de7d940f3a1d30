"""SIGKILL in the middle of writing each kind of partition: the previous good partition stays intact
and readable, no temporary file passes for data, and a re-run gives exactly an uninterrupted run's result."""

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from spark_jobs.ingest_users import run_ingestion
from user_pipeline.users.normalize import read_normalized_csv
from user_pipeline.users.warehouse import open_warehouse
from user_pipeline_tests.runs import materialize_command, materialize_users
from user_pipeline_tests.spark_jobs.support import read_users

REPO_ROOT = Path(__file__).resolve().parents[2]
DAY = "2026-09-10"
USERS = 40_000  # large enough that each write takes a moment to catch


def materialize_in_process(base_url: str, data_dir: Path) -> None:
    assert materialize_users(base_url, data_dir, DAY, users_per_partition=USERS).success


@pytest.fixture(scope="module")
def good_day(api_server, tmp_path_factory) -> Path:
    api_server.start()
    api_server.clear_faults()
    data_dir = tmp_path_factory.mktemp("crash_good")
    materialize_in_process(api_server.base_url, data_dir)
    return data_dir


@pytest.fixture
def data_dir(good_day, tmp_path) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(good_day, copy)
    return copy


def kill_when(select: str, data_dir: Path, base_url: str, tmp_path: Path, window_open: Callable[[], bool]) -> None:
    """Runs `dagster asset materialize` for DAY and SIGKILLs its whole process group once
    `window_open()` says a write is under way; fails if the run ends before that."""
    env = {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "USER_PIPELINE_API_URL": base_url,
        "USER_PIPELINE_USERS_PER_PARTITION": str(USERS),
        "USER_PIPELINE_DATA_DIR": str(data_dir),
        "USER_PIPELINE_WAREHOUSE_URL": f"sqlite:///{data_dir}/warehouse.sqlite",
    }
    (tmp_path / "dagster_home").mkdir(exist_ok=True)
    process = subprocess.Popen(
        materialize_command(DAY, select.split(",")),
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 180
    try:
        while not window_open():
            assert process.poll() is None, (
                f"the run of {select} ended (exit {process.returncode}) before the write began"
            )
            assert time.monotonic() < deadline, f"the write of {select} never began"
            time.sleep(0.005)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def hidden_temp_files(directory: Path) -> list[Path]:
    return sorted(directory.glob(".*.tmp"))


def staged_temp_files(data_dir: Path) -> list[Path]:
    """Files being written into a run's staging folder (data/staging/RUN/ASSET/)."""
    return sorted((data_dir / "staging").glob("*/*/.*.tmp"))


def test_killed_while_writing_raw_json(users_api_server, good_day, data_dir, tmp_path):
    users_api_server.add_fault("slow", times=1, seeds=[DAY], delay_seconds=30)
    raw_dir = data_dir / "raw_users"
    # The new raw file is written into the run's staging folder, committed only when the day passes.
    kill_when("raw_users", data_dir, users_api_server.base_url, tmp_path, lambda: bool(staged_temp_files(data_dir)))
    assert (raw_dir / f"{DAY}.jsonl").read_bytes() == (good_day / "raw_users" / f"{DAY}.jsonl").read_bytes()
    assert [path.name for path in raw_dir.iterdir()] == [f"{DAY}.jsonl"]
    users_api_server.clear_faults()
    materialize_in_process(users_api_server.base_url, data_dir)
    assert (raw_dir / f"{DAY}.jsonl").read_bytes() == (good_day / "raw_users" / f"{DAY}.jsonl").read_bytes()
    assert hidden_temp_files(raw_dir) == []


def test_killed_while_writing_the_csv(users_api_server, good_day, data_dir, tmp_path):
    csv_dir = data_dir / "normalized_users"
    kill_when(
        "normalized_users", data_dir, users_api_server.base_url, tmp_path, lambda: bool(staged_temp_files(data_dir))
    )
    good_csv = (good_day / "normalized_users" / f"{DAY}.csv").read_bytes()
    assert (csv_dir / f"{DAY}.csv").read_bytes() == good_csv
    pd.testing.assert_frame_equal(
        read_normalized_csv(csv_dir / f"{DAY}.csv"), read_normalized_csv(good_day / "normalized_users" / f"{DAY}.csv")
    )
    materialize_in_process(users_api_server.base_url, data_dir)
    assert (csv_dir / f"{DAY}.csv").read_bytes() == good_csv
    assert hidden_temp_files(csv_dir) == []


def test_killed_while_loading_the_table(users_api_server, good_day, data_dir, tmp_path):
    warehouse_url = f"sqlite:///{data_dir}/warehouse.sqlite"
    good_rows = open_warehouse(warehouse_url).read_partition(DAY)
    # The interrupted load would replace the day with half the rows: a partial load would show.
    csv_path = data_dir / "normalized_users" / f"{DAY}.csv"
    full_csv = csv_path.read_bytes()
    lines = full_csv.splitlines(keepends=True)
    csv_path.write_bytes(b"".join(lines[: len(lines) // 2]))
    wal = data_dir / "warehouse.sqlite-wal"
    kill_when(
        "users_table",
        data_dir,
        users_api_server.base_url,
        tmp_path,
        lambda: wal.exists() and wal.stat().st_size > 2_000_000,
    )
    pd.testing.assert_frame_equal(open_warehouse(warehouse_url).read_partition(DAY), good_rows)
    csv_path.write_bytes(full_csv)
    materialize_in_process(users_api_server.base_url, data_dir)
    pd.testing.assert_frame_equal(open_warehouse(warehouse_url).read_partition(DAY), good_rows)


def test_a_full_run_killed_while_loading_the_table_leaves_all_three_layers_as_they_were(
    users_api_server, good_day, data_dir, tmp_path
):
    # The API's answer changed, so the killed run's raw file and CSV differ from the good ones:
    # they were only staged, and the table's transaction never committed.
    users_api_server.add_fault("changed_users", seeds=[DAY], every=10)
    warehouse_url = f"sqlite:///{data_dir}/warehouse.sqlite"
    good_rows = open_warehouse(warehouse_url).read_partition(DAY)
    wal = data_dir / "warehouse.sqlite-wal"
    kill_when(
        "raw_users,normalized_users,users_table",
        data_dir,
        users_api_server.base_url,
        tmp_path,
        lambda: wal.exists() and wal.stat().st_size > 2_000_000,
    )
    for layer in (f"raw_users/{DAY}.jsonl", f"normalized_users/{DAY}.csv"):
        assert (data_dir / layer).read_bytes() == (good_day / layer).read_bytes(), layer
    pd.testing.assert_frame_equal(open_warehouse(warehouse_url).read_partition(DAY), good_rows)
    assert staged_temp_files(data_dir) == [] and list((data_dir / "staging").glob("*/normalized_users/*.csv")), (
        "the killed run's staged files stay in its staging folder, where nothing reads them"
    )


def test_killed_while_writing_parquet(users_api_server, local_spark, good_day, data_dir, tmp_path):
    def spark_run() -> None:
        """The same job, on this process's session: the good partition before the kill, the re-run after it."""
        run_ingestion(
            local_spark,
            input_dir=data_dir / "normalized_users",
            start_date=DAY,
            end_date=DAY,
            output_dir=data_dir / "parquet",
        )

    spark_run()
    users_dir = data_dir / "parquet" / "users"
    partition_dir = users_dir / f"partition_date={DAY}"
    good_files = {path.name: path.read_bytes() for path in partition_dir.iterdir()}
    good_rows = read_users(local_spark, data_dir / "parquet")

    kill_when(
        "users_parquet", data_dir, users_api_server.base_url, tmp_path, lambda: any(users_dir.glob(".spark-staging-*"))
    )
    assert {path.name: path.read_bytes() for path in partition_dir.iterdir()} == good_files
    assert read_users(local_spark, data_dir / "parquet") == good_rows, (
        "Spark's hidden staging folder is not read as data"
    )

    spark_run()
    assert read_users(local_spark, data_dir / "parquet") == good_rows
    [data_file] = [path for path in partition_dir.iterdir() if not path.name.startswith((".", "_"))]
    [good_data] = [content for name, content in good_files.items() if not name.startswith((".", "_"))]
    assert data_file.read_bytes() == good_data
