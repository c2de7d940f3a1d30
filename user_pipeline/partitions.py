import dagster as dg

# A partition is one UTC day; its key (YYYY-MM-DD) is also the API seed, so a re-run
# of a day asks the API for the same users.
daily_partitions = dg.DailyPartitionsDefinition(start_date="2026-01-01", timezone="UTC")
