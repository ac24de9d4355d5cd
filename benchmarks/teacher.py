"""Benchmark the PLE teacher's training throughput and peak memory against its two baselines.

    python -m benchmarks.teacher [--quick] [--batch 2048] [--steps 6] [--out benchmarks/results]

The model is built from an in-memory ``ModelSpec`` shaped like the real training set: the 17
groups of ``configs/feature_groups.yaml`` (1211 raw columns under the names Phase 0 gives them,
the MCC multi-hot named ``mcc_<code>`` so HGCN gets its real hierarchy graph) plus 273 ``_log``
copies, 1484 columns in all, the 13 tasks of ``configs/tasks.yaml``, monthly sequences [12, 11]
and persistence diagrams [4, 16]. Its code columns are declared as the real schema's ``codes``
(the 200 ``lag_NNN_mcc`` and 200 ``lag_NNN_hour`` slots share one vocabulary each; the six
``*_code`` demographics, the three ``hmm_*_state``, ``gmm_cluster_id``) and the spec gets a
``code_max`` like the input encoder's, so they are embedded as in training. The inputs are random
(throughput does not depend on the values; code columns hold valid codes), so no Phase 0 runs.

Each architecture (ple, mmoe, shared_bottom; ``configs/teacher.yaml``'s model and train sections,
as the training service reads them) trains in a fresh child process that calls
``finai_models.teacher.service.tune_process()`` first, as the service does, so its peak RSS is its
own: one warm-up step, then ``--steps`` timed full steps (forward, the per-task losses, uncertainty
weighting, the experts' regularizer, backward, gradient clipping, AdamW), as ``Trainer._epoch``
does them. Seconds on a shared machine are noisy, so one more child alternates shared-bottom and
PLE steps in the same process and reports PLE's throughput as a ratio of shared-bottom's, and
times the input layer and each layer-0 expert alone (forward + backward on its routed slice) to
show which one dominates. With a CUDA device a last child compares AMP with fp32 and mamba-ssm's
selective-scan kernel with the PyTorch scan.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.generator import machine_info, peak_rss_gb, reset_peak_rss

REPO = Path(__file__).resolve().parents[1]
ARCHITECTURES = ("ple", "mmoe", "shared_bottom")
DEFAULT_BATCH, DEFAULT_STEPS = 2048, 6
QUICK_BATCH, QUICK_STEPS = 256, 2
BATCHES_IN_DATA = 4      # the random training set holds 4 batches; steps cycle through them
ROUNDS = 3               # alternating shared-bottom/PLE rounds and per-expert repetitions
THREADS = 2              # torch intra-op threads, as TrainConfig.threads
# _log copies per group: 273 (1211 + 273 = 1484 columns), most of them lag-slot amounts and days as in
# the real training sets (3,000 customers: 261 of its 291 copies are lag slots, 12 rolling statistics)
LOG_COPIES = {"txn_lag_tensor": 261, "txn_rolling_stats": 12}
# the largest code per vocabulary, as the input encoder of a 3,000-customer training set found them
# (benchmarks/out/quality/c3000-r3000-s42); padding code 0 of a pooled vocabulary is "no transaction"
CODE_MAX = {"lag_mcc": 50, "lag_hour": 23, "gender_code": 2, "segment_code": 4, "region_code": 52,
            "channel_code": 20, "age_group_code": 4, "income_group_code": 4, "hmm_journey_state": 4,
            "hmm_lifecycle_state": 4, "hmm_behaviour_state": 5, "gmm_cluster_id": 19}
DEFAULT_CODE_MAX = 4
SEQUENCE_SHAPE, DIAGRAM_SHAPE = (12, 11), (4, 16)
SCAN_SHAPE, SCAN_STATE = (2048, 64, 12), 16  # selective scan u [batch, channels, months], state size
SCAN_REPS = 20
NO_GPU = "not measured: no CUDA device"
INPUT_LAYER = "input layer (code embeddings)"
PRIVATE = "task_tower (private, all tasks, with the shared projection)"
# libgomp's default lets a thread spin while it waits for its partner. On a shared machine whose cores
# other jobs keep busy, the partner is often descheduled and the spinning eats the time slice: steps
# became 5-10x slower and bimodal here. Children therefore wait passively unless the caller set it.
OMP_WAIT_POLICY = os.environ.get("OMP_WAIT_POLICY", "PASSIVE")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- the spec, the data and one training step ------------------------------------------------------
def feature_schema(settings) -> Any:
    """A training set's ``FeatureSchema`` as Phase 0 builds it (``schema_for``), without the rows: the
    groups' own column names, the ``_log`` copies and the code columns (``codes``: column -> vocabulary)."""
    from finai_models.phase0.groups import build_groups
    from finai_models.phase0.normalize import column_kind
    from finai_models.phase0.schema import schema_for
    from finai_serving.schema import Side, code_vocabulary

    columns, groups, log_columns = [], {}, []
    for g, model in zip(settings.feature_groups, build_groups(settings), strict=True):
        if g.name == "mcc_top30_multihot":   # fitted names: the training months' top MCCs
            names = [f"mcc_{code}" for code in settings.mcc.codes[:g.dim - 1]] + ["mcc_other_count"]
        else:
            names = list(model.column_names())
        if len(names) != g.dim:
            raise RuntimeError(f"group {g.name} names {len(names)} columns, configured dim {g.dim}")
        groups[g.name] = names
        columns += names
        log_columns += [c for c in names if column_kind(c) != "code"][:LOG_COPIES.get(g.name, 0)]
    codes = {c: code_vocabulary(c) for c in columns if column_kind(c) == "code"}
    return schema_for(settings, groups, "bench", log_columns=log_columns, codes=codes,
                      side=Side(sequence_shape=SEQUENCE_SHAPE, diagram_shape=DIAGRAM_SHAPE))


