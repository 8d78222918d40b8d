"""ovcast export RECORDING --product P --what bars|trades --out FILE: recorded data out."""

from __future__ import annotations

import argparse
import sys

DESCRIPTION = """\
Write one product's recorded bars or trades (from the SQLite recording that 'ovcast live'
writes) to a file for your own tools: CSV with a header, or Parquet when FILE ends in
.parquet (needs pyarrow). Prices, sizes and volumes are exact, as recorded (decimal text,
never rounded through a float). Bars carry two marks:
  filled=1   no trades in the interval: flat at the previous close, volume 0
  partial=1  trades may be missing (a start-up minute not provably complete, a gap REST
             could not repair, a late trade): do not score or train on it

examples:
  ovcast export runs/live.db --product BTC-USD --what bars --out btc-bars.csv
  ovcast export runs/live.db --product BTC-USD --what trades --out btc-trades.parquet
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export",
        help="recorded bars or trades to CSV or Parquet",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("recording", metavar="RECORDING", help="SQLite recording of 'ovcast live'")
    p.add_argument("--product", help="e.g. BTC-USD (default: the only one recorded)")
    p.add_argument("--what", choices=("bars", "trades"), default="bars")
    p.add_argument("--out", required=True, metavar="FILE", help="FILE.csv or FILE.parquet")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import DataError
    from ..market.export import export
    from ..market.recording import Recording

    with Recording(args.recording, readonly=True) as recording:
        products = recording.products()
        product = args.product or (products[0] if len(products) == 1 else None)
        if product is None:
            raise DataError(f"{args.recording} holds {products}; choose one with --product")
        count = export(recording, product, what=args.what, out=args.out)
    print(f"wrote {count} {args.what} of {product} to {args.out}", file=sys.stderr)
    return 0
