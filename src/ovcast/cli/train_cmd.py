"""ovcast train DATA.csv --out DIR: train a Granite-architecture model on a CSV."""

from __future__ import annotations

import argparse

from ._options import add_options, from_args

DESCRIPTION = """\
Train PatchTST (the Granite PatchTST config) or PatchTSMixer on a CSV with an optional
timestamp column and numeric columns. A standard scaler is fitted on the train split only
and saved with the checkpoint. Each epoch is scored on the validation split exactly as
'ovcast evaluate' scores: MSE of the target columns (--targets, default all) in the scaled
space. The best epoch goes to OUT/best (weights, scaler.json, training.json with this run's
config and history), a MODEL for 'ovcast convert' and 'ovcast evaluate'. --resume continues
an interrupted run with the same settings.

examples:
  ovcast train ETTh1.csv --out runs/etth1 --splits etth1 --epochs 10 --lr 3e-4 --seed 42
  ovcast train ETTh1.csv --out runs/ft --splits etth1 --init-from runs/etth1/best --lr 3e-5
  ovcast train prices.csv --columns close,volume --targets close --context 256 --horizon 24 \\
      --splits 0.7,0.1 --gap 24
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..train.config import TrainConfig

    p = subparsers.add_parser(
        "train",
        help="train a Granite-architecture PatchTST/PatchTSMixer on a CSV",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("data", metavar="DATA", help="CSV file: a timestamp column and numeric columns")
    add_options(p, TrainConfig)
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint-last")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..train.config import TrainConfig
    from ..train.trainer import train

    config = from_args(TrainConfig, args, data=args.data)
    result = train(config, resume=args.resume, progress=not args.no_progress)
    print(
        f"best: epoch {result.best_epoch}, {result.selected_on}: {result.best_val_mse:.4f} "
        f"({result.epochs_run} epochs, {result.seconds / 60:.1f} min); checkpoint: {result.best_dir}"
    )
    return 0
