"""The bundle as Lambda runs it: unpacked into an empty folder, verified, and answering in a clean
interpreter that sees only the bundle and its runtime packages (``finai_assets/invoke_bundle.py``)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def invoker():
    from finai_assets import invoke_bundle

    return invoke_bundle


def test_the_bundle_answers_a_recommendation_in_a_clean_subprocess(serving_bundle, invoker, tmp_path):
    task = tmp_path / "task"
    manifest = invoker.unpack(serving_bundle["zip"], task)
    assert manifest["runtime"]["packages"] == ["numpy", "lightgbm"]
    env = {"FINAI_SERVING_STATE": str(tmp_path / "state")}
    beat = invoker.invoke_timed(task, {"action": "heartbeat"}, env=env)
    assert beat.response["status"] == 200 and beat.response["month"] == "2025-12"
    assert any(p.startswith("lightgbm ") for p in beat.packages)
    assert not any(p.split()[0] in ("dagster", "torch", "pyyaml", "boto3") for p in beat.packages), beat.packages

    answer = invoker.invoke(task, {"action": "recommend", "customer_id": "9", "locale": "ko"}, env=env)
    assert answer["status"] == 200 and answer["recommendations"], answer
    assert all(i["reason"]["text"] and i["reason"]["safety_passed"] for i in answer["recommendations"])
    bad = invoker.invoke(task, {"action": "recommend", "customer_id": "9", "top_k": "three"}, env=env)
    assert bad["status"] == 400 and bad["error"]["field"] == "top_k"
    assert (tmp_path / "state" / "finai-audit.jsonl").is_file()      # the audit record left the sandbox


def test_a_bundle_with_a_modified_student_is_refused_before_it_runs(serving_bundle, invoker, tmp_path):
    task = tmp_path / "task"
    invoker.unpack(serving_bundle["zip"], task)
    model = task / "model" / "students" / "churn_signal" / "model.txt"
    model.write_text(model.read_text().replace("shrinkage", "shrinkage ", 1))
    with pytest.raises(invoker.BundleRefused, match="churn_signal/model.txt"):
        invoker.invoke(task, {"action": "heartbeat"})


def test_the_pipelines_invoker_names_a_tampered_file(serving_bundle, tmp_path):
    import zipfile

    from finai_assets.defs.serving.invoke import invoke_bundle
    from finai_models.errors import FinAIError

    answer, cold = invoke_bundle(serving_bundle["zip"], {"action": "heartbeat"}, tmp_path / "state")
    assert answer["status"] == 200 and cold.startswith("cold start:")
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(serving_bundle["zip"]) as src, zipfile.ZipFile(tampered, "w") as out:
        for item in src.infolist():
            data = src.read(item)
            out.writestr(item, data.replace(b"shrinkage", b"shrinkagE") if item.filename.endswith("model.txt")
                         else data)
    with pytest.raises(FinAIError, match="model.txt"):
        invoke_bundle(tampered, {"action": "heartbeat"}, tmp_path / "state")
