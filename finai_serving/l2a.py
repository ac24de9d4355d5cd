"""Optional L2a: an Amazon Bedrock rewrite of an L1 reason, accepted only by a gated vote.

L1 always exists and is always safe; L2a may only make it read better. ``BedrockRewriter`` asks
the model for ``votes`` independent rewrites (one ``invoke_model`` call each, Anthropic messages
body) and runs every candidate through the same Safety Gate with the same rendered facts as L1.

Consensus rule: a candidate "agrees" when it passes the gate. With fewer than ``min_agree``
passing candidates the L1 text is returned. Otherwise the pick is the passing candidate with the
highest mean token-Jaccard similarity to the other passing ones (the medoid: the wording most
candidates share, not an outlier); ties go to the earlier candidate.

Accepted rewrites are cached in DynamoDB (``ReasonCache``) under the hashed customer key and a
digest of the L1 text, so a changed fact or template never serves a stale rewrite. A cache hit is
gated again before use. Any Bedrock or DynamoDB error returns L1 with the error class in ``why``
(a failed cache *write* keeps the accepted L2a text and says so). L1 texts that are the safe
fallback or a cold-start text are not rewritten: they carry no customer facts to polish.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from finai_serving.reasons import COLD_START, Reason
from finai_serving.safety import SafetyGate, Verdict, number_values

_TOKEN = re.compile(r"\w+")
_QUOTES = "\"'`“”‘’「」"
_ERRORS = (BotoCoreError, ClientError, ValueError, KeyError, TypeError)   # SDK errors and unreadable bodies


@dataclass(frozen=True)
class L2aResult:
    """The text to show, the layer it came from, and why L2a was not used ('' when it was)."""

    text: str
    layer: str
    why: str
    model_id: str = ""
    cached: bool = False
    votes: tuple[Verdict, ...] = ()


class Rewriter(Protocol):
    """Anything that can turn an L1 reason into an L2a text (or explain why it did not)."""

    def rewrite(self, reason: Reason, facts: Mapping[str, str], locale: str) -> L2aResult: ...


def _error(where: str, exc: Exception) -> str:
    code = exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else ""
    return f"{where} error: {type(exc).__name__}" + (f" ({code})" if code and code != type(exc).__name__ else "")


def jaccard(a: str, b: str) -> float:
    """Token Jaccard similarity of two texts (lower-cased word tokens)."""
    ta, tb = set(_TOKEN.findall(a.lower())), set(_TOKEN.findall(b.lower()))
    return len(ta & tb) / len(ta | tb) if ta | tb else 1.0


def consensus(texts: Sequence[str]) -> int:
    """Index of the medoid of ``texts`` by mean Jaccard similarity to the others (ties: earliest)."""
    if len(texts) == 1:
        return 0
    means = [sum(jaccard(t, u) for j, u in enumerate(texts) if j != i) / (len(texts) - 1)
             for i, t in enumerate(texts)]
    return max(range(len(texts)), key=lambda i: (means[i], -i))


class ReasonCache:
    """Accepted L2a texts in DynamoDB: pk = hashed customer key, sk = product#locale#digest(L1 text).

    Items: pk, sk, text, model_id, created_at (ISO 8601 UTC) and ttl (epoch seconds, the table's
    TTL attribute). DynamoDB deletes expired items lazily, so ``get`` also ignores them.
    """

    def __init__(self, client: Any, table: str, ttl_hours: float, clock: Callable[[], float] = time.time):
        self.client, self.table, self.ttl_s, self.clock = client, table, float(ttl_hours) * 3600.0, clock

    @staticmethod
    def key(reason: Reason) -> dict[str, dict[str, str]]:
        digest = hashlib.sha256(reason.text.encode()).hexdigest()[:16]
        return {"pk": {"S": reason.customer_ref}, "sk": {"S": f"{reason.product_id}#{reason.locale}#{digest}"}}

    def get(self, reason: Reason) -> tuple[str, str] | None:
        """(text, model_id) of a live entry for this L1 reason, or None."""
        item = self.client.get_item(TableName=self.table, Key=self.key(reason), ConsistentRead=True).get("Item")
        if not item or int(item["ttl"]["N"]) <= self.clock():
            return None
        return item["text"]["S"], item["model_id"]["S"]

    def put(self, reason: Reason, text: str, model_id: str) -> None:
        now = self.clock()
        item = {**self.key(reason), "text": {"S": text}, "model_id": {"S": model_id},
                "created_at": {"S": datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds")},
                "ttl": {"N": str(int(now + self.ttl_s))}}
        self.client.put_item(TableName=self.table, Item=item)


class BedrockRewriter:
    """L2a through Bedrock ``invoke_model`` with a gated vote (module docstring for the rule).

    ``system`` and ``prompt`` are per-locale texts from the ``l2a`` config section; ``prompt``
    names {reason}, {product}, {numbers} and {max_chars}. Votes run one after another: L2a is an
    on-demand detail, and sequential calls keep the vote order (and so ties) deterministic.
    """

    def __init__(self, client: Any, gate: SafetyGate, *, model_id: str, system: Mapping[str, str],
                 prompt: Mapping[str, str], votes: int = 3, min_agree: int = 2, max_tokens: int = 300,
                 temperature: float = 0.7, cache: ReasonCache | None = None):
        if votes < 1 or not 1 <= min_agree <= votes:
            raise ValueError(f"need votes >= 1 and 1 <= min_agree <= votes, got votes={votes}, min_agree={min_agree}")
        self.client, self.gate, self.model_id, self.cache = client, gate, model_id, cache
        self.system, self.prompt = dict(system), dict(prompt)
        self.votes, self.min_agree, self.max_tokens, self.temperature = votes, min_agree, max_tokens, temperature

    def _body(self, reason: Reason, facts: Mapping[str, str], locale: str) -> bytes:
        numbers = sorted({v for f in facts.values() for v in number_values(str(f))})
        shown = ", ".join(f"{int(v):,}" if v.is_integer() else f"{v:g}" for v in numbers) or "-"
        user = self.prompt[locale].format(reason=reason.text, product=reason.product_name, numbers=shown,
                                          max_chars=self.gate.max_chars(locale))
        return json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": self.max_tokens,
                           "temperature": self.temperature, "system": self.system[locale],
                           "messages": [{"role": "user", "content": [{"type": "text", "text": user}]}]}).encode()

    def _ask(self, body: bytes) -> str:
        response = self.client.invoke_model(modelId=self.model_id, body=body, contentType="application/json",
                                            accept="application/json")
        payload = json.loads(response["body"].read())
        text = "".join(part["text"] for part in payload["content"] if part.get("type") == "text")
        return " ".join(text.split()).strip(_QUOTES + " ")

    def rewrite(self, reason: Reason, facts: Mapping[str, str], locale: str) -> L2aResult:
        """L2a for ``reason`` when a cached or freshly voted rewrite passes the gate, else L1 and why.

        ``facts`` are the customer's facts as rendered (normally ``reason.facts_used``): the only
        numbers a rewrite may contain, and the ones the prompt offers.
        """
        if locale != reason.locale:
            raise ValueError(f"locale {locale!r} differs from the reason's {reason.locale!r}")
        if reason.fallback or reason.theme == COLD_START:
            return L2aResult(reason.text, "L1", "L1 is a safe or cold-start text with no facts to rewrite")
        if self.cache is not None:
            try:
                hit = self.cache.get(reason)
            except _ERRORS as exc:
                return L2aResult(reason.text, "L1", _error("DynamoDB", exc))
            if hit is not None and self.gate.check(hit[0], facts, locale, reason.product_name).passed:
                return L2aResult(hit[0], "L2a", "", hit[1], cached=True)
        body = self._body(reason, facts, locale)
        try:
            candidates = [self._ask(body) for _ in range(self.votes)]
        except _ERRORS as exc:
            return L2aResult(reason.text, "L1", _error("Bedrock", exc), self.model_id)
        verdicts = tuple(self.gate.check(c, facts, locale, reason.product_name) for c in candidates)
        passing = [c for c, v in zip(candidates, verdicts, strict=True) if v.passed]
        if len(passing) < self.min_agree:
            failed = "; ".join(",".join(v.violations) for v in verdicts if not v.passed)
            why = f"{len(passing)} of {self.votes} rewrites passed the Safety Gate, {self.min_agree} needed ({failed})"
            return L2aResult(reason.text, "L1", why, self.model_id, votes=verdicts)
        text = passing[consensus(passing)]
        why = ""
        if self.cache is not None:
            try:
                self.cache.put(reason, text, self.model_id)
            except _ERRORS as exc:
                why = f"L2a used; cache write failed: {_error('DynamoDB', exc)}"
        return L2aResult(text, "L2a", why, self.model_id, votes=verdicts)


def rewriter_from_env(config: Mapping[str, Any], env: Mapping[str, str] | None = None
                      ) -> tuple[Rewriter | None, str]:
    """A Bedrock rewriter when ``FINAI_L2A=bedrock`` and AWS credentials exist, else (None, why).

    Never raises: a missing profile or a client that cannot be built is a reason to stay on L1.
    The cache table is ``FINAI_REASON_CACHE_TABLE`` or ``l2a.cache_table``; an empty name turns
    the cache off. ``FINAI_BEDROCK_MODEL_ID`` (set by infra/template.yaml) overrides ``l2a.model_id``, so
    the model the role may invoke and the model called are the same.
    """
    env = os.environ if env is None else env
    if env.get("FINAI_L2A", "").strip().lower() != "bedrock":
        return None, "disabled"
    spec = config["l2a"]
    try:
        session = boto3.Session()
        if session.get_credentials() is None:
            return None, "no AWS credentials"
        region = session.region_name or spec["region"]
        boto_cfg = BotoConfig(connect_timeout=spec["connect_timeout_s"], read_timeout=spec["read_timeout_s"],
                              retries={"max_attempts": 2, "mode": "standard"})
        table = env.get("FINAI_REASON_CACHE_TABLE", spec["cache_table"])
        cache = (ReasonCache(session.client("dynamodb", region_name=region, config=boto_cfg), table,
                             spec["cache_ttl_hours"]) if table else None)
        rewriter = BedrockRewriter(session.client("bedrock-runtime", region_name=region, config=boto_cfg),
                                   SafetyGate(config),
                                   model_id=env.get("FINAI_BEDROCK_MODEL_ID") or spec["model_id"],
                                   system=spec["system"],
                                   prompt=spec["prompt"], votes=spec["votes"], min_agree=spec["min_agree"],
                                   max_tokens=spec["max_tokens"], temperature=spec["temperature"], cache=cache)
    except _ERRORS as exc:
        return None, _error("L2a setup", exc)
    return rewriter, "bedrock"
