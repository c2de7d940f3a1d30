"""End to end: runs launched from the dagster CLI are queued, run by the real daemon, and land."""

import json

from user_pipeline.users.warehouse import open_warehouse

DAY = "2026-10-01"


def test_job_launch_with_a_partition_tag_is_queued_run_by_the_daemon_and_lands(api_server, dagster_services):
    api_server.start()
    launched = dagster_services.dagster(
        "job",
        "launch",
        "-w",
        "workspace.yaml",
        "-j",
        "daily_users_job",
        "--tags",
        json.dumps({"dagster/partition": DAY}),
    )
    assert launched.returncode == 0, launched.stderr[-3000:]
    [run] = dagster_services.wait_for_runs(1, tags=[{"key": "dagster/partition", "value": DAY}])
    assert run["status"] == "SUCCESS", dagster_services.logs("daemon")
    data_dir = dagster_services.data_dir
    assert (data_dir / "raw_users" / f"{DAY}.jsonl").exists()
    assert open_warehouse(f"sqlite:///{data_dir}/warehouse.sqlite").count_rows(DAY) > 0
