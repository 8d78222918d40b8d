"""ovcast replay RECORDING --model DIR: run recorded bars through the live pipeline's code."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from ._dashboard import add_dashboard_option

DESCRIPTION = """\
Run the bars of a recording (SQLite, as the live pipeline writes it) through the same
per-product code as live: features, ring buffer, a forecast at every bar close. Products
are interleaved in bar-time order. Forecast records go to stdout as JSON lines (or --out
FILE). The scaler stored in the recording is used; a recording without one gets scalers
fitted on its first --fit-bars bars (the same every run), said so on stderr. The recording
is opened read-only: replaying never changes it. Missing bars (a hole in an old
recording) are never run over as if consecutive: a short hole counts as partial bars in
partial_in_window, a hole longer than the model's window restarts the warm-up.

Every forecast is scored against the bars that really came, step by step as its horizon
elapses (MAE of the close per horizon bucket and hit rate, beside the random walk and drift
on the same bars; partial bars never scored, filled ones scored at the last price): the
table is printed on stderr at the end, and --scorecard FILE writes it as JSON. On prices
the random walk is usually the one to beat.

--dashboard HOST:PORT shows it in a browser as it plays (default pace: 60x real time, one
minute bar a second, after an instant warm-up): forecasts then go to the page (and to
--out if given), not the terminal, which shows one status line. The page stays up after
the end until Ctrl-C. --demo needs no recording and no network: it replays a synthetic
market (a random walk with a daily rhythm) through the embedded default model (converted
and cached on first use, as 'ovcast quickstart' does). The default model was trained on ETTh1, not on markets:
the demo shows the machinery, not a trading signal.

examples:
  ovcast replay --demo --dashboard 127.0.0.1:8050       then open http://127.0.0.1:8050/
  ovcast replay runs/live.db --model models/btc --product BTC-USD --speed 60
  ovcast replay runs/live.db --model models/btc --out /dev/null --scorecard day.json
