"""``finai-pipeline``: run the whole asset graph on the local Dagster instance, stage by stage.

The dataset's months split in two: the history, backfilled and trained on, and the last
``--refresh-months`` (3), which then arrive one by one as they would in production.

1. ``raw_month`` for every history month (the raw tables and their checks),
2. ``phase0_state`` once (fitted on training months),
3. ``phase0_month`` for every history month (inputs, 17 feature groups, 13 labels, leakage checks),
4. ``training`` once (split, normalization, schema, and its checks),
5. ``teacher`` for the last history month (the PLE teacher through the Pipes training service, its
   LightGBM / shared-bottom / MMoE baselines on the same split, and their comparison),
6. ``distill`` for that month: soft labels, one student per task (each with its blocking fidelity
   check), promotion against the champion, and the champion it leaves,
7. ``refresh``: ``monthly_refresh`` for each arriving month in turn - the job the schedule and the
   new-month sensor launch: raw tables, Phase 0, serving batch and bundle (answering as Lambda
   would), replayed recommendations, the fairness gate, the release, drift and the model card,
8. ``serve``: the last bundle answers a ``recommend`` request in a clean subprocess that sees only
   the bundle and its runtime packages (``finai_assets/invoke_bundle.py``), as Lambda would.

``--s3`` publishes the bundle to S3 through dagster-aws: a moto server on 127.0.0.1 stands in
for AWS (nothing leaves the machine).

Each is a recorded run in $DAGSTER_HOME, so the UI (``dagster dev -w workspace.yaml``) shows every
run, materialization and check. The first failing run stops everything and is named with its
failed checks.
"""

from __future__ import annotations

import argparse
import sys

from finai_assets.instance import ensure_dagster_home
from finai_models import months as M
from finai_models.artifacts import ArtifactPaths
from finai_models.config import load_settings
from finai_models.errors import FinAIError
from finai_models.ops.checklist import load_checklist
from finai_models.progress import progress_bar

# The progress bar reports progress; the console logger shows only problems (the UI keeps all events).
QUIET_CONSOLE = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
STAGES = ("raw", "phase0", "training", "teacher", "distill", "refresh", "serve")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="finai-pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--months", help="FIRST..LAST (YYYY-MM..YYYY-MM); default: every month of the dataset")
    parser.add_argument("--until", choices=STAGES, default="serve", help="last stage to run (default: serve)")
    parser.add_argument("--refresh-months", type=int, default=3,
                        help="the last N months arrive one by one through monthly_refresh (default: 3)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--s3", action="store_true", help="publish the bundle to S3 on a local moto server")
    return parser.parse_args(argv)


def _months(spec: str | None, first: str, last: str) -> list[str]:
    if not spec:
        return M.month_range(first, last)
    lo, sep, hi = spec.partition("..")
    wanted = M.month_range(lo, hi if sep else lo)
    outside = [m for m in wanted if not first <= m <= last]
    if not wanted or outside:
        raise FinAIError(f"--months {spec}: the dataset's months are {first}..{last}")
    return wanted


def _split(months: list[str], refresh: int, test_end: str, stages: tuple[str, ...]
           ) -> tuple[list[str], list[str]]:
    """History (backfilled, trained on) and the months that arrive afterwards (none when the run stops
    before the refresh stage)."""
    if "refresh" not in stages:
        return months, []
    if refresh < 1 or refresh >= len(months):
        raise FinAIError(f"--refresh-months {refresh}: needs 1 .. {len(months) - 1} for {len(months)} months")
    history, arriving = months[:-refresh], months[-refresh:]
    if history[-1] < test_end:
        raise FinAIError(f"--refresh-months {refresh}: the history ends {history[-1]}, before the split's last test "
                         f"month {test_end}; the teacher would have no test rows")
    return history, arriving


class RunFailed(FinAIError):
    """A run that did not succeed, with what failed as records: the failed checks' names and the steps'
    error messages (read from the run's events, never parsed back out of the message)."""

    def __init__(self, what: str, run_id: str, failed_checks: list[str], errors: list[str]) -> None:
        self.run_id, self.failed_checks, self.errors = run_id, failed_checks, errors
        super().__init__(f"{what} failed (run {run_id}); failed checks: {failed_checks or 'none'}; {errors[:1]}")


