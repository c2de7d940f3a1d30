import warnings

import dagster as dg

# A partition is one UTC day; its key (YYYY-MM-DD) is also the API seed, so a re-run
# of a day asks the API for the same users.
daily_partitions = dg.DailyPartitionsDefinition(start_date="2026-01-01", timezone="UTC")

# BackfillPolicy is beta in Dagster 1.13: silence exactly that notice, so other warnings stay visible.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning)

# Asset backfills (UI, GraphQL) run up to a month of days per run: one process start for many
# days, each day still written atomically. `dagster job backfill` keeps one run per day.
daily_backfill_policy = dg.BackfillPolicy.multi_run(max_partitions_per_run=31)
