from setuptools import find_packages, setup

setup(
    name="user_pipeline",
    version="0.1.0",
    description="Daily-partitioned Dagster pipeline for Random User Generator records",
    packages=find_packages(exclude=["user_pipeline_tests*", "benchmarks*"]),
    package_data={"user_pipeline_tools.randomuser_server": ["*.json"]},
    python_requires=">=3.10",
    install_requires=[
        # The Dagster family is pinned together: unpinned, pip resolves
        # dagster-pyspark to a 0.11 release that does not work.
        "dagster==1.13.27",
        "dagster-webserver==1.13.27",
        "dagster-pyspark==0.29.27",
        "dagster-postgres==0.29.27",
        # spark_jobs/ingest_users.py reports to users_parquet through Dagster Pipes (dagster itself
        # depends on it; named here because the job imports it).
        "dagster-pipes==1.13.27",
        # The `dg` CLI (dg dev, dg check defs, dg list defs, dg launch).
        "dagster-dg-cli==1.13.27",
        # Steps on Celery workers (USER_PIPELINE_EXECUTOR=celery, user_pipeline/executors.py), with
        # Redis as broker and result backend ([redis] pulls the redis client celery needs), and
        # Flower, Celery's web UI (`make flower`).
        "dagster-celery[redis]==0.29.27",
        "flower>=2.0,<3",
        # PySpark 4 warns on pandas 3.
        "pandas>=2.2,<3",
        # The CSV format (user_pipeline/users/csv_format.py): strings quoted, nulls unquoted, any byte kept.
        "pyarrow>=15",
        "requests>=2.31",
        # JSON Lines of raw users and the bundled server's pages: the same bytes as json.dumps for
        # text and integers, 15-20x faster (user_pipeline/users/raw_files.py measures and pins it).
        "orjson>=3.9",
        "psycopg[binary]>=3.1",
        "matplotlib>=3.6",
        # make ui's shutdown (user_pipeline_tools/ui_stack.py) finds what is left of dg dev's process group;
        # stale staging and temporary files are judged by whether their writer is alive.
        "psutil>=5.9",
    ],
    extras_require={
        # pytest-xdist: `make test` runs the suite on two workers, one test file at a time each.
        # ruff and import-linter: `make test` lints, checks the format and the import contracts
        # first; pinned, so a new rule or contract check never turns CI red by itself.
        "test": [
            "pytest>=8",
            "pytest-xdist>=3.5",
            "playwright>=1.45",
            "hypothesis>=6.100",
            "ruff==0.17.6",
            "import-linter==2.17",
        ],
    },
)
