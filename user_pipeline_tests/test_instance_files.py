"""The two instance files are one: dagster_home/postgres/dagster.yaml is dagster_home/dagster.yaml plus
its storage block (`make instance-files` writes it); Dagster loads both with run monitoring on and no
pool limited but users_api."""

import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml

from user_pipeline_tools.dagster_services import REPO_ROOT
from user_pipeline_tools.instance_files import SOURCE, TARGET, render


def test_the_postgres_instance_is_the_sqlite_one_plus_its_storage():
    checked = subprocess.run(
        [sys.executable, "-m", "user_pipeline_tools.instance_files", "--check"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stderr
    local, postgres = yaml.safe_load(SOURCE.read_text()), yaml.safe_load(TARGET.read_text())
    assert set(postgres) - set(local) == {"storage"}
    assert {key: value for key, value in postgres.items() if key != "storage"} == local


def test_an_edit_of_the_sqlite_instance_alone_is_caught():
    edited = SOURCE.read_text().replace("max_concurrent_runs: 4", "max_concurrent_runs: 8")
    assert render(edited) != TARGET.read_text()
    assert "max_concurrent_runs: 8" in render(edited)


@pytest.mark.parametrize("config", [SOURCE, TARGET], ids=["sqlite", "postgres"])
def test_the_instance_monitors_runs_and_limits_no_pool_by_default(config: Path, tmp_path: Path, monkeypatch):
    """Loaded by Dagster's own validation (the PostgreSQL file without its storage, which needs a server:
    user_pipeline_tests/e2e/test_postgres_instance.py starts one)."""
    settings = {key: value for key, value in yaml.safe_load(config.read_text()).items() if key != "storage"}
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(settings))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    with dg.DagsterInstance.get() as instance:
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_poll_interval_seconds == 5
        assert instance.run_monitoring_max_runtime_seconds == 10800
        # Only the users_api pool is limited, by its setting (user_pipeline_tests/test_run_limits.py).
        assert instance.get_concurrency_config().pool_config.default_pool_limit is None
        assert instance.run_retries_enabled and not instance.run_retries_retry_on_asset_or_op_failure
