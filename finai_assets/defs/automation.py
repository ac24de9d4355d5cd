"""Declarative automation: what refreshes itself, and the one sensor that evaluates it.

The monthly chain (features, labels, serving batch, bundle, recommendations, fairness, release,
drift, model card) and the distillation chain (soft labels, students, promotion) refresh when an
upstream partition of the newest month changes - but only once every blocking check on their
inputs has passed, because blocking checks stop a run's downstream steps only inside that run.
The champion follows every promotion decision. Training itself (training set, teacher) has no
condition: it runs when an operator or the drift sensor asks for a retrain.

The sensors and the schedule start stopped, as Dagster's own do, unless ``FINAI_AUTOMATION=on``
(``make ui`` sets it): tests and ad-hoc ``dagster dev`` sessions never launch runs by surprise.
"""

import os

import dagster as dg

from finai_assets.settings import settings
from finai_models.monitoring.config import monitoring_config

REFRESH = (dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()
           ).with_label("newest month: inputs updated, their blocking checks passed")

ON_NEW_CHAMPION = (
    dg.AutomationCondition.any_deps_updated().since_last_handled()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("after any promotion decision")


def default_status() -> dg.DefaultSensorStatus:
    """RUNNING when ``$FINAI_AUTOMATION`` is ``on``; sensors and the schedule share it."""
    on = os.environ.get("FINAI_AUTOMATION", "off").strip().lower() in ("on", "1", "true")
    return dg.DefaultSensorStatus.RUNNING if on else dg.DefaultSensorStatus.STOPPED


def default_schedule_status() -> dg.DefaultScheduleStatus:
    running = default_status() == dg.DefaultSensorStatus.RUNNING
    return dg.DefaultScheduleStatus.RUNNING if running else dg.DefaultScheduleStatus.STOPPED


finai_automation = dg.AutomationConditionSensorDefinition(
    "finai_automation", target=dg.AssetSelection.all(), default_status=default_status(),
    minimum_interval_seconds=int(monitoring_config(settings())["automation"]["sensor_interval_seconds"]),
    description="Evaluates every asset's automation condition: the newest month's chain after its inputs "
                "change (gated on their blocking checks), the champion after a promotion.",
)
