"""ovcast predict MODEL_DIR --input FILE: one forecast (or a batch) from a file."""

from __future__ import annotations

import argparse
import logging
import sys

import orjson

from ._output import output_file

log = logging.getLogger("ovcast.predict")

DESCRIPTION = """\
Forecast from a series in a file and write the forecast labelled with the model's channel
names and, when the input has a timestamp column, the future timestamps.

input: .csv (a row per step; a header and a time column are optional: the first column
named date/datetime/time/timestamp/ts/open_time in any case, else a first column that is
not numeric, the rule 'ovcast train' uses), .npy ([time, channels] or [batch, context,
channels]) or .json (nested lists, or {"past_values": ...}).
  - times (ISO 8601 or epoch s/ms/us/ns) must increase: a file out of order or with a
    repeated time is refused, naming the line;
  - a series longer than the model's context gives its last CONTEXT rows (said on stderr);
  - with a header that names every model channel, channels are taken by name (trimmed and
    ignoring case, as train matches them; any order, extra columns ignored); otherwise by
    position, with a warning when the header names other columns.
output: JSON on stdout ({"channels", timestamps, "predictions"}), or --output FILE as
.csv (header: timestamp or step, then channels), .json, .parquet (needs pyarrow) or .npy.

By default input and output are in model space (already scaled). With --raw the input is
in raw units: it is scaled with the package's scaler and the forecast scaled back.

examples:
  ovcast predict models/default --input ETTh1.csv --raw --output forecast.csv
  ovcast predict models/default --input window.npy --output forecast.npy
  ovcast predict models/default --input window.csv --raw --channels OT --output ot.csv
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "predict",
        help="forecast from a series in a .csv, .npy or .json file",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model_dir", metavar="MODEL_DIR")
    p.add_argument("--input", "-i", required=True, metavar="FILE", help=".csv, .npy or .json")
    p.add_argument(
        "--output",
        "-o",
        metavar="FILE",
        help=".csv, .json, .parquet or .npy (default: JSON on stdout)",
    )
    p.add_argument(
        "--raw", action="store_true", help="input and output in raw units, via the package's scaler"
    )
    p.add_argument(
        "--channels", help="comma-separated channel names or indices to output (default: all)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..runtime.engine import Engine
    from ..runtime.series import ForecastTable, read_series, write_forecast

    output = output_file(args.output, "--output") if args.output else None
    series = read_series(args.input)
    engine = Engine(args.model_dir, warmup=False)
    window, notes = series.window_for(engine.context_length, engine.channel_names)
    for note in notes:
        log.info("%s: %s", args.input, note)
    forecast = engine.forecast(window) if args.raw else engine.predict(window)
    table = ForecastTable.after(series, forecast, engine.channel_names)
    if args.channels:
        table = table.select([c.strip() for c in args.channels.split(",")])
    if output is None:
        sys.stdout.buffer.write(
            orjson.dumps(table.to_json(), option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"
        )
        return 0
    write_forecast(table, output)
    print(f"wrote {output} {list(table.values.shape)}", file=sys.stderr)
    return 0
