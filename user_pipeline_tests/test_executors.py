"""The executor is chosen by USER_PIPELINE_EXECUTOR without code edits, its settings are bounded
and name their variable without showing the password, and each step carries its Celery queue."""

import dagster as dg
import pytest
from hypothesis import given
from hypothesis import strategies as st
from kombu.utils.url import url_to_parts

from user_pipeline.executors import ExecutorSettings, InvalidExecutorSettingsError, build_executor
from user_pipeline.shared.queues import QUEUE_TAG

CELERY = {"USER_PIPELINE_EXECUTOR": "celery", "USER_PIPELINE_REDIS_PASSWORD": "s3cr:et/@#"}


def test_in_process_by_default():
    assert build_executor({}) is dg.in_process_executor
    assert build_executor({"USER_PIPELINE_EXECUTOR": "in_process"}) is dg.in_process_executor


def test_celery_when_asked_with_urls_redacted_in_its_description():
    executor = build_executor({**CELERY, "USER_PIPELINE_CELERY_BROKER_URL": "redis://10.0.0.5:6380/2"})
    assert executor.name == "celery"
    assert "broker redis://***@10.0.0.5:6380/2" in executor.description
    assert "s3cr" not in executor.description


def test_celery_config_puts_the_password_in_the_urls_only():
    config = ExecutorSettings.from_environ(CELERY).celery_executor_config()
    assert config["broker"] == "redis://:s3cr%3Aet%2F%40%23@127.0.0.1:6379/0"
    assert config["backend"] == "redis://:s3cr%3Aet%2F%40%23@127.0.0.1:6379/1"
    source = config["config_source"]
    assert (source["task_acks_late"], source["task_reject_on_worker_lost"], source["worker_prefetch_multiplier"]) == (
        True,
        True,
        1,
    )
    assert source["broker_transport_options"]["visibility_timeout"] == 3600
    assert "s3cr" not in repr(source)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"USER_PIPELINE_EXECUTOR": "kubernetes"},
            "USER_PIPELINE_EXECUTOR='kubernetes': expected 'in_process' or 'celery'",
        ),
        (
            {"USER_PIPELINE_EXECUTOR": "celery"},
            "USER_PIPELINE_REDIS_PASSWORD is required with USER_PIPELINE_EXECUTOR=celery",
        ),
        (
            {**CELERY, "USER_PIPELINE_CELERY_BROKER_URL": "amqp://h/"},
            "USER_PIPELINE_CELERY_BROKER_URL='amqp://h/': expected a redis://host:port/db",
        ),
        (
            {**CELERY, "USER_PIPELINE_CELERY_BACKEND_URL": "redis://:hunter2@h:1/1"},
            "USER_PIPELINE_CELERY_BACKEND_URL='redis://***@h:1/1': expected a URL without a password (put the password in USER_PIPELINE_REDIS_PASSWORD)",
        ),
        (
            {**CELERY, "USER_PIPELINE_CELERY_VISIBILITY_TIMEOUT_SECONDS": "2"},
            "USER_PIPELINE_CELERY_VISIBILITY_TIMEOUT_SECONDS='2': expected greater than or equal to 5",
        ),
        (
            {**CELERY, "USER_PIPELINE_CELERY_VISIBILITY_TIMEOUT_SECONDS": "soon"},
            "USER_PIPELINE_CELERY_VISIBILITY_TIMEOUT_SECONDS='soon': expected a valid integer",
        ),
    ],
)
def test_bad_settings_name_the_variable(environ, message):
    with pytest.raises(InvalidExecutorSettingsError) as error:
        build_executor(environ)
    assert message in str(error.value)
    assert "hunter2" not in str(error.value) and "s3cr" not in str(error.value)


@given(st.text(min_size=1, alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")))
def test_any_password_arrives_whole_and_is_never_shown(password):
    settings = ExecutorSettings.from_environ(
        {"USER_PIPELINE_EXECUTOR": "celery", "USER_PIPELINE_REDIS_PASSWORD": password}
    )

    assert url_to_parts(settings.celery_executor_config()["broker"]).password == password
    assert settings.shown() == (
        "celery executor: broker redis://***@127.0.0.1:6379/0, result backend redis://***@127.0.0.1:6379/1, visibility timeout 3600 s"
    )


def test_each_step_carries_its_queue():
    from user_pipeline.definitions import defs

    def queues(job_name: str) -> dict[str, str | None]:
        return {node.name: node.tags.get(QUEUE_TAG) for node in defs().resolve_job_def(job_name).graph.nodes}

    def without_freshness_checks(steps: dict[str, str | None]) -> dict[str, str | None]:
        # Dagster's freshness checks run as one more step of each job, on the default queue.
        assert all(queue is None for step, queue in steps.items() if step.startswith("freshness_check"))
        return {step: queue for step, queue in steps.items() if not step.startswith("freshness_check")}

    assert without_freshness_checks(queues("day_assets_job")) == {
        "daily_users": "users_api",
        "daily_users_report": None,
    }
    assert without_freshness_checks(queues("spark_ingestion_job")) == {"users_parquet": "spark"}
