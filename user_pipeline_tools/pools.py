"""`make pools`: gives the instance's `users_api` pool its limit, USER_PIPELINE_USERS_API_POOL_LIMIT
(default 2), replacing the one it had; other pools stay unlimited.

    DAGSTER_HOME=... python -m user_pipeline_tools.pools

`make ui` and the end-to-end tests' services do the same as they start. A limit set by hand
(`dagster instance concurrency set users_api 1`) holds until the next of these. Opening the
instance also creates its storage on a fresh DAGSTER_HOME. Source of the mechanics:
user_pipeline/run_limits.py.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping

import dagster as dg

from user_pipeline.run_limits import apply_users_api_pool_limit
from user_pipeline.settings import InvalidSettingsError, run_limits
from user_pipeline.shared.pools import USERS_API_POOL


def apply_pool_limits(environ: Mapping[str, str] | None = None) -> str:
    """Sets the `users_api` pool's limit in the instance of DAGSTER_HOME; returns what it did, in one line."""
    limits = run_limits(environ)
    with dg.DagsterInstance.get() as instance:
        done = apply_users_api_pool_limit(instance, limits, replace=True)
    return done or (
        f"Pool {USERS_API_POOL}: at most {limits.users_api_pool_limit} step(s) at once "
        f"({limits.users_api_pool_setting}), unchanged."
    )


def main() -> int:
    try:
        print(apply_pool_limits(), flush=True)
    except InvalidSettingsError as error:
        print(error, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
