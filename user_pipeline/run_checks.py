"""What every run of the definitions does when it starts, before any resource is set up or step
runs, and how it stops.

At start: it checks its settings (a bad one fails the run with one line per setting in the
operator's words, the environment variable and its bounds, never retried; each asset also checks
the run's partition keys first: `user_pipeline.partitions.check_run_inputs`), takes the maximum run
time its assets call for if it was launched without one (the UI's *Materialize* on assets, an asset
backfill, the automation's runs: user_pipeline/run_limits.py), and gives the `users_api` pool its
limit if the pool has none yet.

When it is stopped (the run monitor at its maximum run time, or *Terminate*): Dagster interrupts
the step in progress, and an interrupted step that has a RetryPolicy asks for a retry
(dagster/_core/execution/plan/utils.py, "respect retry policy when interrupts occur"), which the
in-process executor would start after the retry's delay, in a run already failed or canceling,
calling the API again and committing days nobody waits for. No step retry starts in a run that was
asked to stop: the run ends there, and a run stopped by its maximum run time says so in its log."""

import dagster as dg

from user_pipeline.run_limits import (
    apply_users_api_pool_limit,
    run_is_stopping,
    run_timeout,
    tag_max_runtime,
)
from user_pipeline.settings import InvalidSettingsError, check_settings, run_limits
from user_pipeline.shared.pools import USERS_API_POOL


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
        instance, run_id = plan_context.instance, plan_context.run_id
        try:
            check_settings()
            limits = run_limits()
        except InvalidSettingsError:
            # A setting does not fix itself: the instance's run retries must not run it again.
            instance.add_run_tags(run_id, {"dagster/max_retries": "0"})
            raise
        plan_context.log.info(tag_max_runtime(instance, plan_context.dagster_run, _asset_keys(plan_context), limits))
        uses_pool = any(step.pool == USERS_API_POOL for step in execution_plan.get_steps_to_execute_in_topo_order())
        if uses_pool and (applied := apply_users_api_pool_limit(instance, limits, replace=False)):
            plan_context.log.info(applied)
        try:
            for event in self._inner.execute(plan_context, execution_plan):
                yield event
                if event.is_step_up_for_retry and run_is_stopping(instance, run_id):
                    raise dg.DagsterExecutionInterruptedError(
                        f"step {event.step_key} not retried: the run was asked to stop"
                    )
        except (dg.DagsterExecutionInterruptedError, KeyboardInterrupt):
            run = instance.get_run_by_id(run_id)
            if run is not None and (timeout := run_timeout(instance, run)):
                plan_context.log.error(f"{timeout.message}: stopped, and no step of it retried.")
            raise


def _asset_keys(plan_context) -> frozenset[dg.AssetKey]:
    """What the run materializes: its asset selection, or else every asset of its job."""
    selected = plan_context.dagster_run.asset_selection
    if selected is not None:
        return frozenset(selected)
    return frozenset(plan_context.job.get_definition().asset_layer.selected_asset_keys)


def executor_checking_settings(executor: dg.ExecutorDefinition) -> dg.ExecutorDefinition:
    """`executor`, checking the settings and applying the run limits when a run starts, before any
    resource is set up, and starting no step retry in a run asked to stop.

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
