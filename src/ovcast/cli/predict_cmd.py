"""ovcast predict MODEL_DIR --input FILE: one forecast (or a batch) from a file."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

import orjson

from ..errors import ConfigError, DataError
from ._output import output_file

log = logging.getLogger("ovcast.predict")

DESCRIPTION = """\
Forecast from a series in a file and write the forecast labelled with the model's channel
names and, when the input has a timestamp column, the future timestamps.

input: .csv (a row per step; a header and a time column are optional: the first column
named date/datetime/time/timestamp/ts/open_time in any case, else a first column that is
not numeric, the rule 'ovcast train' uses), .npy ([time, channels] or [batch, context,
channels]), .json (nested lists, {"past_values": ...}, or a table as pandas writes one:
orient="records", "columns", or columns as lists) or .parquet (needs pyarrow); tables are read as a CSV is.
  - times (ISO 8601 or epoch s/ms/us/ns) must increase: a file out of order or with a
    repeated time is refused, naming the line;
  - a series longer than the model's context gives its last CONTEXT rows (said on stderr);
  - with a header that names every model channel, channels are taken by name (trimmed and
    ignoring case, as train matches them; any order, extra columns ignored, text too);
    otherwise by position, with a warning when the header names other columns. Only the
    columns used must hold numbers;
  - the future steps on at the input's recent interval (its most common of the last 24),
    in the zone its times were written in; a window with gaps or uneven steps is warned
    about (the model reads rows as evenly spaced steps).
output: JSON on stdout ({"channels", timestamps, "predictions"}), or --output FILE as
.csv (header: timestamp or step, then channels), .json, .parquet (needs pyarrow) or .npy.
A forecast with NaN or inf (an input far outside the model's range) is an error: nothing
is written.

By default input and output are in model space (already scaled). With --raw the input is
in raw units: it is scaled with the package's scaler and the forecast scaled back.

Packages with more inputs than the window (TinyTimeMixer; `ovcast info` lists them) take
them from --freq-token, --future (known future values of the exogenous channels: a file of
[horizon, exogenous channels], by name when its header names them) and --series-id (which
series' scaler, for packages with one scaler per series).

examples:
  ovcast predict models/default --input ETTh1.csv --raw --output forecast.csv
  ovcast predict models/default --input window.npy --output forecast.npy
  ovcast predict models/default --input window.csv --raw --channels OT --output ot.csv
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "predict",
        help="forecast from a series in a .csv, .parquet, .npy or .json file",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model_dir", metavar="MODEL_DIR")
    p.add_argument(
        "--input", "-i", required=True, metavar="FILE", help=".csv, .parquet, .npy or .json"
    )
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
        "--channels",
        help="comma-separated channel names (any case) or indices to output (default: all)",
    )
    ttm = p.add_argument_group("packages with more inputs (TinyTimeMixer)")
    ttm.add_argument(
        "--freq-token", metavar="TOKEN", help="a frequency token or name ('h', '15min')"
    )
    ttm.add_argument(
        "--future", metavar="FILE", help="known future values of the exogenous channels"
    )
    ttm.add_argument("--series-id", metavar="ID", help="the series, for per-series scalers")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..runtime.engine import Engine
    from ..runtime.series import ForecastTable, read_series, require_finite, write_forecast

    if args.series_id is not None and not args.raw:
        raise ConfigError(
            "--series-id applies to --raw input only (it picks the series' scaler; model-space "
            "input is already scaled): add --raw, or leave --series-id out"
        )
    output = output_file(args.output, "--output") if args.output else None
    series = read_series(args.input)
    engine = Engine(args.model_dir, warmup=False)
    window, notes = series.window_for(engine.context_length, engine.channel_names)
    for note in notes:
        log.info("%s: %s", args.input, note)
    inputs = _other_inputs(args, engine)
    if args.raw:
        forecast = engine.forecast(window, series_id=args.series_id, **inputs)
    else:
        forecast = engine.predict(window, **inputs)
    require_finite(forecast, engine.forecast_channel_names, window, engine.channel_names)
    table = ForecastTable.after(series, forecast, engine.forecast_channel_names)
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


def _other_inputs(args: argparse.Namespace, engine: Any) -> dict[str, Any]:
    """--freq-token and --future as the engine's named inputs."""
    from .._csv import name_key
    from ..package import FREQ_TOKEN, FUTURE_EXOGENOUS
    from ..runtime.series import read_series

    inputs: dict[str, Any] = {}
    if args.freq_token is not None:
        token = args.freq_token
        inputs[FREQ_TOKEN] = int(token) if token.isdigit() else token
    if args.future is not None:
        future = read_series(args.future)
        exogenous = [
            engine.channel_names[i] for i in engine.package.manifest.exogenous_channels or []
        ]
        keys = {name_key(c): i for i, c in enumerate(future.columns or [])}
        if not keys:  # no header: columns in the exogenous channels' order
            inputs[FUTURE_EXOGENOUS] = future.values
        elif all(name_key(c) in keys for c in exogenous):  # by name, as --input's columns
            inputs[FUTURE_EXOGENOUS] = future.values[:, [keys[name_key(c)] for c in exogenous]]
        else:
            missing = [c for c in exogenous if name_key(c) not in keys]
            raise DataError(
                f"--future {args.future}: its header names {future.columns} but not the "
                f"exogenous channels {missing}; expected columns {exogenous} (or no header, "
                "columns in that order)"
            )
    return inputs
