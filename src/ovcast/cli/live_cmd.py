"""ovcast live: Coinbase trades -> bars -> features -> a forecast at every bar close."""

from __future__ import annotations

import argparse
import sys

from ._dashboard import add_dashboard_option

DESCRIPTION = """\
Forecast live Coinbase markets. Public feeds, no account needed: Exchange (matches +
heartbeat) or Advanced Trade (market_trades + heartbeats). Starts from the recording and
REST candles (no 512-bar wait), completes the open minute from REST trades (or marks that
bar partial), then builds bars from live trades on the exchange's clock.
Forecast records (product, bar time, forecast times, forecast close prices, model,
inference ms, partial bars in the window) go to stdout as JSON lines, or --out FILE; status
goes to stderr every 10 s (trades, duplicates, rejected, gaps, late, partial bars). Every
trade and bar is in --recording (SQLite) before it counts; one process per recording (a
second is refused); restart with the same recording (even after kill -9) to resume: the
outage is repaired over REST, a long one bar for bar from REST candles. Lost trades are
repaired over REST while the socket is read on; the bars they touch wait for the repair.
Malformed messages are logged, counted and skipped; the exchange clock follows what the
messages agree on, never one message. 'ovcast replay', 'ovcast finetune' and 'ovcast
export' read the recording (read-only). SIGHUP reloads the model package (e.g. after
'ovcast finetune --convert' wrote a new one there) without stopping.

The embedded default model was trained on ETTh1, not on markets: its forecasts of prices
mean little until fine-tuned ('ovcast finetune').

--dashboard 127.0.0.1:8050 serves a page from this process: candlesticks with the latest
forecast drawn ahead of the last bar, feed health (connected, last message age, reconnects,
gaps repaired), inference latency and the model in use, all updated live.

example:
  ovcast live --product BTC-USD --product ETH-USD --model models/btc --recording runs/live.db
  ovcast live --product BTC-USD --model models/btc --dashboard 127.0.0.1:8050
"""


