"""ovcast train DATA.csv --out DIR: train a Granite-architecture model on a CSV."""

from __future__ import annotations

import argparse
import json

DESCRIPTION = """\
Train PatchTST (the Granite PatchTST config) or PatchTSMixer on a CSV with an optional
timestamp column and numeric columns. A standard scaler is fitted on the train split only
and saved with the checkpoint; the best checkpoint (by validation MSE) goes to OUT/best,
a MODEL for 'ovcast convert' and 'ovcast evaluate'. --resume continues an interrupted run.

examples:
  ovcast train ETTh1.csv --out runs/etth1 --splits etth1 --epochs 10 --lr 3e-4 --seed 42
  ovcast train ETTh1.csv --out runs/ft --splits etth1 --init-from runs/etth1/best --lr 3e-5
  ovcast train prices.csv --columns close,volume --context 256 --horizon 24 --splits 0.7,0.1
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a Granite-architecture PatchTST/PatchTSMixer on a CSV",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("data", metavar="DATA", help="CSV file: a timestamp column and numeric columns")
    p.add_argument(
        "--out", required=True, metavar="DIR", help="run folder (best/, checkpoint-last/)"
    )
    p.add_argument("--family", choices=("patchtst", "patchtsmixer"), default="patchtst")
    p.add_argument("--columns", help="comma-separated columns to use (default: all numeric)")
    p.add_argument("--timestamp-column", help="default: date/time/timestamp if present")
    p.add_argument(
        "--splits",
        default="0.7,0.1",
        help="'etth1', fractions TRAIN,VAL (default 0.7,0.1) or row ends A,B,C",
    )
    p.add_argument("--context", type=int, default=512, help="context length (default 512)")
    p.add_argument("--horizon", type=int, default=96, help="prediction length (default 96)")
    p.add_argument(
        "--model-config",
        metavar="JSON",
        default="{}",
        help="overrides of the Granite config, e.g. '{\"d_model\": 64}'",
    )
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument(
        "--windows-per-epoch",
        type=int,
        default=0,
        help="random training windows per epoch (default 0: all)",
    )
    p.add_argument("--lr", type=float, default=1e-4, help="peak AdamW learning rate")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument(
        "--warmup-fraction", type=float, default=0.1, help="linear warm-up share of all steps"
    )
    p.add_argument("--patience", type=int, default=3, help="early-stopping patience in epochs")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument(
        "--init-from",
        metavar="MODEL",
        help="start from this checkpoint ('default', a folder or a hub id) instead of random weights",
    )
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: usable cores)")
    p.add_argument(
        "--max-eval-windows",
        type=int,
        default=0,
        help="validate on this many evenly spaced windows (default 0: all)",
    )
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint-last")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import DataError
    from ..train.trainer import TrainConfig, train

    try:
        overrides = json.loads(args.model_config)
    except ValueError as exc:
        raise DataError(f"--model-config is not JSON: {exc}") from exc
    config = TrainConfig(
        data=args.data,
        out=args.out,
        family=args.family,
        columns=args.columns.split(",") if args.columns else None,
        timestamp_column=args.timestamp_column,
        splits=args.splits,
        context_length=args.context,
        prediction_length=args.horizon,
        model_overrides=overrides,
        epochs=args.epochs,
        batch_size=args.batch_size,
        windows_per_epoch=args.windows_per_epoch,
        learning_rate=args.lr,
        weight_decay=args.weight_decay,
        warmup_fraction=args.warmup_fraction,
        patience=args.patience,
        seed=args.seed,
        init_from=args.init_from,
        num_threads=args.threads,
        max_eval_windows=args.max_eval_windows,
    )
    result = train(config, resume=args.resume, progress=not args.no_progress)
    print(
        f"best validation MSE {result.best_val_mse:.4f} after {result.epochs_run} epochs "
        f"({result.seconds / 60:.1f} min); checkpoint: {result.best_dir}"
    )
    return 0
