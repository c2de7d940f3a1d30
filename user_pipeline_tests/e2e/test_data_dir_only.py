"""Nothing node-local between steps: a run of every asset of a day, started as the README starts one
(`dagster asset materialize -m user_pipeline.definitions`), writes its data under
USER_PIPELINE_DATA_DIR only: nothing in its working directory, its TMPDIR or its home directory but
the libraries' own caches."""

import os
import subprocess
from pathlib import Path

from user_pipeline_tools.dagster_services import BIN_DIR

DAY = "2026-11-20"
# What libraries keep in a home directory for themselves: Dagster's telemetry id, matplotlib's font cache.
HOME_CACHES = (".dagster/.telemetry", ".cache/matplotlib", ".config/matplotlib")


def files_under(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())


def test_a_run_of_every_asset_writes_its_data_under_the_data_directory_only(users_api_server, tmp_path):
    data, cwd, temp, home, instance = (tmp_path / name for name in ("data", "cwd", "tmp", "home", "dagster_home"))
    for folder in (cwd, temp, home, instance):
        folder.mkdir()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(instance),
        "USER_PIPELINE_DATA_DIR": str(data),
        "USER_PIPELINE_API_URL": users_api_server.base_url,
        "USER_PIPELINE_USERS_PER_PARTITION": "20",
        "USER_PIPELINE_REGISTRY_START_DATE": DAY,  # the registry's first day: no day before it needed
        "TMPDIR": str(temp),
        "HOME": str(home),
    }
    env.pop("USER_PIPELINE_WAREHOUSE_URL", None)  # the default: a SQLite file in the data directory
    run = subprocess.run(
        [str(BIN_DIR / "dagster"), "asset", "materialize", "-m", "user_pipeline.definitions"]
        + ["--select", "*", "--partition", DAY],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert files_under(cwd) == [], "nothing written relative to the working directory"
    assert files_under(temp) == [], "no temporary file left behind"
    assert [name for name in files_under(home) if not name.startswith(HOME_CACHES)] == []
    written = files_under(data)
    for expected in (
        f"raw_users/{DAY}.jsonl",
        f"normalized_users/{DAY}.csv",
        f"user_registry/{DAY}.csv",
        f"reports/{DAY}.csv",
        f"reports/{DAY}.png",
        "warehouse.sqlite",
        "warehouse-circuit.sqlite",  # the circuit breaker's state, beside the SQLite warehouse
    ):
        assert expected in written, expected
    assert any(name.startswith(f"parquet/users/partition_date={DAY}/") for name in written)
    assert not (data / "state").exists(), "the circuit breaker keeps no state file"
