"""`make instance-files`: writes dagster_home/postgres/dagster.yaml from dagster_home/dagster.yaml.

    python -m user_pipeline_tools.instance_files [--check]

The PostgreSQL instance is the SQLite one (queue limits, pools, run monitoring, run retries, every
line and comment of it) plus a `storage` block. Dagster reads one dagster.yaml per DAGSTER_HOME and
has no include (dagster/_core/instance/config.py, `dagster_instance_config`: one file, no merge of
others), so the shared part is written here, from the one file people edit, rather than kept twice
by hand. `--check` exits 1 if the PostgreSQL file is not what this writes (a test runs it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SOURCE = PROJECT_ROOT / "dagster_home" / "dagster.yaml"
TARGET = PROJECT_ROOT / "dagster_home" / "postgres" / "dagster.yaml"

HEADER = """\
# The PostgreSQL-backed instance: DAGSTER_HOME=dagster_home/postgres.
# Written by `make instance-files` from dagster_home/dagster.yaml (edit that one, then run it):
# the same instance, with runs, event logs and schedules in PostgreSQL (dagster-postgres),
# configured by the DAGSTER_PG_* environment variables.
"""

STORAGE = """
storage:
  postgres:
    postgres_db:
      # psycopg2: SQLAlchemy 2.1 would pick psycopg 3, which rejects dagster-postgres' NOTIFY statement.
      scheme: postgresql+psycopg2
      hostname:
        env: DAGSTER_PG_HOST
      port:
        env: DAGSTER_PG_PORT
      username:
        env: DAGSTER_PG_USER
      password:
        env: DAGSTER_PG_PASSWORD
      db_name:
        env: DAGSTER_PG_DB
"""


def render(source: str) -> str:
    """The PostgreSQL instance's text: HEADER, `source` without its own leading comment, STORAGE."""
    lines = source.splitlines(keepends=True)
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    return HEADER + "".join(lines).rstrip("\n") + "\n" + STORAGE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m user_pipeline_tools.instance_files", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if the PostgreSQL file is out of date")
    args = parser.parse_args(argv)
    expected = render(SOURCE.read_text())
    if args.check:
        if TARGET.read_text() != expected:
            print(f"{TARGET.relative_to(PROJECT_ROOT)} is out of date: run `make instance-files`", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(expected)
    print(f"wrote {TARGET.relative_to(PROJECT_ROOT)} from {SOURCE.relative_to(PROJECT_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
