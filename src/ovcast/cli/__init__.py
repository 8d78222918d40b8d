"""The ``ovcast`` command line: the only place that prints for humans and exits the process.

Each subcommand lives in its own module with ``register(subparsers)``; errors that users
can fix (``OvcastError``) print one line, without a traceback unless ``--debug``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Sequence

from .._version import __version__
from ..errors import OvcastError
from ..runtime.precision import precision_for_process
from . import (
    bench_cmd,
    convert_cmd,
    doctor_cmd,
    evaluate_cmd,
    export_cmd,
    features_cmd,
    finetune_cmd,
    forecast_batch_cmd,
    info_cmd,
    live_cmd,
    predict_cmd,
    quickstart_cmd,
    replay_cmd,
    serve_cmd,
    train_cmd,
    tune_cmd,
)

COMMANDS = (
    quickstart_cmd,
    convert_cmd,
    predict_cmd,
    forecast_batch_cmd,
    info_cmd,
    serve_cmd,
    bench_cmd,
    tune_cmd,
    doctor_cmd,
    train_cmd,
    evaluate_cmd,
    finetune_cmd,
    features_cmd,
    live_cmd,
    replay_cmd,
    export_cmd,
)

EPILOG = """\
typical flow:
  ovcast quickstart                          convert the embedded model, check, benchmark, forecast
  ovcast convert default models/default      HF checkpoint -> OpenVINO package (parity-checked)
  ovcast info models/default                 what a package holds
  ovcast predict models/default --input window.csv
  ovcast serve --mode jsonl --model models/default   JSON lines on stdin/stdout for a pipeline
  ovcast forecast-batch series.parquet --model models/default --out f.parquet   every window, or --ray
  ovcast bench models/default                vs PyTorch and ONNX Runtime, servers, machine limit
  ovcast tune models/default                 measure CPU settings, store the best in the package
  ovcast doctor models/default               what on this machine slows forecasts down
  ovcast train data.csv --out runs/x          train a Granite-architecture model on a CSV
  ovcast evaluate runs/x/best data.csv        MSE/MAE next to naive baselines
  ovcast finetune --data candles.csv --out runs/m   fine-tune on market data vs naive baselines
  ovcast live --product BTC-USD --model models/btc   live Coinbase -> a forecast per bar
  ovcast replay run.db --model models/btc      recorded bars -> a forecast at every bar close
  ovcast replay --demo --dashboard 127.0.0.1:8050   bars and forecasts in a browser, offline
  ovcast export run.db --product BTC-USD --out bars.csv   recorded bars/trades to CSV or Parquet
  ovcast features candles.csv --out f.csv     the 7 market channels (close ... volatility)
run 'ovcast COMMAND --help' for each command's options and examples.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ovcast",
        description="Run IBM Granite time-series forecasters fast on CPUs with OpenVINO.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ovcast {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    parser.add_argument(
        "--precision",
        dest="engine_precision",  # not a subcommand's --precision (convert's weight format)
        choices=("auto", "f32", "bf16"),
        help="what every engine of this command computes in (sets $OVCAST_PRECISION). auto: "
        "bf16 where the CPU has bf16 units and 'ovcast tune' measured it within tolerance for "
        "the package, else f32 (default)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def _quiet_third_parties() -> None:
    """transformers/nncf chatter (progress bars, deprecation notes) is noise for CLI users."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", category=FutureWarning)
    for noisy in ("nncf", "transformers", "torch"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    if not args.verbose:
        _quiet_third_parties()
    try:
        with precision_for_process(args.engine_precision):
            return int(args.func(args) or 0)
    except OvcastError as exc:
        if args.debug:
            raise
        print(f"ovcast {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"ovcast {args.command}: interrupted", file=sys.stderr)
        return 130