"""

DEMO_PRODUCTS = ("DEMO-USD",)
DEMO_LIVE_BARS = 600  # paced bars after the warm-up: ten minutes at the default pace


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "replay",
        help="run a recording through the live pipeline (forecast at every bar close)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("recording", metavar="RECORDING", nargs="?", help="SQLite recording")
    p.add_argument(
        "--demo", action="store_true", help="a synthetic market instead of a recording (offline)"
    )
    p.add_argument(
        "--model",
        metavar="DIR",
        help="model package (7 market channels); default with --demo: the embedded model",
    )
    p.add_argument("--product", action="append", help="product(s) to replay (default: all)")
    p.add_argument("--interval", type=int, default=60, help="bar interval in seconds (default 60)")
    p.add_argument(
        "--speed",
        type=float,
        default=None,
        help="replay speed-up over real time (default: as fast as possible; 60 with --dashboard)",
    )
    p.add_argument("--fit-bars", type=int, default=1000, help="bars to fit missing scalers on")
    p.add_argument(
        "--out",
        metavar="FILE",
        help="forecast records as JSON lines (default: stdout; with --dashboard: the page only)",
    )
    p.add_argument(
        "--scorecard",
        metavar="FILE",
        help="also write the forecasts' scorecard (per product and horizon bucket) as JSON",
    )
    add_dashboard_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging
    import math
    import signal
    import tempfile
    import threading
    from pathlib import Path

    import orjson

    from ..errors import ConfigError, DataError
    from ..market.export import open_output
    from ..market.recording import Recording
    from ..pipeline.replay import Pace, ReplayProgress, replay
    from ..runtime.engine import Engine
    from ._output import output_file
    from ._status import StatusLine

    log = logging.getLogger("ovcast.replay")
    if bool(args.recording) == bool(args.demo):
        raise DataError("give a RECORDING to replay, or --demo for a synthetic market (not both)")
    if not args.model and not args.demo:
        raise DataError("--model DIR is required (a package with the 7 market channels)")
    speed = args.speed if args.speed is not None else (60.0 if args.dashboard else 0.0)
    if not (math.isfinite(speed) and speed >= 0):
        raise ConfigError(f"--speed must be >= 0 (0: as fast as possible), got {speed:g}")
    if args.interval <= 0 or args.fit_bars < 2:
        raise ConfigError("--interval must be > 0 and --fit-bars at least 2")

    scorecard_file = output_file(args.scorecard, "--scorecard") if args.scorecard else None
    if args.recording:  # refused before the model is loaded: a typo is one clear line
        Recording(args.recording, readonly=True).close()
        for flag, file in (("--out", args.out), ("--scorecard", args.scorecard)):
            if file and Path(file).resolve() == Path(args.recording).resolve():
                raise ConfigError(f"{flag} must not be the RECORDING (it would be overwritten)")
    engine = Engine(args.model or _default_package_dir())
    workdir = None
    path = args.recording
    if args.demo:
        workdir = tempfile.TemporaryDirectory(prefix="ovcast-demo-")
        path = _demo_recording(workdir.name, engine, args.interval)
    # With a dashboard the forecasts go to the page (and to --out if given), not the terminal.
    out = open_output(args.out, "wb") if args.out else None if args.dashboard else sys.stdout.buffer

    def write(record: dict[str, Any]) -> None:
        if out is None:
            return
        out.write(orjson.dumps(record) + b"\n")
        if speed > 0:
            out.flush()  # paced: a reader downstream sees each record as it is made

    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    dashboard = None
    progress = ReplayProgress("demo" if args.demo else str(path))
    status = StatusLine()
    try:
        with Recording(path, readonly=True) as recording, status:
            sink: Callable[[dict[str, Any]], None] = write
            show_bar: Callable[[str, Any], None] | None = None
            if args.dashboard:
                from ..dashboard import engine_summary, open_dashboard, tee

                dashboard = open_dashboard(
                    args.dashboard,
                    model=lambda: engine_summary(engine),
                    feed=progress.summary,
                    streams=lambda: progress.streams or {},
                )
                sink, show_bar = tee(write, dashboard.state.add_forecast), dashboard.state.add_bar
            page = dashboard.url if dashboard is not None else None

            def on_bar(product: str, bar: Any) -> None:
                if show_bar is not None:
                    show_bar(product, bar)
                status.show(*_status_text(progress, page))

            replay(
                recording,
                engine,
                sink=sink,
                products=args.product,
                interval_s=args.interval,
                fit_bars=args.fit_bars,
                on_bar=on_bar,
                pace=Pace(args.interval, speed) if speed > 0 else None,
                stop=stop,
                progress=progress,
            )
            if out is not None:
                out.flush()
            status.show(*_status_text(progress, page), now=True)
        _report(progress, scorecard_file, quiet=getattr(args, "quiet", False))
        if dashboard is not None and not stop.is_set():
            log.info("replay finished; the dashboard stays at %s until Ctrl-C", dashboard.url)
            stop.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        status.close()
        if dashboard is not None:
            dashboard.close()
        if args.out and out is not None:
            out.close()
        if workdir is not None:
            workdir.cleanup()
    return 0


def _status_text(progress, page: str | None) -> tuple[str, ...]:
    """The one status line: progress, forecasts, each product's scorecard, the page; then
    shorter forms for a narrow terminal (scorecards kept, the page last to go)."""
    summary = progress.summary()
    streams = progress.streams or {}
    forecasts = sum(stream.forecasts for stream in streams.values())
    parts = [
        f"{summary['state']} {summary['replayed_bars']}/{summary['total_bars']} bars, "
        f"{forecasts} forecasts"
    ]
    if page:
        parts.append(f"page {page}")
    cards = [(p, s.scorecard) for p, s in streams.items() if s.scorecard is not None]
    full = " · ".join(parts + [f"{product} {card.brief()}" for product, card in cards])
    short = [f"{product} {card.brief(short=True)}" for product, card in cards]
    brief = f"{summary['state']} {summary['replayed_bars']}/{summary['total_bars']}"
    return full, " · ".join(parts + short), " · ".join([brief, *short])


def _report(progress, scorecard_file, *, quiet: bool) -> None:
    """The scorecard of every product replayed: a table on stderr, JSON in --scorecard."""
    import orjson

    from ..pipeline.scorecard import RULES, format_table, summaries

    products = summaries(progress.streams or {})
    if not quiet:
        for summary in products.values():
            print(format_table(summary), file=sys.stderr)
    if scorecard_file is not None:
        document = {"source": progress.summary()["source"], "rules": RULES, "products": products}
        scorecard_file.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")


def _default_package_dir() -> str:
    from ..default_model import default_package
    from ..errors import MissingDependencyError

    try:
        package, converted = default_package()
    except MissingDependencyError as exc:  # first use converts, which needs torch
        raise MissingDependencyError(
            f"{exc}, or pass --model DIR (a converted package with the 7 market channels)"
        ) from exc
    if converted:
        print(f"converted the embedded default model into {package.path}", file=sys.stderr)
    return str(package.path)


def _demo_recording(folder: str, engine, interval_s: int) -> str:
    """A recording of synthetic bars: warm-up for ``engine``, then DEMO_LIVE_BARS to watch."""
    import time

    from ..market.features import warmup_bars
    from ..market.recording import Recording
    from ..market.synthetic import synthetic_bars
    from ..pipeline.stream import fit_market_scaler

    path = f"{folder}/demo.db"
    history = engine.context_length + warmup_bars()
    count = history + DEMO_LIVE_BARS
    end = int(time.time() // interval_s) * interval_s
    with Recording(path) as recording:
        for seed, product in enumerate(DEMO_PRODUCTS):
            bars = synthetic_bars(count, interval_s=interval_s, end_s=end, seed=seed)
            for bar in bars:
                recording.add_bar(product, bar)
            scaler = fit_market_scaler(bars[:history])  # fitted on the warm-up, as live does
            recording.set_meta(f"scaler:{product}", scaler.to_dict())
    return path
