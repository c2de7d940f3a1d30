"""The Celery app of the workers: `dagster-celery worker start -A user_pipeline.celery_app`.

Built from the same settings as the runs' executor (user_pipeline/executors.py), read when the
worker starts; the worker runs dagster-celery's `execute_plan` task, one step per task. A worker
loads the code location itself, so it needs the code location's environment (USER_PIPELINE_*,
DAGSTER_PG_* for a PostgreSQL instance) and the shared data location.
"""

import os
from collections.abc import Mapping

from dagster_celery.executor import CeleryExecutor
from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_task

from user_pipeline.executors import EXECUTOR_ENV, ExecutorSettings


def create_app(environ: Mapping[str, str] | None = None):
    """The app, from `environ` (default: this process's); a worker refuses to start without the Redis password."""
    environ = os.environ if environ is None else environ
    config = ExecutorSettings.from_environ({**environ, EXECUTOR_ENV: "celery"}).celery_executor_config()
    config.pop("retries")
    return make_app(CeleryExecutor.for_cli(**config).app_args())


_app = None


def __getattr__(name: str):
    # `app` is built on first use (when `celery -A user_pipeline.celery_app` looks it up), not at
    # import: importing this module reads no setting.
    global _app
    if name != "app":
        raise AttributeError(name)
    if _app is None:
        _app = create_app()
        create_task(_app)  # dagster-celery's execute_plan: one step per task
    return _app
