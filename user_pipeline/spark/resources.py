import re
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import Field

from user_pipeline.shared.errors import InvalidSettingError
from user_pipeline.shared.settings_fields import SettingsResource, check_http_url, checked_by

LOOPBACK_HOSTS = ("127.0.0.1", "localhost")
# Spark's own forms (SparkContext's master URL; a JVM memory size such as 512m or 2g).
_MASTER = re.compile(r"local(\[(\*|\d+)(,\d+)?\])?|spark://[^\s/]+:\d+")
_MEMORY = re.compile(r"\d+[kmgt]?", re.IGNORECASE)


def check_master(master: str) -> str:
    if not _MASTER.fullmatch(master):
        raise InvalidSettingError("master", master, "local, local[N], local[*] or spark://host:port")
    return master


def check_memory(size: str) -> str:
    if not _MEMORY.fullmatch(size):
        raise InvalidSettingError("memory", size, "a JVM memory size such as 512m or 2g")
    return size


class SparkSettings(SettingsResource):
    """Where and how the Spark ingestion runs.

    `master` local[*] (the default) runs the job in the Dagster step's own process, in a session
    from dagster-pyspark; a spark://host:port master submits spark_jobs/ingest_users.py to that
    standalone cluster with spark-submit. Defaults suit a 2-core laptop and a small daily batch.
    """

    master: Annotated[str, checked_by(check_master)] = Field(
        default="local[*]", description="`spark://host:port` submits to a standalone cluster."
    )
    driver_memory: Annotated[str, checked_by(check_memory)] = Field(
        default="1g", description="Sized for a 2-core laptop."
    )
    executor_memory: Annotated[str, checked_by(check_memory)] = Field(
        default="1g", description="Per executor, on a cluster."
    )
    total_executor_cores: int = Field(default=1, ge=1, le=1024, description="Cores the application takes on a cluster.")
    shuffle_partitions: int = Field(
        default=4, ge=1, le=100_000, description="`spark.sql.shuffle.partitions`, sized for a small daily batch."
    )
    master_web_ui_url: Annotated[str, checked_by(check_http_url(optional=True))] = Field(
        default="", description="For the Spark UI link in the metadata."
    )

    @property
    def on_cluster(self) -> bool:
        return self.master.startswith("spark://")

    def local_session(self) -> Any:
        """The in-process SparkSession (an existing one is reused), made by dagster-pyspark.

        dagster-pyspark, and PySpark with it, is imported here rather than with the definitions:
        that import costs every process that loads them (code server, sensors, users runs)
        about 0.15 s of CPU, and only a local Spark run needs it.
        """
        from dagster_pyspark import LazyPySparkResource

        return LazyPySparkResource(spark_config=self.session_config()).spark_session

    def session_config(self) -> dict[str, str]:
        """Spark settings for an in-process session."""
        return {
            "spark.master": self.master,
            "spark.app.name": "user_pipeline.ingest_users",
            "spark.driver.memory": self.driver_memory,
            "spark.sql.shuffle.partitions": str(self.shuffle_partitions),
            "spark.sql.session.timeZone": "UTC",
            "spark.ui.showConsoleProgress": "false",
        }

    def submit_args(self) -> list[str]:
        """spark-submit options for the standalone cluster."""
        args = [
            "--master",
            self.master,
            "--driver-memory",
            self.driver_memory,
            "--executor-memory",
            self.executor_memory,
            "--total-executor-cores",
            str(self.total_executor_cores),
            "--conf",
            f"spark.sql.shuffle.partitions={self.shuffle_partitions}",
        ]
        if urlsplit(self.master).hostname in LOOPBACK_HOSTS:
            # A cluster on loopback must reach the driver on loopback too, not on the host's address.
            args += ["--conf", "spark.driver.host=127.0.0.1", "--conf", "spark.driver.bindAddress=127.0.0.1"]
        return args
