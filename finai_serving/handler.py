"""The Lambda entry point: ``finai_serving.handler.handler(event, context)``.

Actions (JSON contract and validation in ``contract``):
- ``recommend``: 13 task scores -> products ranked on the month's percentile scale -> constraint
  engine -> top-k -> a per-customer reason for each (L1, Safety Gate, optional L2a) -> audit record;
- ``predict``: the 13 task outputs and how each was served;
- ``explain``: a recommendation with its evidence (feature-group contributions, gate weights,
  withheld products and why); recorded as an explanation request;
- ``opt_out``: records (or withdraws) a customer's opt-out of AI recommendations;
- ``heartbeat``: the loaded bundle, no inference.

The bundle is loaded once per container (the cold start) and verified file by file. A customer
who opted out gets no recommendation; the kill switch (global or per task) hands the affected
scores to the rule fallback; a customer the batch does not know and who brings no features gets
the cold-start path (popularity and whatever their profile says).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from finai_serving.audit import AuditLog, load_or_create_key
from finai_serving.contract import BadRequest, validate
from finai_serving.controls import KillSwitch, OptOuts, customer_key
from finai_serving.model import Customer, ServingModel
from finai_serving.reasons import ReasonEngine
from finai_serving.recommend import Candidate, Profile, rule_scores, score_products, select

_STATE: dict[str, Any] = {}


def task_root() -> Path:
    model_dir = os.environ.get("FINAI_MODEL_DIR")
    return Path(model_dir).parent if model_dir else Path(__file__).resolve().parent.parent


class Service:
    """Everything a warm container keeps: the model, the controls, the reason engine and the audit log."""

    def __init__(self, root: Path, env: dict[str, str] | None = None):
        env = dict(os.environ if env is None else env)
        started = time.perf_counter()
        self.model = ServingModel.load(root)
        scratch = Path(env.get("FINAI_SERVING_STATE", tempfile.gettempdir()))
        self.key = audit_key(env, scratch)
        self.audit = AuditLog(Path(env.get("FINAI_AUDIT_LOG", scratch / "finai-audit.jsonl")), self.key,
                              fsync=env.get("FINAI_AUDIT_FSYNC", "1") != "0", incremental=True)
        self.optouts = OptOuts(Path(env.get("FINAI_OPTOUT_FILE", scratch / "finai-optouts.jsonl")),
                               env.get("FINAI_OPTOUT_TABLE", ""))
        self.kill_switch = KillSwitch(env, tasks=list(self.model.students))
        self.reasons = ReasonEngine(self.model.cfg["reasons"])
        self.rewriter, self.l2a_why = self._rewriter(env)
        self.load_seconds = time.perf_counter() - started

    def _rewriter(self, env: dict[str, str]) -> tuple[Any, str]:
        """The optional L2a rewriter; boto3 is imported only when ``FINAI_L2A=bedrock`` asks for it."""
        if env.get("FINAI_L2A", "").strip().lower() != "bedrock":
            return None, "disabled"
        from finai_serving.l2a import rewriter_from_env

        return rewriter_from_env(self.model.cfg["reasons"], env)

    # ---- actions -------------------------------------------------------------------------------

    def heartbeat(self, req: dict[str, Any]) -> dict[str, Any]:
        m = self.model
        return {"month": m.month, "scorer": m.scorer, "tasks": {t: s.route for t, s in m.students.items()},
                "batch_customers": len(m.batch_ids), "load_seconds": round(self.load_seconds, 3),
                "kill_switch": sorted(self.kill_switch.active()), "l2a": self.l2a_why or "bedrock"}

    def predict(self, req: dict[str, Any]) -> dict[str, Any]:
        customer = self.model.customer(req["customer_id"], req["features"])
        everything_off, off = self.kill_switch.tasks_off(list(self.model.students))
        if everything_off:
            off = set(self.model.students)
        outputs, served = self.model.outputs(customer.x, off)
        return {"customer": customer.source, "predictions": outputs, "served": served}

    def opt_out(self, req: dict[str, Any]) -> dict[str, Any]:
        key = customer_key(req["customer_id"], self.key)
        self.optouts.set(key, req["opt_out"])
        self.audit.append("opt_out" if req["opt_out"] else "opt_out_withdrawn", customer=key)
        return {"opted_out": req["opt_out"]}

    def recommend(self, req: dict[str, Any], explain: bool = False) -> dict[str, Any]:
        key = customer_key(req["customer_id"], self.key)
        if self.optouts.opted_out(key):
            self.audit.append("recommendation_blocked", customer=key, why="ai_opt_out")
            return {"recommendations": [], "blocked": "ai_opt_out",
                    "message": "This customer opted out of AI recommendations; no model was run."}
        m = self.model
        customer = m.customer(req["customer_id"], req["features"])
        profile = self._profile(customer, req["profile"])
        switches = self.kill_switch.active()                 # read once: scoring and the audit record agree
        everything_off, off = self.kill_switch.tasks_off(list(m.students), switches)
        rule_path = everything_off or customer.x is None
        if rule_path:
            facts = {**customer.facts, **{k: v for k, v in req["profile"].items() if k in ("age", "income")}}
            candidates = rule_scores(m.cfg["catalogue"], m.population["popularity"], facts,
                                     m.cfg["rule_fallback"]["boosts"])
            served = {t: "kill_switch" if everything_off else "cold_start" for t in m.students}
        else:
            outputs, served = m.outputs(customer.x, off)
            candidates = score_products(m.cfg["catalogue"], m.percentiles(outputs, served))
        chosen, withheld, block = select(candidates, profile, m.cfg["constraints"], req["top_k"])
        items = [self._item(rank, c, customer, served, key, req["locale"], explain)
                 for rank, c in enumerate(chosen, start=1)]
        self.audit.append("explanation_request" if explain else "recommendation", customer=key, month=m.month,
                          source=customer.source, path="rule" if rule_path else "model",
                          products=[i["product_id"] for i in items], scores=[i["score"] for i in items],
                          templates=[i["reason"]["template_id"] for i in items],
                          reasons_sha256=hashlib.sha256("\n".join(i["reason"]["text"] for i in items).encode()
                                                        ).hexdigest(),
                          kill_switch=sorted(switches) or None)
        out: dict[str, Any] = {"customer": customer.source, "path": "rule" if rule_path else "model",
                               "recommendations": items, "blocked": block, "served": served}
        if explain or block:
            out["withheld"] = [{"product_id": c.id, "why": c.rejected or block} for c in withheld]
        return out

    # ---- parts ---------------------------------------------------------------------------------

    def _profile(self, customer: Customer, given: dict[str, Any]) -> Profile:
        f = customer.facts
        return Profile(age=given.get("age", f.get("age")), income=given.get("income", f.get("income")),
                       risk_grade=given.get("risk_grade"), tenure_months=given.get("tenure_months",
                                                                                   f.get("tenure_months")),
                       messages_7d=given.get("messages_7d", 0),
                       owned=given.get("owned_products", customer.owned))

    def _item(self, rank: int, c: Candidate, customer: Customer, served: dict[str, str], key: str, locale: str,
              explain: bool) -> dict[str, Any]:
        m = self.model
        signal = max((s for s in c.product["signals"] if served.get(s["task"]) == "model"),
                     key=lambda s: float(s["weight"]), default=None)
        contrib, gates = {}, {}
        if signal is not None and customer.x is not None:
            contrib = m.group_contributions(customer, signal["task"], signal.get("class"))
            if signal.get("direction", 1) == -1:
                contrib = {g: -v for g, v in contrib.items()}
            gates = m.gate_weights(customer, signal["task"])
        product = {"id": c.id, "name": c.product["name"], "task": signal["task"] if signal else None}
        reason = self.reasons.explain(product, customer.facts, contrib, gates, locale, key)
        text, layer, l2a = reason.text, "L1", {"used": False, "why": self.l2a_why}
        if self.rewriter is not None and not reason.fallback:
            result = self.rewriter.rewrite(reason, reason.facts_used, locale)
            text, layer, l2a = result.text, result.layer, {"used": result.layer == "L2a", "why": result.why}
        item = {"rank": rank, "product_id": c.id, "name": c.product["name"][locale], "score": round(c.score, 4),
                "score_components": c.components,
                "reason": {"text": text, "layer": layer, "template_id": reason.template_id, "theme": reason.theme,
                           "facts_used": reason.facts_used, "safety_passed": reason.safety.passed,
                           "fallback": reason.fallback, "l2a": l2a}}
        if explain:
            item["evidence"] = {"task": product["task"], "drivers": reason.drivers,
                                "group_contributions": dict(sorted(contrib.items(), key=lambda kv: -abs(kv[1]))[:6]),
                                "gate_weights": gates, "safety_violations": reason.safety.violations}
        return item


def audit_key(env: dict[str, str], scratch: Path) -> bytes:
    """The HMAC key of the audit chain and of customer keys: ``$FINAI_AUDIT_KEY``, else the Secrets Manager
    secret ``$FINAI_AUDIT_KEY_SECRET_ARN`` (on AWS every container must share it), else a local key file."""
    if env.get("FINAI_AUDIT_KEY"):
        return env["FINAI_AUDIT_KEY"].encode()
    if env.get("FINAI_AUDIT_KEY_SECRET_ARN"):
        import boto3

        secret = boto3.client("secretsmanager").get_secret_value(SecretId=env["FINAI_AUDIT_KEY_SECRET_ARN"])
        return secret["SecretString"].encode()
    return load_or_create_key(scratch / "finai-audit.key")


def service() -> Service:
    if "service" not in _STATE:
        _STATE["service"] = Service(task_root())
    return _STATE["service"]


def handler(event: Any, context: Any = None) -> dict[str, Any]:
    """Answer one event; never raises (bad input: 400; no usable bundle: 503; a bug: 500 with an id)."""
    try:
        svc = service()
    except Exception as exc:   # noqa: BLE001 - a broken bundle must answer, not crash the runtime
        return {"status": 503, "error": {"field": None, "message": f"model unavailable: {type(exc).__name__}: {exc}"}}
    return handle(svc, event)


def handle(svc: Service, event: Any) -> dict[str, Any]:
    """One event against a loaded service (the handler's body; tests pass their own service)."""
    started = time.perf_counter()
    try:
        m = svc.model
        req = validate(event, m.raw_index, m.cfg["products"], int(m.cfg["max_top_k"]))
        action = req["action"]
        body = svc.recommend(req, explain=True) if action == "explain" else getattr(svc, action)(req)
    except BadRequest as exc:
        return {"status": 400, "error": {"field": exc.field, "message": exc.message}}
    except Exception as exc:   # noqa: BLE001 - the caller gets an incident id, the log gets the traceback
        incident = hashlib.sha256(f"{time.time_ns()}".encode()).hexdigest()[:12]
        print(f"finai incident {incident}: {''.join(traceback.format_exception(exc))}")
        return {"status": 500, "error": {"field": None, "message": f"internal error, incident {incident}"}}
    response = {"status": 200, "action": action, "model_month": m.month, **body,
                "elapsed_ms": round((time.perf_counter() - started) * 1000, 3)}
    if "request_id" in req:
        response["request_id"] = req["request_id"]
    return response
