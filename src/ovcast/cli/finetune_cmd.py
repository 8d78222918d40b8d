"""ovcast finetune --data CANDLES.csv --base MODEL --out DIR: fine-tune on market data, honestly."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Fine-tune a forecaster on OHLCV candles (a CSV with time, open, high, low, close, volume, or
a recording written by 'ovcast live') with the live
pipeline's 7 feature channels, then evaluate it on a held-out test split against the base
model, the random walk (last value) and drift: MSE/MAE of the close in price units and
scaled, and directional accuracy, per horizon bucket. Splits are by time, disjoint, with a
gap (default: the horizon) so no window leaks across them; scalers are fitted on the train
split only. Writes OUT/best (checkpoint + scaler + MODEL_CARD.md), OUT/evaluation.json,
OUT/forecasts.png, and with --convert a parity-checked package in OUT/package.

examples:
  ovcast finetune --data btc-usd-1m.csv --base default --out runs/btc --convert
  ovcast finetune --data eth.csv --base runs/btc/best --out runs/eth --head-only --epochs 3
then hot-swap it into a running server: kill -HUP <pid>, or
  echo '{"request_id": "r", "command": "reload", "model": "runs/btc/package"}' into the pipe
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "finetune",
        help="fine-tune on market candles and evaluate against naive baselines",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--data", required=True, metavar="FILE", help="OHLCV CSV, or an 'ovcast live' recording"
    )
    p.add_argument("--product", help="the product to use from a recording")
    p.add_argument(
        "--base", default="default", metavar="MODEL", help="start model (default: default)"
    )
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--interval", type=int, help="bar interval in seconds (default: inferred)")
    p.add_argument("--macd", choices=("line", "signal", "histogram"), default="line")
    p.add_argument("--volatility-window", type=int, default=20)
    p.add_argument(
        "--splits", default="0.7,0.15", help="train,validation fractions (default 0.7,0.15)"
    )
    p.add_argument("--gap", type=int, help="rows between splits (default: the horizon)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument(
        "--head-only", action="store_true", help="train only the forecasting head (fast)"
    )
    p.add_argument("--patience", type=int, default=2)
    p.add_argument("--windows-per-epoch", type=int, default=0)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--convert", action="store_true", help="also write the OpenVINO package")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..train.finetune import FinetuneConfig, finetune, table

    report = finetune(
        FinetuneConfig(
            data=args.data,
            product=args.product,
            base=args.base,
            out=args.out,
            interval_s=args.interval,
            macd_output=args.macd,
            volatility_window=args.volatility_window,
            splits=args.splits,
            gap=args.gap,
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.lr,
            head_only=args.head_only,
            patience=args.patience,
            windows_per_epoch=args.windows_per_epoch,
            seed=args.seed,
            convert=args.convert,
        ),
        progress=not args.no_progress,
    )
    print(table(report))
    if "package" in report:
        print(f"package: {report['package']}")
    return 0
