"""``finai-pipeline``: run the asset graph month by month on the local Dagster instance.

Each month is its own run of ``monthly_refresh``, recorded in $DAGSTER_HOME so the UI
(``dagster dev -w workspace.yaml``) shows every run, materialization and check. The first
failing month stops the loop and is named, with the checks that failed.
"""

from __future__ import annotations

import argparse
import sys

from finai_assets.instance import ensure_dagster_home
from finai_models import months as M
from finai_models.config import load_settings
from finai_models.errors import FinAIError
from finai_models.progress import progress_bar

# The progress bar reports progress; the console logger shows only problems (the UI keeps all events).
QUIET_CONSOLE = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="finai-pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--months", help="FIRST..LAST (YYYY-MM..YYYY-MM); default: every month of the dataset")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
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


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    try:
        settings = load_settings()
        months = _months(args.months, *settings.months)
    except (FinAIError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    ensure_dagster_home(settings.path("dagster_home"))

    import dagster as dg

    from finai_assets.definitions import defs

    job = defs().resolve_job_def("monthly_refresh")
    with dg.DagsterInstance.get() as instance, progress_bar(len(months), "monthly_refresh", "month",
                                                            enabled=not args.quiet) as bar:
        for month in months:
            result = job.execute_in_process(partition_key=month, instance=instance, raise_on_error=False,
                                            run_config=QUIET_CONSOLE)
            failed = [e.check_name for e in result.get_asset_check_evaluations() if not e.passed]
            if not result.success:
                errors = [e.message for e in result.all_events if e.is_step_failure]
                print(f"error: month {month} failed (run {result.run_id}); "
                      f"failed checks: {failed or 'none'}; {errors[:1]}", file=sys.stderr)
                return 1
            bar.set_postfix(month=month)
            bar.update(1)
    print(f"materialized {len(months)} months ({months[0]}..{months[-1]}) into {settings.path('warehouse')}; "
          f"Dagster home {instance.root_directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
