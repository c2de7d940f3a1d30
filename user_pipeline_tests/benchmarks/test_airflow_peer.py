"""The benchmark's Airflow DAG does user_pipeline's work: same raw file, CSV bytes, table and replace-a-day."""

from __future__ import annotations

import importlib.util
import sqlite3
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks import airflow_peer
from benchmarks.run import AIRFLOW, BARE, Case, Result, case_table
from user_pipeline.users.api_client import UsersApiClient
from user_pipeline.users.normalize import USER_COLUMNS, read_normalized_csv, write_normalized_csv
from user_pipeline.users.raw_files import write_raw_users
from user_pipeline.users.warehouse import open_warehouse
from user_pipeline_tools.randomuser_server.generator import generate_page

WORK_MODULE = airflow_peer.DAGS_FOLDER / "user_processing_work.py"
DAY = "2026-03-04"


def load_work():
    # The DAGs folder is Airflow's sys.path entry, not a package of this project.
    spec = importlib.util.spec_from_file_location("user_processing_work", WORK_MODULE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


work = load_work()


def project_csv(users: list[dict], path: Path, day: str = DAY) -> bytes:
    write_normalized_csv([users], path, day)
    return path.read_bytes()


def dag_csv(users: list[dict], tmp_path: Path, day: str = DAY) -> bytes:
    raw = tmp_path / "dag-raw.jsonl"
    raw.write_text("".join(work.json.dumps(user) + "\n" for user in users), encoding="utf-8")
    out = tmp_path / "dag.csv"
    work.normalize_raw_users(raw, out, day)
    return out.read_bytes()


def test_the_dag_has_every_column_of_normalized_users_in_order():
    assert work.USER_COLUMNS == USER_COLUMNS


def test_the_dag_creates_the_same_table_index_and_view_as_the_warehouse(tmp_path):
    open_warehouse(f"sqlite:///{tmp_path}/project.sqlite").count_rows()
    dag_db = sqlite3.connect(tmp_path / "dag.sqlite")
    for statement in work.CREATE_TABLE_SQL:
        dag_db.execute(statement)
    project_db = sqlite3.connect(tmp_path / "project.sqlite")

    def shape(db: sqlite3.Connection) -> dict:
        return {
            "columns": db.execute("PRAGMA table_info(users)").fetchall(),
            "indexes": sorted(row[1] for row in db.execute("PRAGMA index_list(users)")),
            "objects": sorted(db.execute("SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")),
            "journal": db.execute("PRAGMA journal_mode").fetchone(),
        }

    assert shape(dag_db) == shape(project_db)
    assert shape(dag_db)["journal"] == ("wal",)


def test_the_raw_file_is_byte_for_byte_the_projects_and_has_no_password(tmp_path, api_server):
    dag_raw = tmp_path / "dag.jsonl"
    written = work.fetch_raw_users(api_server.base_url, DAY, 7, dag_raw)
    project_raw = tmp_path / "project.jsonl"
    with UsersApiClient(base_url=api_server.base_url) as client:
        write_raw_users(client.iter_pages(seed=DAY, users=7), project_raw)

    assert written == 7
    assert dag_raw.read_bytes() == project_raw.read_bytes()
    assert b'"password"' not in dag_raw.read_bytes()


def test_pages_hold_exactly_the_users_asked_for(tmp_path, api_server, monkeypatch):
    monkeypatch.setattr(work, "MAX_PAGE_SIZE", 3)
    path = tmp_path / "raw.jsonl"

    assert work.fetch_raw_users(api_server.base_url, DAY, 7, path) == 7
    emails = [work.json.loads(line)["email"] for line in path.read_text().splitlines()]
    assert emails == [
        user["email"] for user in generate_page(DAY, 1, 3) + generate_page(DAY, 2, 3) + generate_page(DAY, 3, 3)[:1]
    ]


def test_the_csv_is_byte_for_byte_the_projects_for_a_generated_day(tmp_path):
    users = generate_page(DAY, 1, 300)

    assert dag_csv(users, tmp_path) == project_csv(users, tmp_path / "project.csv")


emails = st.sampled_from(["a@example.com", " A@Example.com", "a@example.com ", "b@example.com", "B@EXAMPLE.COM"])
postcodes = st.one_of(st.integers(min_value=0, max_value=99999), st.text(min_size=1, max_size=8))
texts = st.text(min_size=1, max_size=12)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(emails, postcodes, texts), min_size=1, max_size=12))
def test_duplicate_emails_and_awkward_values_come_out_as_the_project_writes_them(tmp_path, rows):
    base = generate_page(DAY, 1, len(rows))
    users = []
    for user, (email, postcode, city) in zip(base, rows, strict=True):
        location = {**user["location"], "postcode": postcode, "city": city}
        users.append({**user, "email": email, "location": location})

    assert dag_csv(users, tmp_path) == project_csv(users, tmp_path / "project.csv")


# Values the CSV or the table could change: quotes, CR/LF, U+0000, \N, "" against missing,
# emails equal only once trimmed (Unicode spaces) and case-folded (ß -> ss), zeros with a sign.
hostile_emails = st.sampled_from(
    ["straße@example.com", "STRASSE@example.com", "\u2003Strasse@Example.com", "a@example.com", "A@EXAMPLE.COM\t", ""]
)
hostile_texts = st.one_of(
    st.none(),
    st.sampled_from(["", '""', "\\N", "a\rb", "a\r\nb", "\x00", "x\x00y", " lead", "trail ", "\u2028", "a,b", '"q"']),
    st.text(max_size=8),
)
coordinates = st.sampled_from(["-0.0", "0.0", "-0", "12.5", "-41.5583", -0.0, 0.0, 3.25])


