"""The offline demo: the bundled API server, the last few days materialized, where it all went.

    python -m user_pipeline.demo [--days 3] [--users 100]

Runs are recorded in the DAGSTER_HOME instance, so `dagster dev` shows them afterwards.
"""

import argparse
import os
import sys

DEMO_API_PORT = 8765
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m user_pipeline.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=3, help="how many of the latest daily partitions")
    parser.add_argument("--users", type=int, default=100, help="users per partition")
    args = parser.parse_args(argv)

    from user_pipeline.randomuser_server.launcher import RandomUserServer

    with RandomUserServer(port=DEMO_API_PORT) as api:
        # Set before the definitions are imported: they read the environment once.
        os.environ["USER_PIPELINE_API_URL"] = api.base_url
        os.environ["USER_PIPELINE_USERS_PER_PARTITION"] = str(args.users)
        import dagster as dg

        from user_pipeline.definitions import DATA_DIR, defs
        from user_pipeline.partitions import daily_partitions

        job = defs.resolve_job_def("daily_users_job")
        partition_keys = daily_partitions.get_partition_keys()[-args.days :]
        warehouse = defs.resources["warehouse"].open()
        with dg.DagsterInstance.get() as instance:
            for partition_key in partition_keys:
                result = job.execute_in_process(
                    partition_key=partition_key, instance=instance, run_config=QUIET_LOGS, raise_on_error=False
                )
                status = "ok" if result.success else "FAILED"
                print(f"{partition_key}: {status}, {warehouse.count_rows(partition_key)} rows in the users table", flush=True)
                if not result.success:
                    return 1

    print(f"\nData:      {DATA_DIR}/raw_users, {DATA_DIR}/normalized_users")
    print(f"Warehouse: {warehouse.display_url} (table users, view users_latest)")
    print(f"Instance:  {os.environ.get('DAGSTER_HOME', '(ephemeral)')}")
    print("UI:        make ui   (then open http://127.0.0.1:3000)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