def code_max(schema) -> Any:
    """Per column the largest code (``-1``: not a code column), as ``InputEncoder.code_max``."""
    import numpy as np

    index = {c: j for j, c in enumerate(schema.columns)}
    out = np.full(len(schema.columns), -1, np.int64)
    for column, vocabulary in schema.codes.items():
        out[index[column]] = CODE_MAX.get(vocabulary, DEFAULT_CODE_MAX)
    return out


def build_spec():
    from finai_models.config import load_settings
    from finai_models.teacher.spec import ModelSpec

    settings = load_settings()
    schema = feature_schema(settings)
    return ModelSpec.from_feature_schema(schema, settings, code_max=code_max(schema))


def random_data(spec, n: int, seed: int = 0) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """float32 X [n, d] (code columns: valid codes), realistic side tensors and a label per task
    (10% NaN), as torch tensors."""
    import numpy as np
    import torch

    from finai_models.teacher.experts.base import DIAGRAM_MASK, DIAGRAMS, SEQUENCE, SEQUENCE_MASK

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, spec.n_features)).astype(np.float32)
    for v in spec.codes.vocabularies:        # valid codes; a pooled vocabulary's later slots are padding (0)
        cols = np.asarray(v.columns)
        if v.pooled:
            used = np.arange(len(cols))[None, :] < rng.integers(0, len(cols) + 1, size=(n, 1))
            x[:, cols] = np.where(used, rng.integers(1, v.size, size=(n, len(cols))), 0)
        else:
            x[:, cols] = rng.integers(0, v.size, size=(n, len(cols)))
    (months, fields), (diagrams, pairs) = spec.sequence_shape, spec.diagram_shape
    seq_mask = np.arange(months)[None, :] >= rng.integers(0, months - 1, size=(n, 1))  # late joiners
    sequence = np.where(seq_mask[..., None], rng.normal(size=(n, months, fields)), 0).astype(np.float32)
    dgm_mask = np.arange(pairs)[None, None, :] < rng.integers(1, pairs + 1, size=(n, diagrams, 1))
    birth = rng.random((n, diagrams, pairs)).astype(np.float32)
    death = birth + rng.random((n, diagrams, pairs)).astype(np.float32) + 1e-3
    dgm = np.where(dgm_mask[..., None], np.stack([birth, death], axis=-1), 0).astype(np.float32)
    labels = {}
    for t in spec.tasks:
        if t.kind == "binary":
            y = (rng.random(n) < 0.3).astype(np.float32)
        elif t.kind == "multiclass":
            y = rng.integers(0, t.classes, n).astype(np.float32)
        else:
            y = rng.normal(size=n).astype(np.float32)
        y[rng.random(n) < 0.1] = np.nan
        labels[t.name] = torch.from_numpy(y)
    side = {SEQUENCE: torch.from_numpy(sequence), SEQUENCE_MASK: torch.from_numpy(seq_mask),
            DIAGRAMS: torch.from_numpy(dgm), DIAGRAM_MASK: torch.from_numpy(dgm_mask)}
    return torch.from_numpy(x), side, labels


