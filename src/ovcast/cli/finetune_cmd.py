"""ovcast finetune --data CANDLES.csv --base MODEL --out DIR: fine-tune on market data, honestly."""

from __future__ import annotations

import argparse

from ._options import add_options, from_args

DESCRIPTION = """\
Fine-tune a forecaster on OHLCV candles (a CSV with time, open, high, low, close, volume, or
a recording written by 'ovcast live') with the live pipeline's 7 feature channels.

What is scored is what is selected: every epoch, and the base model before the first, is
scored on the validation split by the MSE of the close on real bars (target steps on filled
bars, which had no trades, and on partial bars are left out; --score-filled keeps filled
ones), and OUT/best is the best of them. The test split is then scored the same way for the
fine-tuned model, the base model, the random walk (last value) and drift, in price units and
scaled, per horizon bucket, with directional accuracy; figures over every target step are
reported beside. Splits are by time, disjoint, with a gap (default: the horizon); scalers
are fitted on the train split only.

Writes OUT/best (checkpoint, scaler, training.json, MODEL_CARD.md), OUT/evaluation.json,
OUT/forecasts.png, and with --convert a parity-checked package in OUT/package.

examples:
  ovcast finetune --data btc-usd-1m.csv --base default --out runs/btc --convert
  ovcast finetune --data eth.csv --base runs/btc/best --out runs/eth --head-only --epochs 3
  ovcast finetune --data binance-klines.csv --time-unit us --out runs/bn
then hot-swap it into a running server: kill -HUP <pid>, or
  echo '{"request_id": "r", "command": "reload", "model": "runs/btc/package"}' into the pipe
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..train.config import FinetuneConfig

    p = subparsers.add_parser(
        "finetune",
        help="fine-tune on market candles and evaluate against naive baselines",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_options(p, FinetuneConfig)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..train.config import FinetuneConfig
    from ..train.finetune import finetune

    report = finetune(from_args(FinetuneConfig, args), progress=not args.no_progress)
    print(report["table"])
    print(f"overall, {report['verdict']}")
    if "package" in report:
        print(f"package: {report['package']}")
    return 0
