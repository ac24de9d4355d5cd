"""Typed models of the files ``load_settings`` reads: pipeline, dataset (with its generator or Santander
block), tasks, feature groups, products and the MCC hierarchy.

The models check shape and types only; checks that read several keys or files (month order, the
generator against the product list, ...) are in ``finai_models.config`` so their messages stay as
users know them.
"""

from __future__ import annotations

from finai_models.config_base import ConfigModel, Number


class Paths(ConfigModel):
    raw: str
    warehouse: str
    artifacts: str
    dagster_home: str


class Warehouse(ConfigModel):
    raw_schema: str
    memory_limit: str
    threads: int


class RawChecks(ConfigModel):
    max_null_fraction: Number
    min_rows_per_month: int


class Leakage(ConfigModel):
    max_abs_corr: Number
    max_single_feature_auc: Number
    scan_rows: int


class DeadGroup(ConfigModel):
    min_lift: Number
    rows: int


class TrainingSetLimits(ConfigModel):
    max_rows_per_month: int


class PipelineFile(ConfigModel):
    """``pipeline.yaml``: layer 1, the settings every dataset shares."""

    dataset: str
    paths: Paths
    warehouse: Warehouse
    raw_checks: RawChecks
    leakage: Leakage
    dead_group: DeadGroup
    training_set: TrainingSetLimits


class Persona(ConfigModel):
    weight: Number
    latent_mean: list[Number]
    age: list[Number]
    income: list[Number]
    tenure: list[Number]
    segment: list[Number]
    active: Number
    txn_rate: Number
    amount: list[Number]
    hours: list[Number]
    mcc_boost: dict[str, Number]


class Situation(ConfigModel):
    values: list[str]
    probs: list[Number]


class Dynamics(ConfigModel):
    activity_trend: Number
    volatile_swing: Number
    wealth_trend: Number
    wealth_shock: Number
    active_persistence: Number
    segment_review_rate: Number
    segment_top_wealth: Number
    segment_student_age: Number
    segment_student_wealth: Number
    unknown_segment_resolve_rate: Number
    segment_lapse_rate: Number
    income_noise: Number


class ProductDynamics(ConfigModel):
    base_rates: list[Number]
    persona_multipliers: dict[str, list[Number]]
    group_latent: dict[str, str]
    intent_rate: Number
    intent_group_weight: dict[str, Number]
    intent_months: list[int]
    momentum_months: int
    momentum_boost: Number
    intent_conversion: Number
    spontaneous_rate: Number
    closure_rate: Number
    lifecycle_intent: dict[str, Number]
    lifecycle_closure: dict[str, Number]
    new_customer_products: dict[str, Number]


class IntentSignal(ConfigModel):
    spend_multiplier: Number
    mcc_boost: dict[str, Number]


class Attrition(ConfigModel):
    rate: Number
    loyalty_effect: Number
    months: list[int]
    spend_decay: Number
    closure_probability: Number
    recovery: Number


class Transactions(ConfigModel):
    inactive_rate_multiplier: Number
    activity_effect: Number
    wealth_amount_effect: Number
    l2_popularity: dict[str, Number]
    pref_noise: Number
    pref_drift: Number
    consumption_drift: Number
    l2_amount_shift: dict[str, Number]
    merchants_per_mcc: int
    merchant_loyalty: Number
    channels: list[str]
    online_l2: list[str]


class Generator(ConfigModel):
    """The synthetic panel's parameters; the simulator reads them as a plain dict (``model_dump()``)."""

    customers: int
    seed: int
    new_customer_fraction: Number
    latent_names: list[str]
    latent_sd: Number
    latent_decouple: Number
    monthly_latent_noise: Number
    personas: dict[str, Persona]
    situations: dict[str, Situation]
    situation_switch_rate: Number
    dynamics: Dynamics
    products: ProductDynamics
    intent_signals: dict[str, IntentSignal]
    attrition: Attrition
    transactions: Transactions
    regions: int
    acquisition_channels: int


class Santander(ConfigModel):
    csv: str
    has_card_transactions: bool
    gender_map: dict[str, str]
    segment_map: dict[str, str]
    required_columns: list[str]


class Months(ConfigModel):
    start: str
    end: str


class Split(ConfigModel):
    train: list[str]
    validation: list[str]
    test: list[str]


class DatasetFile(ConfigModel):
    """``datasets/{name}.yaml``: layer 2, what the data is and where it comes from."""

    name: str
    source: str
    months: Months
    split: Split
    generator: Generator | None = None
    santander: Santander | None = None


class TaskEntry(ConfigModel):
    name: str
    type: str
    loss: str
    metric: str
    window: list[int]
    classes: int | None = None
    top_k: list[int] | None = None
    group: str | None = None
    focal_alpha: Number | None = None


class TasksFile(ConfigModel):
    tasks: list[TaskEntry]


class GroupEntry(ConfigModel):
    name: str
    dim: int
    needs_transactions: bool
    experts: list[str]


class FeaturesFile(ConfigModel):
    """``feature_groups.yaml``: layer 3; ``Settings.phase0`` is this file (its scalars steer Phase 0)."""

    lookback_months: int
    txn_days: int
    fit_sample_customers: int
    fit_months: int
    seed: int
    mcc_vocab_size: int
    mcc_multihot_size: int
    groups: list[GroupEntry]


class ProductEntry(ConfigModel):
    name: str
    column: str


class ProductsFile(ConfigModel):
    products: list[ProductEntry]
    nba_groups: dict[str, list[str]]
    acquire_groups: dict[str, list[str]]


class MccFile(ConfigModel):
    l1: dict[str, dict[str, list[int]]]          # L1 -> L2 -> codes
