"""The benchmarks measure the real thing: the teacher's code columns are embedded, bundles report their routes."""

import json
import zipfile

import numpy as np

from benchmarks.serving import task_routes
from benchmarks.teacher import build_spec, random_data


def test_teacher_benchmark_embeds_the_code_columns_as_training_does():
    spec = build_spec()
    vocab = {v.name: v for v in spec.codes.vocabularies}
    assert len(vocab["lag_mcc"].columns) == 200 and vocab["lag_mcc"].size == 51
    assert len(vocab["lag_hour"].columns) == 200 and {"gmm_cluster_id", "region_code"} <= set(vocab)
    x, _, _ = random_data(spec, 64)
    codes = x.numpy()[:, list(spec.codes.code_columns)]
    assert np.array_equal(codes, np.round(codes)) and codes.min() >= 0
    assert all(x.numpy()[:, list(v.columns)].max() < v.size for v in spec.codes.vocabularies)


def test_serving_benchmark_reads_each_tasks_route(tmp_path):
    bundle = tmp_path / "finai-2025-12.zip"
    with zipfile.ZipFile(bundle, "w") as z:
        for task, route in (("churn_signal", "distill"), ("next_mcc", "direct"), ("nba_primary", "rule")):
            z.writestr(f"model/students/{task}/student.json", json.dumps({"route": route}))
        z.writestr("model/serving.json", "{}")
    routes = task_routes(bundle)
    assert routes == {"churn_signal": "distill", "nba_primary": "rule", "next_mcc": "direct"}
