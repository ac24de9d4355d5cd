"""The rule Safety Gate every reason passes before a customer sees it (L1 and L2a alike).

Rules come from the ``safety`` section of the reasons config (configs/reasons.yaml, shipped as
JSON) and are compiled once per gate, so a check costs a few regex scans of a short text:

- claims: guaranteed returns, no-risk, time pressure, superlatives (ko + en);
- pii: resident registration numbers, phones, e-mail, card and account numbers (whole text);
- tone: repeated "!", shouting capitals, pressure commands; format: leftover placeholders, markup;
- numbers: every number must equal one of the customer's facts *as rendered* for that text;
- length (characters) and script (Hangul share of letters) per locale.

Rules match the lower-cased text unless marked ``case_sensitive`` (shouting capitals): one
``lower()`` is much cheaper than IGNORECASE, which stops ``re`` from scanning for a literal prefix.
The product's own name is cut out before the claim, tone, format, number and script rules, so
digits or words inside a catalogue name are allowed there and only there. Numbers are compared as
unsigned values: "1,234" equals 1234 and "15%" equals 15. Reasons print a change's magnitude and
carry its direction in the wording (a template for "fell" is chosen only when the signed value is
negative), so the gate cannot see a flipped direction; it checks that the magnitude is a fact.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

_NUMBER = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?")
_HANGUL = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]+")
_LETTERS = re.compile(r"[^\W\d_]+")


@dataclass(frozen=True)
class Verdict:
    """The gate's answer: ``violations`` name each broken rule as ``family:rule`` (or ``number:N``)."""

    passed: bool
    violations: list[str] = field(default_factory=list)


def number_values(text: str) -> set[float]:
    """The unsigned numeric values written in ``text`` ("1,234" -> 1234.0, "-12%" -> 12.0)."""
    return {float(tok.replace(",", "")) for tok in _NUMBER.findall(text)}


_Rule = tuple[str, re.Pattern[str], bool]


def _compile(family: str, rules: Iterable[Mapping[str, Any]]) -> tuple[_Rule, ...]:
    return tuple((f"{family}:{r['name']}", re.compile(str(r["pattern"])), bool(r.get("case_sensitive", False)))
                 for r in rules)


def _run_length(rx: re.Pattern[str], text: str) -> int:
    """Characters of ``text`` inside matches of ``rx`` (matching runs, not characters, keeps it fast)."""
    return sum(map(len, rx.findall(text)))


class SafetyGate:
    """Rule checks over one text; build once per config (the regexes compile here)."""

    def __init__(self, config: Mapping[str, Any]):
        s = config["safety"]
        self._pii = _compile("pii", s["pii"])
        self._content = _compile("claim", s["claims"]) + _compile("tone", s["tone"]) + _compile("format", s["format"])
        self._length = {loc: (int(v["min"]), int(v["max"])) for loc, v in s["length"].items()}
        self._script = {loc: (float(v.get("min_hangul_share", 0.0)), float(v.get("max_hangul_share", 1.0)))
                        for loc, v in s["script"].items()}
        if set(self._length) != set(self._script):
            raise ValueError(f"safety.length locales {sorted(self._length)} != script locales {sorted(self._script)}")

    @property
    def locales(self) -> frozenset[str]:
        return frozenset(self._length)

    def max_chars(self, locale: str) -> int:
        """The longest text the gate accepts in ``locale`` (the L2a prompt states it)."""
        return self._length[locale][1]

    def check(self, text: str, facts_rendered: Mapping[str, str] | Iterable[str], locale: str,
              product_name: str = "") -> Verdict:
        """Check ``text`` written in ``locale`` for one customer.

        ``facts_rendered`` holds that customer's facts exactly as the reason formatter printed them
        (a name -> string mapping, or just the strings); a number in the text passes only if it
        equals a number in one of them. ``product_name`` is exempt from the content rules.
        """
        if locale not in self._length:
            raise ValueError(f"unknown locale {locale!r}; the gate knows {sorted(self._length)}")
        values = facts_rendered.values() if isinstance(facts_rendered, Mapping) else facts_rendered
        body = text.replace(product_name, " ") if product_name else text
        low_text, low_body = text.lower(), body.lower()
        violations = [name for name, rx, cs in self._pii if rx.search(text if cs else low_text)]
        violations += [name for name, rx, cs in self._content if rx.search(body if cs else low_body)]
        allowed: set[float] = set()
        for v in values:
            allowed |= number_values(str(v))
        seen: set[float] = set()
        for tok in _NUMBER.findall(body):
            value = float(tok.replace(",", ""))
            if value not in allowed and value not in seen:
                seen.add(value)
                violations.append(f"number:{tok}")
        lo, hi = self._length[locale]
        if len(text) < lo:
            violations.append(f"length:under_{lo}")
        elif len(text) > hi:
            violations.append(f"length:over_{hi}")
        min_share, max_share = self._script[locale]
        if min_share > 0 or (max_share < 1 and _HANGUL.search(body)):
            letters = _run_length(_LETTERS, body)
            share = _run_length(_HANGUL, body) / letters if letters else 0.0
        else:
            share = 0.0
        if share < min_share:
            violations.append(f"script:hangul_share_below_{min_share:g}")
        elif share > max_share:
            violations.append("script:hangul_in_text" if max_share == 0 else f"script:hangul_share_above_{max_share:g}")
        return Verdict(not violations, violations)
