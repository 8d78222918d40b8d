"""Recorded data out to users' own tools: bars or trades of one product, CSV or Parquet.

    export(recording, "BTC-USD", what="bars", out="btc.csv")      # or .parquet

CSV has a header; prices, sizes and volumes are written exactly as recorded (decimal text,
never through a float); times are ISO 8601 UTC beside the epoch seconds; bars carry the
``filled`` and ``partial`` marks (exclude both from anything scored). Parquet (with
pyarrow installed) keeps the decimals as strings for the same reason.
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

from ..errors import DataError, require
from .recording import Recording

BAR_COLUMNS = (
    "time", "time_s", "open", "high", "low", "close", "volume", "trades", "filled", "partial",
)  # fmt: skip
TRADE_COLUMNS = ("time", "time_s", "trade_id", "price", "size", "side")


def _dec(value) -> str:
    """A Decimal as plain positional text ("0.00000001", never "1E-8")."""
    return format(value, "f")


def _iso(epoch_s: float) -> str:
    stamp = dt.datetime.fromtimestamp(epoch_s, dt.timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if epoch_s % 1 else "%Y-%m-%dT%H:%M:%SZ")


def rows(recording: Recording, product: str, what: str) -> tuple[tuple[str, ...], list[list]]:
    """(header, rows) of ``what`` ('bars' or 'trades') for one product."""
    if product not in recording.products():
        raise DataError(
            f"{recording.path} holds no data of {product}; it has {recording.products()}"
        )
    if what == "bars":
        return BAR_COLUMNS, [
            [
                _iso(b.start_s),
                b.start_s,
                str(b.open),
                str(b.high),
                str(b.low),
                str(b.close),
                str(b.volume),
                b.trades,
                int(b.filled),
                int(b.partial),
            ]  # fmt: skip
            for b in recording.bars(product)
        ]
    if what == "trades":
        return TRADE_COLUMNS, [
            [_iso(t.time_s), f"{t.time_s:.6f}", t.trade_id, _dec(t.price), _dec(t.size), t.side]
            for t in recording.trades(product)
        ]
    raise DataError(f"--what must be 'bars' or 'trades', got {what!r}")


def export(recording: Recording, product: str, *, what: str, out: str | Path) -> int:
    """Write the file (format from the suffix: .csv or .parquet); returns the row count."""
    out = Path(out)
    header, data = rows(recording, product, what)
    if out.suffix.lower() == ".parquet":
        pa = require("pyarrow", extra="parquet", purpose="writing Parquet")
        import pyarrow.parquet as pq

        columns: list[list] = [[row[k] for row in data] for k in range(len(header))]
        table = pa.table(dict(zip(header, columns, strict=True)))
        pq.write_table(table, out)
    elif out.suffix.lower() == ".csv":
        with open(out, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(data)
    else:
        raise DataError(f"{out}: the file name must end in .csv or .parquet")
    return len(data)
