"""The automation conditions of the downstream assets: an asset's day runs when the day it depends
on has landed, never on a clock guess.

Source of the building blocks: `dagster.AutomationCondition` (Dagster 1.13, "declarative
automation"); the automation condition sensor of the definitions evaluates them.
"""

import dagster as dg

AC = dg.AutomationCondition


def day_landed() -> dg.AutomationCondition:
    """True for a day (partition) once one of its upstream days was materialized since the day was
    last requested or updated, every upstream day it needs exists and passed its blocking checks,
    and nothing upstream or of its own is still running: so each new upstream day is followed
    exactly once, and a day refused upstream (no materialization) is not carried downstream.

    Unlike `AutomationCondition.eager()` it is not limited to the latest day, so a backfill of
    older days is followed too; unlike it, it never requests days merely because they are missing
    (switching the sensor on does not start a backfill of the whole history)."""
    return (
        AC.any_deps_updated().since_last_handled()
        & ~AC.any_deps_missing()
        & ~AC.any_deps_in_progress()
        & ~AC.in_progress()
        & AC.all_deps_blocking_checks_passed()
    ).with_label("day_landed")
