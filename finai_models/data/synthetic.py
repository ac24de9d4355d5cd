"""Synthetic monthly bank panel: customers, monthly snapshots and card transactions.

Each customer has a persona, a 5-D latent vector (wealth, activity, risk, digital, loyalty) and
four situations (A §1.4). Unlike the reference, which stamped one row per customer with a random
date, the state here evolves month by month: activity and wealth trend with the situations,
customers form an *intent* to buy a product and it shows in their card spending for 1-3 months
before the purchase (or not, when they change their mind), attrition fades spending before
products are closed, segments catch up with wealth and age, and MCC preferences drift.
Labels are therefore not columns but consequences of simulated future behaviour, and the past
carries real but imperfect signal about them, part of it visible only as a sequence.

Vectorised over customers; one seeded random stream per month, so output is bit-for-bit
reproducible and months are written (streamed) one at a time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from finai_models import months as M
from finai_models.config import Settings
from finai_models.data.raw_schema import CARD_TRANSACTIONS, CUSTOMERS, SEGMENTS, snapshot_schema
from finai_models.data.synthetic_params import GeneratorParams

ENG_SURGING, ENG_DECLINING, ENG_VOLATILE = 1, 2, 3
VAL_ASCENDING, VAL_DESCENDING, VAL_SHOCK = 1, 2, 3
CON_EXPLORING, CON_FOCUSING, CON_SWITCHING = 1, 2, 3
SEG_TOP, SEG_PART, SEG_UNIV, SEG_UNKNOWN = 0, 1, 2, 3
WEALTH, ACTIVITY, RISK, DIGITAL, LOYALTY = range(5)
EPOCH = dt.date(1970, 1, 1)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _pick_rows(rng: np.random.Generator, weights: np.ndarray) -> np.ndarray:
    """One categorical draw per row of a non-negative weight matrix (rows may not be all zero)."""
    cdf = np.cumsum(weights, axis=1)
    u = rng.random(len(weights)) * cdf[:, -1]
    return np.minimum((cdf < u[:, None]).sum(axis=1), weights.shape[1] - 1)


def _days(date: dt.date) -> int:
    return (date - EPOCH).days


def _labels(codes: np.ndarray, names: list[str] | np.ndarray) -> pa.Array:
    """Strings from small integer codes without building a Python string per row."""
    return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32)), pa.array(names)).cast(pa.string())


@dataclass
class MonthTables:
    month: str
    customers: pa.Table
    snapshots: pa.Table
    transactions: pa.Table


class Panel:
    """The evolving state of all customers; ``step`` advances it one month."""

    def __init__(self, params: GeneratorParams, settings: Settings, n: int, start: str, n_months: int,
                 seed: int):
        self.p, self.settings, self.n, self.start, self.seed = params, settings, n, start, seed
        gen = params.cfg
        rng = np.random.default_rng([seed, 0])
        self.customer_id = np.arange(1, n + 1, dtype=np.int64)
        self.persona = rng.choice(len(params.persona_weights), size=n, p=params.persona_weights).astype(np.int8)
        z = self.persona
        latent = params.latent_mean[z] + gen["latent_sd"] * rng.standard_normal((n, 5))
        d = gen["latent_decouple"]
        self.latent_base = ((1 - d) * latent + d * rng.standard_normal((n, 5))).astype(np.float32)
        self.latent = self.latent_base.copy()
        self.situations = np.stack(
            [_pick_rows(rng, np.broadcast_to(params.situation_probs[a], (n, 4))) for a in range(4)], axis=1
        ).astype(np.int8)
        self.event_month = rng.integers(1, max(n_months, 2), size=n)
        self.act_offset = np.zeros(n, np.float32)
        self.wealth_offset = np.zeros(n, np.float32)
        self.act_swing = np.zeros(n, np.float32)

        age0 = np.clip(params.age[z, 0] + params.age[z, 1] * rng.standard_normal(n), 18, 95)
        self.birth_year = (M.parse(start)[0] - np.round(age0)).astype(np.int16)
        self.gender = (rng.random(n) >= 0.52).astype(np.int8)          # 0 F, 1 M
        self.region = rng.zipf(1.6, size=n) % gen["regions"]
        self.acq_channel = rng.integers(0, gen["acquisition_channels"], size=n)
        tenure = np.clip(rng.gamma(params.tenure[z, 0], params.tenure[z, 1]), 0, 300).astype(np.int64)
        new = rng.random(n) < gen["new_customer_fraction"]
        self.join_index = np.where(new, rng.integers(1, max(n_months, 2), size=n), -tenure)
        join_month_days = np.array([_days(M.first_day(M.shift(start, int(j)))) for j in range(-301, n_months)])
        self.join_date = join_month_days[self.join_index + 301] + rng.integers(0, 28, size=n)

        inc_mu, inc_sd, inc_missing = params.income[z].T
        self.income_base = np.exp(inc_mu + inc_sd * rng.standard_normal(n))
        self.income_missing = rng.random(n) < inc_missing
        self.segment = _pick_rows(rng, params.segment_probs[z]).astype(np.int8)
        self.is_active = rng.random(n) < _sigmoid(params.active_logit[z] + 0.8 * self.latent[:, ACTIVITY])

        rates = params.product_rates[z] * (0.5 + _sigmoid(0.6 * self.latent[:, params.group_latent]))[
            :, np.clip(params.product_group, 0, None)]
        rates = np.where(params.product_group >= 0, rates, params.product_rates[z])
        self.holdings = rng.random(rates.shape) < np.clip(rates, 0, 0.95)
        new_now = self.join_index > 0
        self.holdings[new_now] = False

        self.pref = (params.pref_base[z] + gen["transactions"]["pref_noise"]
                     * rng.standard_normal((n, params.pref_base.shape[1]))).astype(np.float32)
        self.intent_product = np.full(n, -1, np.int16)
        self.intent_left = np.zeros(n, np.int8)
        self.since_purchase = np.full(n, 99, np.int16)   # months since the last intended purchase
        self.attrition_left = np.zeros(n, np.int8)
        self.spend_level = np.ones(n, np.float32)
        self.t = 0

    # --- monthly dynamics -------------------------------------------------------------------
    def step(self, rng: np.random.Generator) -> None:
        """Advance every customer by one month."""
        self.t += 1
        self._switch_situations(rng)
        self._evolve_latent(rng)
        self._evolve_products(rng)
        self._evolve_attrition(rng)
        self._evolve_status(rng)
        self._evolve_preferences(rng)

    def _switch_situations(self, rng: np.random.Generator) -> None:
        switch = rng.random(self.n) < self.p.cfg["situation_switch_rate"]
        k = int(switch.sum())
        if k:
            for a in range(4):
                self.situations[switch, a] = _pick_rows(rng, np.broadcast_to(self.p.situation_probs[a], (k, 4)))
            self.event_month[switch] = self.t + rng.integers(0, 6, size=k)

    def _evolve_latent(self, rng: np.random.Generator) -> None:
        dyn = self.p.cfg["dynamics"]
        eng, val = self.situations[:, 0], self.situations[:, 2]
        trend = dyn["activity_trend"]
        self.act_offset += np.where(eng == ENG_SURGING, trend, 0) - np.where(eng == ENG_DECLINING, trend, 0)
        np.clip(self.act_offset, -1.5, 1.5, out=self.act_offset)
        swing = np.where(rng.random(self.n) < 0.5, 1.0, -1.0) * dyn["volatile_swing"]
        self.act_swing = np.where(eng == ENG_VOLATILE, swing, 0).astype(np.float32)
        wt = dyn["wealth_trend"]
        self.wealth_offset += np.where(val == VAL_ASCENDING, wt, 0) - np.where(val == VAL_DESCENDING, wt, 0)
        shock = (val == VAL_SHOCK) & (self.event_month == self.t)
        self.wealth_offset[shock] += np.where(rng.random(int(shock.sum())) < 0.5, 1, -1) * dyn["wealth_shock"]
        np.clip(self.wealth_offset, -1.5, 1.5, out=self.wealth_offset)
        noise = self.p.cfg["monthly_latent_noise"] * rng.standard_normal((self.n, 5), dtype=np.float32)
        self.latent_base += noise - 0.02 * (self.latent_base - self.p.latent_mean[self.persona])
        self.latent = self.latent_base.copy()
        self.latent[:, ACTIVITY] += self.act_offset + self.act_swing
        self.latent[:, WEALTH] += self.wealth_offset

    def _propensity(self, rows: np.ndarray) -> np.ndarray:
        """Relative appetite of the given customers for each product they do not hold."""
        p = self.p
        z = self.persona[rows]
        drive = _sigmoid(1.2 * self.latent[rows][:, p.group_latent])       # [r, G]
        group_drive = drive[:, np.clip(p.product_group, 0, None)]
        # Square root tempers the base rates: rare products are rarely held, but still wanted.
        w = np.sqrt(p.product_rates[z]) * p.intent_weight * np.where(p.product_group >= 0, 0.3 + 2 * group_drive, 0.5)
        return w * ~self.holdings[rows]

    def _evolve_products(self, rng: np.random.Generator) -> None:
        p, prods = self.p, self.p.cfg["products"]
        present = self.join_index <= self.t
        joining = self.join_index == self.t
        if joining.any():
            self.holdings[joining] = rng.random((int(joining.sum()), len(p.new_customer_rates))) < p.new_customer_rates

        # Intents that reach their month convert (or are abandoned).
        waiting = self.intent_left > 0
        self.intent_left[waiting] -= 1
        due = np.flatnonzero(waiting & (self.intent_left == 0))
        buy = due[rng.random(len(due)) < prods["intent_conversion"]]
        self.holdings[buy, self.intent_product[buy]] = True
        self.intent_product[due] = -1
        self.since_purchase = np.minimum(self.since_purchase + 1, 99).astype(np.int16)
        self.since_purchase[buy] = 0

        # New intents, more often for growing customers, for those whose drives point at a product, and
        # right after a purchase (customers in buying mode cross-buy).
        life = self.situations[:, 1]
        momentum = np.where(self.since_purchase <= prods["momentum_months"], prods["momentum_boost"], 1.0)
        start_p = prods["intent_rate"] * p.lifecycle_intent[life] * momentum
        candidates = np.flatnonzero(present & ~joining & (self.intent_left == 0) & (self.attrition_left == 0)
                                    & (rng.random(self.n) < start_p))
        if len(candidates):
            w = self._propensity(candidates)
            ok = w.sum(axis=1) > 0
            candidates, w = candidates[ok], w[ok]
            self.intent_product[candidates] = _pick_rows(rng, w)
            lo, hi = prods["intent_months"]
            self.intent_left[candidates] = rng.integers(lo, hi + 1, size=len(candidates))

        # Acquisitions with no lead-up, and closures.
        k = self.holdings.shape[1]
        spontaneous = rng.random((self.n, k), dtype=np.float32) < prods["spontaneous_rate"]
        close_p = prods["closure_rate"] * p.lifecycle_closure[life] * np.exp(-0.5 * self.latent[:, LOYALTY])
        closing = rng.random((self.n, k), dtype=np.float32) < close_p[:, None].astype(np.float32)
        closing[:, p.current_account] &= rng.random(self.n) < 0.2
        self.holdings = (self.holdings | (spontaneous & present[:, None])) & ~closing

    def _evolve_attrition(self, rng: np.random.Generator) -> None:
        att = self.p.cfg["attrition"]
        eng = self.situations[:, 0]
        base = np.log(att["rate"] / (1 - att["rate"]))
        start_p = _sigmoid(base - att["loyalty_effect"] * self.latent[:, LOYALTY] + (eng == ENG_DECLINING))
        starting = (self.attrition_left == 0) & (rng.random(self.n) < start_p) & (self.join_index < self.t)
        lo, hi = att["months"]
        self.attrition_left[starting] = rng.integers(lo, hi + 1, size=int(starting.sum()))
        fading = self.attrition_left > 0
        self.spend_level = np.where(fading, self.spend_level * att["spend_decay"],
                                    self.spend_level + att["recovery"] * (1 - self.spend_level)).astype(np.float32)
        self.attrition_left[fading] -= 1
        ended = np.flatnonzero(fading & (self.attrition_left == 0))
        ended = ended[rng.random(len(ended)) < att["closure_probability"]]
        if len(ended):
            held = self.holdings[ended].copy()
            held[:, self.p.current_account] = False
            # Close one or two held products, chosen at random among those held.
            for _ in range(2):
                has = held.any(axis=1)
                rows = ended[has]
                pick = _pick_rows(rng, held[has].astype(np.float64))
                self.holdings[rows, pick] = False
                held[np.flatnonzero(has), pick] = False
                keep_going = rng.random(len(ended)) < 0.5
                held &= keep_going[:, None]
            self.intent_left[ended] = 0
            self.intent_product[ended] = -1

    def _evolve_status(self, rng: np.random.Generator) -> None:
        dyn, p = self.p.cfg["dynamics"], self.p
        active_p = _sigmoid(p.active_logit[self.persona] + 0.8 * self.latent[:, ACTIVITY] + np.log(self.spend_level))
        keep = rng.random(self.n) < dyn["active_persistence"]
        self.is_active = np.where(keep, self.is_active, rng.random(self.n) < active_p)

        age = M.parse(M.shift(self.start, self.t))[0] - self.birth_year
        score = self.latent[:, WEALTH] + 0.2 * rng.standard_normal(self.n)
        target = np.where(score > dyn["segment_top_wealth"], SEG_TOP,
                          np.where((age <= dyn["segment_student_age"]) & (score < dyn["segment_student_wealth"]),
                                   SEG_UNIV, SEG_PART))
        review = rng.random(self.n) < dyn["segment_review_rate"]
        known = self.segment != SEG_UNKNOWN
        resolve = ~known & (rng.random(self.n) < dyn["unknown_segment_resolve_rate"])
        lapse = known & (rng.random(self.n) < dyn["segment_lapse_rate"])
        segment = np.where((review & known) | resolve, target, self.segment)
        self.segment = np.where(lapse, SEG_UNKNOWN, segment).astype(np.int8)

    def _evolve_preferences(self, rng: np.random.Generator) -> None:
        txn = self.p.cfg["transactions"]
        self.pref += txn["pref_drift"] * rng.standard_normal(self.pref.shape, dtype=np.float32)
        con = self.situations[:, 3]
        drift = txn["consumption_drift"]
        exploring = con == CON_EXPLORING
        self.pref[exploring] *= 1 - drift
        top = self.pref.argmax(axis=1)
        focusing = np.flatnonzero(con == CON_FOCUSING)
        self.pref[focusing, top[focusing]] += 2 * drift
        switching = np.flatnonzero((con == CON_SWITCHING) & (self.event_month == self.t))
        if len(switching):
            order = np.argsort(-self.pref[switching], axis=1)
            first, second = order[:, 0], order[:, 1]
            a = self.pref[switching, first].copy()
            self.pref[switching, first] = self.pref[switching, second]
            self.pref[switching, second] = a

    # --- monthly output ---------------------------------------------------------------------
    def tables(self, rng: np.random.Generator) -> MonthTables:
        month = M.shift(self.start, self.t)
        present = np.flatnonzero(self.join_index <= self.t)
        month_days = _days(M.first_day(month))
        month_col = pa.array(np.full(len(present), month_days, np.int32), pa.date32())
        ids = self.customer_id[present]

        customers = pa.Table.from_arrays([
            pa.array(ids), month_col, pa.array(self.birth_year[present]),
            _labels(self.gender[present], ["F", "M"]),
            _labels(self.region[present], [f"R{i:02d}" for i in range(self.p.cfg["regions"])]),
            _labels(self.acq_channel[present], [f"CH{i:02d}" for i in range(self.p.cfg["acquisition_channels"])]),
            pa.array(self.join_date[present].astype(np.int32), pa.date32()),
        ], schema=CUSTOMERS)

        wealth = self.latent[present, WEALTH]
        noise = self.p.cfg["dynamics"]["income_noise"] * rng.standard_normal(len(present))
        income = np.round(self.income_base[present] * np.exp(0.3 * wealth + noise), 2)
        income_arr = pa.array(income, mask=self.income_missing[present])
        seg_names = _labels(self.segment[present], list(SEGMENTS))
        columns = [pa.array(ids), month_col, pa.array(self.is_active[present]), income_arr, seg_names]
        columns += [pa.array(self.holdings[present, k]) for k in range(self.holdings.shape[1])]
        snapshots = pa.Table.from_arrays(columns, schema=snapshot_schema(self.settings.products))
        return MonthTables(month, customers, snapshots, self._transactions(rng, present, month))

    def _transactions(self, rng: np.random.Generator, present: np.ndarray, month: str) -> pa.Table:
        p, txn = self.p, self.p.cfg["transactions"]
        z = self.persona[present]
        latent = self.latent[present]
        intent = self.intent_product[present]
        group = np.where(intent >= 0, p.product_group[np.clip(intent, 0, None)], -1)
        has_signal = group >= 0
        spend = np.where(has_signal, p.intent_spend[np.clip(group, 0, None)], 1.0)
        rate = (p.txn_rate[z] * np.exp(txn["activity_effect"] * latent[:, ACTIVITY]) * self.spend_level[present]
                * spend * np.where(self.is_active[present], 1.0, txn["inactive_rate_multiplier"]))
        n_txn = rng.poisson(rate)
        buyers = np.flatnonzero(n_txn > 0)

        logits = self.pref[present[buyers]].astype(np.float64)
        logits += np.where(has_signal[buyers, None], p.intent_boost[np.clip(group[buyers], 0, None)], 0.0)
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        counts = rng.multinomial(n_txn[buyers], probs)                     # [buyers, L2]
        n_l2 = probs.shape[1]
        l2 = np.repeat(np.tile(np.arange(n_l2, dtype=np.int16), len(buyers)), counts.ravel())
        row = np.repeat(buyers, n_txn[buyers])                              # index into `present`
        total = len(l2)

        u = rng.random(total)
        within = (p.code_cdf[l2] < u[:, None]).sum(axis=1)
        code_idx = p.code_offset[l2] + within
        mcc = p.codes[code_idx]

        zt = z[row]
        amount = np.exp(p.amount[zt, 0] + p.l2_amount_shift[l2]
                        + txn["wealth_amount_effect"] * latent[row, WEALTH]
                        + p.amount[zt, 1] * rng.standard_normal(total))
        amount = np.round(np.maximum(amount, 0.01), 2)

        block = (p.hour_cdf[zt] < rng.random(total)[:, None]).sum(axis=1)
        block_start = np.array([0, 6, 9, 13, 18, 24])
        hour = block_start[block] + (rng.random(total) * (block_start[block + 1] - block_start[block])).astype(np.int64)
        day = rng.integers(0, M.days_in(month), size=total)
        second = ((day * 24 + hour) * 60 + rng.integers(0, 60, size=total)) * 60 + rng.integers(0, 60, size=total)
        order = np.argsort(row.astype(np.int64) << 32 | second, kind="stable")
        row, l2, mcc, code_idx = row[order], l2[order], mcc[order], code_idx[order]
        amount, second = amount[order], second[order]

        cust = self.customer_id[present[row]]
        pool = txn["merchants_per_mcc"]
        usual = (cust * 2654435761 + code_idx.astype(np.int64) * 40503) % pool
        merchant = np.where(rng.random(total) < txn["merchant_loyalty"], usual, rng.integers(0, pool, size=total))
        merchant_id = mcc.astype(np.int64) * 10_000 + merchant

        digital = latent[row, DIGITAL]
        online = p.l2_online[l2] & (rng.random(total) < _sigmoid(1.5 * digital))
        contactless = rng.random(total) < _sigmoid(digital + 0.5)
        channel = np.where(online, 2, np.where(contactless, 1, 0)).astype(np.int8)

        base_us = _days(M.first_day(month)) * 86_400_000_000
        month_col = np.full(total, _days(M.first_day(month)), np.int32)
        return pa.Table.from_arrays([
            pa.array(cust),
            pa.array(month_col, pa.date32()),
            pa.array(base_us + second * 1_000_000, pa.timestamp("us")),
            pa.array(amount),
            pa.array(mcc),
            pa.array(merchant_id),
            _labels(channel, txn["channels"]),
        ], schema=CARD_TRANSACTIONS)


def simulate(params: GeneratorParams, settings: Settings, n: int, start: str, n_months: int,
             seed: int) -> Iterator[MonthTables]:
    """Yield the three raw tables month by month, advancing one shared state."""
    panel = Panel(params, settings, n, start, n_months, seed)
    for t in range(n_months):
        rng = np.random.default_rng([seed, t + 1])
        if t:
            panel.step(rng)
        yield panel.tables(rng)
