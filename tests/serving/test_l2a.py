"""L2a: Bedrock rewrites under a gated 3-vote consensus, a DynamoDB cache on moto, and L1 fallbacks.

Bedrock is a real ``bedrock-runtime`` client under botocore's Stubber (no network: an unexpected
call raises inside the client and shows up as an L1 answer). DynamoDB is a moto server on 127.0.0.1.
"""

from __future__ import annotations

import io
import json

import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber

from finai_serving.l2a import BedrockRewriter, L2aResult, ReasonCache, consensus, jaccard, rewriter_from_env
from finai_serving.safety import SafetyGate

from .conftest import clear_aws_env, fake_client

MODEL = "test.model-v1"
PRODUCT = {"id": "commuter_check", "name": {"ko": "출퇴근 체크카드", "en": "Commuter Check Card"}}
FACTS = {"spend_change_pct": 15, "top_category_1": "transit"}
L1_EN = "Your card spending rose 15% over the last three months, mostly on public transport, so we suggest " \
        "Commuter Check Card."
GOOD1 = "Over the last three months your card spending rose 15%, mostly on public transport, so we suggest " \
        "Commuter Check Card."
GOOD2 = "Over the last three months your card spending rose 15%, mostly on public transport, which is why we " \
        "suggest Commuter Check Card."
GOOD3 = "Since more of your spending now goes to public transport, up 15% lately, Commuter Check Card could fit."
CLAIM = "Your spending rose 15%, and Commuter Check Card gives you guaranteed returns on it."
INVENTED = "Your card spending rose 18% over the last three months, so we suggest Commuter Check Card."


@pytest.fixture
def reason(engine):
    r = engine.explain(PRODUCT, FACTS, {"txn_rolling_stats": 1.0}, {"temporal": 1.0}, "en", "customer-7")
    assert r.text == L1_EN and not r.fallback
    return r


@pytest.fixture
def bedrock(aws_env):
    client = fake_client("bedrock-runtime")
    sent: list[dict] = []
    client.meta.events.register("provide-client-params.bedrock-runtime.InvokeModel",
                                lambda params, **_: sent.append(json.loads(params["body"])))
    with Stubber(client) as stubber:
        yield client, stubber, sent
        stubber.assert_no_pending_responses()


def answer(stubber: Stubber, *texts: str) -> None:
    for text in texts:
        body = json.dumps({"content": [{"type": "text", "text": f' "{text}" '}], "stop_reason": "end_turn"}).encode()
        stubber.add_response("invoke_model", {"body": StreamingBody(io.BytesIO(body), len(body)),
                                              "contentType": "application/json"},
                             {"modelId": MODEL, "body": ANY, "contentType": "application/json",
                              "accept": "application/json"})


def make(client, reasons_config, **kw) -> BedrockRewriter:
    spec = reasons_config["l2a"]
    return BedrockRewriter(client, SafetyGate(reasons_config), model_id=MODEL, system=spec["system"],
                           prompt=spec["prompt"], **kw)


def test_three_passing_votes_give_l2a_with_the_medoid(bedrock, reason, reasons_config):
    client, stubber, sent = bedrock
    answer(stubber, GOOD3, GOOD1, GOOD2)
    result = make(client, reasons_config).rewrite(reason, reason.facts_used, "en")
    assert result.layer == "L2a" and result.why == "" and result.model_id == MODEL and not result.cached
    assert result.text in (GOOD1, GOOD2) and all(v.passed for v in result.votes)   # not the outlier GOOD3
    assert len(sent) == 3
    body = sent[0]
    assert body["anthropic_version"] == "bedrock-2023-05-31" and body["temperature"] == 0.7
    assert body["system"] == reasons_config["l2a"]["system"]["en"]
    prompt = body["messages"][0]["content"][0]["text"]
    assert L1_EN in prompt and "numbers you may write are: 15." in prompt and "300 characters" in prompt


def test_two_of_three_pass_and_the_first_of_a_tie_is_taken(bedrock, reason, reasons_config):
    client, stubber, _ = bedrock
    answer(stubber, CLAIM, GOOD2, GOOD1)
    result = make(client, reasons_config).rewrite(reason, reason.facts_used, "en")
    assert result.layer == "L2a" and result.text == GOOD2        # two passing: equal mean similarity
    assert [v.passed for v in result.votes] == [False, True, True]
    assert "claim:guaranteed_return" in result.votes[0].violations


