"""``finai``: produce raw datasets from the shell.

    finai generate --customers N --months M --seed S --out DIR
    finai santander --csv train_ver2.csv --out DIR

Errors are one line on stderr and a non-zero exit; nothing half-written looks complete.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from finai_models.config import load_settings
from finai_models.errors import FinAIError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="finai", description="FinAI data tools.")
    parser.add_argument("--config-dir", help="configs folder (default: $FINAI_CONFIG_DIR or the repo's configs/)")
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="simulate the synthetic monthly bank panel into Parquet")
    gen.add_argument("--customers", type=int, help="number of customers (default: dataset config)")
    gen.add_argument("--months", type=int, help="number of snapshot months (default: dataset config)")
    gen.add_argument("--seed", type=int, help="random seed (default: dataset config)")
    gen.add_argument("--start", help="first month YYYY-MM (default: dataset config)")
    gen.add_argument("--out", type=Path, help="output folder (default: the work directory's raw/synthetic)")
    gen.add_argument("--overwrite", action="store_true", help="replace a different dataset in --out")
    gen.add_argument("--quiet", action="store_true", help="no progress bar")

    san = sub.add_parser("santander", help="convert a Kaggle Santander CSV into the raw schema")
    san.add_argument("--csv", type=Path, required=True, help="train_ver2.csv-format file")
    san.add_argument("--out", type=Path, help="output folder (default: the work directory's raw/santander)")
    san.add_argument("--overwrite", action="store_true", help="replace a different dataset in --out")
    san.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _run(args: argparse.Namespace) -> str:
    from finai_models import months as M

    if args.command == "generate":
        from finai_models.data.generate import generate_synthetic

        settings = load_settings(args.config_dir, "synthetic")
        gen = settings.dataset.generator
        start = args.start or settings.months[0]
        n_months = args.months if args.months is not None else M.diff(settings.months[1], start) + 1
        out = args.out or settings.raw_dir
        manifest = generate_synthetic(
            settings, out, args.customers if args.customers is not None else gen.customers, n_months,
            args.seed if args.seed is not None else gen.seed, start=start, overwrite=args.overwrite,
            progress=not args.quiet)
    else:
        from finai_models.data.santander import convert_santander

        settings = load_settings(args.config_dir, "santander")
        out = args.out or settings.raw_dir
        manifest = convert_santander(settings, args.csv, out, overwrite=args.overwrite, progress=not args.quiet)
    rows = {t: sum(v.values()) for t, v in manifest["rows"].items()}
    return (f"{out}: {len(manifest['months'])} months {manifest['months'][0]}..{manifest['months'][-1]}, "
            + ", ".join(f"{t} {n:,}" for t, n in rows.items()))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        print(_run(args))
    except FinAIError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; the output folder is marked incomplete", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
