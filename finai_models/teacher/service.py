"""The training service: ``python -m finai_models.teacher.service`` (or ``finai train-teacher``).

One entry point for every place training runs. From a shell it trains and prints progress. Under
Dagster Pipes (the teacher asset launches it as a subprocess; the same command runs unchanged in
an ECS task or a Kubernetes pod through ``PipesECSClient``/``PipesK8sClient``) it reads its
options from the Pipes extras, streams progress to the run's log and each epoch's metrics as a
custom message, and reports the materialization with the held-out metrics. It never imports
Dagster, only the small ``dagster-pipes`` protocol package. Killing it loses at most the current
epoch: the next launch with the same options resumes from ``last.pt``.

Multi-GPU: ``torchrun --standalone --nproc-per-node N -m finai_models.teacher.service ...`` runs
the same loop data-parallel (one process per GPU, NCCL; or CPU processes over gloo on loopback).
Rank 0 alone talks to Pipes and writes the artifacts, so the command also works under the asset
(``service.processes`` in ``configs/teacher.yaml``) and inside an ECS task or a pod.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from finai_models.artifacts import ArtifactPaths
from finai_models.config import load_settings
from finai_models.errors import FinAIError
from finai_models.teacher import ARCHITECTURES

OPTIONS = ("architecture", "gate", "without", "adatt", "grad_surgery", "epochs", "max_train_rows", "max_batches",
           "device")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="finai-train-teacher", description=__doc__.splitlines()[0])
    p.add_argument("--training-set", type=Path, help="training-set folder (default: the current one)")
    p.add_argument("--out", type=Path, help="runs folder (default: <artifacts>/teacher/runs/<month>/<architecture>)")
    p.add_argument("--month", default="adhoc", help="snapshot month the model is for (names the runs folder)")
    p.add_argument("--architecture", choices=ARCHITECTURES, default="ple")
    p.add_argument("--gate", choices=("softmax", "sigmoid"))
    p.add_argument("--without", help="drop one shared expert (ablation)")
    p.add_argument("--adatt", action="store_true", default=None)
    p.add_argument("--grad-surgery", action="store_true", default=None)
    p.add_argument("--epochs", type=int)
    p.add_argument("--max-train-rows", type=int)
    p.add_argument("--max-batches", type=int, help="batches per epoch (smoke runs)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"))
    return p.parse_args(argv)


def tune_process() -> None:
    """Before torch loads: idle OpenMP threads sleep instead of spinning (a shared 2-core machine
    otherwise slows 2-thread torch up to 10x), and glibc keeps large freed blocks instead of
    returning them to the kernel, which re-zeroed Sinkhorn's 32 MB temporaries on every step
    (``benchmarks/teacher.py``: 4.2 s -> 2.5 s per PLE step at batch 2048)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-4, 0)            # M_MMAP_MAX: serve large blocks from the heap
        libc.mallopt(-1, 16 << 30)     # M_TRIM_THRESHOLD: do not give the heap back after every step
    except (OSError, AttributeError):
        pass


def main(argv: list[str] | None = None) -> int:
    tune_process()
    from dagster_pipes import PipesEnvVarParamsLoader, open_dagster_pipes

    from finai_models.teacher.distributed import Cluster

    args = _parse(argv)
    cluster = Cluster.from_env()
    cluster.start()
    with ExitStack() as stack:
        under_pipes = cluster.main and PipesEnvVarParamsLoader().is_dagster_pipes_process()
        pipes = stack.enter_context(open_dagster_pipes()) if under_pipes else None
        options: dict[str, Any] = {k: getattr(args, k) for k in OPTIONS}
        month = args.month
        if pipes is not None:
            options.update({k: v for k, v in (pipes.get_extra("train") or {}).items() if k in OPTIONS})
            month = pipes.partition_key if pipes.is_partition_step else month
        options, month = cluster.share((options, month))
        log = pipes.log.info if pipes is not None else (lambda m: print(m, flush=True))
        if not cluster.main:
            log = _silent                    # rank 0 speaks for the job
        try:
            settings = load_settings()
            paths = ArtifactPaths.of(settings)
            training_set = args.training_set or paths.current_training_set()
            out = args.out or paths.teacher_runs(month, options["architecture"])
            last = [time.monotonic()]

            def on_batch(done: int, total: int, loss: float) -> None:
                if time.monotonic() - last[0] > 15 or done == total:
                    last[0] = time.monotonic()
                    log(f"  batch {done}/{total} loss {loss:.4f}")

            def on_epoch(record: dict[str, Any]) -> None:
                if pipes is not None:
                    pipes.report_custom_message({"epoch": record})

            from finai_models.teacher.run import train_teacher

            summary = train_teacher(settings, training_set, out, log=log, on_epoch=on_epoch, on_batch=on_batch,
                                    **{k: v for k, v in options.items() if k != "architecture"},
                                    architecture=options["architecture"], cluster=cluster)
        except FinAIError as exc:
            if pipes is not None:
                pipes.log.error(f"training failed: {exc}")
                raise
            print(f"error{f' (rank {cluster.rank})' if cluster.active else ''}: {exc}", file=sys.stderr)
            return 2
        finally:
            cluster.stop()
        if summary is None:                  # a rank other than 0: its work is in rank 0's artifacts
            return 0
        if pipes is not None:
            from finai_models.teacher.report import materialization_metadata

            pipes.report_asset_materialization(metadata=materialization_metadata(summary))
        else:
            test = summary["test"]
            print(f"done: {summary['run_dir']} - test mean AUC {test['mean_binary_auc']:.4f}, "
                  f"macro-F1 {test['mean_macro_f1']:.4f}, MAE {test['mean_mae']:.4f}")
    return 0


def _silent(*_: Any) -> None:
    pass


if __name__ == "__main__":
    raise SystemExit(main())
