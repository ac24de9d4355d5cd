"""Jobs, with typed selections so a renamed asset fails loudly instead of selecting nothing.

``monthly_refresh`` is what the schedule and the new-month sensor launch: one run takes a month
from its raw files through features, labels, the serving batch and bundle, the replayed
recommendations, the fairness gate, the release, drift and the model card, with every blocking
check in the same run. ``retrain`` is what the drift sensor requests; the students, promotion and
champion then follow by declarative automation (``automation.py``).
"""

import warnings

import dagster as dg

from finai_assets.defs.distill.assets import champion, promotion, soft_labels, student
from finai_assets.defs.features.assets import feature_group_assets, fitted_state, month_inputs
from finai_assets.defs.governance.assets import model_card
from finai_assets.defs.labels.assets import labels
from finai_assets.defs.monitoring.assets import drift, fairness, recommendations
from finai_assets.defs.monitoring.release import release
from finai_assets.defs.raw.assets import card_transactions, customers, monthly_snapshots, raw_dataset
from finai_assets.defs.serving.assets import batch, bundle
from finai_assets.defs.teacher.assets import ablation, comparison, lightgbm_baseline, mmoe, ple, shared_bottom
from finai_assets.defs.training.assets import training_set

RAW_TABLES = (customers, monthly_snapshots, card_transactions)
SERVED_MONTH = (batch, bundle, recommendations, fairness, release, drift, model_card)

raw_month = dg.define_asset_job(
    "raw_month",
    selection=dg.AssetSelection.assets(raw_dataset, *RAW_TABLES),
    description="One snapshot month's raw tables in the warehouse (the raw dataset reused when present) and "
                "their blocking checks.",
)

# The raw tables take single-run backfills (a range of months in one run); the raw dataset and the rest of
# the month run one partition per run. Dagster warns when a job mixes them and then runs one partition per
# run - as intended for raw_month and monthly_refresh.
warnings.filterwarnings("ignore", message="Asset job .* materializes assets with varying BackfillPolicies")

monthly_refresh = dg.define_asset_job(
    "monthly_refresh",
    selection=dg.AssetSelection.assets(*RAW_TABLES, month_inputs, *feature_group_assets, labels, *SERVED_MONTH),
    description="The whole month with the champion: raw tables, Phase 0 (17 feature groups, 13 labels), serving "
                "batch and bundle, replayed recommendations, fairness gate, release, drift and the model card, "
                "with every check (the schedule and the new-month sensor launch this).",
)

retrain = dg.define_asset_job(
    "retrain",
    selection=dg.AssetSelection.assets(training_set, ple, lightgbm_baseline, soft_labels),
    description="Rebuild the training set and retrain the teacher and its LightGBM bar for the month, then its "
                "soft labels; students, promotion and the champion follow by automation. The drift sensor "
                "requests this after three critical months.",
)

phase0_state = dg.define_asset_job(
    "phase0_state",
    selection=dg.AssetSelection.assets(fitted_state),
    description="Fit the Phase-0 state (scalers, vocabularies, generators) on training months.",
)

phase0_month = dg.define_asset_job(
    "phase0_month",
    selection=dg.AssetSelection.assets(month_inputs, *feature_group_assets, labels),
    description="One snapshot month of Phase 0: inputs, the 17 feature groups, the 13 labels, and their "
                "blocking leakage checks.",
)

training = dg.define_asset_job(
    "training",
    selection=dg.AssetSelection.assets(training_set),
    description="Split, normalize and check the training set over every month's features and labels.",
)

teacher = dg.define_asset_job(
    "teacher",
    selection=dg.AssetSelection.assets(ple, mmoe, shared_bottom, lightgbm_baseline, comparison),
    description="Train the PLE teacher (Pipes training service) and its baselines on the same split, then compare.",
)

teacher_ablation = dg.define_asset_job(
    "teacher_ablation",
    selection=dg.AssetSelection.assets(ablation),
    description="Remove each expert, sigmoid vs softmax gates, adaTT on: one comparison table.",
)

student_inputs = dg.define_asset_job(
    "student_inputs",
    selection=dg.AssetSelection.assets(soft_labels),
    description="The teacher's soft labels on the students' rows, the binned training sample, and each task's route.",
)

students = dg.define_asset_job(
    "students",
    selection=dg.AssetSelection.assets(student),
    description="One task's student for one month (month|task partition) and its blocking fidelity check.",
)

promote = dg.define_asset_job(
    "promote",
    selection=dg.AssetSelection.assets(promotion, champion),
    description="Champion/challenger promotion of the month's students (audit-logged) and the champion it leaves.",
)
