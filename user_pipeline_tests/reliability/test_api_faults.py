"""Every API fault through a real run: transient ones recover by retry, the rest fail naming the
field or status, and none leaves a partial partition or touches the previous good one."""

import shutil
import threading
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from user_pipeline.users.warehouse import open_warehouse
from user_pipeline_tests.runs import materialize_users

DAY = "2026-09-01"
USERS = 300


def run_day(base_url: str, data_dir: Path, **api_settings) -> dg.ExecuteInProcessResult:
    settings = {"backoff_seconds": 0.05, "max_attempts": 4, "timeout_seconds": 2, **api_settings}
    return materialize_users(base_url, data_dir, DAY, users_per_partition=USERS, page_size=100, **settings)


def snapshot(data_dir: Path) -> tuple[dict[str, bytes], pd.DataFrame]:
    """Every file (hidden ones included) and the day's table rows."""
    files = {
        str(path.relative_to(data_dir)): path.read_bytes()
        for path in sorted(data_dir.rglob("*"))
        if path.is_file() and not path.name.startswith("warehouse.sqlite")
    }
    return files, open_warehouse(f"sqlite:///{data_dir}/warehouse.sqlite").read_partition(DAY)


def failure_text(result: dg.ExecuteInProcessResult) -> str:
    return "\n".join(event.step_failure_data.error.message for event in result.get_step_failure_events())


@pytest.fixture(scope="module")
def good_day(api_server, tmp_path_factory) -> Path:
    """The day materialized once without faults: the previous good partition."""
    api_server.start()
    api_server.clear_faults()
    data_dir = tmp_path_factory.mktemp("good_day")
    assert run_day(api_server.base_url, data_dir).success
    return data_dir


@pytest.fixture
def data_dir(good_day, tmp_path) -> Path:
    """A copy of the good day to run a faulty run over."""
    copy = tmp_path / "data"
    shutil.copytree(good_day, copy)
    return copy


def assert_same_as(data_dir: Path, reference: Path) -> None:
    files, rows = snapshot(data_dir)
    reference_files, reference_rows = snapshot(reference)
    assert files == reference_files
    pd.testing.assert_frame_equal(rows, reference_rows)


TRANSIENT = {
    "rate_limit_with_retry_after": ("rate_limit", {"retry_after": 1}),
    "rate_limit_without_retry_after": ("rate_limit", {}),
    "http_500": ("server_error", {"status": 500}),
    "http_502": ("server_error", {"status": 502}),
    "http_503": ("server_error", {"status": 503}),
    "slow_answer_past_the_timeout": ("slow", {"delay_seconds": 4}),
    "truncated_body": ("truncated", {}),
}


@pytest.mark.parametrize("fault", sorted(TRANSIENT))
def test_transient_faults_recover_by_retry_to_exactly_the_good_data(users_api_server, good_day, data_dir, fault):
    kind, options = TRANSIENT[fault]
    users_api_server.add_fault(kind, times=2, seeds=[DAY], **options)
    result = run_day(users_api_server.base_url, data_dir)
    assert result.success, failure_text(result)
    assert users_api_server.stats()["by_seed"][DAY] == 3 + 2  # 3 pages + 2 retried answers
    assert_same_as(data_dir, good_day)


def test_a_refused_connection_recovers_once_the_api_is_back(users_api_server, good_day, data_dir):
    users_api_server.stop()
    restarter = threading.Timer(1.0, users_api_server.start)
    restarter.start()
    try:
        result = run_day(users_api_server.base_url, data_dir, backoff_seconds=1.0, max_attempts=6)
    finally:
        restarter.join()
    assert result.success, failure_text(result)
    assert_same_as(data_dir, good_day)


PERMANENT = {
    "error_body_with_http_200": ("error_body", {}, "HTTP 200 with an error"),
    "no_results_field": ("missing_results", {}, "has no 'results' field"),
    "user_without_email": (
        "missing_field",
        {"field": "email"},
        "page 2 results[0] (user 100 of the seed): email: missing (got nothing)",
    ),
    "user_without_login": (
        "missing_field",
        {"field": "login"},
        "page 2 results[0] (user 100 of the seed): login: missing (got nothing)",
    ),
    "empty_results": ("empty_results", {}, "returned 0 users"),
    "fewer_results_than_asked": ("short_results", {"count": 7}, "returned 7 users"),
    "non_utf8_byte": ("invalid_utf8", {}, "is not UTF-8"),
}


@pytest.mark.parametrize("fault", sorted(PERMANENT))
def test_permanent_faults_fail_at_once_naming_what_is_wrong_and_keep_the_good_day(
    users_api_server, good_day, data_dir, fault
):
    kind, options, message = PERMANENT[fault]
    # On page 2, so that page 1 was already written to the temporary file when the run fails.
    users_api_server.add_fault("slow", times=1, seeds=[DAY], delay_seconds=0)
    users_api_server.add_fault(kind, times=1, seeds=[DAY], **options)
    started = time.monotonic()
    result = run_day(users_api_server.base_url, data_dir)
    assert not result.success
    assert message in failure_text(result)
    assert users_api_server.stats()["by_seed"][DAY] == 2, "a permanent fault is not retried"
    assert time.monotonic() - started < 20
    assert_same_as(data_dir, good_day)


def test_an_extra_field_is_kept_in_raw_and_ignored_downstream(users_api_server, good_day, data_dir):
    users_api_server.add_fault("extra_field", seeds=[DAY])
    result = run_day(users_api_server.base_url, data_dir)
    assert result.success
    files, rows = snapshot(data_dir)
    good_files, good_rows = snapshot(good_day)
    assert '"extra":"x"' in files[f"raw_users/{DAY}.jsonl"].decode()
    assert files[f"normalized_users/{DAY}.csv"] == good_files[f"normalized_users/{DAY}.csv"]
    pd.testing.assert_frame_equal(rows, good_rows)
