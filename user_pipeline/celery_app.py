"""The Celery app of the workers: `dagster-celery worker start -A user_pipeline.celery_app`.

Built from the same settings as the runs' executor (user_pipeline/executors.py), read when the
worker starts; the worker runs dagster-celery's `execute_plan` task, one step per task. A worker
loads the code location itself, so it needs the code location's environment (USER_PIPELINE_*,
DAGSTER_PG_* for a PostgreSQL instance) and the shared data location.
"""

import os

from dagster_celery.executor import CeleryExecutor
from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_task

from user_pipeline.executors import EXECUTOR_ENV, ExecutorSettings


def create_app():
    """The app, from the environment; a worker refuses to start without the Redis password."""
    config = ExecutorSettings.from_environ({**os.environ, EXECUTOR_ENV: "celery"}).celery_executor_config()
    config.pop("retries")
    return make_app(CeleryExecutor.for_cli(**config).app_args())


app = create_app()
execute_plan = create_task(app)
