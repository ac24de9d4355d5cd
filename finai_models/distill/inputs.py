"""Everything the 13 students of a month share, prepared once: soft labels, matrices and routing.

The teacher scores a seeded sample of the training months (the students' training rows), a seeded
sample of the validation months (early stopping and calibration) and every test row (the fidelity
gate is always measured on the whole held-out months); its *logits* are stored per task (T = 1;
nothing is rounded to probabilities). Routing (DISTILL / DIRECT / RULE) is decided here from the
teacher's validation-month quality, and the months of every split are recorded so the fidelity
check can prove its rows were never seen by a student. Each student then picks its own rows and
columns from these matrices (``students``), so no binned dataset is shared.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from finai_models.data.store import fingerprint
from finai_models.distill.config import DistillConfig
from finai_models.distill.fidelity import route, teacher_scores
from finai_models.errors import FinAIError
from finai_models.teacher.data import InputEncoder, TeacherData, load_split, read_schema
from finai_models.teacher.model import ModelConfig, build_model
from finai_models.teacher.trainer import predict

PARTS = ("train", "validation", "test")
Log = Callable[[str], None]


class SchemaMismatch(FinAIError):
    """The teacher was trained on other feature columns than the students would see."""


def load_teacher(path: Path) -> tuple[torch.nn.Module, Any, InputEncoder]:
    """The PLE teacher of ``teacher.pt``: model (eval mode), its ModelSpec and input encoder."""
    if not Path(path).is_file():
        raise FinAIError(f"no teacher checkpoint at {path}; materialize teacher/ple for this month first")
    art = torch.load(path, map_location="cpu", weights_only=False)
    mcfg = ModelConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in art["model_config"].items()})
    model = build_model(art["spec"], mcfg)
    model.load_state_dict(art["model"])
    return model.eval(), art["spec"], InputEncoder.from_dict(art["input_encoder"])


def check_same_columns(teacher_columns: list[str], student_columns: list[str], teacher_path: Path,
                       training_set: Path) -> None:
    if list(teacher_columns) == list(student_columns):
        return
    missing = [c for c in teacher_columns if c not in set(student_columns)]
    extra = [c for c in student_columns if c not in set(teacher_columns)]
    first = next((i for i, (a, b) in enumerate(zip(teacher_columns, student_columns, strict=False)) if a != b), None)
    raise SchemaMismatch(
        f"feature schema differs between the teacher ({teacher_path}, {len(teacher_columns)} columns) and the "
        f"students' training set ({training_set}, {len(student_columns)} columns): "
        f"{len(missing)} missing {missing[:5]}, {len(extra)} extra {extra[:5]}"
        + (f", order differs from column {first}" if first is not None and not missing and not extra else ""))


def sample_rows(n: int, cap: int | None, seed: int) -> np.ndarray | None:
    """Sorted indices of a seeded sample of ``cap`` of ``n`` rows; None when every row is kept."""
    if cap is None or n <= cap:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, cap, replace=False))


def _sample(data: TeacherData, rows: int | None, seed: int) -> TeacherData:
    keep = sample_rows(len(data), rows, seed)
    if keep is None:
        return data
    return TeacherData(data.x[keep], {k: v[keep] for k, v in data.y.items()},
                       {k: v[keep] for k, v in data.side.items()}, data.customer_id[keep], data.month[keep])


def write_part(folder: Path, part: str, x: np.ndarray, hard: dict[str, np.ndarray],
               soft: dict[str, np.ndarray]) -> None:
    """The matrices of one split as ``load_part`` reads them: X, hard labels and teacher logits per task."""
    np.save(Path(folder) / f"x_{part}.npy", x)
    np.savez(Path(folder) / f"hard_{part}.npz", **hard)
    np.savez(Path(folder) / f"soft_{part}.npz", **soft)


def route_tasks(cfg: DistillConfig, hard: dict[str, np.ndarray], logits: dict[str, np.ndarray]
                ) -> dict[str, dict[str, Any]]:
    """Each task's route from the teacher's logits on the validation rows."""
    return {t.name: route(t, hard[t.name], teacher_scores(t, logits[t.name]), cfg.routing) for t in cfg.tasks}


def teacher_logits(model: torch.nn.Module, encoder: InputEncoder, data: TeacherData) -> dict[str, np.ndarray]:
    """The teacher's per-task logits on ``data`` (inputs encoded as in training; ``data.x`` untouched)."""
    x = encoder.transform_(data.x.copy())
    logits, _ = predict(model, TeacherData(x, data.y, data.side), logits=True)
    return logits


