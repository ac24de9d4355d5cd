"""The PLE teacher, its three baselines on the same split, their comparison, and the ablation.

Neural training runs outside the Dagster process through Dagster Pipes: the asset launches the
training service (``python -m finai_models.teacher.service``) as a subprocess, which streams its
progress to the run log, each epoch's metrics as Pipes messages, and the held-out metrics, gate
weights and plots as the materialization's metadata. Swapping ``PipesSubprocessClient`` for
``dagster_aws.pipes.PipesECSClient`` (or the Kubernetes client) moves training to a GPU task
without touching the service; ``service.processes`` in ``configs/teacher.yaml`` above 1 launches
it through torchrun, one data-parallel process per GPU. Every training asset takes the ``gpu_training`` pool, so one
training runs at a time on the machine.
"""

import json
import subprocess
import sys

import dagster as dg

from finai_assets.defs.partitions import snapshot_months
from finai_assets.defs.resources import FinAIConfig
from finai_assets.defs.training.assets import training_set
from finai_models.artifacts import ArtifactPaths, write_text_atomic
from finai_models.teacher.run import teacher_config, variant

TRAINING_POOL = "gpu_training"


def _train(context: dg.AssetExecutionContext, finai: FinAIConfig, pipes: dg.PipesSubprocessClient,
           architecture: str) -> dg.MaterializeResult:
    s = finai.load()
    processes = int((teacher_config(s).get("service") or {}).get("processes", 1))
    env = finai.env()
    launcher = [sys.executable]
    if processes > 1:                        # one node: rendezvous and gloo traffic stay on loopback
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    invocation = pipes.run(
        command=[*launcher, "-m", "finai_models.teacher.service", "--architecture", architecture],
        context=context, env=env, extras={"train": {"architecture": architecture}},
    )
    epochs = [m["epoch"] for m in invocation.get_custom_messages() if isinstance(m, dict) and "epoch" in m]
    context.log.info(f"{architecture}: {len(epochs)} epoch(s) trained in this run")
    result = invocation.get_materialize_result()
    metadata = dict(result.metadata or {})
    metadata["epochs_this_run"] = len(epochs)
    run = finai.paths().teacher_run(context.partition_key, architecture)
    metadata["metrics_json"] = dg.MetadataValue.path(str(run / "metrics.json"))
    return dg.MaterializeResult(metadata=metadata)


def _training_asset(architecture: str, description: str) -> dg.AssetsDefinition:
    @dg.asset(name=architecture, key_prefix=["teacher"], group_name="teacher", partitions_def=snapshot_months,
              kinds={"pytorch"}, deps=[training_set], pool=TRAINING_POOL, code_version=f"{architecture}-v1",
              description=description)
    def _asset(context: dg.AssetExecutionContext, finai: FinAIConfig,
               pipes_subprocess_client: dg.PipesSubprocessClient) -> dg.MaterializeResult:
        return _train(context, finai, pipes_subprocess_client, architecture)

    return _asset


ple = _training_asset("ple", "The PLE teacher: 7 heterogeneous experts + one per task, per-task gates whose layer-0 "
                             "weights explain each prediction; resumes from its last epoch checkpoint.")
mmoe = _training_asset("mmoe", "MMoE baseline (8 homogeneous MLP experts, per-task gates) on the same split.")
shared_bottom = _training_asset("shared_bottom", "Shared-bottom baseline (one MLP bottom, task towers) on the same "
                                                 "split.")


@dg.asset(key=["teacher", "lightgbm"], group_name="teacher", partitions_def=snapshot_months, kinds={"lightgbm"},
          deps=[training_set], pool=TRAINING_POOL, code_version="lightgbm-baseline-v1")