@pytest.mark.parametrize("texts", [(CLAIM, GOOD1, INVENTED), (INVENTED, INVENTED, GOOD1)])
def test_one_of_three_passing_keeps_l1_and_says_why(bedrock, reason, reasons_config, texts):
    client, stubber, _ = bedrock
    answer(stubber, *texts)
    result = make(client, reasons_config).rewrite(reason, reason.facts_used, "en")
    assert result.layer == "L1" and result.text == L1_EN
    assert result.why.startswith("1 of 3 rewrites passed the Safety Gate, 2 needed") and "number:18" in result.why


def test_min_agree_one_accepts_a_single_passing_vote(bedrock, reason, reasons_config):
    client, stubber, _ = bedrock
    answer(stubber, CLAIM, INVENTED, GOOD3)
    result = make(client, reasons_config, min_agree=1).rewrite(reason, reason.facts_used, "en")
    assert result.layer == "L2a" and result.text == GOOD3


def test_consensus_picks_the_medoid():
    assert jaccard("a b c", "a b c") == 1.0 and jaccard("a b", "c d") == 0.0
    assert consensus(["x y z", "a b c d", "a b c e"]) == 1
    assert consensus(["only"]) == 0


def test_a_bedrock_error_keeps_l1_and_names_it(bedrock, reason, reasons_config):
    client, stubber, _ = bedrock
    stubber.add_client_error("invoke_model", service_error_code="ThrottlingException", http_status_code=429)
    result = make(client, reasons_config).rewrite(reason, reason.facts_used, "en")
    assert result == L2aResult(L1_EN, "L1", "Bedrock error: ThrottlingException", MODEL)


def test_an_unreadable_bedrock_body_keeps_l1(bedrock, reason, reasons_config):
    client, stubber, _ = bedrock
    body = b'{"message": "no content here"}'
    stubber.add_response("invoke_model", {"body": StreamingBody(io.BytesIO(body), len(body)),
                                          "contentType": "application/json"})
    result = make(client, reasons_config).rewrite(reason, reason.facts_used, "en")
    assert result.layer == "L1" and result.why == "Bedrock error: KeyError"


def test_safe_and_cold_start_texts_are_not_rewritten(bedrock, engine, reasons_config):
    client, _, _ = bedrock
    cold = engine.explain(PRODUCT, {}, {}, {"deepfm": 1.0}, "en", "new")
    result = make(client, reasons_config).rewrite(cold, cold.facts_used, "en")
    assert result.layer == "L1" and "cold-start" in result.why and result.text == cold.text


def test_guards_on_votes_and_locale(bedrock, reason, reasons_config):
    client, _, _ = bedrock
    for votes, min_agree in [(0, 0), (3, 4), (3, 0)]:
        with pytest.raises(ValueError, match="min_agree"):
            make(client, reasons_config, votes=votes, min_agree=min_agree)
    with pytest.raises(ValueError, match="locale"):
        make(client, reasons_config).rewrite(reason, reason.facts_used, "ko")