def _check(result, what: str) -> None:
    if result.success:
        return
    failed = sorted(e.check_name for e in result.get_asset_check_evaluations() if not e.passed)
    errors = [e.message for e in result.all_events if e.is_step_failure]
    raise RunFailed(what, result.run_id, failed, errors)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    try:
        settings = load_settings()
        months = _months(args.months, *settings.months)
        stages = STAGES[: STAGES.index(args.until) + 1]
        history, arriving = _split(months, args.refresh_months, settings.split["test"][1], stages)
        checklist = load_checklist(settings.config_dir)
    except (FinAIError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    ensure_dagster_home(settings.path("dagster_home"))
    paths = ArtifactPaths.of(settings)
    moto = _local_s3() if args.s3 else None
    gated: list[str] = []

    import dagster as dg

    from finai_assets.definitions import defs
    from finai_assets.defs.operations.checklist import judge_month, status_line

    definitions = defs()
    try:
        with dg.DagsterInstance.get() as instance:
            def run(job: str, what: str, partition: str | None = None, assets: list | None = None) -> None:
                result = definitions.resolve_job_def(job).execute_in_process(
                    partition_key=partition, instance=instance, raise_on_error=False, run_config=QUIET_CONSOLE,
                    asset_selection=assets)
                _check(result, what)

            def run_months(job: str, stage: str, chosen: list[str]) -> None:
                with progress_bar(len(chosen), stage, "month", enabled=not args.quiet) as bar:
                    for month in chosen:
                        run(job, f"{stage} month {month}", month)
                        bar.update(1)

            run_months("raw_month", "raw", history)
            if "phase0" in stages:
                run("phase0_state", "fitting the Phase-0 state")
                run_months("phase0_month", "phase0", history)
            if "training" in stages:
                run("training", "the training set")
            trained = history[-1]
            if "teacher" in stages:
                print(f"training the teacher and its baselines for {trained} (progress: the run's log in the UI)")
                run("teacher", f"the teacher of month {trained}", trained)
                table = paths.comparison(trained) / "comparison.md"
                print(f"the teacher against its baselines on the test months ({table}; the benchmark at 100k "
                      f"customers, with seeds and the ceiling: python -m benchmarks.quality):\n{table.read_text()}")
            if "distill" in stages:
                gated = distill(run, settings, trained, quiet=args.quiet)
            if "refresh" in stages and not gated:
                print(f"months {arriving[0]}..{arriving[-1]} arrive one by one: monthly_refresh with the champion")
                for month in arriving:
                    run("monthly_refresh", f"the monthly refresh of {month}", month)
                    report_month(paths, month)
                    print(f"  {month}: {status_line(judge_month(instance, checklist, month))}")
            if "serve" in stages and not gated:
                serve(paths, arriving[-1])
    except FinAIError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if moto is not None:
            moto.stop()
    print(f"ran {', '.join(stages)} for {len(months)} months ({months[0]}..{months[-1]}); warehouse "
          f"{settings.path('warehouse')}; Dagster home {instance.root_directory}")
    return 0


def distill(run, settings, month: str, quiet: bool) -> list[str]:
    """Soft labels, every task's student (each gated by its fidelity check), promotion and the champion;
    returns the tasks whose student failed the gate (then the promotion only records the rejection)."""
    import dagster as dg

    from finai_assets.defs.distill.checks import student_fidelity

    gated = []
    run("student_inputs", f"the student inputs of {month}", month)
    tasks = [t.name for t in settings.tasks]
    with progress_bar(len(tasks), "students", "task", enabled=not quiet) as bar:
        for task in tasks:
            try:
                run("students", f"the {task} student of {month}", f"{month}|{task}")
            except RunFailed as exc:      # the fidelity gate doing its job is an outcome, not a crash
                if exc.failed_checks != [student_fidelity.check_key.name]:
                    raise
                gated.append(task)
            bar.update(1)
    if gated:
        run("promote", f"promotion of {month}", month, assets=[dg.AssetKey(["distill", "promotion"])])
        print(f"fidelity gate: the {gated} student(s) of {month} failed (see the student_fidelity checks in the "
              "UI); promotion rejected, no month is served with them")
    else:
        run("promote", f"promotion of {month} and the champion", month)
    return gated


def report_month(paths: ArtifactPaths, month: str) -> None:
    """One line per arriving month: drift, fairness, release and the model card."""
    import json

    drift = json.loads(paths.drift_report(month).read_text())
    fairness = json.loads(paths.fairness_report(month).read_text())
    print(f"  {month}: drift {drift['status']} (feature PSI max {drift['features']['max_psi']:.3f}, predictions "
          f"{drift['prediction_status']}); fairness {'passed' if fairness['passed'] else 'FAILED'}; released; "
          f"model card {paths.model_card(month) / 'model_card.html'}")
    if drift["retrain_requested"]:
        print(f"  {month}: {drift['critical_streak']} critical months in a row: the drift_retrain sensor requests "
              "the retrain job")


def _local_s3():
    """A moto S3 server on 127.0.0.1 and a bucket; the bundle store resource is pointed at it."""
    import logging
    import os

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)       # no access log line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(name, "local-moto")
    os.environ.update(FINAI_BUNDLE_STORE="s3", FINAI_BUNDLE_BUCKET="finai-bundles",
                      FINAI_S3_ENDPOINT=f"http://{host}:{port}")
    boto3.client("s3", endpoint_url=os.environ["FINAI_S3_ENDPOINT"], region_name="ap-northeast-2").create_bucket(
        Bucket="finai-bundles", CreateBucketConfiguration={"LocationConstraint": "ap-northeast-2"})
    print(f"S3: a moto server on {host}:{port}, bucket finai-bundles")
    return server


def serve(paths: ArtifactPaths, month: str) -> None:
    """Ask the month's bundle for one batch customer's recommendation in a clean subprocess; print what it says."""
    from finai_assets.defs.serving.invoke import first_batch_customer, invoke_bundle

    bundle = paths.bundle(month)
    customer = first_batch_customer(paths.serving_batch(month))
    answer, cold = invoke_bundle(bundle, {"action": "recommend", "customer_id": customer, "locale": "en"},
                                 paths.serving_state(month))
    if answer.get("status") != 200:
        raise FinAIError(f"the bundle {bundle.name} answered {answer}")
    print(f"bundle {bundle.name} answered in a clean subprocess (only its runtime packages; {cold}) for "
          f"customer {customer}:")
    for item in answer["recommendations"]:
        print(f"  {item['rank']}. {item['name']} (score {item['score']:.2f}): {item['reason']['text']}")
    if not answer["recommendations"]:
        print(f"  no product passed the constraints: {answer.get('blocked') or answer.get('withheld')}")


if __name__ == "__main__":
    sys.exit(main())
