"""The handler's JSON contract and its strict validation (every rejection names the field).

Request (a Lambda event, or an API Gateway / function URL event whose ``body`` holds it)::

    {"action": "recommend" | "predict" | "explain" | "heartbeat" | "opt_out",
     "customer_id": "C-000123",            # required except for heartbeat; [A-Za-z0-9_.:-], 1-64 chars
     "request_id": "...",                  # optional, echoed, <= 64 chars
     "locale": "ko" | "en",                # default "ko"
     "top_k": 3,                           # 1 .. serving.yaml max_top_k
     "features": {"age": 41, ...},         # optional raw Phase-0 features (names of the bundle's schema);
                                           #   a customer absent from the monthly batch is scored from these
     "profile": {"age": 41, "income": 38000, "risk_grade": 3, "tenure_months": 20,
                 "messages_7d": 1, "owned_products": ["credit_card"]},   # optional, overrides the batch
     "opt_out": true}                      # opt_out only: false withdraws an opt-out

Errors are ``{"status": 400, "error": {"field": "profile.age", "message": "..."}}``; nothing a
caller sends makes the handler raise.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection, Mapping
from typing import Any

ACTIONS = ("recommend", "predict", "explain", "heartbeat", "opt_out")
LOCALES = ("ko", "en")
ID = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
TOP_LEVEL = {"action", "customer_id", "request_id", "locale", "top_k", "features", "profile", "opt_out"}
PROFILE_INT = {"age": (0, 120), "risk_grade": (1, 5), "tenure_months": (0, 1200), "messages_7d": (0, 10_000)}
MAX_INCOME = 1e12
MAX_BODY = 256_000


class BadRequest(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _int(value: Any, field: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or isinstance(value, float) and (
            not math.isfinite(value) or not value.is_integer()):
        raise BadRequest(field, f"must be an integer, got {_show(value)}")
    if not lo <= value <= hi:
        raise BadRequest(field, f"must be between {lo} and {hi}, got {_show(value)}")
    return int(value)


def _number(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest(field, f"must be a number, got {_show(value)}")
    if abs(value) > 1e15 or not math.isfinite(value):
        raise BadRequest(field, f"must be a finite number, got {_show(value)}")
    return float(value)


def unwrap(event: Any) -> dict[str, Any]:
    """The request object: the event itself, or the JSON ``body`` of an HTTP event."""
    if isinstance(event, Mapping) and "body" in event and "action" not in event:
        body = event["body"]
        if not isinstance(body, str) or len(body) > MAX_BODY:
            raise BadRequest("body", f"must be a JSON string of at most {MAX_BODY} characters")
        try:
            event = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise BadRequest("body", f"is not valid JSON ({type(exc).__name__})") from None
    if not isinstance(event, Mapping):
        raise BadRequest("event", f"must be a JSON object, got {type(event).__name__}")
    return dict(event)


def validate(event: Any, raw_columns: Collection[str], products: Collection[str], max_top_k: int) -> dict[str, Any]:
    """A checked request with defaults filled in; ``BadRequest`` names the first bad field."""
    req = unwrap(event)
    unknown = sorted(str(k)[:40] for k in req if k not in TOP_LEVEL)
    if unknown:
        raise BadRequest(unknown[0], f"is not a field of this API (fields: {', '.join(sorted(TOP_LEVEL))})")
    action = req.get("action")
    if action not in ACTIONS:
        raise BadRequest("action", f"must be one of {', '.join(ACTIONS)}, got {_show(action)}")
    out: dict[str, Any] = {"action": action, "locale": req.get("locale", "ko")}
    if "request_id" in req:
        if not isinstance(req["request_id"], str) or not ID.fullmatch(req["request_id"]):
            raise BadRequest("request_id", "must be 1-64 characters of A-Z a-z 0-9 _ . : -")
        out["request_id"] = req["request_id"]
    if out["locale"] not in LOCALES:
        raise BadRequest("locale", f"must be one of {', '.join(LOCALES)}, got {_show(out['locale'])}")
    if action == "heartbeat":
        return out
    cid = req.get("customer_id")
    if not isinstance(cid, str) or not ID.fullmatch(cid):
        raise BadRequest("customer_id", f"is required: 1-64 characters of A-Z a-z 0-9 _ . : -, got {_show(cid)}")
    out["customer_id"] = cid
    if action == "opt_out":
        flag = req.get("opt_out", True)
        if not isinstance(flag, bool):
            raise BadRequest("opt_out", f"must be true or false, got {_show(flag)}")
        out["opt_out"] = flag
        return out
    out["top_k"] = _int(req.get("top_k", min(3, max_top_k)), "top_k", 1, max_top_k)
    out["features"] = _features(req.get("features"), raw_columns)
    out["profile"] = _profile(req.get("profile"), products)
    return out


def _features(features: Any, raw_columns: Collection[str]) -> dict[str, float | None]:
    if features is None:
        return {}
    if not isinstance(features, Mapping):
        raise BadRequest("features", f"must be an object of feature name -> number, got {type(features).__name__}")
    if len(features) > len(raw_columns):
        raise BadRequest("features", f"has {len(features)} entries; the schema has {len(raw_columns)} features")
    out: dict[str, float | None] = {}
    for name, value in features.items():
        if not isinstance(name, str) or name not in raw_columns:
            raise BadRequest(f"features.{str(name)[:40]}", "is not a feature of this bundle's schema")
        out[name] = None if value is None else _number(value, f"features.{name}")
    return out


def _profile(profile: Any, products: Collection[str]) -> dict[str, Any]:
    if profile is None:
        return {}
    if not isinstance(profile, Mapping):
        raise BadRequest("profile", f"must be an object, got {type(profile).__name__}")
    out: dict[str, Any] = {}
    for key, value in profile.items():
        field = f"profile.{str(key)[:40]}"
        if key in PROFILE_INT:
            out[key] = _int(value, field, *PROFILE_INT[key])
        elif key == "income":
            out[key] = _number(value, field)
            if not 0 <= out[key] <= MAX_INCOME:
                raise BadRequest(field, f"must be between 0 and {MAX_INCOME:.0e}")
        elif key == "owned_products":
            if not isinstance(value, list) or len(value) > len(products):
                raise BadRequest(field, f"must be a list of at most {len(products)} product names")
            bad = [p for p in value if not isinstance(p, str) or p not in products]
            if bad:
                raise BadRequest(field, f"{_show(bad[0])} is not a product (products.yaml)")
            out[key] = set(value)
        else:
            raise BadRequest(field, "is not a profile field (age, income, risk_grade, tenure_months, "
                                    "messages_7d, owned_products)")
    return out
