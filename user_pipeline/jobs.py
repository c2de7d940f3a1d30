import dagster as dg

# The daily job: every users asset for one partition (its partitions come from the assets).
daily_users_job = dg.define_asset_job("daily_users_job", selection=dg.AssetSelection.groups("users"))