class Training:
    """A model as the training service builds it (``configs/teacher.yaml``) with the trainer's AdamW
    groups (the Kendall log-variances at their own learning rate), uncertainty weighting and (on
    CUDA) GradScaler."""

    def __init__(self, spec, architecture: str, device: str = "cpu", amp: bool = False, seed: int = 0):
        import torch

        from finai_models.config import load_settings
        from finai_models.teacher.losses import UncertaintyWeighting
        from finai_models.teacher.model import build_model
        from finai_models.teacher.run import model_config, teacher_config, train_config

        torch.manual_seed(seed)
        doc = teacher_config(load_settings())
        self.model_cfg = model_config(doc, architecture=architecture)
        self.spec, self.device, self.amp, self.cfg = spec, torch.device(device), amp, train_config(doc)
        self.model = build_model(spec, self.model_cfg).to(self.device).train()
        self.weighting = UncertaintyWeighting(spec.tasks).to(self.device)
        named = list(self.model.named_parameters())
        decay = [p for _, p in named if p.ndim > 1]
        no_decay = [p for _, p in named if p.ndim <= 1]
        self.optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": self.cfg.weight_decay},
                                            {"params": no_decay, "weight_decay": 0.0},
                                            {"params": list(self.weighting.parameters()), "weight_decay": 0.0,
                                             "lr": self.cfg.uncertainty_lr}], lr=self.cfg.lr)
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp and self.device.type == "cuda", init_scale=1024,
                                           growth_interval=2000)
        self.params = sum(p.numel() for _, p in named)

    def step(self, x, side, y) -> float:
        """One full training step, as ``Trainer._epoch``; returns the loss (``.item()`` syncs a GPU)."""
        import torch
        from torch import nn

        from finai_models.teacher.losses import task_losses

        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            out = self.model(x, side)
        loss = self.weighting(*task_losses(self.spec.tasks, out.logits, y)) + out.regularizer.float()
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.item()


def batches(x, side, y, batch: int, device: str = "cpu") -> list[tuple[Any, dict[str, Any], dict[str, Any]]]:
    """The data as ``BATCHES_IN_DATA`` contiguous batches on ``device`` (no gathering inside the timing)."""
    out = []
    for lo in range(0, len(x), batch):
        def cut(v, lo=lo):
            return v[lo:lo + batch].contiguous().to(device)
        out.append((cut(x), {k: cut(v) for k, v in side.items()}, {k: cut(v) for k, v in y.items()}))
    return out


def timed_steps(run: Training, data: list, steps: int, start: int = 0) -> dict[str, list[float]]:
    """Wall seconds, loss, and the process's system CPU seconds and minor page faults of each step."""
    out: dict[str, list[float]] = {"seconds": [], "losses": [], "sys_s": [], "minor_faults": []}
    for i in range(steps):
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        out["losses"].append(run.step(*data[(start + i) % len(data)]))
        out["seconds"].append(time.perf_counter() - t0)
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        out["sys_s"].append(r1.ru_stime - r0.ru_stime)
        out["minor_faults"].append(r1.ru_minflt - r0.ru_minflt)
    return out


