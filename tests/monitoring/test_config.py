import re
from pathlib import Path

import pytest
import yaml

from finai_models.config import load_settings
from finai_models.errors import ConfigError
from finai_models.monitoring.config import monitoring_config


def _edit(path: Path, edit) -> None:
    data = yaml.safe_load(path.read_text())
    edit(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_the_repository_config_loads(settings):
    cfg = monitoring_config(settings)
    assert cfg["drift"]["warning"] < cfg["drift"]["critical"]
    age = cfg["fairness"]["attributes"]["age_band"]
    assert age["reference"] in age["labels"] and len(age["labels"]) == len(age["edges"]) + 1
    assert cfg["automation"]["schedule_cron"] == "0 3 2 * *" and cfg["alerts"]["path"] == "alerts/alerts.jsonl"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["drift"].update(warning=0.3), r"'drift\.warning' must satisfy 0 < warning < critical"),
        (lambda d: d["drift"].update(critical="high"), r"'drift\.critical' must be a number"),
        (lambda d: d["drift"].update(bins=1), r"'drift\.bins' must be at least 2"),
        (lambda d: d["drift"].update(retrain_after_months=0), r"'drift\.retrain_after_months' must be at least 1"),
        (lambda d: d["drift"].pop("floor"), r"missing key 'drift\.floor'"),
        (lambda d: d["fairness"]["attributes"]["age_band"].update(reference="36-49"),
         r"'fairness\.attributes\.age_band\.reference' is '36-49', not one of the labels"),
        (lambda d: d["fairness"]["attributes"]["age_band"].update(edges=[35, 65, 50]),
         r"'fairness\.attributes\.age_band\.edges' must be strictly increasing"),
        (lambda d: d["fairness"]["attributes"]["age_band"]["labels"].pop(),
         r"'fairness\.attributes\.age_band\.labels' needs len\(edges\) \+ 1 = 4 labels"),
        (lambda d: d["fairness"].update(disparate_impact=[1.1, 1.25]),
         r"'fairness\.disparate_impact' must be \[lo, hi\] with lo < 1 < hi"),
        (lambda d: d["fairness"].update(max_parity_difference=1.5), r"'fairness\.max_parity_difference' must lie in"),
        (lambda d: d["fairness"].update(confidence=1.0), r"'fairness\.confidence' must lie in \(0, 1\)"),
        (lambda d: d["fairness"].update(min_group=0), r"'fairness\.min_group' must be at least 1"),
        (lambda d: d["automation"].update(schedule_cron="0 3 2 * * *"), r"'automation\.schedule_cron' must have 5"),
        (lambda d: d["automation"].update(timezone="Asia/Atlantis"), r"'automation\.timezone'"),
    ],
)
def test_a_broken_monitoring_config_names_file_and_key(config_copy, edit, message):
    path = config_copy / "monitoring.yaml"
    _edit(path, edit)
    with pytest.raises(ConfigError) as info:
        monitoring_config(load_settings(config_copy))
    text = str(info.value)
    assert re.search(message, text), text
    assert str(path) in text and "\n" not in text


def test_a_missing_monitoring_config_is_named(config_copy):
    (config_copy / "monitoring.yaml").unlink()
    with pytest.raises(ConfigError, match=re.escape(str(config_copy / "monitoring.yaml"))):
        monitoring_config(load_settings(config_copy))
