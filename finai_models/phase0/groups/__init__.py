"""The registry of Phase-0 feature groups: config name -> implementation."""

from __future__ import annotations

from finai_models.config import Settings
from finai_models.phase0.groups.base import FeatureGroupModel
from finai_models.phase0.groups.sql import MccTop30Multihot, RecentAcquisitionMultihot, TxnLagTensor, TxnRollingStats
from finai_models.phase0.groups.tabular import Demographics, DerivedTemporal, ProductHoldings, TxnBehavior

REGISTRY: dict[str, type[FeatureGroupModel]] = {
    cls.name: cls
    for cls in (Demographics, ProductHoldings, TxnBehavior, DerivedTemporal, TxnLagTensor, TxnRollingStats,
                MccTop30Multihot, RecentAcquisitionMultihot)
}


def build_groups(settings: Settings) -> list[FeatureGroupModel]:
    """One instance per configured group, in config order."""
    missing = [g.name for g in settings.feature_groups if g.name not in REGISTRY]
    if missing:
        raise NotImplementedError(f"feature groups without an implementation: {', '.join(missing)}")
    return [REGISTRY[g.name](settings, g.dim) for g in settings.feature_groups]
