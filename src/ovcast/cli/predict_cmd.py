"""ovcast predict MODEL_DIR --input FILE: one forecast (or a batch) from a file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import orjson

DESCRIPTION = """\
Forecast from a window in a file: .csv (a row per step, a column per channel; header and a
leading timestamp column allowed), .npy ([context, channels] or [batch, context, channels])
or .json (nested lists, or {"past_values": ...}).

By default input and output are in model space (already scaled). With --raw the input is
in raw units: it is scaled with the package's scaler and the forecast scaled back.

examples:
  ovcast predict models/default --input window.csv
  ovcast predict models/default --input window.npy --output forecast.npy
  ovcast predict models/default --input window.csv --raw --channels 0 --output close.csv
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "predict",
        help="forecast from a window in a .csv, .npy or .json file",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model_dir", metavar="MODEL_DIR")
    p.add_argument("--input", "-i", required=True, metavar="FILE", help=".csv, .npy or .json")
    p.add_argument(
        "--output", "-o", metavar="FILE", help=".npy, .json or .csv (default: JSON on stdout)"
    )
    p.add_argument(
        "--raw", action="store_true", help="input and output in raw units, via the package's scaler"
    )
    p.add_argument("--channels", help="comma-separated channel indices to output (default: all)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import DataError
    from ..runtime.engine import Engine
    from ..runtime.inputs import read_array

    window = read_array(args.input)
    engine = Engine(args.model_dir, warmup=False)
    forecast = engine.forecast(window) if args.raw else engine.predict(window)
    if args.channels:
        try:
            picked = [int(c) for c in args.channels.split(",")]
            forecast = forecast[..., picked]
        except (ValueError, IndexError) as exc:
            raise DataError(
                f"--channels {args.channels!r}: expected indices in 0..{engine.num_channels - 1}"
            ) from exc
    if not args.output:
        sys.stdout.buffer.write(
            orjson.dumps({"predictions": forecast}, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"
        )
        return 0
    out = Path(args.output)
    if out.suffix == ".npy":
        np.save(out, forecast)
    elif out.suffix == ".json":
        out.write_bytes(orjson.dumps({"predictions": forecast}, option=orjson.OPT_SERIALIZE_NUMPY))
    elif out.suffix == ".csv":
        if forecast.ndim != 2:
            raise DataError("a .csv output holds one forecast; use .npy or .json for a batch")
        np.savetxt(out, forecast, delimiter=",", fmt="%.7g")
    else:
        raise DataError(f"unsupported output {out.name}; expected .npy, .json or .csv")
    print(f"wrote {out} {list(forecast.shape)}", file=sys.stderr)
    return 0
