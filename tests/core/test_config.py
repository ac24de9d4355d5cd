import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from finai_models.config import load_settings
from finai_models.errors import ConfigError


def test_default_configs_describe_the_spec(settings):
    assert len(settings.tasks) == 13
    assert len(settings.feature_groups) == 17
    assert sum(g.dim for g in settings.feature_groups) == 1211
    assert len(settings.products) == 24
    assert len(settings.mcc.l1_names) == 10 and len(settings.mcc.l2_names) == 30
    assert len(settings.nba_groups) == 6 and len(settings.acquire_groups) == 5
    assert all(t.window[0] >= 1 for t in settings.tasks), "every label window starts after the snapshot"
    assert {t.type for t in settings.tasks} == {"binary", "multiclass", "regression"}


def _edit(path: Path, edit) -> None:
    data = yaml.safe_load(path.read_text())
    edit(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.mark.parametrize(
    ("file", "edit", "message"),
    [
        ("pipeline.yaml", lambda d: d["paths"].pop("warehouse"), r"missing key 'paths\.warehouse'"),
        ("pipeline.yaml", lambda d: d["paths"].update(warehuose=d["paths"].pop("warehouse")),
         r"unknown key 'paths\.warehuose' \(did you mean 'paths\.warehouse'\?\)"),
        ("datasets/synthetic.yaml", lambda d: d["generator"]["dynamics"].pop("wealth_trend"),
         r"missing key 'generator\.dynamics\.wealth_trend'"),
        ("datasets/synthetic.yaml", lambda d: d["generator"].update(customers="many"),
         r"'generator\.customers' must be int"),
        ("datasets/synthetic.yaml", lambda d: d["months"].update(start="2023-13"), r"must be a month YYYY-MM"),
        ("tasks.yaml", lambda d: d["tasks"][0].update(window=[0, 3]), r"labels start after t"),
        ("products.yaml", lambda d: d["acquire_groups"]["lending"].append("yacht"), r"unknown product 'yacht'"),
        ("feature_groups.yaml", lambda d: d["groups"][0].pop("dim"), r"missing key 'groups\[0\]\.dim'"),
    ],
)
def test_bad_config_names_key_and_file(config_copy, file, edit, message):
    _edit(config_copy / file, edit)
    with pytest.raises(ConfigError) as info:
        load_settings(config_copy)
    text = str(info.value)
    assert re.search(message, text), text
    assert file in text
    assert "\n" not in text


def test_unknown_dataset_lists_known_ones(config_copy):
    with pytest.raises(ConfigError, match="known: santander, synthetic"):
        load_settings(config_copy, dataset="kaggle")


def test_cli_reports_bad_config_in_one_line(config_copy, tmp_path):
    _edit(config_copy / "pipeline.yaml", lambda d: d.pop("raw_checks"))
    proc = subprocess.run(
        [sys.executable, "-m", "finai_models.cli", "--config-dir", str(config_copy), "generate",
         "--customers", "10", "--months", "2", "--out", str(tmp_path / "out")],
        capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "missing key 'raw_checks'" in proc.stderr and "pipeline.yaml" in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("file", "edit", "message"),
    [
        ("serving.yaml", lambda d: d["catalogue"][0]["signals"].append({"task": "will_churn", "weight": 1}),
         r"reads task 'will_churn', not in tasks\.yaml"),
        ("serving.yaml", lambda d: d["catalogue"][0]["signals"].append({"task": "nba_primary", "class": 9,
                                                                         "weight": 1}), r"classes 0\.\.6"),
        ("serving.yaml", lambda d: d["catalogue"][1].update(owned_if=["yacht"]), r"not in products\.yaml"),
        ("reasons.yaml", lambda d: d["templates"]["activity"][0].update(en="You paid {no_such_fact} times."),
         r"no_such_fact"),
    ],
)
def test_a_bad_serving_config_fails_when_the_bundle_is_built(config_copy, file, edit, message):
    from finai_models.serving.config import serving_config

    _edit(config_copy / file, edit)
    with pytest.raises(ConfigError) as info:
        serving_config(load_settings(config_copy))
    assert re.search(message, str(info.value)), str(info.value)
    assert file in str(info.value)


def _rename(block: dict, old: str, new: str) -> None:
    block[new] = block.pop(old)


@pytest.mark.parametrize(
    ("file", "edit", "message"),
    [
        ("teacher.yaml", lambda d: _rename(d["model"], "width", "widht"),
         r"unknown key 'model\.widht' \(did you mean 'model\.width'\?\)"),
        ("distill.yaml", lambda d: _rename(d["fidelity"]["tier1"]["binary"], "max_ece", "max_ecee"),
         r"unknown key 'fidelity\.tier1\.binary\.max_ecee' \(did you mean 'fidelity\.tier1\.binary\.max_ece'\?\)"),
        ("serving.yaml", lambda d: _rename(d["catalogue"][0]["signals"][1], "class", "klass"),
         r"unknown key 'catalogue\[0\]\.signals\[1\]\.klass' \(did you mean 'catalogue\[0\]\.signals\[1\]\.class'\?\)"),
        ("monitoring.yaml", lambda d: _rename(d["automation"], "timezone", "time_zone"),
         r"unknown key 'automation\.time_zone' \(did you mean 'automation\.timezone'\?\)"),
    ],
)
def test_a_misspelt_key_in_a_component_config_is_named(config_copy, file, edit, message):
    from finai_models.distill.config import distill_config
    from finai_models.monitoring.config import monitoring_config
    from finai_models.serving.config import serving_config
    from finai_models.teacher.run import teacher_config

    loaders = {"teacher.yaml": teacher_config, "distill.yaml": distill_config, "serving.yaml": serving_config,
               "monitoring.yaml": monitoring_config}
    _edit(config_copy / file, edit)
    with pytest.raises(ConfigError) as info:
        loaders[file](load_settings(config_copy))
    text = str(info.value)
    assert re.search(message, text), text
    assert str(config_copy / file) in text and "\n" not in text


def test_settings_are_read_once_until_a_file_changes(config_copy, monkeypatch):
    import finai_models.config_base as base

    first = load_settings(config_copy)

    def no_reading(path):
        raise AssertionError(f"{path} was read again")

    with monkeypatch.context() as m:
        m.setattr(base, "read_yaml", no_reading)
        assert load_settings(config_copy) is first

    _edit(config_copy / "pipeline.yaml", lambda d: d["training_set"].update(max_rows_per_month=7))
    changed = load_settings(config_copy)
    assert changed is not first and changed.pipeline.training_set.max_rows_per_month == 7
    with pytest.raises(ValueError, match="frozen"):
        changed.pipeline.training_set.max_rows_per_month = 8      # a cached object cannot be changed under others
