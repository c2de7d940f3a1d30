from typing import Any
from urllib.parse import urlsplit

import dagster as dg

LOOPBACK_HOSTS = ("127.0.0.1", "localhost")


class SparkSettings(dg.ConfigurableResource):
    """Where and how the Spark ingestion runs.

    `master` local[*] (the default) runs the job in the Dagster step's own process, in a session
    from dagster-pyspark; a spark://host:port master submits spark_jobs/ingest_users.py to that
    standalone cluster with spark-submit. Defaults suit a 2-core laptop and a small daily batch.
    """

    master: str = "local[*]"
    driver_memory: str = "1g"
    executor_memory: str = "1g"
    total_executor_cores: int = 1
    shuffle_partitions: int = 4
    master_web_ui_url: str = ""

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
            "--master", self.master,
            "--driver-memory", self.driver_memory,
            "--executor-memory", self.executor_memory,
            "--total-executor-cores", str(self.total_executor_cores),
            "--conf", f"spark.sql.shuffle.partitions={self.shuffle_partitions}",
        ]
        if urlsplit(self.master).hostname in LOOPBACK_HOSTS:
            # A cluster on loopback must reach the driver on loopback too, not on the host's address.
            args += ["--conf", "spark.driver.host=127.0.0.1", "--conf", "spark.driver.bindAddress=127.0.0.1"]
        return args
