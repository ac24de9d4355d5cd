"""The handler on a real bundle: recommendations with per-customer reasons, the constraint engine,
the kill switch and its rule fallback, opt-outs, explanation requests, the audit chain, integrity."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from finai_serving.audit import AuditLog, AuditTampered
from finai_serving.bundle import BundleError, build_bundle
from finai_serving.controls import KillSwitch
from finai_serving.handler import Service, handle
from finai_serving.model import BundleIntegrityError, ServingModel
from finai_serving.safety import number_values


@pytest.fixture(scope="module")
def service(serving_bundle, tmp_path_factory) -> Service:
    state = tmp_path_factory.mktemp("serving-state")
    return Service(serving_bundle["root"], env={"FINAI_SERVING_STATE": str(state), "FINAI_AUDIT_FSYNC": "0"})


def ask(svc: Service, **event) -> dict:
    response = handle(svc, event)
    assert response["status"] == 200, response
    return response


def facts_of(svc: Service, customer: str) -> dict:
    return svc.model.customer(customer, None).facts


def test_heartbeat_names_the_bundle_and_its_students(service):
    r = ask(service, action="heartbeat")
    assert r["month"] == "2025-12" and len(r["tasks"]) == 13 and r["batch_customers"] == 600
    assert r["l2a"] != "bedrock"            # no credentials here: L1 only, and it says why


def test_a_recommendation_is_ranked_eligible_and_explained_with_that_customers_own_numbers(service):
    texts = {}
    for customer in [str(c) for c in range(40)]:
        r = ask(service, action="recommend", customer_id=customer, locale="en")
        assert r["customer"] == "batch" and r["path"] == "model"
        assert 1 <= len(r["recommendations"]) <= 3
        scores = [i["score"] for i in r["recommendations"]]
        assert scores == sorted(scores, reverse=True)
        owned = service.model.customer(customer, None).owned
        facts = facts_of(service, customer)
        for item in r["recommendations"]:
            product = next(p for p in service.model.cfg["catalogue"] if p["id"] == item["product_id"])
            assert not owned.intersection(product["owned_if"]), "an owned product was recommended"
            assert product["risk"] == 1, "no risk grade on file: only assessment-free products (fail-closed)"
            reason = item["reason"]
            assert reason["layer"] == "L1" and reason["safety_passed"]
            for name, printed in reason["facts_used"].items():     # printed as that customer's own value
                assert name in facts and number_values(printed) == number_values(str(facts[name])), (name, facts)
            allowed = set().union(*(number_values(str(v)) for v in facts.values())) if facts else set()
            assert number_values(reason["text"]) <= allowed | number_values(item["name"]), (reason["text"], facts)
            texts[customer] = texts.get(customer, ()) + (reason["text"],)
    assert len(set(texts.values())) >= 10, "reasons barely differ between customers"


def test_two_customers_with_different_histories_get_different_reasons(service):
    first = [ask(service, action="recommend", customer_id=c, locale="ko") for c in ("1", "2", "3", "4")]
    facts = [facts_of(service, c) for c in ("1", "2", "3", "4")]
    assert len({json.dumps(f, sort_keys=True) for f in facts}) == 4
    reasons = [r["recommendations"][0]["reason"] for r in first]
    assert len({r["text"] for r in reasons}) >= 3, reasons
    for r, f in zip(reasons, facts, strict=True):
        assert all(k in f for k in r["facts_used"])


def test_request_features_score_like_the_batch_row_and_unknown_customers_get_the_cold_start(serving_bundle, service):
    raw = dict(zip(serving_bundle["columns"], serving_bundle["raw"][3].tolist(), strict=True))
    batch = ask(service, action="predict", customer_id="3")
    fresh = ask(service, action="predict", customer_id="not-in-batch", features=raw)
    assert batch["customer"] == "batch" and fresh["customer"] == "request"
    for task, value in batch["predictions"].items():
        np.testing.assert_allclose(fresh["predictions"][task], value, rtol=1e-6, atol=1e-9)

    explained = ask(service, action="explain", customer_id="not-in-batch", features=raw, locale="en")
    gates = explained["recommendations"][0]["evidence"]["gate_weights"]
    assert gates and abs(sum(gates.values()) - 1) < 1e-6, "the gate student must stand in for the batch"

    cold = ask(service, action="recommend", customer_id="new-customer", locale="en")
    assert cold["customer"] == "cold_start" and cold["path"] == "rule"
    assert cold["recommendations"] and all(not number_values(i["reason"]["text"]) - number_values(i["name"])
                                           for i in cold["recommendations"])


def test_compiled_and_numpy_trees_give_the_boosters_scores(serving_bundle):
    scorers = {s: ServingModel.load(serving_bundle["root"], scorer=s) for s in ("compiled", "trees", "booster")}
    assert scorers["compiled"].compiled is not None
    for customer in [str(c) for c in range(0, 600, 7)]:
        out = {s: m.outputs(m.customer(customer, None).x, set())[0] for s, m in scorers.items()}
        for task, value in out["booster"].items():
            np.testing.assert_array_equal(out["compiled"][task], value, err_msg=task)
            np.testing.assert_allclose(out["trees"][task], value, rtol=0, atol=1e-12, err_msg=task)


def test_precomputed_contributions_equal_live_tree_shap(serving_bundle):
    m = ServingModel.load(serving_bundle["root"])
    raw = dict(zip(serving_bundle["columns"], serving_bundle["raw"][17].tolist(), strict=True))
    batch, live = m.customer("17", None), m.customer("someone-new", raw)
    assert batch.row is not None and live.row is None
    for key in m.contrib_index:
        task, _, cls = key.partition("[")
        cls = int(cls[:-1]) if cls else None
        a, b = m.group_contributions(batch, task, cls), m.group_contributions(live, task, cls)
        assert a.keys() == b.keys() and a, key
        np.testing.assert_allclose([a[g] for g in a], [b[g] for g in a], rtol=1e-5, atol=1e-6, err_msg=key)


def test_constraints_fatigue_suitability_and_owned_products(service):
    tired = handle(service, {"action": "recommend", "customer_id": "5", "profile": {"messages_7d": 3}})
    assert tired["recommendations"] == [] and tired["blocked"].startswith("contact fatigue")

    everything = {"action": "explain", "customer_id": "5", "locale": "en", "top_k": 10}
    unassessed = ask(service, **everything)
    why = {w["product_id"]: w["why"] for w in unassessed["withheld"]}
    assert "fail-closed" in why.get("investment_fund", "fail-closed") and "investment_fund" not in \
        {i["product_id"] for i in unassessed["recommendations"]}

    assessed = ask(service, **everything, profile={"risk_grade": 5, "age": 40, "income": 90000, "owned_products": []})
    shown = {i["product_id"] for i in assessed["recommendations"]}
    assert "investment_fund" in shown and "personal_loan" in shown          # eligible once assessed
    senior = ask(service, **everything, profile={"risk_grade": 5, "age": 70, "income": 90000, "owned_products": []})
    assert {i["product_id"] for i in senior["recommendations"]}.isdisjoint({"investment_fund", "personal_loan",
                                                                           "pension_plan"})
    owns = ask(service, **everything, profile={"owned_products": ["e_account", "short_term_deposit"]})
    assert {i["product_id"] for i in owns["recommendations"]}.isdisjoint({"e_account", "term_deposit"})


def test_kill_switch_hands_tasks_to_the_rule_fallback(service, monkeypatch):
    normal = ask(service, action="recommend", customer_id="8", locale="en", top_k=5)
    monkeypatch.setattr(service, "kill_switch", KillSwitch({"FINAI_KILL_SWITCH": "task:will_acquire_deposits"}))
    one_off = ask(service, action="explain", customer_id="8", locale="en", top_k=10, profile={"owned_products": []})
    assert one_off["served"]["will_acquire_deposits"] == "kill_switch"
    deposit = next(i for i in one_off["recommendations"] if i["product_id"] == "term_deposit")
    assert deposit["score_components"]["will_acquire_deposits"] == 0.5      # the population's middle: no push

    monkeypatch.setattr(service, "kill_switch", KillSwitch({"FINAI_KILL_SWITCH": "global"}))
    ruled = ask(service, action="recommend", customer_id="8", locale="en", top_k=5,
                profile={"risk_grade": 3, "age": 40, "income": 50000, "owned_products": []})
    assert ruled["path"] == "rule" and set(ruled["served"].values()) == {"kill_switch"}
    assert all("popularity" in i["score_components"] for i in ruled["recommendations"])
    assert ruled["recommendations"] != normal["recommendations"]
    # the fallback's own rules: a customer whose spending rose >= 10% gets the card nudged up
    facts = facts_of(service, "8")
    card = next(i for i in ruled["recommendations"] if i["product_id"] == "credit_card") \
        if any(i["product_id"] == "credit_card" for i in ruled["recommendations"]) else None
    if facts.get("spend_change_pct", -100) >= 10:
        assert card is not None and any(k.startswith("rule: spend_change_pct") for k in card["score_components"])

    monkeypatch.setattr(service.kill_switch, "table", "finai-kill-switch")      # unreadable table: fail closed
    monkeypatch.setattr(service.kill_switch, "client", object())
    service.kill_switch._cached = (-1e18, set())
    assert ask(service, action="recommend", customer_id="8")["path"] == "rule"


def test_opt_out_is_honoured_and_audited(service):
    assert ask(service, action="recommend", customer_id="11")["recommendations"]
    assert ask(service, action="opt_out", customer_id="11")["opted_out"] is True
    blocked = ask(service, action="recommend", customer_id="11")
    assert blocked["recommendations"] == [] and blocked["blocked"] == "ai_opt_out"
    assert ask(service, action="explain", customer_id="11")["blocked"] == "ai_opt_out"
    ask(service, action="opt_out", customer_id="11", opt_out=False)
    assert ask(service, action="recommend", customer_id="11")["recommendations"]
    events = [r["event"] for r in service.audit.records()]
    assert {"opt_out", "recommendation_blocked", "opt_out_withdrawn", "explanation_request"} <= set(events)
    assert all(len(r["customer"]) == 64 and r["customer"] != "11" for r in service.audit.records())  # HMACs only


def test_changing_one_byte_of_one_audit_record_is_detected(service, tmp_path):
    ask(service, action="recommend", customer_id="12")
    log = tmp_path / "audit.jsonl"
    shutil.copyfile(service.audit.path, log)
    key = tmp_path / "audit.key"
    key.write_bytes(service.key)
    copy = AuditLog(log, service.key)
    assert copy.verify() >= 1
    cli = [sys.executable, "-m", "finai_serving.audit", "verify", str(log), "--key-file", str(key)]
    assert subprocess.run(cli, capture_output=True, text=True).returncode == 0
    data = bytearray(log.read_bytes())
    at = data.index(b'"score') + 12
    data[at] = ord("9") if data[at] != ord("9") else ord("8")
    log.write_bytes(bytes(data))
    with pytest.raises(AuditTampered, match="line"):
        copy.verify()
    done = subprocess.run(cli, capture_output=True, text=True)
    assert done.returncode == 1 and "TAMPERED" in done.stdout


def test_a_modified_bundle_file_stops_the_cold_start(serving_bundle, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(serving_bundle["root"], copy)
    target = copy / "model" / "students" / "churn_signal" / "student.json"
    target.write_text(target.read_text().replace('"format": 1', '"format":  1'))
    with pytest.raises(BundleIntegrityError, match="churn_signal/student.json"):
        ServingModel.load(copy)


def test_a_bundle_is_built_only_from_passing_students(serving_bundle, tmp_path):
    passed = {**serving_bundle["passed"], "churn_signal": False}
    with pytest.raises(BundleError, match="churn_signal"):
        build_bundle(serving_bundle["students"], passed, Path(serving_bundle["root"]) / "model", {}, tmp_path / "x.zip",
                     {})
    assert not (tmp_path / "x.zip").exists()


def test_l2a_wiring_uses_a_gated_rewrite_and_says_why_when_it_cannot(serving_bundle, service, monkeypatch, tmp_path):
    from finai_serving.l2a import L2aResult

    from .conftest import clear_aws_env

    class Polisher:                     # stands in for BedrockRewriter (tested against botocore stubs)
        def rewrite(self, reason, facts, locale):
            assert facts == reason.facts_used
            return L2aResult(f"(polished) {reason.text}", "L2a", "", "test-model")

    monkeypatch.setattr(service, "rewriter", Polisher())
    item = ask(service, action="recommend", customer_id="30", locale="en")["recommendations"][0]
    assert item["reason"]["layer"] == "L2a" and item["reason"]["text"].startswith("(polished) ")
    assert item["reason"]["l2a"]["used"] is True

    clear_aws_env(monkeypatch, tmp_path)
    env = {"FINAI_SERVING_STATE": str(tmp_path / "state"), "FINAI_AUDIT_FSYNC": "0", "FINAI_L2A": "bedrock"}
    offline = Service(serving_bundle["root"], env=env)
    assert offline.rewriter is None and offline.l2a_why == "no AWS credentials"
    item = ask(offline, action="recommend", customer_id="30", locale="en")["recommendations"][0]
    assert item["reason"]["layer"] == "L1" and item["reason"]["l2a"] == {"used": False, "why": "no AWS credentials"}


def test_the_handlers_incremental_audit_writer_checks_its_own_tail(tmp_path):
    path, key = tmp_path / "audit.jsonl", b"k" * 32
    writer = AuditLog(path, key, fsync=False, incremental=True)
    for i in range(3):
        writer.append("recommendation", n=i)
    AuditLog(path, key).append("opt_out", n=99)                 # another writer: verified, then extended
    assert writer.append("recommendation", n=3)["seq"] == 5
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines[:-1], lines[-1].replace('"n": 3', '"n": 4')]) + "\n")   # same length
    with pytest.raises(AuditTampered, match="line 5 was modified"):
        writer.append("recommendation", n=5)
