"""L1 reasons: one customer's own facts, in a theme that customer's model actually leaned on.

The original system printed the booster's global gain ranking as every customer's reason, so all
customers got the same "why". Here each reason starts from that customer's LightGBM pred_contrib
(summed per Phase-0 feature group) and that customer's teacher gate weights for the task:

    c_t  = sum over groups g of theme t of max(contrib_g, 0) / k_g      (k_g: themes listing g)
    q_t  = sum over experts e speaking for t of gate_e / m_e             (m_e: themes e speaks for)
    score_t = (1 - alpha) * c_t / sum(c) + alpha * q_t / sum(q)          (a zero sum gives 0 shares)

``alpha`` is ``gate_weight`` in the config. Only positive contributions count (they pushed this
customer's score up; a negative group is not a reason to recommend). The task's private expert
speaks for no theme, so its weight is left out of sum(q). Themes are tried by score (ties in config
order); the first with score > 0 and a usable template wins. A template is usable when all its
facts exist and its conditions hold; the variant is fixed per customer (CRC-32 of customer key and
theme), so a customer sees the same sentence on every call. No usable theme gives a cold-start text.

Facts are printed by one formatter (integers, thousands separators, percent magnitudes, category
display names) whose output is also what the Safety Gate compares numbers against. A text the
gate rejects is replaced by the locale's safe template, with ``fallback=True`` and the violations.
"""

from __future__ import annotations

import hashlib
import math
import operator
import string
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from finai_serving.safety import SafetyGate, Verdict

_OPS: dict[str, Callable[[float, float], bool]] = {
    "gt": operator.gt, "ge": operator.ge, "lt": operator.lt, "le": operator.le, "eq": operator.eq}
_KINDS = ("count", "money", "pct", "category")
_CONTEXT = frozenset({"product", "currency"})   # placeholders that are not customer facts
COLD_START = "cold_start"
SAFE = "safe"


class ConfigError(ValueError):
    """The reasons config is inconsistent (caught at load, never at request time)."""


@dataclass(frozen=True)
class Reason:
    """One customer's reason for one product, with what an auditor needs to see why.

    ``safety`` is the gate's verdict on the personalised text; when it failed, ``fallback`` is True
    and ``text`` is the safe template (which itself passed). ``facts_used`` maps each printed fact
    to the exact string printed. ``drivers`` are the top themes as (theme, score, contribution
    share, gate share). ``customer_ref`` is a SHA-256 prefix of the customer key, never the key.
    """

    text: str
    template_id: str
    theme: str
    facts_used: dict[str, str]
    safety: Verdict
    fallback: bool
    drivers: tuple[tuple[str, float, float, float], ...]
    locale: str
    product_id: str
    product_name: str
    customer_ref: str
    layer: str = "L1"


@dataclass(frozen=True)
class _Template:
    id: str
    needs: tuple[str, ...]
    when: tuple[tuple[str, Callable[[float, float], bool], float], ...]
    text: Mapping[str, str]
    printed: tuple[str, ...]


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def _round_half_away(v: float) -> int:
    return int(math.copysign(math.floor(abs(v) + 0.5), v))


def customer_ref(customer_key: str) -> str:
    """The hashed customer key used in reasons and cache keys (SHA-256, 32 hex characters)."""
    return hashlib.sha256(customer_key.encode()).hexdigest()[:32]