def prepare_inputs(cfg: DistillConfig, training_set: Path, teacher_path: Path, out_root: Path,
                   log: Log = print) -> Path:
    """Write the shared inputs of a month's students under ``out_root/<id>``; returns that folder."""
    schema = read_schema(training_set)
    model, spec, encoder = load_teacher(teacher_path)
    check_same_columns(list(spec.columns), list(schema.columns), teacher_path, training_set)
    names = {t.name for t in spec.tasks}
    absent = [t.name for t in cfg.tasks if t.name not in names]
    if absent:
        raise FinAIError(f"the teacher at {teacher_path} has no head for task(s) {absent} of tasks.yaml")
    caps = {"train": cfg.max_train_rows, "validation": cfg.max_validation_rows, "test": None}
    identity = {"training_set": schema.version, "teacher": _file_id(teacher_path), "rows": caps,
                "seed": cfg.seed, "temperature": cfg.temperature, "routing": cfg.routing}
    out = Path(out_root) / fingerprint(identity)
    if (out / "inputs.json").is_file():
        log(f"student inputs {out.name} already prepared")
        return out
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.set_num_threads(int(cfg.lightgbm.get("num_threads", 2)))
    meta: dict[str, Any] = {"training_set": schema.version, "teacher": str(teacher_path),
                            "columns": list(schema.columns), "rows": {}, "months": {}, "seconds": {}}
    for part in PARTS:
        started = time.perf_counter()
        data = load_split(training_set, part, schema, spec.tasks)
        months = sorted({str(m) for m in data.month})        # of the whole split, before sampling
        data = _sample(data, caps[part], cfg.seed)
        logits = teacher_logits(model, encoder, data)
        write_part(tmp, part, data.x, {t.name: data.y[t.name] for t in cfg.tasks},
                   {t.name: logits[t.name] for t in cfg.tasks})
        meta["rows"][part] = len(data)
        meta["months"][part] = months
        if part == "validation":
            meta["routing"] = route_tasks(cfg, data.y, logits)
        meta["seconds"][part] = round(time.perf_counter() - started, 1)
        log(f"{part}: {len(data):,} rows, months {meta['months'][part][0]}..{meta['months'][part][-1]}, teacher "
            f"logits and matrices in {meta['seconds'][part]:.0f} s")
    (tmp / "inputs.json").write_text(json.dumps(meta, indent=1))
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


def _file_id(path: Path) -> dict[str, Any]:
    st = Path(path).stat()
    return {"path": str(Path(path).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def load_inputs(folder: Path) -> dict[str, Any]:
    path = Path(folder) / "inputs.json"
    if not path.is_file():
        raise FinAIError(f"no student inputs at {folder}; materialize distill/soft_labels for this month first")
    return json.loads(path.read_text())


def load_part(folder: Path, part: str, task: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, hard labels, teacher logits) of one split for one task; x is memory-mapped."""
    with np.load(Path(folder) / f"hard_{part}.npz") as hard, np.load(Path(folder) / f"soft_{part}.npz") as soft:
        if task not in hard.files:
            raise FinAIError(f"student inputs at {folder} have no task {task!r} (prepared for {hard.files})")
        return np.load(Path(folder) / f"x_{part}.npy", mmap_mode="r"), hard[task].astype(np.float64), \
            soft[task].astype(np.float64)
