"""What every run of the definitions checks when it starts, before any resource is set up or
step runs: its settings. A bad one fails the run with one line per setting in the operator's words
(the environment variable and its bounds), never retried. (Each asset also checks the run's
partition keys first: `user_pipeline.partitions.check_run_inputs`.)"""

import dagster as dg

from user_pipeline.settings import InvalidSettingsError, check_settings


class _SettingsCheckingExecutor(dg.Executor):
    """Delegates to `inner`, after checking the settings inside the run (after RUN_START, before
    the in-process executor sets up any resource)."""

    def __init__(self, inner: dg.Executor):
        self._inner = inner

    def __getattr__(self, name: str):
        # The Celery executor's loop reads its settings (app_args) from the run's executor: this one.
        if name == "_inner":
            raise AttributeError(name)
        return getattr(self._inner, name)

    @property
    def retries(self):
        return self._inner.retries

    @property
    def step_dependency_config(self):
        return self._inner.step_dependency_config

    def execute(self, plan_context, execution_plan):
        try:
            check_settings()
        except InvalidSettingsError:
            # A setting does not fix itself: the instance's run retries must not run it again.
            plan_context.instance.add_run_tags(plan_context.run_id, {"dagster/max_retries": "0"})
            raise
        yield from self._inner.execute(plan_context, execution_plan)


def executor_checking_settings(executor: dg.ExecutorDefinition) -> dg.ExecutorDefinition:
    """`executor`, checking the settings when a run starts, before any resource is set up.

    Resources are set up before the first step's body runs, and a resource refusing its setting
    (the warehouse URL) would fail the run under Dagster's "Error executing resource_fn" headline,
    naming the field; this check runs first and names the environment variable instead: the run
    fails with `InvalidSettingsError: USER_PIPELINE_...=...: expected ...` as its error."""

    return dg.ExecutorDefinition(
        name=executor.name,
        config_schema=executor.config_schema,
        requirements=executor.get_requirements,
        executor_creation_fn=lambda init_context: _SettingsCheckingExecutor(
            executor.executor_creation_fn(init_context)
        ),
        description=executor.description,
    )
