"""Jobs, with typed selections so a renamed asset fails loudly instead of selecting nothing."""

import dagster as dg

from finai_assets.defs.raw.assets import card_transactions, customers, monthly_snapshots, raw_dataset

monthly_refresh = dg.define_asset_job(
    "monthly_refresh",
    selection=dg.AssetSelection.assets(raw_dataset, customers, monthly_snapshots, card_transactions),
    description="Everything for one snapshot month: the raw dataset (reused when present), "
                "its tables in the warehouse, and their blocking checks.",
)
