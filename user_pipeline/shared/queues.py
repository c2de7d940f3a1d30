"""The Celery queue each step goes to, as op tags an asset adds with one line (`op_tags=...`).

Source: dagster-celery 0.29 reads the op tag `dagster-celery/queue` when it submits a step
(dagster_celery.tags.DAGSTER_CELERY_QUEUE_TAG); a step without it goes to the `dagster` queue.
The in-process executor ignores the tag, so the assets carry it whichever executor runs them.

A queue's capacity is the total concurrency of the workers that consume it: give `users_api`
its own worker(s) and their `--concurrency` caps the concurrent calls to the users API.
"""

QUEUE_TAG = "dagster-celery/queue"

# Steps that call the users API (the `users_api` pool).
USERS_API_QUEUE = "users_api"
# Steps that start a Spark application.
SPARK_QUEUE = "spark"
# Everything else (dagster-celery's default queue).
DEFAULT_QUEUE = "dagster"

QUEUES = (USERS_API_QUEUE, DEFAULT_QUEUE, SPARK_QUEUE)

USERS_API_QUEUE_TAGS: dict[str, str] = {QUEUE_TAG: USERS_API_QUEUE}
SPARK_QUEUE_TAGS: dict[str, str] = {QUEUE_TAG: SPARK_QUEUE}
