"""Batch forecasting input: a table of many series (CSV, Parquet) or a market recording.

A table has one row per series and time step: a series id column, an optional timestamp
column and the model's channels by name (other columns are ignored). Rows of a series need
not be adjacent; within a series they must be in time order. A recording (``.db``) gives
one series per product: its bars' 7 market channels (close ... volatility, in the model's
channel order as the live pipeline feeds them) from the bar where every indicator is defined
on, timestamped by bar start.

Everything is read as an Arrow table, the format Ray Data moves between workers too, so the
local path and the Ray path see the very same values.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, require

TABLE_SUFFIXES = (".csv", ".parquet")
RECORDING_SUFFIXES = (".db", ".sqlite")


@dataclass(frozen=True)
class Columns:
    """Which input columns are what."""

    id: str
    timestamp: str | None
    channels: tuple[str, ...]


def pyarrow() -> Any:
    return require("pyarrow", extra="parquet", purpose="batch forecasting")


def read_input(path: str | Path, columns: Columns) -> Any:
    """The input as an Arrow table of the id, timestamp and channel columns (checked)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"input {path} does not exist")
    suffix = path.suffix.lower()
    if suffix in RECORDING_SUFFIXES:
        return recording_table(path, columns)
    pa = pyarrow()
    try:
        if suffix == ".csv":
            from pyarrow import csv

            table = csv.read_csv(path)
        elif suffix == ".parquet" or path.is_dir():
            from pyarrow import parquet

            table = parquet.read_table(path)
        else:
            raise DataError(
                f"unsupported input {path.name}; expected {', '.join(TABLE_SUFFIXES)}, a folder "
                f"of Parquet files, or a recording ({', '.join(RECORDING_SUFFIXES)})"
            )
    except (OSError, pa.ArrowInvalid) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    return select_columns(table, columns, where=str(path))


def select_columns(table: Any, columns: Columns, *, where: str) -> Any:
    """The id, timestamp and channel columns of ``table``; a clear error naming what is missing."""
    wanted = [columns.id, *([columns.timestamp] if columns.timestamp else []), *columns.channels]
    missing = [c for c in wanted if c not in table.column_names]
    if missing:
        raise DataError(
            f"{where} has no column(s) {missing}; it has {table.column_names}. Expected a series "
            f"id column (--id-column), a timestamp column (--timestamp-column) and the model's "
            f"channels {list(columns.channels)}"
        )
    return table.select(wanted)


def series_values(table: Any, columns: Columns, *, where: str) -> np.ndarray:
    """One series' channels as float32 (rows, channels); non-finite cells are refused."""
    values = np.column_stack(
        [table.column(c).to_numpy(zero_copy_only=False) for c in columns.channels]
    ).astype(np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise DataError(
            f"{where}: row {row} of the series, column {columns.channels[col]!r} is "
            f"{values[row, col]} (missing or not finite); fill or drop such rows first"
        )
    return values.astype(np.float32)


def recording_table(path: Path, columns: Columns) -> Any:
    """A recording's products as one table: id, bar start time and the 7 market channels."""
    from ..market.features import CHANNELS, compute_features, warmup_bars
    from ..market.recording import Recording

    if len(columns.channels) != len(CHANNELS):
        raise DataError(
            f"a recording gives the {len(CHANNELS)} market channels {list(CHANNELS)}; the model "
            f"takes {len(columns.channels)} {list(columns.channels)}"
        )
    pa = pyarrow()
    parts = []
    with Recording(path) as recording:
        for product in recording.products():
            bars = recording.read_bars(product)
            if len(bars) == 0:
                continue
            features = compute_features(bars.high, bars.low, bars.close, bars.volume)
            keep = slice(warmup_bars(), None)
            data = {
                columns.id: pa.array([product] * len(bars.time_s[keep]), pa.string()),
                columns.timestamp or "timestamp": pa.array(
                    bars.time_s[keep].astype("datetime64[s]")
                ),
            }
            # By position, as the live pipeline feeds them: close ... volatility.
            data.update({name: features[keep, i] for i, name in enumerate(columns.channels)})
            parts.append(pa.table(data))
    if not parts:
        raise DataError(f"{path} holds no bars; record some with 'ovcast live --record'")
    return pa.concat_tables(parts)
