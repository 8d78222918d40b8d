"""ovcast evaluate MODEL DATA: MSE/MAE on a split, next to naive baselines."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

from ._options import add_options, from_args
from ._output import output_file

DESCRIPTION = """\
Evaluate a model on a CSV the standard way: a standard scaler fitted on the train rows,
every window of the split at stride 1, MSE and MAE in the scaled space over all windows,
steps and target columns (--targets, default all). Naive baselines (last value; seasonal
naive) are in the same table, and for the ETTh1 protocol (its 7 columns, --splits etth1,
context 512, horizon 96) the published numbers too.

A model made by 'ovcast train' carries its run (training.json): without --splits its
run's splits are used, its channels are read by name, and on the run's own data (the same
file, by SHA-256) its scaler is used and splits that would score rows it trained on are
refused.

MODEL is a converted package (runs on OpenVINO, no torch) or 'default', a checkpoint
folder or a hub id (runs in PyTorch).

DATA 'etth1' is the ETTh1 data set (the README's table, the Granite model cards): fetched
on first use from its public source (github.com/zhouhaoyi/ETDataset, a fixed commit;
licence CC BY-ND 4.0, Zhou et al., AAAI 2021) into $OVCAST_HOME/datasets (default
~/.cache/ovcast/datasets) and checked by SHA-256. Offline, the error says which file to
put where; OVCAST_ETTH1_URL points the download at a mirror.

examples:
  ovcast evaluate default etth1                       the README's ETTh1 table
  ovcast evaluate models/default etth1 --json out.json
  ovcast evaluate default path/to/ETTh1.csv --splits etth1
  ovcast evaluate models/mine data.csv --splits 0.7,0.1 --gap 96 --season 24 --targets OT
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..train.config import EvaluateConfig

    p = subparsers.add_parser(
        "evaluate",
        help="MSE/MAE of a model on a CSV split, with naive baselines",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL", help="package folder, 'default', checkpoint or hub id")
    p.add_argument(
        "data",
        metavar="DATA",
        help="CSV with a timestamp column and numeric columns, or 'etth1' (fetched, cached)",
    )
    add_options(p, EvaluateConfig)
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..datasets import resolve_data
    from ..train.config import EvaluateConfig
    from ..train.evaluate import evaluate_model

    config = from_args(EvaluateConfig, args, model=args.model, data=args.data)
    json_file = output_file(args.json, "--json") if args.json else None
    config = replace(config, data=resolve_data(config.data))  # options first, then a download
    report = evaluate_model(config)
    print(report.table())
    if json_file:
        json_file.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return 0