# --- the children ----------------------------------------------------------------------------------
def child_architecture(architecture: str, batch: int, steps: int) -> dict[str, Any]:
    """Warm-up, then ``steps`` timed training steps of one architecture, in this fresh process."""
    import torch

    torch.set_num_threads(THREADS)
    spec = build_spec()
    data = batches(*random_data(spec, BATCHES_IN_DATA * batch), batch)
    run = Training(spec, architecture)
    setup_peak = peak_rss_gb()               # interpreter, torch, the random data and the model
    peak_was_reset = reset_peak_rss()        # from here on: what training adds on top of them
    t0 = time.perf_counter()
    warmup_loss = run.step(*data[0])
    warmup_s = time.perf_counter() - t0
    timed = timed_steps(run, data, steps, start=1)
    seconds, median = timed["seconds"], statistics.median(timed["seconds"])
    return {"architecture": architecture, "model_config": dataclasses.asdict(run.model_cfg),
            "batch": batch, "steps": steps, "params": run.params,
            "n_features": spec.n_features, "input_width": spec.input_width, "tasks": len(spec.tasks),
            "code_vocabularies": len(spec.codes.vocabularies),
            "code_columns": len(spec.codes.code_columns), "threads": torch.get_num_threads(),
            "warmup_s": warmup_s, "step_s": seconds, "median_step_s": median, "samples_per_s": batch / median,
            "losses": [warmup_loss, *timed["losses"]], "sys_s": timed["sys_s"],
            "median_sys_s": statistics.median(timed["sys_s"]), "minor_faults": timed["minor_faults"],
            "setup_peak_rss_gb": setup_peak,
            "training_peak_rss_gb": peak_rss_gb(), "peak_rss_reset_before_training": peak_was_reset,
            "peak_rss_gb": max(setup_peak, peak_rss_gb())}


def child_baseline(batch: int) -> dict[str, Any]:
    """Alternating shared-bottom/PLE steps (a same-process ratio) and PLE's per-expert cost."""
    import torch

    from finai_models.teacher.spec import TASK_EXPERT

    torch.set_num_threads(THREADS)
    spec = build_spec()
    data = batches(*random_data(spec, BATCHES_IN_DATA * batch), batch)
    runs = {a: Training(spec, a) for a in ("shared_bottom", "ple")}
    for run in runs.values():
        run.step(*data[0])
    times: dict[str, list[float]] = {a: [] for a in runs}
    for r in range(ROUNDS):
        for a, run in runs.items():
            times[a] += timed_steps(run, data, 1, start=1 + r)["seconds"]
    median = {a: statistics.median(s) for a, s in times.items()}
    ratios = [sb / ple for sb, ple in zip(times["shared_bottom"], times["ple"], strict=True)]

    model = runs["ple"].model
    x, side, _ = data[1]
    experts: list[dict[str, Any]] = []

    def fwd_bwd(fn: Callable[[], Any], module) -> float:
        """Seconds of routing, forward, a scalar loss and backward through one expert alone."""
        t0 = time.perf_counter()
        fn().backward()
        module.zero_grad(set_to_none=True)
        return time.perf_counter() - t0

    layer_input = model.inputs(x).detach()   # what routing indexes: x, then the code embeddings

    def shared_expert(name: str) -> Any:
        expert = model.experts[name]
        return expert(model.route(layer_input, name), side).float().sum() + expert.regularizer()

    def private_experts() -> Any:
        return model.task_experts(model.task_projection(model.route(layer_input, TASK_EXPERT))).float().sum()

    private = torch.nn.ModuleList([model.task_projection, model.task_experts])
    parts = [(INPUT_LAYER, model.inputs, lambda: model.inputs(x).float().sum())]
    parts += [(name, model.experts[name], lambda n=name: shared_expert(n)) for name in model.expert_names]
    parts.append((PRIVATE, private, private_experts))
    for _, module, fn in parts:
        fwd_bwd(fn, module)  # warm-up
    seconds_of: dict[str, list[float]] = {name: [] for name, _, _ in parts}
    for _ in range(ROUNDS):  # round-robin, so a burst of load on the machine does not hit one expert only
        for name, module, fn in parts:
            seconds_of[name].append(fwd_bwd(fn, module))
    for name, module, _ in parts:
        seconds = seconds_of[name]
        routed = TASK_EXPERT if name == PRIVATE else name
        columns = spec.n_features if name == INPUT_LAYER else len(spec.expert_columns[routed])
        experts.append({"expert": name, "columns": int(columns),
                        "params": sum(p.numel() for p in module.parameters()),
                        "fwd_bwd_s": seconds, "median_fwd_bwd_s": statistics.median(seconds),
                        "share_of_ple_step": statistics.median(seconds) / median["ple"]})
    return {"batch": batch, "rounds": ROUNDS, "step_s": times, "median_step_s": median,
            "ple_over_shared_bottom": median["shared_bottom"] / median["ple"], "round_ratios": ratios,
            "experts": experts, "experts_share_of_ple_step": sum(e["share_of_ple_step"] for e in experts)}


