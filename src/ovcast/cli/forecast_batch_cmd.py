"""ovcast forecast-batch INPUT --model PKG --out OUT: every window of many series, here or on Ray."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

log = logging.getLogger("ovcast.forecast_batch")

DESCRIPTION = """\
Forecast every window of many series (backtests, offline scoring) and write the forecasts
with their series ids and timestamps. Windows are cut lazily, --batch-size at a time, so
millions of them need no more memory than the input.

input: .csv or .parquet (or a folder of Parquet files) with one row per series and time
step, rows in any order: a series id column (--id-column), a timestamp column
(--timestamp-column; found by its name date/datetime/time/timestamp/ts/open_time when not
given) and the model's channels by name (header names trimmed, any case; other columns are
ignored); or a recording (.db), one series per product, its 7 market channels from the first
bar where every indicator is defined.

Each series gives a window ending at every --stride-th row from its CONTEXT-th on (shorter
series are skipped; when all are, nothing is written and the exit code is 1). Output
(.parquet or .csv, never the input), one row per window and horizon step:
  <id>, origin (the window's last timestamp), <timestamp> (the forecast's time), step
  (1..horizon), then one column per channel.
It is written to a temporary file beside OUT and renamed at the end: an interrupted or failed
run leaves an earlier OUT as it was.
By default values are in model space; with --raw they are in raw units (the package's
scaler scales the windows and scales the forecasts back).

--ray runs it on Ray Data (pip install 'ovcast[ray]'): the input is read in blocks by the
cluster, each series forecast by one of --workers tasks at a time, each Ray worker process
compiling its engine once; the same forecasts as without --ray (series may come in another
order). It needs a timestamp column: the shuffle does not keep a series' rows in file order.

examples:
  ovcast forecast-batch series.parquet --model models/default --out forecasts.parquet
  ovcast forecast-batch etth.csv --model models/default --id-column station --raw --out f.csv
  ovcast forecast-batch run.db --model models/btc --out backtest.parquet --stride 60
  ovcast forecast-batch series.parquet --model /shared/models/m --out f.parquet \\
      --ray --address 10.0.0.5:6379 --workers 16
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "forecast-batch",
        help="forecast every window of many series (CSV, Parquet, a recording), here or on Ray",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", metavar="INPUT", help=".csv, .parquet, a Parquet folder or a .db")
    p.add_argument("--model", required=True, metavar="PKG", help="the model package folder")
    p.add_argument("--out", required=True, metavar="OUT", help="a .parquet or .csv file")
    p.add_argument(
        "--id-column",
        default="series_id",
        help="the series id column (default: series_id; a recording's is its product)",
    )
    p.add_argument(
        "--timestamp-column",
        metavar="NAME",
        help="the timestamp column (default: the one named date/datetime/time/timestamp/ts/open_time, any case)",
    )
    p.add_argument("--stride", type=int, default=1, help="rows between windows (default: 1)")
    p.add_argument(
        "--batch-size", type=int, default=256, help="windows per forecast call (default: 256)"
    )
    p.add_argument("--raw", action="store_true", help="input and output in raw units")
    ray = p.add_argument_group("on Ray Data")
    ray.add_argument("--ray", action="store_true", help="run on a Ray cluster")
    ray.add_argument(
        "--address",
        metavar="ADDR",
        help="the Ray cluster to join (HOST:PORT of its head, 'auto'); default: a local one",
    )
    ray.add_argument(
        "--workers",
        type=int,
        help="forecasting tasks at a time (default: one per CPU of the cluster)",
    )
    ray.add_argument(
        "--worker-cpus",
        type=float,
        default=1.0,
        help="CPUs Ray reserves for each forecasting task; its engine runs that many threads "
        "(default: 1)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..batch.forecast import BatchSpec, detect_columns, forecast_local
    from ..batch.source import RECORDING_SUFFIXES, column_names
    from ..errors import ConfigError
    from ..package import ModelPackage

    manifest = ModelPackage.load(args.model).manifest
    source, out = Path(args.input).resolve(), Path(args.out).resolve()
    if out == source or source in out.parents:
        raise ConfigError(f"--out {args.out} would overwrite the input {args.input}")
    names = column_names(args.input)
    timestamp = args.timestamp_column
    if args.input.lower().endswith(RECORDING_SUFFIXES):
        timestamp = timestamp or "time"
    columns = detect_columns(names, args.id_column, timestamp, list(manifest.channel_names))
    spec = BatchSpec(
        args.model, columns, stride=args.stride, batch_size=args.batch_size, raw=args.raw
    )
    # SIGTERM as SIGINT: unwind, so that the partial output is removed (see TableWriter).
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        if args.ray:
            from ..batch.ray_data import forecast_on_ray

            stats = forecast_on_ray(
                args.input,
                args.out,
                spec,
                address=args.address,
                workers=args.workers,
                worker_cpus=args.worker_cpus,
            )
        else:
            stats = forecast_local(args.input, args.out, spec)
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(
        f"wrote {args.out}: {stats.windows} windows"
        + (f" of {stats.series} series" if stats.series else "")
        + (f" ({stats.skipped} shorter than the context skipped)" if stats.skipped else "")
        + f" in {stats.seconds:.1f} s ({stats.windows_per_s:.0f} windows/s)",
        file=sys.stderr,
    )
    return 0


def _terminated(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)
