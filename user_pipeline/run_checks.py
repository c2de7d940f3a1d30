"""What every run checks before any work, in the first step it runs: its settings and its
partition keys. A bad one fails the step with one line in the operator's words (the environment
variable and its bounds; the partition key and the valid range), never retried."""

import dagster as dg

from user_pipeline.partitions import InvalidPartitionKeyError, check_partition_keys
from user_pipeline.settings import InvalidSettingsError, check_settings

PARTITION_TAGS = ("dagster/partition", "dagster/asset_partition_range_start", "dagster/asset_partition_range_end")


def check_run_inputs(context: dg.AssetExecutionContext) -> None:
    """Raises dg.Failure(allow_retries=False) naming every bad setting, or the bad partition key.

    Dagster itself turns a bad `dagster/partition` tag into an internal invariant error deep in
    the step, after its retries, and a setting out of bounds into the resource field's name under
    a stack trace; this check runs first instead.
    """
    try:
        check_settings()
        check_partition_keys(context.run.tags[tag] for tag in PARTITION_TAGS if tag in context.run.tags)
    except (InvalidSettingsError, InvalidPartitionKeyError) as error:
        raise dg.Failure(description=str(error), allow_retries=False) from None



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
        executor_creation_fn=lambda init_context: _SettingsCheckingExecutor(executor.executor_creation_fn(init_context)),
        description=executor.description,
    )