def cuda_median(fn: Callable[[], Any], reps: int) -> float:
    import torch

    fn()  # warm-up (kernel selection, allocator)
    torch.cuda.synchronize()
    seconds = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        seconds.append(time.perf_counter() - t0)
    return statistics.median(seconds)


def child_gpu(batch: int, steps: int) -> dict[str, Any]:
    """PLE on CUDA in fp32 and with AMP; mamba-ssm's selective scan against the PyTorch one."""
    import torch

    if not torch.cuda.is_available():
        return {"gpu": NO_GPU}
    from finai_models.phase0.ssm import cuda_kernel_available, selective_scan, selective_scan_dispatch

    spec = build_spec()
    data = batches(*random_data(spec, BATCHES_IN_DATA * batch), batch, device="cuda")
    out: dict[str, Any] = {"device": torch.cuda.get_device_name(0), "batch": batch, "steps": steps}
    for label, amp in (("fp32", False), ("amp", True)):
        run = Training(spec, "ple", device="cuda", amp=amp)
        run.step(*data[0])
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        timed = timed_steps(run, data, steps, start=1)  # loss.item() synchronises every step
        seconds = timed["seconds"]
        out[label] = {"step_s": seconds, "median_step_s": statistics.median(seconds),
                      "samples_per_s": batch / statistics.median(seconds), "losses": timed["losses"],
                      "peak_cuda_memory_gb": torch.cuda.max_memory_allocated() / 1e9}
        del run
        torch.cuda.empty_cache()
    out["amp_speedup"] = out["amp"]["samples_per_s"] / out["fp32"]["samples_per_s"]

    b, d, length = SCAN_SHAPE
    g = torch.Generator(device="cuda").manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, device="cuda", generator=g)

    u, delta, z = randn(b, d, length), randn(b, d, length), randn(b, d, length)
    A = -torch.exp(torch.log(torch.arange(1, SCAN_STATE + 1, device="cuda", dtype=torch.float32)).repeat(d, 1))
    B, C, D, bias = randn(b, SCAN_STATE, length), randn(b, SCAN_STATE, length), torch.ones(d, device="cuda"), randn(d)
    inputs = [u, delta, B, C, z]

    def scan_timings(scan) -> dict[str, float]:
        def forward():
            with torch.no_grad():
                scan(u, delta, A, B, C, D, z, delta_bias=bias, delta_softplus=True)

        def forward_backward():
            leaves = [t.detach().requires_grad_() for t in inputs]
            uu, dd, bb, cc, zz = leaves
            scan(uu, dd, A, bb, cc, D, zz, delta_bias=bias, delta_softplus=True).sum().backward()
        return {"forward_s": cuda_median(forward, SCAN_REPS), "forward_backward_s": cuda_median(forward_backward,
                                                                                                 SCAN_REPS)}

    scan: dict[str, Any] = {"shape": list(SCAN_SHAPE), "d_state": SCAN_STATE, "reps": SCAN_REPS,
                            "pytorch": scan_timings(selective_scan)}
    if cuda_kernel_available():
        scan["mamba_ssm"] = scan_timings(selective_scan_dispatch)
        scan["kernel_speedup_forward"] = scan["pytorch"]["forward_s"] / scan["mamba_ssm"]["forward_s"]
        scan["kernel_speedup_forward_backward"] = (scan["pytorch"]["forward_backward_s"]
                                                   / scan["mamba_ssm"]["forward_backward_s"])
    else:
        scan["mamba_ssm"] = "not measured: mamba-ssm is not installed"
    out["selective_scan"] = scan
    return out


