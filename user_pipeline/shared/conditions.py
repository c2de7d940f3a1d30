"""The automation conditions of the downstream assets: an asset's day runs when the day it depends
on has landed, never on a clock guess.

Source of the building blocks: `dagster.AutomationCondition` (Dagster 1.13, "declarative
automation"); the automation condition sensor of the definitions evaluates them.
"""

import dagster as dg

AC = dg.AutomationCondition


def no_dep_blocking_check_failed() -> dg.AutomationCondition:
    """True for a day unless one of the upstream days it needs has a blocking check that has not
    passed (failed, or not run since its materialization) and will not run on this tick.

    `AutomationCondition.all_deps_blocking_checks_passed()` spelled as "no dependency has a
    blocking check not passed": the same for a day with upstream days, but also true where a
    dependency maps to no partition at all (user_registry's first day has no day before it),
    where an "all deps" condition is false."""
    not_passed = ~(AC.check_passed() | AC.will_be_requested())
    return ~AC.any_deps_match(AC.any_checks_match(not_passed, blocking_only=True)).with_label(
        "any_dep_blocking_check_not_passed"
    )


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
        & no_dep_blocking_check_failed()
    ).with_label("day_landed")