def stored_rows(db_path: Path) -> list[tuple]:
    connection = sqlite3.connect(db_path)
    try:
        return connection.execute("SELECT * FROM users ORDER BY email_key").fetchall()
    finally:
        connection.close()


def store_both(dag_csv_path: Path, project_csv_path: Path) -> tuple[list, list]:
    """The DAG's rows after store_user and the project's after users_table, each in a new database."""
    databases = Path(tempfile.mkdtemp(dir=dag_csv_path.parent))
    store(databases / "dag.sqlite", dag_csv_path)
    open_warehouse(f"sqlite:///{databases}/project.sqlite").replace_partition_verified(
        DAY, read_normalized_csv(project_csv_path, chunk_rows=20)
    )
    return stored_rows(databases / "dag.sqlite"), stored_rows(databases / "project.sqlite")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(st.tuples(hostile_emails, hostile_texts, hostile_texts, coordinates, coordinates), min_size=1, max_size=10)
)
def test_hostile_values_are_written_and_stored_as_the_project_does(tmp_path, rows):
    base = generate_page(DAY, 1, len(rows))
    users = []
    for user, (email, city, street, latitude, longitude) in zip(base, rows, strict=True):
        location = {
            **user["location"],
            "city": city,
            "street": {**user["location"]["street"], "name": street},
            "coordinates": {"latitude": latitude, "longitude": longitude},
        }
        users.append({**user, "email": email, "location": location})
    dag_bytes = dag_csv(users, tmp_path)
    project_bytes = project_csv(users, tmp_path / "project.csv")

    assert dag_bytes == project_bytes
    dag_rows, project_rows = store_both(tmp_path / "dag.csv", tmp_path / "project.csv")
    assert dag_rows == project_rows
    assert len(dag_rows) == len({email.strip().casefold() for email, *_ in rows})


def store(db_path: Path, csv_path: Path, day: str = DAY) -> int:
    connection = sqlite3.connect(db_path)
    try:
        for statement in work.CREATE_TABLE_SQL:
            connection.execute(statement)
        return work.replace_partition(connection, csv_path, day)
    finally:
        connection.close()


def test_storing_a_day_twice_replaces_it_and_matches_the_projects_rows(tmp_path):
    users = generate_page(DAY, 1, 50)
    csv_path = tmp_path / "day.csv"
    csv_path.write_bytes(dag_csv(users, tmp_path))
    db_path = tmp_path / "dag.sqlite"

    assert store(db_path, csv_path) == 50
    assert store(db_path, csv_path) == 50

    warehouse = open_warehouse(f"sqlite:///{tmp_path}/project.sqlite")
    warehouse.replace_partition(DAY, read_normalized_csv(csv_path, chunk_rows=20))
    project_rows = sqlite3.connect(tmp_path / "project.sqlite").execute("SELECT * FROM users ORDER BY email").fetchall()
    dag_rows = sqlite3.connect(db_path).execute("SELECT * FROM users ORDER BY email").fetchall()
    assert dag_rows == project_rows
    assert len(dag_rows) == 50


def test_a_failed_store_keeps_the_previous_day(tmp_path):
    good = tmp_path / "good.csv"
    good.write_bytes(dag_csv(generate_page(DAY, 1, 20), tmp_path))
    db_path = tmp_path / "dag.sqlite"
    store(db_path, good)
    wrong_day = tmp_path / "wrong.csv"
    wrong_day.write_bytes(dag_csv(generate_page(DAY, 1, 30), tmp_path, day="2026-03-05"))

    with pytest.raises(ValueError, match="another day than 2026-03-04"):
        store(db_path, wrong_day)
    assert sqlite3.connect(db_path).execute(
        "SELECT COUNT(*) FROM users WHERE partition_date = ?", (DAY,)
    ).fetchone() == (20,)


def test_a_user_without_a_field_fails_naming_the_field(tmp_path):
    users = generate_page(DAY, 1, 2)
    del users[1]["login"]["salt"]
    users[0]["login"].pop("salt")

    with pytest.raises(ValueError, match=r"lack fields \['login.salt'\]"):
        dag_csv(users, tmp_path)


def test_without_the_airflow_venv_the_table_says_skipped_and_why(tmp_path):
    assert airflow_peer.installed_version(tmp_path / "no-venv") is None
    case = Case(
        "main",
        10,
        5000,
        (BARE, AIRFLOW),
        results={BARE: [Result(wall=1.0, cpu=1.0, rss=2**20)]},
        skipped={AIRFLOW: "skipped: /x/.venv-airflow not found (make benchmark-airflow-setup)"},
    )

    rows = case_table([case])

    assert rows[-1] == (
        f"| 10 x 5,000 | {AIRFLOW} | – | skipped: /x/.venv-airflow not found "
        "(make benchmark-airflow-setup) | – | – | – | – | – |"
    )


def test_the_mode_names_the_pinned_airflow_version():
    pinned = airflow_peer.pinned_version()

    assert pinned == "3.3.2"
    assert AIRFLOW.startswith(f"Airflow {pinned}, the seed's DAG (fixed), LocalExecutor")
