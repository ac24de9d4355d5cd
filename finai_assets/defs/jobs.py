"""Jobs, with typed selections so a renamed asset fails loudly instead of selecting nothing."""

import dagster as dg

from finai_assets.defs.distill.assets import promotion, soft_labels, student
from finai_assets.defs.features.assets import feature_group_assets, fitted_state, month_inputs
from finai_assets.defs.labels.assets import labels
from finai_assets.defs.partitions import snapshot_months, student_months_tasks
from finai_assets.defs.raw.assets import card_transactions, customers, monthly_snapshots, raw_dataset
from finai_assets.defs.serving.assets import batch, bundle
from finai_assets.defs.teacher.assets import ablation, comparison, lightgbm_baseline, mmoe, ple, shared_bottom
from finai_assets.defs.training.assets import training_set

monthly_refresh = dg.define_asset_job(
    "monthly_refresh",
    selection=dg.AssetSelection.assets(raw_dataset, customers, monthly_snapshots, card_transactions),
    description="Everything for one snapshot month: the raw dataset (reused when present), "
                "its tables in the warehouse, and their blocking checks.",
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
    partitions_def=snapshot_months,
    description="Train the PLE teacher (Pipes training service) and its baselines on the same split, then compare.",
)

teacher_ablation = dg.define_asset_job(
    "teacher_ablation",
    selection=dg.AssetSelection.assets(ablation),
    partitions_def=snapshot_months,
    description="Remove each expert, sigmoid vs softmax gates, adaTT on: one comparison table.",
)

student_inputs = dg.define_asset_job(
    "student_inputs",
    selection=dg.AssetSelection.assets(soft_labels),
    partitions_def=snapshot_months,
    description="The teacher's soft labels on the students' rows, the binned training sample, and each task's route.",
)

students = dg.define_asset_job(
    "students",
    selection=dg.AssetSelection.assets(student),
    partitions_def=student_months_tasks,
    description="One task's student for one month (month|task partition) and its blocking fidelity check.",
)

promote = dg.define_asset_job(
    "promote",
    selection=dg.AssetSelection.assets(promotion, batch, bundle),
    partitions_def=snapshot_months,
    description="Champion/challenger promotion of the month's students (audit-logged), the serving batch "
                "and the month's Lambda bundle.",
)