def register(subparsers) -> None:
    from ..market.coinbase import ADVANCED_REST_URL, EXCHANGE_REST_URL, EXCHANGE_WS_URL

    p = subparsers.add_parser(
        "live",
        help="forecast live Coinbase markets at every bar close",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--product", action="append", required=True, help="e.g. BTC-USD (repeatable)")
    p.add_argument(
        "--model", required=True, metavar="DIR", help="model package (7 market channels)"
    )
    p.add_argument("--recording", default="ovcast-live.db", metavar="FILE", help="SQLite recording")
    p.add_argument("--feed", choices=("exchange", "advanced"), default="exchange")
    p.add_argument("--interval", type=int, default=60, help="bar interval in seconds (default 60)")
    p.add_argument("--grace", type=float, default=3.0, help="seconds a bar waits for late trades")
    p.add_argument(
        "--max-ahead",
        type=float,
        default=120.0,
        metavar="S",
        help="reject trades and heartbeats stamped more than S seconds ahead of the exchange "
        "clock (default 120)",
    )
    p.add_argument(
        "--ws-url", default=None, help=f"default: {EXCHANGE_WS_URL} (or Advanced Trade's)"
    )
    p.add_argument(
        "--rest-url", default=EXCHANGE_REST_URL, help="Exchange REST: time, candles, trades"
    )
    p.add_argument(
        "--advanced-rest-url",
        default=ADVANCED_REST_URL,
        help="Advanced Trade REST: trades for the open minute and repairs with --feed advanced",
    )
    p.add_argument("--out", metavar="FILE", help="forecast records as JSON lines (default: stdout)")
    p.add_argument(
        "--backfill-bars",
        type=int,
        default=0,
        help="bars of REST history to record at start (default: window + indicator warm-up); "
        "more gives 'ovcast finetune' a data set at once",
    )
    add_dashboard_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import asyncio
    import logging
    import signal

    import orjson

    from ..market.coinbase import ADVANCED_WS_URL, EXCHANGE_WS_URL
    from ..market.export import open_output
    from ..pipeline.live import LiveConfig, LivePipeline

    log = logging.getLogger("ovcast.live")
    check_options(args)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request is noise here
    ws_url = args.ws_url or (EXCHANGE_WS_URL if args.feed == "exchange" else ADVANCED_WS_URL)
    if args.feed == "advanced":
        for product in args.product:
            if product.endswith("-USDC"):
                log.warning(
                    "%s on Advanced Trade: Coinbase is reported (not verified here) to send "
                    "%s data for it, which ovcast rejects as not subscribed; if nothing is "
                    "recorded, use --product %s",
                    product,
                    product[:-1],
                    product[:-1],
                )
    out = open_output(args.out, "ab") if args.out else sys.stdout.buffer

    def sink(record: dict) -> None:
        out.write(orjson.dumps(record) + b"\n")
        out.flush()

    pipeline = LivePipeline(
        LiveConfig(
            products=args.product,
            model_dir=args.model,
            recording=args.recording,
            ws_url=ws_url,
            rest_url=args.rest_url,
            advanced_rest_url=args.advanced_rest_url,
            feed=args.feed,
            interval_s=args.interval,
            backfill_bars=args.backfill_bars,
            grace_s=args.grace,
            max_ahead_s=args.max_ahead,
        ),
        sink,
    )
    dashboard = None
    if args.dashboard:
        from ..dashboard import engine_summary, open_dashboard, tee

        dashboard = open_dashboard(
            args.dashboard,
            model=lambda: engine_summary(pipeline.engine),  # the engine in use after a reload
            feed=pipeline.feed_summary,
            streams=lambda: pipeline.streams,  # their forecast scorecards
        )
        pipeline.sink = tee(sink, dashboard.state.add_forecast)
        pipeline.on_bar = dashboard.state.add_bar

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        # In the writer thread, between bars: a compile takes ~0.1-0.5 s, and the socket must
        # keep being read meanwhile.
        loop.add_signal_handler(signal.SIGHUP, pipeline.request_reload)
        await pipeline.run(stop)

    try:
        asyncio.run(main())
    finally:
        if dashboard is not None:
            dashboard.close()
        if args.out:
            out.close()
    return 0


def check_options(args: argparse.Namespace) -> None:
    """Every option problem is one clear line before anything starts (``ConfigError``)."""
    import math
    from pathlib import Path
    from urllib.parse import urlparse

    from ..errors import ConfigError

    problems = []
    if any(not p.strip() or p != p.strip() for p in args.product):
        problems.append(f"--product must name a product such as BTC-USD, got {args.product}")
    if not (math.isfinite(args.grace) and args.grace >= 0):
        problems.append(f"--grace must be a number of seconds >= 0, got {args.grace:g}")
    if not (math.isfinite(args.max_ahead) and args.max_ahead > 0):
        problems.append(f"--max-ahead must be a number of seconds > 0, got {args.max_ahead:g}")
    if args.interval <= 0:
        problems.append(f"--interval must be > 0 seconds, got {args.interval}")
    if args.backfill_bars < 0:
        problems.append(f"--backfill-bars must be >= 0, got {args.backfill_bars}")
    if args.ws_url is not None and urlparse(args.ws_url).scheme not in ("ws", "wss"):
        problems.append(f"--ws-url must be a WebSocket URL (ws:// or wss://), got {args.ws_url!r}")
    for flag, url in (
        ("--rest-url", args.rest_url),
        ("--advanced-rest-url", args.advanced_rest_url),
    ):
        if url and urlparse(url).scheme not in ("http", "https"):
            problems.append(f"{flag} must be an http:// or https:// URL, got {url!r}")
    if not args.rest_url:
        problems.append(
            "--rest-url (Exchange REST) is needed for either feed: the history the model "
            "warms up on comes from its candles, and the exchange clock from its /time"
        )
    if args.feed == "advanced" and not args.advanced_rest_url:
        problems.append("--feed advanced needs --advanced-rest-url (its trades repair gaps)")
    if args.out and Path(args.out).resolve() == Path(args.recording).resolve():
        problems.append("--out must not be the --recording file (forecasts would corrupt it)")
    if problems:
        raise ConfigError("; ".join(problems))
