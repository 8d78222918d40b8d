"""ovcast features OHLCV_CSV --out FILE: the 7 unscaled model channels per bar."""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import math

DESCRIPTION = """\
Compute the 7 model channels for candles you already have, to inspect or check them:
close, high, low, volume (log1p), rsi (Wilder RSI-14 / 100), macd (12/26/9 line by default),
volatility (population std of the last N log returns). Unscaled; empty intervals are filled
flat at the previous close with zero volume and marked filled=1. Indicator columns are empty
while warming up.

OHLCV_CSV needs a header with time,open,high,low,close,volume (time as epoch seconds or
ISO 8601).

example:
  ovcast features btc-usd-1m.csv --out features.csv --macd line --volatility-window 20
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "features",
        help="the 7 model channels (close ... volatility) from an OHLCV CSV",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("ohlcv_csv", metavar="OHLCV_CSV")
    p.add_argument("--out", required=True, metavar="FILE", help="CSV to write")
    p.add_argument("--interval", type=int, help="bar interval in seconds (default: inferred)")
    p.add_argument("--macd", choices=("line", "signal", "histogram"), default="line")
    p.add_argument("--volatility-window", type=int, default=20)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..market.bars import read_ohlcv_csv
    from ..market.features import CHANNELS, FeatureConfig, compute_features

    bars = read_ohlcv_csv(args.ohlcv_csv, interval_s=args.interval)
    config = FeatureConfig(macd_output=args.macd, volatility_window=args.volatility_window)
    features = compute_features(bars.high, bars.low, bars.close, bars.volume, config)
    with open(args.out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["time", *CHANNELS, "filled"])
        for t, row, filled in zip(bars.time_s, features, bars.filled, strict=True):
            stamp = dt.datetime.fromtimestamp(int(t), dt.timezone.utc).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            )
            cells = ["" if math.isnan(v) else f"{v:.10g}" for v in row]
            writer.writerow([stamp, *cells, int(filled)])
    print(
        f"wrote {args.out}: {len(bars)} bars ({int(bars.filled.sum())} filled) x {len(CHANNELS)} channels"
    )
    return 0
