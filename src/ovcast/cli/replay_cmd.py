"""ovcast replay RECORDING --model DIR: run recorded bars through the live pipeline's code."""

from __future__ import annotations

import argparse
import sys
import time

DESCRIPTION = """\
Run the bars of a recording (SQLite, as the live pipeline writes it) through the same
per-product code as live: features, ring buffer, a forecast at every bar close. Forecast
records go to stdout as JSON lines (or --out FILE). The scaler stored in the recording is
used; a recording without one gets scalers fitted on its first --fit-bars bars, stored
back, and said so on stderr (never refitted silently).

example:
  ovcast replay runs/live.db --model models/btc --product BTC-USD --speed 60
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "replay",
        help="run a recording through the live pipeline (forecast at every bar close)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("recording", metavar="RECORDING")
    p.add_argument(
        "--model", required=True, metavar="DIR", help="model package (7 market channels)"
    )
    p.add_argument("--product", action="append", help="product(s) to replay (default: all)")
    p.add_argument("--interval", type=int, default=60, help="bar interval in seconds (default 60)")
    p.add_argument(
        "--speed",
        type=float,
        default=0.0,
        help="replay speed-up over real time (default 0: as fast as possible)",
    )
    p.add_argument("--fit-bars", type=int, default=1000, help="bars to fit missing scalers on")
    p.add_argument("--out", metavar="FILE", help="JSON lines file (default: stdout)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging

    import orjson

    from ..errors import DataError
    from ..market.recording import Recording
    from ..market.stream import ProductStream, fit_market_scaler
    from ..runtime.engine import Engine
    from ..scaling import Scaler

    log = logging.getLogger("ovcast.replay")
    engine = Engine(args.model)
    sink = open(args.out, "wb") if args.out else sys.stdout.buffer
    try:
        with Recording(args.recording) as recording:
            products = args.product or recording.products()
            if not products:
                raise DataError(f"{args.recording} holds no bars")
            for product in products:
                bars = recording.bars(product)
                stored = recording.meta(f"scaler:{product}")
                if stored is None:
                    scaler = fit_market_scaler(bars[: args.fit_bars])
                    recording.set_meta(f"scaler:{product}", scaler.to_dict())
                    log.warning(
                        "%s: no stored scaler; fitted on the first %d bars and stored it",
                        product,
                        min(args.fit_bars, len(bars)),
                    )
                else:
                    scaler = Scaler.from_dict(stored)
                stream = ProductStream(product, engine, scaler, interval_s=args.interval)
                for bar in bars:
                    record = stream.on_bar(bar)
                    if record is not None:
                        sink.write(orjson.dumps(record) + b"\n")
                    if args.speed > 0:
                        time.sleep(args.interval / args.speed)
                log.info("%s: %d bars, %d forecasts", product, stream.bars, stream.forecasts)
    finally:
        if args.out:
            sink.close()
        else:
            sink.flush()
    return 0
