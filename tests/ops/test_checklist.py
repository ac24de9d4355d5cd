"""The checklist: every item of configs/checklist.yaml loads, and each verdict rule, UNKNOWN included."""

import shutil

import pytest
import yaml

from finai_models.config import REPO_ROOT
from finai_models.errors import ConfigError
from finai_models.ops.checklist import Item, Verdict, judge, load_checklist


def _item(**rule) -> Item:
    return Item.model_validate({"id": "x.y", "stage": "serving", "agent": "ops", "description": "d",
                                "evidence": {"asset": "a/b", "metadata": "m"}, **rule})


def test_the_repository_checklist_loads():
    items = load_checklist(REPO_ROOT / "configs")
    assert len({i.id for i in items}) == len(items) >= 10
    assert {i.agent for i in items} == {"ops", "audit"}


@pytest.mark.parametrize(("rule", "value", "verdict"), [
    ({"direction": "max", "warn": 0.1, "fail": 0.25}, 0.05, Verdict.PASS),
    ({"direction": "max", "warn": 0.1, "fail": 0.25}, 0.2, Verdict.WARN),
    ({"direction": "max", "warn": 0.1, "fail": 0.25}, 0.3, Verdict.FAIL),
    ({"direction": "min", "warn": 0.7, "fail": 0.5}, 0.8, Verdict.PASS),
    ({"direction": "min", "warn": 0.7, "fail": 0.5}, 0.6, Verdict.WARN),
    ({"direction": "min", "warn": 0.7, "fail": 0.5}, 0.4, Verdict.FAIL),
    ({"expect": True}, True, Verdict.PASS),
    ({"expect": True}, False, Verdict.FAIL),
])
def test_each_rule_gives_its_verdict(rule, value, verdict):
    result = judge(_item(**rule), value)
    assert result.verdict is verdict and result.value == value and "a/b metadata m" in result.reason


@pytest.mark.parametrize("value", [None, float("nan"), "n/a"])
def test_missing_evidence_is_unknown_and_fails_never_green(value):
    result = judge(_item(direction="max", fail=1.0), value)
    assert result.verdict is Verdict.UNKNOWN and not result.verdict.passed
    assert Verdict.WARN.passed and Verdict.PASS.passed and not Verdict.FAIL.passed


@pytest.mark.parametrize(("rule", "message"), [
    ({"direction": "max", "fail": 1, "expect": True}, "not both"),
    ({"warn": 1, "fail": 2}, "need 'direction' and 'fail'"),
    ({"direction": "max", "warn": 3, "fail": 2}, "'warn' must come before 'fail'"),
    ({}, "not both"),
])
def test_an_item_without_one_clear_rule_is_refused(rule, message):
    with pytest.raises(ValueError, match=message):
        _item(**rule)


def test_a_bad_checklist_names_the_file_and_the_item(tmp_path):
    shutil.copytree(REPO_ROOT / "configs", tmp_path / "configs")
    path = tmp_path / "configs" / "checklist.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["items"][0]["evidense"] = doc["items"][0].pop("evidence")
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match=r"checklist.yaml: unknown key 'items\[0\]\.evidense' \(did you mean"):
        load_checklist(tmp_path / "configs")
    doc["items"][0]["evidence"] = doc["items"][0].pop("evidense")
    doc["items"].append(dict(doc["items"][0]))
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match="appears twice"):
        load_checklist(tmp_path / "configs")


def test_every_item_reads_an_asset_and_check_the_code_location_defines():
    import dagster as dg

    from finai_assets.definitions import defs

    repository = defs().get_repository_def()
    assets = set(repository.assets_defs_by_key)
    checks = {spec.key for a in repository.assets_defs_by_key.values() for spec in a.check_specs}
    checks |= set(repository.asset_checks_defs_by_key)
    for item in load_checklist(REPO_ROOT / "configs"):
        key = dg.AssetKey(item.evidence.asset.split("/"))
        assert key in assets, item.id
        if item.evidence.check:
            assert dg.AssetCheckKey(key, item.evidence.check) in checks, item.id
