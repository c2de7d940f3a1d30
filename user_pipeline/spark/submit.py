"""Where spark-submit and the ingestion job are, and the environment spark-submit runs them in.

Plain Python: the Spark settings build the command from it, `make spark-cluster` finds Spark's
launchers with it, the tests run the job with plain spark-submit.
"""

import os
import sys
from pathlib import Path

import spark_jobs

# The job is submitted as a file; importing it here would load PySpark in this process.
JOB_FILE = Path(spark_jobs.__file__).resolve().parent / "ingest_users.py"


class SparkNotFoundError(RuntimeError):
    """Neither $SPARK_HOME nor an installed pyspark package provides Spark's launchers."""


def spark_home() -> str:
    """SPARK_HOME: $SPARK_HOME if it has bin/spark-class, else the installed pyspark package."""
    env = os.environ.get("SPARK_HOME")
    if env and os.path.isfile(os.path.join(env, "bin", "spark-class")):
        return env
    try:
        import pyspark  # only needed to locate the jars and scripts
    except ImportError as exc:  # pragma: no cover
        raise SparkNotFoundError("pyspark is not installed and SPARK_HOME is not set") from exc
    return os.path.dirname(pyspark.__file__)


def spark_submit_executable(home: str) -> str:
    return os.path.join(home, "bin", "spark-submit")


def submit_environment() -> dict[str, str]:
    """The variables spark-submit needs on top of this process's environment: SPARK_HOME, and this
    interpreter for the job's driver and Python workers, so they see the same packages (PySpark,
    and dagster-pipes for the driver under Dagster)."""
    return {"SPARK_HOME": spark_home(), "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
