"""The instance's concurrency pools that steps claim a slot in (`pool=` on an asset).

Source: Dagster 1.13 pools (dagster/_core/execution/plan/instance_concurrency_context.py): a step
in a pool with a limit waits for a free slot; a pool without one is not limited at all.
"""

# Steps that call the users API: the limit on how many call it at once, across all runs.
USERS_API_POOL = "users_api"
