"""On PostgreSQL instance storage and a PostgreSQL warehouse a CLI-launched day lands, and the PostgreSQL password is in no log or stored event."""

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from user_pipeline.users.normalize import read_normalized_csv
from user_pipeline.users.warehouse import open_warehouse
from user_pipeline_tests.e2e.conftest import USERS_PER_PARTITION
from user_pipeline_tests.e2e.support import job_launch, run_events
from user_pipeline_tests.postgres_cluster import USER
from user_pipeline_tools.dagster_services import REPO_ROOT, DagsterServices

DAY = "2026-10-27"


POSTGRES_INSTANCE_CONFIG = REPO_ROOT / "dagster_home" / "postgres" / "dagster.yaml"


def postgres_services_for(
    postgres, api_server, root: Path, instance_config: Path = POSTGRES_INSTANCE_CONFIG
) -> DagsterServices:
    """Daemon + webserver on the PostgreSQL instance config: runs, events and schedules in a fresh
    PostgreSQL database; the users warehouse in another one. The password travels only in
    DAGSTER_PG_PASSWORD (the instance) and PGPASSWORD (the warehouse), never in a URL."""
    suffix = uuid.uuid4().hex[:10]
    instance_db = f"dagster_{suffix}"
    postgres.create_database(instance_db)
    warehouse_url = postgres.create_database(f"warehouse_{suffix}")
    env = {
        "DAGSTER_PG_HOST": "127.0.0.1",
        "DAGSTER_PG_PORT": str(postgres.port),
        "DAGSTER_PG_USER": USER,
        "DAGSTER_PG_PASSWORD": postgres.password,
        "DAGSTER_PG_DB": instance_db,
        "PGPASSWORD": postgres.password,
        "USER_PIPELINE_API_URL": api_server.base_url,
        "USER_PIPELINE_USERS_PER_PARTITION": str(USERS_PER_PARTITION),
        "USER_PIPELINE_DATA_DIR": str(root / "data"),
        "USER_PIPELINE_WAREHOUSE_URL": warehouse_url,
    }
    services = DagsterServices(root / "dagster_home", env, instance_config=instance_config)
    services.data_dir = root / "data"
    services.warehouse_url = warehouse_url
    services.instance_url = postgres.url(instance_db)
    return services


@pytest.fixture(scope="module")
def postgres_services(postgres, api_server, tmp_path_factory) -> Iterator[DagsterServices]:
    with postgres_services_for(postgres, api_server, tmp_path_factory.mktemp("e2e_postgres")) as services:
        yield services


def instance_tables_as_text(url: str, password: str) -> dict[str, str]:
    """Every row of every table of the instance database, as PostgreSQL prints it."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(url, password=password) as connection:
        tables = [
            row[0]
            for row in connection.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
            )
        ]
        return {
            table: "\n".join(
                row[0] for row in connection.execute(sql.SQL("SELECT t::text FROM {} t").format(sql.Identifier(table)))
            )
            for table in tables
        }


def test_a_cli_launched_day_lands_on_postgres_and_the_password_is_in_no_log(
    postgres, postgres_services, users_api_server, monkeypatch
):
    services = postgres_services
    monkeypatch.setenv("PGPASSWORD", postgres.password)  # For this process's reads of the warehouse.
    launched = job_launch(services, DAY)
    assert "NOTIFY run_events" not in launched.stderr, (
        "PostgreSQL instance storage cannot store events: SQLAlchemy 2.1 connects to postgresql:// with "
        "psycopg 3, whose server-side binding rejects dagster-postgres's `NOTIFY run_events, :id`. "
        "Set `scheme: postgresql+psycopg2` under storage.postgres.postgres_db in dagster_home/postgres/dagster.yaml "
        "(or pin SQLAlchemy<2.1).\n" + launched.stderr[-1500:]
    )
    assert launched.returncode == 0, launched.stderr[-3000:]
    [run] = services.wait_for_runs(1, tags=[{"key": "dagster/partition", "value": DAY}])
    assert run["status"] == "SUCCESS", services.logs("daemon")
    run_id = run["runId"]

    # The day is in the PostgreSQL warehouse, and the run and its events in the PostgreSQL instance.
    rows = open_warehouse(services.warehouse_url).read_partition(DAY)
    csv = read_normalized_csv(services.data_dir / "normalized_users" / f"{DAY}.csv")
    assert len(rows) == len(csv) > 0 and sorted(rows["email"]) == sorted(csv["email"])
    tables = instance_tables_as_text(services.instance_url, postgres.password)
    assert run_id in tables["runs"] and run_id in tables["event_logs"]
    assert not list(services.home.glob("history/runs*")), "SQLite instance storage was used instead of PostgreSQL"

    # The password is nowhere: the run's event log (as the UI reads it), the instance's tables,
    # the compute logs and every other file of the instance, webserver and daemon logs, data files.
    events = json.dumps(run_events(services, run_id))
    assert f"postgresql://{USER}@127.0.0.1:{postgres.port}/" in events  # The warehouse's metadata: it was PostgreSQL.
    files = {
        str(path): path.read_bytes().decode("utf-8", "replace")
        for folder in (services.home, services.data_dir)
        for path in folder.rglob("*")
        if path.is_file()
    }
    compute_logs = [name for name in files if run_id in name]
    assert compute_logs, f"no compute logs of run {run_id} under {services.home}"
    assert "webserver.log" in " ".join(files) and "daemon.log" in " ".join(files)
    haystacks = {
        "GraphQL event log": events,
        "CLI output": launched.stdout + launched.stderr,
        **{f"instance table {name}": text for name, text in tables.items()},
        **files,
    }
    leaks = [name for name, text in haystacks.items() if postgres.password in text]
    assert not leaks, f"the PostgreSQL password appears in: {leaks}"
