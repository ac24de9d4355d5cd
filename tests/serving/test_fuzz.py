"""1,200 malformed events against the real handler: each gets a 400 naming the bad field, none raises.

Every event is a valid request with exactly one thing broken (a missing or mistyped field, NaN or
infinity, a huge array, an unknown action, odd unicode, a broken JSON body), so the expected field
is known and the test can check the handler named it.
"""

from __future__ import annotations

import json
import math
import random

import pytest

from finai_serving.handler import Service, handle

ODD_STRINGS = ["", " ", "x" * 65, "ü", "🙂", "a b", "\u202e5", "\ud800", "a\x00b", "５", "ＡＢＣ", "e\u0301", "\ufeff1",
               "../../etc/passwd", "1; DROP TABLE", "\n", "-" * 70]
BAD_NUMBERS = [math.nan, math.inf, -math.inf, "3", [], {}, None, True, 1e300, -(10 ** 40), 10 ** 400]


@pytest.fixture(scope="module")
def service(serving_bundle, tmp_path_factory) -> Service:
    state = tmp_path_factory.mktemp("fuzz-state")
    return Service(serving_bundle["root"], env={"FINAI_SERVING_STATE": str(state), "FINAI_AUDIT_FSYNC": "0"})


def _valid(columns: list[str]) -> dict:
    return {"action": "recommend", "customer_id": "5", "locale": "en", "top_k": 3,
            "features": {columns[0]: 41.0, columns[1]: 10.2}, "profile": {"age": 41, "risk_grade": 3}}


def _malformed(rng: random.Random, columns: list[str]):
    """(event, the field the error must name) for one randomly chosen breakage."""
    event = _valid(columns)
    kind = rng.randrange(14)
    odd = rng.choice(ODD_STRINGS)
    if kind == 0:
        del event["customer_id"]
        return event, "customer_id"
    if kind == 1:
        event["customer_id"] = rng.choice([*ODD_STRINGS, None, 5, 5.5, [], {}, True])
        return event, "customer_id"
    if kind == 2:
        event["action"] = rng.choice([odd, "RECOMMEND", "delete", None, 1, ["recommend"], {"a": 1}])
        return event, "action"
    if kind == 3:
        event["locale"] = rng.choice([odd, "fr", "KO", None, 1])
        return event, "locale"
    if kind == 4:
        event["top_k"] = rng.choice([0, -1, 11, 3.5, *BAD_NUMBERS])
        return event, "top_k"
    if kind == 5:
        event["features"] = rng.choice([[1, 2], "age=41", 7, True])
        return event, "features"
    if kind == 6:
        name = rng.choice([odd, "ag e", "AGE", "holds_everything"])
        event["features"] = {**event["features"], name: 1.0}
        return event, f"features.{name[:40]}"
    if kind == 7:
        event["features"] = {columns[2]: rng.choice([b for b in BAD_NUMBERS if b is not None])}   # None = missing
        return event, f"features.{columns[2]}"
    if kind == 8:
        key, value = rng.choice([("age", rng.choice([-1, 200, 3.2, "40", math.nan])),
                                 ("income", rng.choice([-5, math.inf, math.nan, "x", 1e13])),
                                 ("risk_grade", rng.choice([0, 6, 2.5, None])),
                                 ("messages_7d", rng.choice([-1, 10 ** 9, False])),
                                 ("owned_products", rng.choice(["credit_card", [odd], [1], ["credit_card"] * 30])),
                                 (rng.choice([odd, "Age", "ssn"]) or "?", 1)])
        event["profile"] = {key: value}
        return event, f"profile.{key[:40]}"
    if kind == 9:                                   # huge arrays
        if rng.random() < 0.5:
            event["features"] = {f"f{i}": 1.0 for i in range(200_000)}
            return event, "features"
        event["profile"] = {"owned_products": ["credit_card"] * 100_000}
        return event, "profile.owned_products"
    if kind == 10:
        name = rng.choice([odd, "customerId", "extra", "__proto__"]) or "?"
        event[name] = 1
        return event, name[:40]
    if kind == 11:
        return rng.choice([None, [], 1, "recommend", 2.5, [event]]), "event"
    if kind == 12:
        bodies = ['{"action": "recommend", "customer_id": "5", "top_k": NaN}', '{"action": ', "[" * 50_000,
                  '{"action": "recommend", "customer_id": "5", "top_k": Infinity}', "\udcff", "x" * 300_000]
        body = rng.choice(bodies)
        expected = "top_k" if "NaN" in body or "Infinity" in body else "body"
        return {"body": body}, expected
    event["action"] = "opt_out"
    event.pop("features"), event.pop("profile"), event.pop("top_k")
    event["opt_out"] = rng.choice(["yes", 1, None, 0.0, []])
    return event, "opt_out"


def test_every_malformed_event_gets_a_clear_error_and_nothing_raises(service, serving_bundle):
    rng = random.Random(20261129)
    columns = serving_bundle["columns"]
    seen = set()
    for n in range(1200):
        event, field = _malformed(rng, columns)
        response = handle(service, event)                    # must not raise
        assert response["status"] == 400, (n, field, response)
        error = response["error"]
        assert error["field"] == field, (n, event if len(json.dumps(event, default=str)) < 400 else field, error)
        assert isinstance(error["message"], str) and 5 < len(error["message"]) < 400
        seen.add(field.split(".")[0])
    assert {"customer_id", "action", "locale", "top_k", "features", "profile", "event", "body", "opt_out"} <= seen
    assert not service.audit.records(), "a rejected request must not be audited as a recommendation"
