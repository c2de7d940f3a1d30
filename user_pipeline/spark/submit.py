"""Running spark_jobs/ingest_users.py with spark-submit, its output streamed line by line.

Plain Python: the Spark asset uses it for cluster mode, the tests and benchmarks directly.
"""

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import spark_jobs

# The job is submitted as a file; importing it here would load PySpark in this process.
JOB_FILE = Path(spark_jobs.__file__).resolve().parent / "ingest_users.py"


class SparkSubmitError(RuntimeError):
    """spark-submit exited non-zero; the message carries the job's own error lines."""


def spark_home() -> str:
    """SPARK_HOME: $SPARK_HOME if it has bin/spark-class, else the installed pyspark package."""
    env = os.environ.get("SPARK_HOME")
    if env and os.path.isfile(os.path.join(env, "bin", "spark-class")):
        return env
    try:
        import pyspark  # only needed to locate the jars and scripts
    except ImportError as exc:  # pragma: no cover
        raise SparkSubmitError("pyspark is not installed and SPARK_HOME is not set") from exc
    return os.path.dirname(pyspark.__file__)


def spark_submit(
    spark_args: Sequence[str], job_args: Sequence[str], on_line: Callable[[str], None] = lambda line: None
) -> dict:
    """Submits the ingestion job and returns its INGESTION_SUMMARY; every output line goes to `on_line`."""
    home = spark_home()
    command = [os.path.join(home, "bin", "spark-submit"), *spark_args, str(JOB_FILE), *job_args]
    env = {
        **os.environ,
        "SPARK_HOME": home,
        # The driver and executors run the job with this interpreter, so they see the same packages.
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
    }
    lines: list[str] = []
    with subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    ) as process:
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            on_line(lines[-1])
    if process.returncode != 0:
        errors = [line for line in lines if line.startswith("ERROR:")] or lines[-20:]
        raise SparkSubmitError(f"spark-submit exited with {process.returncode}: " + "\n".join(errors))
    from spark_jobs.ingest_users import parse_summary_line

    return parse_summary_line("\n".join(lines))
