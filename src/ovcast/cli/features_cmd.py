"""ovcast features CANDLES --out FILE: the 7 unscaled model channels per bar."""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import math

import numpy as np

from ._options import add_options, from_args
from ._output import output_file

DESCRIPTION = """\
Compute the 7 model channels for candles you already have, to inspect or check them:
close, high, low, volume (log1p), rsi (Wilder RSI-14 / 100), macd (12/26/9 line by default),
volatility (population std of the last N log returns). Unscaled; empty intervals are filled
flat at the previous close with zero volume and marked filled=1. Bars that may lack trades
are marked partial=1: a recording's own partial bars, and the bars a recording lacks (the
process was down: unknown, not empty). Indicator columns are empty while warming up.

CANDLES is an OHLCV CSV with a header time,open,high,low,close,volume (time as ISO 8601 or
epoch s, ms, us or ns, told apart by magnitude unless --time-unit says), or a recording
written by 'ovcast live' (--product picks one). Bad rows are refused with their line and
column: missing, non-numeric, NaN or infinite cells, prices <= 0, negative volumes, times
that repeat, go backwards or leave the bar grid.

examples:
  ovcast features btc-usd-1m.csv --out features.csv --macd line --volatility-window 20
  ovcast features BTCUSDT-1m-2025-01.csv --time-unit us --out f.csv
  ovcast features runs/live.db --product BTC-USD --out f.csv
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..train.config import MarketData

    p = subparsers.add_parser(
        "features",
        help="the 7 model channels (close ... volatility) from OHLCV candles",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("data", metavar="CANDLES", help="OHLCV CSV or an 'ovcast live' recording")
    p.add_argument("--out", required=True, metavar="FILE", help="CSV to write")
    add_options(p, MarketData, exclude=("data", "score_filled"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..market.features import CHANNELS, compute_features
    from ..train.config import MarketData

    config = from_args(MarketData, args, data=args.data)
    out = output_file(args.out, "--out")
    bars = config.bars()
    partial = np.zeros(len(bars), bool) if bars.partial is None else bars.partial
    features = compute_features(bars.high, bars.low, bars.close, bars.volume, config.features())
    with open(out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["time", *CHANNELS, "filled", "partial"])
        for t, row, filled, part in zip(bars.time_s, features, bars.filled, partial, strict=True):
            stamp = dt.datetime.fromtimestamp(int(t), dt.timezone.utc).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            )
            cells = ["" if math.isnan(v) else f"{v:.10g}" for v in row]
            writer.writerow([stamp, *cells, int(filled), int(part)])
    print(
        f"wrote {out}: {len(bars)} bars ({int(bars.filled.sum())} filled, "
        f"{int(partial.sum())} partial) x {len(CHANNELS)} channels"
    )
    return 0
