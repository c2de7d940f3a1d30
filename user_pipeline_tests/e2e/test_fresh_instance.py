"""A fresh instance's storage is created once by the install step, so runs started together as
the very first commands on it all succeed (Dagster's SQLite set-up races, dagster issue #2124)."""

import os
import shutil
import subprocess

from user_pipeline.users.warehouse import open_warehouse
from user_pipeline_tests.runs import materialize_command
from user_pipeline_tools.dagster_services import BIN_DIR, REPO_ROOT

DAYS = ["2026-07-01", "2026-07-02", "2026-07-03"]


def test_three_concurrent_first_runs_on_a_fresh_instance_all_succeed(users_api_server, tmp_path):
    home, data = tmp_path / "dagster_home", tmp_path / "data"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith("USER_PIPELINE_")},
        "USER_PIPELINE_API_URL": users_api_server.base_url,
        "USER_PIPELINE_USERS_PER_PARTITION": "5",
        "USER_PIPELINE_DATA_DIR": str(data),
    }
    # The README's install step, on this DAGSTER_HOME (the only substitution).
    install = subprocess.run(
        ["make", "install", f"DAGSTER_HOME={home}"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert install.returncode == 0, install.stderr[-3000:]
    assert (home / "history" / "runs.db").exists() and (home / "schedules" / "schedules.db").exists()

    runs = [
        subprocess.Popen(
            materialize_command(day, dagster=[str(BIN_DIR / "dagster")]),
            cwd=REPO_ROOT,
            env={**env, "DAGSTER_HOME": str(home)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for day in DAYS
    ]
    outputs = [run.communicate(timeout=600)[0] for run in runs]
    failed = [
        (day, output[-3000:]) for day, run, output in zip(DAYS, runs, outputs, strict=True) if run.returncode != 0
    ]
    assert not failed, failed
    warehouse = open_warehouse(f"sqlite:///{data}/warehouse.sqlite")
    assert {day: warehouse.count_rows(day) for day in DAYS} == dict.fromkeys(DAYS, 5)
