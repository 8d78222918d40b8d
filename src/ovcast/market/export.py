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
from typing import IO, Any

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
                _dec(b.open),
                _dec(b.high),
                _dec(b.low),
                _dec(b.close),
                _dec(b.volume),
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


def open_output(path: str | Path, mode: str, **kwargs: Any) -> IO[Any]:
    """Open a file ovcast writes for the user (an export, forecast JSON lines), or say in
    one line why it cannot be (``DataError``)."""
    try:
        return open(path, mode, **kwargs)
    except OSError as exc:
        reason = "it is a directory" if Path(path).is_dir() else exc.strerror or str(exc)
        raise DataError(f"cannot write {path}: {reason}") from None


def export(recording: Recording, product: str, *, what: str, out: str | Path) -> int:
    """Write the file (format from the suffix: .csv or .parquet); returns the row count."""
    out = Path(out)
    suffix = out.suffix.lower()
    if out.is_dir():
        raise DataError(f"cannot write {out}: it is a directory (give a FILE.csv or .parquet)")
    if suffix not in (".csv", ".parquet"):
        raise DataError(f"{out}: the file name must end in .csv or .parquet")
    header, data = rows(recording, product, what)
    try:
        if suffix == ".parquet":
            pa = require("pyarrow", extra="parquet", purpose="writing Parquet")
            import pyarrow.parquet as pq

            columns: list[list] = [[row[k] for row in data] for k in range(len(header))]
            table = pa.table(dict(zip(header, columns, strict=True)))
            with open_output(out, "wb") as f:
                pq.write_table(table, f)
        else:
            with open_output(out, "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(header)
                writer.writerows(data)
    except OSError as exc:  # a full disk, a file that refuses writes
        raise DataError(f"cannot write {out}: {exc.strerror or exc}") from None
    return len(data)