class ReasonEngine:
    """Compiled templates, theme maps and Safety Gate for one reasons config; ``explain`` per request."""

    def __init__(self, config: Mapping[str, Any]):
        self.gate = SafetyGate(config)
        self.locales: tuple[str, ...] = tuple(config["locales"])
        if set(self.locales) != self.gate.locales:
            raise ConfigError(f"locales {self.locales} differ from the safety locales {sorted(self.gate.locales)}")
        self._alpha = float(config["gate_weight"])
        if not 0.0 <= self._alpha <= 1.0:
            raise ConfigError(f"gate_weight must lie in [0, 1], got {self._alpha}")
        self._n_drivers = int(config["drivers"])
        self._currency = {loc: str(config["currency"][loc]) for loc in self.locales}
        self._kinds = {str(k): str(v) for k, v in config["facts"].items()}
        bad = sorted(k for k, v in self._kinds.items() if v not in _KINDS)
        if bad:
            raise ConfigError(f"facts {bad} have an unknown kind; kinds are {_KINDS}")
        self._categories = {str(k): {loc: str(v[loc]) for loc in self.locales} for k, v in config["categories"].items()}
        self.themes: tuple[str, ...] = tuple(config["themes"])
        groups: dict[str, list[str]] = {}
        experts: dict[str, list[str]] = {}
        for theme, spec in config["themes"].items():
            for g in spec["groups"]:
                groups.setdefault(g, []).append(theme)
            for e in spec["experts"]:
                experts.setdefault(e, []).append(theme)
        # group/expert -> ((theme index, 1/k), ...): the per-request loops touch only these tuples
        self._group_map = {g: tuple((self.themes.index(t), 1.0 / len(ts)) for t in ts) for g, ts in groups.items()}
        self._expert_map = {e: tuple((self.themes.index(t), 1.0 / len(ts)) for t in ts) for e, ts in experts.items()}
        self._templates = {t: tuple(self._template(t, spec) for spec in config["templates"].get(t, ()))
                           for t in self.themes}
        empty = sorted(t for t, ts in self._templates.items() if not ts)
        stray = sorted(set(config["templates"]) - set(self.themes))
        if empty or stray:
            raise ConfigError(f"themes without templates {empty}; templates for unknown themes {stray}")
        self._cold = self._fixed(config["cold_start"], COLD_START)
        self._safe = self._fixed(config["safe"], SAFE)
        for loc in self.locales:
            last = self._safe[loc][-1]
            if _fields(last):
                raise ConfigError(f"the last safe template for {loc!r} must name no product or fact: {last!r}")
            for text in self._safe[loc] + self._cold[loc]:
                sample = text.format(product="Sample", currency=self._currency[loc])
                verdict = self.gate.check(sample, (), loc, "Sample")
                if not verdict.passed:
                    raise ConfigError(f"fixed template {text!r} fails the gate: {verdict.violations}")

    def _template(self, theme: str, spec: Mapping[str, Any]) -> _Template:
        tid = f"{theme}.{spec['id']}"
        needs = tuple(spec["needs"])
        unknown = sorted(set(needs) - set(self._kinds))
        if unknown:
            raise ConfigError(f"template {tid} needs unknown facts {unknown}")
        missing = [loc for loc in self.locales if loc not in spec]
        if missing:
            raise ConfigError(f"template {tid} has no text for {missing}")
        printed = {loc: _fields(spec[loc]) - _CONTEXT for loc in self.locales}
        for loc, names in printed.items():
            if not names <= set(needs):
                raise ConfigError(f"template {tid} ({loc}) prints {sorted(names - set(needs))} not listed in needs")
        if len({frozenset(p) for p in printed.values()}) > 1:
            raise ConfigError(f"template {tid} prints different facts per locale: {printed}")
        when = []
        for fact, conds in (spec.get("when") or {}).items():
            if fact not in needs or self._kinds[fact] == "category":
                raise ConfigError(f"template {tid}: condition on {fact!r} must name a numeric fact in needs")
            for op, value in conds.items():
                if op not in _OPS:
                    raise ConfigError(f"template {tid}: unknown condition {op!r}; use {sorted(_OPS)}")
                when.append((fact, _OPS[op], float(value)))
        return _Template(tid, needs, tuple(when), {loc: spec[loc] for loc in self.locales},
                         tuple(sorted(printed[self.locales[0]])))

    def _fixed(self, spec: Mapping[str, list[str]], kind: str) -> dict[str, tuple[str, ...]]:
        out = {loc: tuple(spec.get(loc) or ()) for loc in self.locales}
        for loc, texts in out.items():
            if not texts:
                raise ConfigError(f"no {kind} templates for {loc!r}")
            for text in texts:
                if not _fields(text) <= _CONTEXT:
                    raise ConfigError(f"{kind} template {text!r} may name only {sorted(_CONTEXT)}")
        return out

    def render_fact(self, name: str, value: Any, locale: str) -> str | None:
        """The string printed for one fact, or None when the fact is unknown, missing or malformed."""
        kind = self._kinds.get(name)
        if kind is None or value is None:
            return None
        if kind == "category":
            names = self._categories.get(value) if isinstance(value, str) else None
            return names[locale] if names else None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return None
        n = _round_half_away(value)
        return str(abs(n)) if kind == "pct" else f"{n:,}"

    def scores(self, group_contrib: Mapping[str, float],
               gates: Mapping[str, float]) -> list[tuple[str, float, float, float]]:
        """(theme, score, contribution share, gate share) for every theme, best first (module formula)."""
        n = len(self.themes)
        c = [0.0] * n
        q = [0.0] * n
        for g, v in group_contrib.items():
            if v > 0:    # also drops NaN
                for i, w in self._group_map.get(g, ()):
                    c[i] += v * w
        for e, v in gates.items():
            if v > 0:
                for i, w in self._expert_map.get(e, ()):
                    q[i] += v * w
        sc, sq = sum(c), sum(q)
        out = []
        for i, theme in enumerate(self.themes):
            cs = c[i] / sc if sc > 0 else 0.0
            qs = q[i] / sq if sq > 0 else 0.0
            out.append((theme, (1.0 - self._alpha) * cs + self._alpha * qs, cs, qs))
        out.sort(key=lambda r: -r[1])   # stable: ties keep config order
        return out

    def _usable(self, t: _Template, facts: Mapping[str, Any], locale: str,
                rendered: dict[str, str | None]) -> bool:
        for name in t.needs:
            if name not in rendered:
                rendered[name] = self.render_fact(name, facts.get(name), locale)
            if rendered[name] is None:
                return False
        # conditions see the signed value as rounded for printing: "rose 0%" cannot happen
        return all(op(_round_half_away(facts[name]), ref) for name, op, ref in t.when)

    def explain(self, product: Mapping[str, Any], facts: Mapping[str, Any], group_contrib: Mapping[str, float],
                gates: Mapping[str, float], locale: str, customer_key: str) -> Reason:
        """The gated L1 reason for recommending ``product`` to this customer (module docstring)."""
        if locale not in self.locales:
            raise ValueError(f"unknown locale {locale!r}; reasons exist for {self.locales}")
        names = product.get("name") or {}
        pname = str(names.get(locale) or product["id"])
        drivers = self.scores(group_contrib, gates)
        rendered: dict[str, str | None] = {}
        key = f"{customer_key}:"
        chosen: _Template | None = None
        theme = COLD_START
        for theme_name, score, _, _ in drivers:
            if score <= 0:
                break
            usable = [t for t in self._templates[theme_name] if self._usable(t, facts, locale, rendered)]
            if usable:
                chosen = usable[zlib.crc32((key + theme_name).encode()) % len(usable)]
                theme = theme_name
                break
        values: dict[str, str] = {"product": pname, "currency": self._currency[locale]}
        if chosen is None:
            cold = self._cold[locale]
            idx = zlib.crc32((key + COLD_START).encode()) % len(cold)
            text, tid, used = cold[idx].format_map(values), f"{COLD_START}.{locale}.{idx}", {}
        else:
            used = {name: rendered[name] for name in chosen.printed}
            text, tid = chosen.text[locale].format_map({**values, **used}), chosen.id
        verdict = self.gate.check(text, used, locale, pname)
        fallback = not verdict.passed
        if fallback:
            text, tid, used = self._safe_text(pname, locale)
        top = tuple((t, round(s, 4), round(cs, 4), round(qs, 4)) for t, s, cs, qs in drivers[: self._n_drivers])
        return Reason(text, tid, theme, used, verdict, fallback, top, locale, str(product["id"]), pname,
                      customer_ref(customer_key))

    def _safe_text(self, pname: str, locale: str) -> tuple[str, str, dict[str, str]]:
        """The first safe template that passes with this product name (the last one always does)."""
        texts = self._safe[locale]
        for idx, tpl in enumerate(texts[:-1]):
            text = tpl.format(product=pname, currency=self._currency[locale])
            if self.gate.check(text, (), locale, pname).passed:
                return text, f"{SAFE}.{locale}.{idx}", {}
        return texts[-1], f"{SAFE}.{locale}.{len(texts) - 1}", {}
