"""ovcast evaluate MODEL DATA: MSE/MAE on a split, next to naive baselines."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

DESCRIPTION = """\
Evaluate a model on a CSV the standard way: a standard scaler fitted on the train rows,
every window of the split at stride 1, MSE and MAE in the scaled space over all windows,
steps and channels. Naive baselines (last value; seasonal naive) are in the same table, and
for ETTh1 the published numbers too.

MODEL is a converted package (runs on OpenVINO, no torch) or 'default', a checkpoint
folder or a hub id (runs in PyTorch).

examples:
  ovcast evaluate default ../shared/data/etth1/ETTh1.csv --splits etth1
  ovcast evaluate models/default ../shared/data/etth1/ETTh1.csv --splits etth1 --json out.json
  ovcast evaluate models/mine data.csv --splits 0.7,0.1 --season 24
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="MSE/MAE of a model on a CSV split, with naive baselines",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL", help="package folder, 'default', checkpoint or hub id")
    p.add_argument("data", metavar="DATA", help="CSV with a timestamp column and numeric columns")
    p.add_argument(
        "--splits", default="etth1", help="'etth1' (default), fractions TRAIN,VAL or row ends A,B,C"
    )
    p.add_argument("--split", choices=("train", "val", "test"), default="test")
    p.add_argument("--columns", help="comma-separated columns (default: all numeric)")
    p.add_argument("--season", type=int, default=24, help="seasonal-naive period (default 24)")
    p.add_argument("--max-windows", type=int, default=0, help="evenly spaced subset (0: all)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..train.evaluate import evaluate

    report = evaluate(
        args.model,
        args.data,
        splits=args.splits,
        split=args.split,
        columns=args.columns.split(",") if args.columns else None,
        season=args.season,
        max_windows=args.max_windows,
    )
    print(report.table())
    if args.json:
        Path(args.json).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return 0
