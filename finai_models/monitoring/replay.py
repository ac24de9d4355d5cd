"""Ask a month's bundle, as the Lambda handler, for every batch customer's recommendation.

Fairness and prediction drift are judged on what customers would actually be shown, so the
replay goes through ``finai_serving.handler.handle`` (constraints, kill switch, top-k) rather
than re-deriving scores. The bundle is verified file by file when it is loaded; the handler's
audit log and opt-outs go to a throwaway folder, because a replay contacts nobody.
"""

from __future__ import annotations

import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from finai_models.errors import FinAIError
from finai_models.progress import progress_bar


@dataclass
class Replay:
    customer_id: np.ndarray                      # str, one per batch customer
    products: list[list[str]]                    # each customer's recommended products, in rank order
    path: list[str]                              # "model" | "rule"
    outputs: dict[str, np.ndarray]               # task -> (n,) or (n, classes)
    catalogue: list[dict[str, Any]]
    model_month: str


def replay_bundle(bundle: Path, locale: str = "en", progress: bool = False) -> Replay:
    """Every batch customer's ``recommend`` and ``predict`` answers from the unpacked ``bundle``."""
    from finai_serving.handler import Service, handle

    with tempfile.TemporaryDirectory(prefix="finai-replay-") as tmp:
        root = Path(tmp) / "task"
        with zipfile.ZipFile(bundle) as z:
            z.extractall(root)
        svc = Service(root, env={"FINAI_SERVING_STATE": str(Path(tmp) / "state"), "FINAI_AUDIT_FSYNC": "0"})
        ids = sorted(svc.model.batch_ids, key=lambda c: svc.model.batch_ids[c])
        products, paths, outputs = [], [], {t["name"]: [] for t in svc.model.tasks}
        with progress_bar(len(ids), "replay", "customer", enabled=progress) as bar:
            for customer in ids:
                answer = handle(svc, {"action": "recommend", "customer_id": customer, "locale": locale})
                if answer.get("status") != 200:
                    raise FinAIError(f"the bundle {bundle.name} answered {str(answer)[:300]} for customer {customer}")
                products.append([i["product_id"] for i in answer["recommendations"]])
                paths.append(answer["path"])
                predicted = handle(svc, {"action": "predict", "customer_id": customer})["predictions"]
                for task, value in predicted.items():
                    outputs[task].append(value)
                bar.update(1)
        return Replay(np.asarray(ids), products, paths, {t: np.asarray(v, np.float64) for t, v in outputs.items()},
                      svc.model.cfg["catalogue"], svc.model.manifest.get("model_month", svc.model.month))


def qualified(catalogue: list[Mapping[str, Any]], labels: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per product, whether the customer turned out to want it: the label of its heaviest signal
    (binary: 1; multiclass: that class). NaN where the label window has not closed yet."""
    out = {}
    for product in catalogue:
        signal = max(product["signals"], key=lambda s: float(s["weight"]))
        label = labels.get(signal["task"])
        if label is None or signal.get("direction", 1) == -1:
            continue
        label = np.asarray(label, np.float64)
        hit = label == int(signal["class"]) if "class" in signal else label >= 0.5
        out[product["id"]] = np.where(np.isnan(label), np.nan, hit.astype(np.float64))
    return out


def replay_table(replay: Replay, attributes: Mapping[str, np.ndarray], age: np.ndarray,
                 outcome: Mapping[str, np.ndarray]) -> pa.Table:
    """One row per customer: protected attributes, recommended and qualified flags per product, and
    the 13 task outputs (multiclass as a list) - what the fairness checks and drift read."""
    ids = [p["id"] for p in replay.catalogue]
    columns: dict[str, Any] = {"customer_id": replay.customer_id.astype(str), "age": age,
                               **{k: np.asarray(v).astype(str) for k, v in attributes.items()},
                               "path": replay.path, "products": replay.products}
    for pid in ids:
        columns[f"recommended__{pid}"] = np.array([pid in ps for ps in replay.products])
        columns[f"qualified__{pid}"] = outcome.get(pid, np.full(len(replay.products), np.nan))
    for task, values in replay.outputs.items():
        columns[f"output__{task}"] = list(values) if values.ndim == 2 else values
    return pa.table(columns)


def read_outputs(table: pa.Table) -> dict[str, np.ndarray]:
    """The task outputs of a replay table, multiclass back as ``(n, classes)``."""
    out = {}
    for name in table.column_names:
        if name.startswith("output__"):
            values = table[name].to_pylist()
            out[name.removeprefix("output__")] = np.asarray(values, np.float64)
    return out


def read_flags(table: pa.Table, prefix: str, dtype: type) -> dict[str, np.ndarray]:
    """``recommended__<product>`` (bool) or ``qualified__<product>`` (float, NaN = not observable)
    columns as ``{product: array}``."""
    return {n.removeprefix(prefix): table[n].to_numpy(zero_copy_only=False).astype(dtype)
            for n in table.column_names if n.startswith(prefix)}