def lightgbm_baseline(context: dg.AssetExecutionContext, finai: FinAIConfig) -> dg.MaterializeResult:
    """Per-task LightGBM on hard labels, early-stopped on the validation months (the bar to clear)."""
    from finai_models.teacher.baselines import train_lightgbm_baseline
    from finai_models.teacher.report import metrics_table
    s = finai.load()
    paths = ArtifactPaths.of(s)
    summary = train_lightgbm_baseline(s, paths.current_training_set(), paths.lightgbm_run(context.partition_key),
                                      log=context.log.info)
    test = summary["test"]
    return dg.MaterializeResult(metadata={
        "test_mean_binary_auc": test["mean_binary_auc"], "test_mean_macro_f1": test["mean_macro_f1"],
        "test_mean_mae": test["mean_mae"], "rounds": summary["rounds"],
        "test_metrics": dg.MetadataValue.md(metrics_table(test["tasks"])),
        "metrics_json": dg.MetadataValue.path(summary["run_dir"] + "/metrics.json"),
    })


@dg.asset(key=["teacher", "comparison"], group_name="teacher", partitions_def=snapshot_months, kinds={"markdown"},
          deps=[ple, mmoe, shared_bottom, lightgbm_baseline], code_version="comparison-v1")
def comparison(context: dg.AssetExecutionContext, finai: FinAIConfig) -> dg.MaterializeResult:
    """One table, every task: teacher vs per-task LightGBM vs shared-bottom vs MMoE on the test months,
    each with a 95% interval, and every model's paired advantage over LightGBM (win / tie / loss)."""
    from finai_models.teacher.compare import MODELS, compare

    s = finai.load()
    month = context.partition_key
    paths = ArtifactPaths.of(s)
    table = compare(s, {name: paths.teacher_runs(month, name) for name in MODELS})
    out = paths.comparison(month)
    write_text_atomic(out / "comparison.md", table["markdown"])
    write_text_atomic(out / "comparison.json", json.dumps(table["result"], indent=1))
    verdicts = table["verdicts"]
    return dg.MaterializeResult(metadata={
        "table": dg.MetadataValue.md(table["markdown"]),
        **{f"teacher_vs_{m}": f"{v['win']} wins, {v['tie']} ties, {v['loss']} losses"
           for m, v in verdicts.items()},
        "teacher_wins_vs_lightgbm": verdicts.get("ple", {}).get("win", 0),
        "tasks": len(table["result"]["tasks"]), "path": dg.MetadataValue.path(str(out / "comparison.md")),
    })


@dg.asset(key=["teacher", "ablation"], group_name="teacher", partitions_def=snapshot_months, kinds={"markdown"},
          deps=[training_set], pool=TRAINING_POOL, code_version="ablation-v1")
def ablation(context: dg.AssetExecutionContext, finai: FinAIConfig) -> dg.MaterializeResult:
    """Remove each expert; softmax vs sigmoid gates; adaTT on/off - short runs, one comparison table."""
    from finai_models.teacher.compare import ablation_table

    s = finai.load()
    cfg = teacher_config(s)["ablation"]
    month = context.partition_key
    paths = ArtifactPaths.of(s)
    results = {}
    for name in cfg["variants"]:
        options = variant(name)
        root = paths.teacher_runs(month, f"ablation/{name}")
        command = [sys.executable, "-m", "finai_models.teacher.service", "--month", month, "--out", str(root),
                   "--epochs", str(cfg["epochs"]), "--max-train-rows", str(cfg["max_train_rows"])]
        if "without" in options:
            command += ["--without", options["without"]]
        if "gate" in options:
            command += ["--gate", options["gate"]]
        command += [f"--{k.replace('_', '-')}" for k in ("adatt", "grad_surgery") if options.get(k)]
        context.log.info(f"ablation {name}: {' '.join(command[3:])}")
        subprocess.run(command, check=True, env=finai.env())
        results[name] = json.loads((paths.teacher_run(month, f"ablation/{name}") / "metrics.json").read_text())
    table = ablation_table(results)
    out = paths.ablation(month)
    write_text_atomic(out / "ablation.md", table)
    return dg.MaterializeResult(metadata={"table": dg.MetadataValue.md(table), "variants": len(results),
                                          "path": dg.MetadataValue.path(str(out / "ablation.md"))})
