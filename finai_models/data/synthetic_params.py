"""The synthetic generator's parameters as numpy arrays, built once from the dataset config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from finai_models.config import Settings


@dataclass(frozen=True)
class GeneratorParams:
    """Everything the monthly simulation reads, indexed by persona / product / L2 / code."""

    cfg: dict[str, Any]
    persona_weights: np.ndarray      # [P]
    latent_mean: np.ndarray          # [P, 5]
    age: np.ndarray                  # [P, 2] truncated-normal mean, sd
    income: np.ndarray               # [P, 3] lognormal mu, sigma, missing rate
    tenure: np.ndarray               # [P, 2] gamma shape, scale (months)
    segment_probs: np.ndarray        # [P, 4]
    active_logit: np.ndarray         # [P]
    txn_rate: np.ndarray             # [P]
    amount: np.ndarray               # [P, 2]
    hour_cdf: np.ndarray             # [P, 5]
    pref_base: np.ndarray            # [P, L2] persona MCC preference logits
    product_rates: np.ndarray        # [P, K] initial holding rates
    product_group: np.ndarray        # [K] acquire-group index, -1 for none
    group_latent: np.ndarray         # [G] latent index that drives each acquire group
    intent_boost: np.ndarray         # [G, L2]
    intent_spend: np.ndarray         # [G]
    intent_weight: np.ndarray        # [K] how often an intent targets each product, relative
    new_customer_rates: np.ndarray   # [K]
    lifecycle_intent: np.ndarray     # [4]
    lifecycle_closure: np.ndarray    # [4]
    situation_probs: np.ndarray      # [4 axes, 4 values]
    l2_amount_shift: np.ndarray      # [L2]
    l2_online: np.ndarray            # [L2] bool
    code_cdf: np.ndarray             # [L2, max codes per L2] within-L2 code choice
    code_offset: np.ndarray          # [L2] index of the L2's first code
    codes: np.ndarray                # [C] MCC codes
    current_account: int             # the product attrition never closes


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def build_params(settings: Settings) -> GeneratorParams:
    gen = settings.dataset.generator.model_dump()
    personas = list(gen["personas"].values())
    names = list(gen["personas"])
    mcc = settings.mcc
    n_l2 = len(mcc.l2_names)
    l2_index = {name: i for i, name in enumerate(mcc.l2_names)}
    products = settings.products
    groups = list(settings.acquire_groups)

    pref = np.zeros((len(personas), n_l2))
    for l2, logit in gen["transactions"]["l2_popularity"].items():
        pref[:, l2_index[l2]] = logit
    for i, p in enumerate(personas):
        for l2, boost in p["mcc_boost"].items():
            pref[i, l2_index[l2]] += boost

    prods = gen["products"]
    rates = np.array(prods["base_rates"])[None, :] * np.array([prods["persona_multipliers"][n] for n in names])

    product_group = np.full(len(products), -1)
    for g, group in enumerate(groups):
        for prod in settings.acquire_groups[group]:
            product_group[products.index(prod)] = g
    latent_names = gen["latent_names"]
    group_latent = np.array([latent_names.index(prods["group_latent"][g]) for g in groups])

    intent_boost = np.zeros((len(groups), n_l2))
    intent_spend = np.ones(len(groups))
    for g, group in enumerate(groups):
        sig = gen["intent_signals"].get(group, {"spend_multiplier": 1.0, "mcc_boost": {}})
        intent_spend[g] = sig["spend_multiplier"]
        for l2, boost in sig["mcc_boost"].items():
            intent_boost[g, l2_index[l2]] = boost

    group_weight = np.array([prods["intent_group_weight"].get(g, 1.0) for g in groups])
    intent_weight = np.where(product_group >= 0, group_weight[np.clip(product_group, 0, None)], 1.0)

    new_rates = np.zeros(len(products))
    for prod, rate in prods["new_customer_products"].items():
        new_rates[products.index(prod)] = rate

    life = gen["situations"]["lifecycle"]["values"]
    txn = gen["transactions"]
    shift = np.zeros(n_l2)
    for l2, value in txn["l2_amount_shift"].items():
        shift[l2_index[l2]] = value

    # Within an L2, codes are listed most common first: Zipf-like weights 1/(rank+1).
    code_l2 = np.array(mcc.code_l2)
    max_codes = np.bincount(code_l2).max()
    code_cdf = np.ones((n_l2, max_codes))
    code_offset = np.zeros(n_l2, dtype=np.int64)
    for j in range(n_l2):
        idx = np.flatnonzero(code_l2 == j)
        code_offset[j] = idx[0]
        w = 1.0 / np.arange(1, len(idx) + 1)
        code_cdf[j, : len(idx)] = np.cumsum(w) / w.sum()

    hours = np.array([p["hours"] for p in personas])
    return GeneratorParams(
        cfg=gen,
        persona_weights=np.array([p["weight"] for p in personas]) / sum(p["weight"] for p in personas),
        latent_mean=np.array([p["latent_mean"] for p in personas]),
        age=np.array([p["age"] for p in personas]),
        income=np.array([p["income"] for p in personas]),
        tenure=np.array([p["tenure"] for p in personas]),
        segment_probs=np.array([p["segment"] for p in personas]),
        active_logit=_logit(np.array([p["active"] for p in personas])),
        txn_rate=np.array([p["txn_rate"] for p in personas]),
        amount=np.array([p["amount"] for p in personas]),
        hour_cdf=np.cumsum(hours, axis=1) / hours.sum(axis=1, keepdims=True),
        pref_base=pref,
        product_rates=np.clip(rates, 1e-4, 0.95),
        product_group=product_group,
        group_latent=group_latent,
        intent_boost=intent_boost,
        intent_spend=intent_spend,
        intent_weight=intent_weight,
        new_customer_rates=new_rates,
        lifecycle_intent=np.array([prods["lifecycle_intent"][v] for v in life]),
        lifecycle_closure=np.array([prods["lifecycle_closure"][v] for v in life]),
        situation_probs=np.array([s["probs"] for s in gen["situations"].values()]),
        l2_amount_shift=shift,
        l2_online=np.isin(np.arange(n_l2), [l2_index[x] for x in txn["online_l2"]]),
        code_cdf=code_cdf,
        code_offset=code_offset,
        codes=np.array(mcc.codes, dtype=np.int16),
        current_account=products.index("current_account") if "current_account" in products else 0,
    )