# --- the parent ------------------------------------------------------------------------------------
def measure(child: str, batch: int, steps: int) -> dict[str, Any]:
    """Run one child in a fresh interpreter; its last stdout line is its JSON result."""
    log(f"measuring {child} (batch {batch}) ...")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "benchmarks.teacher", "--child", child,
                           "--batch", str(batch), "--steps", str(steps)],
                          cwd=REPO, stdout=subprocess.PIPE, text=True,
                          env={**os.environ, "OMP_WAIT_POLICY": OMP_WAIT_POLICY})
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        log(f"  the child exited with status {proc.returncode}")
        return {"child": child, "error": f"child exited with status {proc.returncode}"}
    result = json.loads(lines[-1])
    log(f"  done in {time.perf_counter() - t0:.0f} s")
    return result


def markdown(report: dict[str, Any]) -> str:
    m, archs, base, gpu = report["machine"], report["architectures"], report["baseline"], report["gpu"]
    load = m.get("load_average_1m") or {"start": float("nan"), "end": float("nan")}
    lines = [f"Teacher training benchmark, {m['timestamp']}: {m['cpu_count']} CPUs, {m['memory_total_gb']:.0f} GB "
             f"RAM, Python {m['python']}, torch {m['torch']} ({m['threads']} threads, OMP_WAIT_POLICY "
             f"{m['omp_wait_policy']}); 1-minute load average {load['start']:.1f} at the start, {load['end']:.1f} "
             f"at the end (the benchmark's own children included); batch {report['batch']}, "
             f"{report['steps']} timed steps after 1 warm-up, {report['n_features']} input columns "
             f"({report.get('code_columns')} of them codes in {report.get('code_vocabularies')} embedded "
             f"vocabularies), {report['tasks']} tasks; random inputs, no training set", "",
             "| architecture | params | median step s | samples/s | of which sys s | peak RSS GB | setup peak GB |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in archs:
        if "error" in r:
            lines.append(f"| {r['child'].split(':')[-1]} | **{r['error']}** | - | - | - | - | - |")
            continue
        lines.append(f"| {r['architecture']} | {r['params']:,} | {r['median_step_s']:.3f} | "
                     f"{r['samples_per_s']:,.0f} | {r['median_sys_s']:.2f} | {r['peak_rss_gb']:.2f} | "
                     f"{r['setup_peak_rss_gb']:.2f} |")
    lines.append("")
    if "error" in base:
        lines.append(f"Same-process baseline: **{base['error']}**")
    else:
        sb, ple = base["median_step_s"]["shared_bottom"], base["median_step_s"]["ple"]
        lines += [f"Same process, {base['rounds']} alternating rounds: **PLE samples/s / shared-bottom samples/s = "
                  f"{base['ple_over_shared_bottom']:.3f}** (median step {ple:.3f} s vs {sb:.3f} s; per round "
                  + ", ".join(f"{v:.3f}" for v in base["round_ratios"]) + ")", "",
                  "| PLE part (alone) | routed columns | params | fwd+bwd s | share of PLE step |",
                  "|---|---:|---:|---:|---:|"]
        for e in sorted(base["experts"], key=lambda e: -e["median_fwd_bwd_s"]):
            lines.append(f"| {e['expert']} | {e['columns']:,} | {e['params']:,} | {e['median_fwd_bwd_s']:.3f} | "
                         f"{100 * e['share_of_ple_step']:.1f}% |")
        lines.append(f"| **all parts timed** | | | | {100 * base['experts_share_of_ple_step']:.1f}% |")
    lines.append("")
    if isinstance(gpu, str):
        lines.append(f"GPU: {gpu}")
    elif "error" in gpu:
        lines.append(f"GPU: **{gpu['error']}**")
    else:
        scan = gpu["selective_scan"]
        kernel = scan["mamba_ssm"]
        lines += [f"GPU ({gpu['device']}), PLE at batch {gpu['batch']}: fp32 {gpu['fp32']['samples_per_s']:,.0f} "
                  f"samples/s ({gpu['fp32']['peak_cuda_memory_gb']:.2f} GB), AMP float16 "
                  f"{gpu['amp']['samples_per_s']:,.0f} samples/s ({gpu['amp']['peak_cuda_memory_gb']:.2f} GB): "
                  f"**AMP x{gpu['amp_speedup']:.2f}**", "",
                  f"Selective scan {scan['shape']} (d_state {scan['d_state']}): PyTorch forward "
                  f"{1e3 * scan['pytorch']['forward_s']:.2f} ms, forward+backward "
                  f"{1e3 * scan['pytorch']['forward_backward_s']:.2f} ms; mamba-ssm "
                  + (kernel if isinstance(kernel, str) else
                     f"{1e3 * kernel['forward_s']:.2f} ms / {1e3 * kernel['forward_backward_s']:.2f} ms: "
                     f"**x{scan['kernel_speedup_forward']:.1f} forward, "
                     f"x{scan['kernel_speedup_forward_backward']:.1f} forward+backward**")]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.teacher", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--batch", type=int, default=None, help=f"batch size (default {DEFAULT_BATCH})")
    parser.add_argument("--steps", type=int, default=None, help=f"timed steps per architecture "
                                                                f"(default {DEFAULT_STEPS})")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke check: batch {QUICK_BATCH}, {QUICK_STEPS} steps")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results", help="results folder")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    batch = args.batch or (QUICK_BATCH if args.quick else DEFAULT_BATCH)
    steps = args.steps or (QUICK_STEPS if args.quick else DEFAULT_STEPS)
    if batch < 1 or steps < 1:
        parser.error("--batch and --steps must be positive")
    if args.child:
        from finai_models.teacher.service import tune_process

        tune_process()   # what the training service does before torch loads
        kind, _, arch = args.child.partition(":")
        result = (child_architecture(arch, batch, steps) if kind == "arch" else
                  child_baseline(batch) if kind == "baseline" else child_gpu(batch, steps))
        print(json.dumps(result), flush=True)
        return 0

    import torch

    load_start = os.getloadavg()   # other jobs on the machine: 1-minute load vs the CPU count
    archs = [measure(f"arch:{a}", batch, steps) for a in ARCHITECTURES]
    baseline = measure("baseline", batch, steps)
    gpu: dict[str, Any] | str = measure("gpu", batch, steps) if torch.cuda.is_available() else NO_GPU
    first = next((r for r in archs if "error" not in r), {})
    machine = {**machine_info(), "torch": torch.__version__, "threads": THREADS, "omp_wait_policy": OMP_WAIT_POLICY,
               "load_average_1m": {"start": load_start[0], "end": os.getloadavg()[0]},
               "env": {k: v for k, v in os.environ.items() if k.startswith(("OMP_", "MKL_", "MALLOC_", "LD_PRELOAD"))}}
    report = {"machine": machine, "batch": batch, "steps": steps, "n_features": first.get("n_features"),
              "code_columns": first.get("code_columns"), "code_vocabularies": first.get("code_vocabularies"),
              "tasks": first.get("tasks"), "architectures": archs, "baseline": baseline, "gpu": gpu}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "teacher.json").write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(report)
    (args.out / "teacher.md").write_text(table)
    print(table)
    failed = [r for r in (*archs, baseline, gpu) if isinstance(r, dict) and "error" in r]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
