"""The registry of Phase-0 feature groups: config name -> implementation.

Implementations are imported on first use, so that loading the registry (and the Dagster code
location that lists the groups) does not pay for torch, gudhi or torch-geometric.
"""

from __future__ import annotations

from importlib import import_module

from finai_models.config import Settings
from finai_models.phase0.groups.base import FeatureGroupModel

REGISTRY: dict[str, str] = {
    "demographics": "tabular:Demographics",
    "product_holdings": "tabular:ProductHoldings",
    "txn_behavior": "tabular:TxnBehavior",
    "derived_temporal": "tabular:DerivedTemporal",
    "txn_lag_tensor": "sql:TxnLagTensor",
    "txn_rolling_stats": "sql:TxnRollingStats",
    "mcc_top30_multihot": "sql:MccTop30Multihot",
    "recent_acquisition_multihot": "sql:RecentAcquisitionMultihot",
    "tda_global": "topology:TdaGlobal",
    "tda_local": "topology:TdaLocal",
    "product_hierarchy": "hyperbolic:ProductHierarchy",
    "merchant_hierarchy": "hyperbolic:MerchantHierarchy",
    "hmm_states": "statespace:HmmStates",
    "gmm_clustering": "clustering:GmmClustering",
    "model_derived": "dynamics:ModelDerived",
    "mamba_temporal": "mamba:MambaTemporal",
    "graph_collaborative": "graph:GraphCollaborative",
}


def group_class(name: str) -> type[FeatureGroupModel]:
    if name not in REGISTRY:
        raise NotImplementedError(f"feature group {name!r} has no implementation (known: {', '.join(REGISTRY)})")
    module, cls = REGISTRY[name].split(":")
    return getattr(import_module(f"finai_models.phase0.groups.{module}"), cls)


def build_groups(settings: Settings) -> list[FeatureGroupModel]:
    """One instance per configured group, in config order."""
    return [group_class(g.name)(settings, g.dim) for g in settings.feature_groups]
