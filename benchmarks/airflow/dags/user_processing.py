"""The seed's Airflow DAG, fixed, for the benchmark's Airflow peer (Airflow 3.3.2).

    create_table >> is_api_available >> extract_user >> process_user >> store_user

Same tasks as the seed (docs/migrating-from-airflow.md), doing the work user_pipeline's
raw_users, normalized_users and users_table do (the functions are in user_processing_work.py):

- create_table: SQLExecuteQueryOperator on connection ``user_warehouse`` (SQLite by default, as
  user_pipeline's warehouse): table ``users`` with every column of ``normalized_users``, keyed
  by (partition_date, email_key), its email_key index and the ``users_latest`` view;
- is_api_available: HttpSensor on connection ``users_api`` (``/api/?results=1&seed=health``);
- extract_user: every page of the day's users (seed = the run's ``ds``) to
  ``{data_dir}/raw_users/{ds}.jsonl``, plaintext password dropped. Only the file's path goes
  through XCom (the seed pushed the whole answer);
- process_user: ``pd.json_normalize`` to the 29 columns (with ``email_key``, the email trimmed
  and case-folded), duplicate email keys dropped, into ``{data_dir}/normalized_users/{ds}.csv`` in
  user_pipeline's CSV format, written with pyarrow (the seed wrote one shared
  /tmp/processed_user.csv with ``to_csv``);
- store_user: the day's rows deleted and the CSV's inserted in one transaction (the seed's
  ``copy_expert`` appended on every re-run).

Settings, read when a task runs (never at parse time): connections ``users_api`` (the API's
host and port) and ``user_warehouse`` (``host`` = the SQLite file), and Variables
``user_processing_users_per_day`` (default 100) and ``user_processing_data_dir`` (default
``/tmp/user_processing``). The benchmark passes all four as AIRFLOW_CONN_* / AIRFLOW_VAR_*
environment variables. Retries as user_pipeline's: extract 2 (30 s, exponential), store 3 (5 s).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import user_processing_work as work
from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator
from airflow.providers.http.hooks.http import HttpHook
from airflow.providers.http.sensors.http import HttpSensor
from airflow.providers.sqlite.hooks.sqlite import SqliteHook
from airflow.sdk import DAG, CronDataIntervalTimetable, Variable, task

API_CONN_ID = "users_api"
WAREHOUSE_CONN_ID = "user_warehouse"


def _data_dir() -> Path:
    return Path(Variable.get("user_processing_data_dir", default="/tmp/user_processing"))


with DAG(
    dag_id="user_processing",
    start_date=datetime(2026, 1, 1),
    # Data intervals, as the seed had in Airflow 2: the run of day D starts after D closes and its ds is D
    # (Airflow 3's "@daily" would be a trigger timetable, whose ds is the day the run starts).
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    catchup=False,
    tags=["benchmark", "user_pipeline peer"],
) as dag:
    create_table = SQLExecuteQueryOperator(
        task_id="create_table",
        conn_id=WAREHOUSE_CONN_ID,
        sql=work.CREATE_TABLE_SQL,
    )

    is_api_available = HttpSensor(
        task_id="is_api_available",
        http_conn_id=API_CONN_ID,
        endpoint="api/",
        request_params={"results": 1, "seed": "health", "format": "json"},
        response_check=lambda response: "results" in response.json(),
        poke_interval=5,
        timeout=300,
    )

    @task(retries=2, retry_delay=timedelta(seconds=30), retry_exponential_backoff=True)
    def extract_user(ds: str | None = None) -> str:
        hook = HttpHook(method="GET", http_conn_id=API_CONN_ID)
        hook.get_conn()  # resolves the connection into hook.base_url
        path = _data_dir() / "raw_users" / f"{ds}.jsonl"
        users = int(Variable.get("user_processing_users_per_day", default="100"))
        work.fetch_raw_users(hook.url_from_endpoint("api/"), ds, users, path)
        return str(path)

    @task
    def process_user(raw_path: str, ds: str | None = None) -> str:
        csv_path = _data_dir() / "normalized_users" / f"{ds}.csv"
        summary = work.normalize_raw_users(Path(raw_path), csv_path, ds)
        print(f"normalized {ds}: {summary}")
        return str(csv_path)

    @task(retries=3, retry_delay=timedelta(seconds=5))
    def store_user(csv_path: str, ds: str | None = None) -> int:
        connection = SqliteHook(sqlite_conn_id=WAREHOUSE_CONN_ID).get_conn()
        try:
            return work.replace_partition(connection, Path(csv_path), ds)
        finally:
            connection.close()

    raw = extract_user()
    create_table >> is_api_available >> raw
    store_user(process_user(raw))