class Clock:
    def __init__(self, now: float = 1_750_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_the_cache_serves_a_second_call_without_bedrock(bedrock, reason, reasons_config, cache_table):
    client, stubber, _ = bedrock
    dynamodb, table = cache_table
    clock = Clock()
    rewriter = make(client, reasons_config, cache=ReasonCache(dynamodb, table, 24, clock))
    answer(stubber, GOOD1, GOOD2, GOOD1)
    first = rewriter.rewrite(reason, reason.facts_used, "en")
    assert first.layer == "L2a" and not first.cached and first.text == GOOD1
    items = dynamodb.scan(TableName=table)["Items"]
    assert len(items) == 1
    item = items[0]
    assert item["pk"]["S"] == reason.customer_ref and "customer-7" not in json.dumps(item)
    assert item["sk"]["S"].startswith("commuter_check#en#") and len(item["sk"]["S"].split("#")[2]) == 16
    assert int(item["ttl"]["N"]) == int(clock.now + 24 * 3600) and item["model_id"]["S"] == MODEL
    second = rewriter.rewrite(reason, reason.facts_used, "en")      # no stubbed response left
    assert second == L2aResult(GOOD1, "L2a", "", MODEL, cached=True)
    clock.now += 25 * 3600                                         # expired (DynamoDB deletes lazily)
    answer(stubber, GOOD2, GOOD2, GOOD1)
    third = rewriter.rewrite(reason, reason.facts_used, "en")
    assert third.layer == "L2a" and not third.cached and third.text == GOOD2


def test_the_cache_key_follows_the_l1_text(engine, reason):
    other = engine.explain(PRODUCT, {**FACTS, "spend_change_pct": 16}, {"txn_rolling_stats": 1.0},
                           {"temporal": 1.0}, "en", "customer-7")
    assert ReasonCache.key(other)["pk"] == ReasonCache.key(reason)["pk"]
    assert ReasonCache.key(other)["sk"] != ReasonCache.key(reason)["sk"]


def test_a_poisoned_cache_entry_is_gated_and_replaced(bedrock, reason, reasons_config, cache_table):
    client, stubber, _ = bedrock
    dynamodb, table = cache_table
    cache = ReasonCache(dynamodb, table, 24)
    cache.put(reason, "Commuter Check Card is risk-free with 99% returns.", "someone")
    answer(stubber, GOOD1, GOOD1, GOOD2)
    result = make(client, reasons_config, cache=cache).rewrite(reason, reason.facts_used, "en")
    assert result.layer == "L2a" and not result.cached and result.text == GOOD1
    assert cache.get(reason) == (GOOD1, MODEL)


def test_a_missing_cache_table_keeps_l1_without_calling_bedrock(bedrock, reason, reasons_config, moto_endpoint):
    client, _, sent = bedrock
    cache = ReasonCache(fake_client("dynamodb", moto_endpoint), "no-such-table", 24)
    result = make(client, reasons_config, cache=cache).rewrite(reason, reason.facts_used, "en")
    assert result.layer == "L1" and result.why == "DynamoDB error: ResourceNotFoundException" and sent == []


def test_a_failed_cache_write_keeps_the_accepted_rewrite(bedrock, reason, reasons_config):
    client, stubber, _ = bedrock
    dynamodb = fake_client("dynamodb")
    with Stubber(dynamodb) as db:
        db.add_response("get_item", {})
        db.add_client_error("put_item", service_error_code="ProvisionedThroughputExceededException")
        answer(stubber, GOOD1, GOOD1, GOOD2)
        result = make(client, reasons_config, cache=ReasonCache(dynamodb, "t", 24)).rewrite(
            reason, reason.facts_used, "en")
        db.assert_no_pending_responses()
    assert result.layer == "L2a" and result.text == GOOD1
    assert result.why == "L2a used; cache write failed: DynamoDB error: ProvisionedThroughputExceededException"


def test_rewriter_from_env_is_off_unless_asked(monkeypatch, aws_env, reasons_config):
    monkeypatch.delenv("FINAI_L2A", raising=False)
    assert rewriter_from_env(reasons_config) == (None, "disabled")
    monkeypatch.setenv("FINAI_L2A", "openai")
    assert rewriter_from_env(reasons_config) == (None, "disabled")


def test_rewriter_from_env_without_credentials(monkeypatch, tmp_path, reasons_config):
    clear_aws_env(monkeypatch, tmp_path)
    monkeypatch.setenv("FINAI_L2A", "bedrock")
    assert rewriter_from_env(reasons_config) == (None, "no AWS credentials")


def test_rewriter_from_env_with_credentials_and_a_bad_profile(monkeypatch, aws_env, reasons_config):
    monkeypatch.setenv("FINAI_L2A", "bedrock")
    monkeypatch.setenv("FINAI_REASON_CACHE_TABLE", "my-cache")
    rewriter, why = rewriter_from_env(reasons_config)
    assert why == "bedrock" and isinstance(rewriter, BedrockRewriter)
    assert rewriter.model_id == reasons_config["l2a"]["model_id"] and (rewriter.votes, rewriter.min_agree) == (3, 2)
    assert rewriter.cache is not None and rewriter.cache.table == "my-cache"
    monkeypatch.setenv("FINAI_REASON_CACHE_TABLE", "")
    assert rewriter_from_env(reasons_config)[0].cache is None
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    assert rewriter_from_env(reasons_config) == (None, "L2a setup error: ProfileNotFound")
