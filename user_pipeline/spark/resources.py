import re
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field

from user_pipeline.shared.errors import InvalidSettingError
from user_pipeline.shared.settings_fields import SettingsResource, check_http_url, checked_by
from user_pipeline.spark.submit import JOB_FILE, spark_home, spark_submit_executable

LOOPBACK_HOSTS = ("127.0.0.1", "localhost")
# Spark's own forms (SparkContext's master URL; a JVM memory size such as 512m or 2g; spark-submit's
# --packages, Maven coordinates groupId:artifactId:version separated by commas).
_MASTER = re.compile(r"local(\[(\*|\d+)(,\d+)?\])?|spark://[^\s/]+:\d+")
_MEMORY = re.compile(r"\d+[kmgt]?", re.IGNORECASE)
_COORDINATE = r"[A-Za-z0-9_.\-]+:[A-Za-z0-9_.\-]+:[A-Za-z0-9_.\-+]+"
_PACKAGES = re.compile(rf"({_COORDINATE})(,{_COORDINATE})*")


def check_master(master: str) -> str:
    if not _MASTER.fullmatch(master):
        raise InvalidSettingError("master", master, "local, local[N], local[*] or spark://host:port")
    return master


def check_memory(size: str) -> str:
    if not _MEMORY.fullmatch(size):
        raise InvalidSettingError("memory", size, "a JVM memory size such as 512m or 2g")
    return size


def check_packages(packages: str) -> str:
    if packages and not _PACKAGES.fullmatch(packages):
        raise InvalidSettingError(
            "packages", packages, "Maven coordinates groupId:artifactId:version, separated by commas, or nothing"
        )
    return packages


class SparkSettings(SettingsResource):
    """Where and how spark-submit runs spark_jobs/ingest_users.py: `master` local[*] (the default)
    runs it on this machine, a spark://host:port master on that standalone cluster; the other
    fields are spark-submit's options (Airflow's SparkSubmitOperator has the same ones). Defaults
    suit a 2-core laptop and a small daily batch.
    """

    master: Annotated[str, checked_by(check_master)] = Field(
        default="local[*]", description="`spark://host:port` submits to a standalone cluster."
    )
    driver_memory: Annotated[str, checked_by(check_memory)] = Field(
        default="1g", description="`--driver-memory`, sized for a 2-core laptop."
    )
    executor_memory: Annotated[str, checked_by(check_memory)] = Field(
        default="1g", description="`--executor-memory`: per executor, on a cluster."
    )
    executor_cores: int = Field(
        default=1,
        ge=1,
        le=1024,
        description="`--executor-cores`: per executor, on a cluster; at most the total executor cores.",
    )
    total_executor_cores: int = Field(
        default=1, ge=1, le=1024, description="`--total-executor-cores`: cores the application takes on a cluster."
    )
    packages: Annotated[str, checked_by(check_packages)] = Field(
        default="",
        description="`--packages`: Maven coordinates (group:artifact:version, comma-separated) spark-submit "
        "fetches for the job; it needs Maven Central, or the `spark.jars.repositories` of the "
        "spark-defaults.conf in `SPARK_CONF_DIR`, reachable.",
    )
    shuffle_partitions: int = Field(
        default=4, ge=1, le=100_000, description="`spark.sql.shuffle.partitions`, sized for a small daily batch."
    )
    master_web_ui_url: Annotated[str, checked_by(check_http_url(optional=True))] = Field(
        default="", description="For the Spark UI link in the metadata."
    )

    @property
    def on_cluster(self) -> bool:
        return self.master.startswith("spark://")

    def submit_options(self) -> list[str]:
        """spark-submit's options, the same for a local and a cluster master (Spark ignores the
        executor ones in local mode). Raises InvalidSettingError when executor_cores is more than
        total_executor_cores on a cluster: the master would never start an executor."""
        if self.on_cluster and self.executor_cores > self.total_executor_cores:
            raise InvalidSettingError(
                "executor_cores",
                self.executor_cores,
                f"at most total_executor_cores ({self.total_executor_cores}): a standalone master starts no "
                "executor bigger than the application",
            )
        options = [
            "--master",
            self.master,
            "--driver-memory",
            self.driver_memory,
            "--executor-memory",
            self.executor_memory,
            "--executor-cores",
            str(self.executor_cores),
            "--total-executor-cores",
            str(self.total_executor_cores),
            # Spark's INFO lines while the session starts, before the job sets its own level.
            "--conf",
            "spark.log.level=WARN",
        ]
        if self.packages:
            options += ["--packages", self.packages]
        if urlsplit(self.master).hostname in LOOPBACK_HOSTS:
            # A cluster on loopback must reach the driver on loopback too, not on the host's address.
            options += ["--conf", "spark.driver.host=127.0.0.1", "--conf", "spark.driver.bindAddress=127.0.0.1"]
        return options

    def submit_command(self, *, input_dir: str, start_date: str, end_date: str, output_dir: str) -> list[str]:
        """The spark-submit command line running the ingestion job over [start_date, end_date]."""
        job_args = {
            "--input-dir": input_dir,
            "--start-date": start_date,
            "--end-date": end_date,
            "--output-dir": output_dir,
            "--shuffle-partitions": str(self.shuffle_partitions),
        }
        return [
            spark_submit_executable(spark_home()),
            *self.submit_options(),
            str(JOB_FILE),
            *(f"{option}={value}" for option, value in job_args.items()),
        ]
