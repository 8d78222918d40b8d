"""Series to train on and score: from a CSV, from market bars (a CSV or a recording), or arrays.

    series = read_csv("ETTh1.csv")                                   # every numeric column
    series = market_series(load_bars("btc.csv"), FeatureConfig())    # the 7 live channels
    series = Series(values, ("a", "b"))                              # arrays you already have

Pure numpy: evaluating a converted package needs no torch. Bars from any source take the
same path (on the grid, validated, features computed as the live pipeline computes them),
and their ``filled`` and ``partial`` marks travel with the rows, so that scoring can leave
those bars out (``splits.py``).
"""

from __future__ import annotations

import datetime as dt
import decimal
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._csv import Problems, Table, read_table, repeated, time_column
from ..errors import ConfigError, DataError, OvcastError
from ..market.bars import (
    Bars,
    bar_interval,
    bar_value_problems,
    fill_gaps,
    read_ohlcv_csv,
)
from ..market.features import CHANNELS, FeatureConfig, compute_features

SQLITE_MAGIC = b"SQLite format 3\x00"


@dataclass(frozen=True)
class Series:
    """A multichannel series: values (time, channels), channel names, and which rows are real.

    Build one with ``Series.of(values, columns)``; the masks default to "every row is real".
    """

    values: np.ndarray  # (time, channels) float32
    columns: tuple[str, ...]
    time_s: np.ndarray | None  # (time,) epoch seconds, when known
    filled: np.ndarray  # (time,) bool: bars with no trades, filled flat at the last close
    partial: np.ndarray  # (time,) bool: bars not proven complete (a live start-up minute)
    origin: str = ""  # what a row is, for messages that count rows ("1500 bars less ...")

    @classmethod
    def of(
        cls,
        values: np.ndarray,
        columns: Sequence[str],
        *,
        time_s: np.ndarray | None = None,
        filled: np.ndarray | None = None,
        partial: np.ndarray | None = None,
        origin: str = "",
    ) -> Series:
        rows = len(values)
        no_row = np.zeros(rows, bool)
        return cls(
            np.asarray(values, np.float32),
            tuple(columns),
            time_s,
            no_row if filled is None else np.asarray(filled, bool),
            no_row if partial is None else np.asarray(partial, bool),
            origin,
        )

    def __post_init__(self) -> None:
        rows = len(self.values)
        if self.values.ndim != 2 or self.values.shape[1] != len(self.columns):
            raise DataError(
                f"values of shape {self.values.shape} do not match the columns {self.columns}"
            )
        if len(self.filled) != rows or len(self.partial) != rows:
            raise DataError(f"the filled and partial masks must have {rows} rows like the values")
        bad = np.argwhere(~np.isfinite(self.values))
        if len(bad):
            row, channel = bad[0]
            raise DataError(
                f"{len(bad)} values are NaN or infinite, the first in row {row}, "
                f"channel {self.columns[channel]!r}"
            )

    def __len__(self) -> int:
        return len(self.values)


def read_csv(
    path: str | Path,
    *,
    columns: Sequence[str] | None = None,
    timestamp_column: str | None = None,
    time_unit: str = "auto",
) -> Series:
    """Numeric ``columns`` (default: all but the time column) of a CSV, refusing bad cells.

    Names are matched trimmed and ignoring case. The time column is ``timestamp_column``,
    else the one ``_csv.time_column`` finds (the rule predict uses too), else none; its
    times must parse and increase strictly.
    """
    return table_series(
        read_csv_table(path),
        columns=columns,
        timestamp_column=timestamp_column,
        time_unit=time_unit,
    )


def read_csv_table(path: str | Path) -> Table:
    """The cells of a CSV of a time column and numeric columns, for ``table_series``."""
    return read_table(path, expected="a header line and numeric rows")


def table_series(
    table: Table,
    *,
    columns: Sequence[str] | None = None,
    timestamp_column: str | None = None,
    time_unit: str = "auto",
) -> Series:
    """``read_csv`` of a table already read (to look at its header first)."""
    if table.header_is_data():
        raise DataError(
            f"{table.path} has no header line; its first line is data. Add a line naming the "
            "columns above it, e.g. 'date,a,b' (a time column named date, time or timestamp "
            "is the time; the others are channels)"
        )
    if timestamp_column is not None:
        time_name: str | None = table.header[table.column(timestamp_column)]
    else:
        found = time_column(table.header, table.rows[0])
        time_name = None if found is None else table.header[found]
    if columns:
        refuse_repeats(columns, "--columns")
        missing = [c for c in columns if not table.has(c)]
        if missing:
            raise DataError(f"{table.path} has no column(s) {missing}; it has {table.header}")
        wanted = [table.header[table.column(c)] for c in columns]
        if time_name in wanted:
            raise DataError(
                f"{time_name!r} is the time column of {table.path}, not a channel; leave it out "
                "of --columns (or name another time column with --timestamp-column)"
            )
    else:
        wanted = [h for h in table.header if h != time_name]
        if "" in wanted:
            raise DataError(
                f"{table.path}: column {table.header.index('') + 1} has no name in the header "
                "line; name it, or choose the columns with --columns (a pandas index column: "
                "write the file with index=False)"
            )
    time_s = table.times(time_name, time_unit) if time_name else None
    values = table.numbers(wanted).astype(np.float32)
    return Series.of(values, wanted, time_s=time_s)


def fingerprint(path: str | Path, series: Series) -> dict[str, Any]:
    """What a run trained on: the file (absolute path, SHA-256) and the series read from it.

    Stored in training.json, it lets a resume refuse data that changed and ``ovcast
    evaluate`` tell that it scores the run's own data (whose train rows it must not score).
    """
    from ..hf.loading import sha256_file

    path = Path(path)
    return {
        "path": str(path.resolve()),
        "sha256": sha256_file(path),
        "rows": len(series),
        "columns": list(series.columns),
    }


def refuse_repeats(names: Sequence[str], option: str) -> None:
    """An option that names channels must name each once (matched as headers are)."""
    twice = repeated(names)
    if twice:
        raise ConfigError(f"{option} names {twice} more than once; name each column once")


def load_bars(
    path: str | Path,
    *,
    product: str | None = None,
    interval_s: int | None = None,
    time_unit: str = "auto",
) -> Bars:
    """Bars on a regular grid from an OHLCV CSV or an `ovcast live` recording (SQLite).

    A recording marks the bars it filled (no trades) itself, so a bar it lacks (the process
    was down) is unknown: it is put on the grid as partial, never scored or trained on.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            is_recording = f.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from exc
    if not is_recording:
        if product is not None:
            raise ConfigError(
                f"--product picks a product of a recording; {path} is a CSV, which holds one "
                "product: leave --product out"
            )
        return read_ohlcv_csv(path, interval_s=interval_s, time_unit=time_unit)
    bars = _recorded_bars(path, product)
    _check_bars(bars, path)
    return fill_gaps(bars, bar_interval(bars.time_s, interval_s), missing="partial")


def market_series(bars: Bars, features: FeatureConfig | None = None) -> Series:
    """The 7 live channels of each bar (``market.features``), indicator warm-up rows dropped."""
    values = compute_features(bars.high, bars.low, bars.close, bars.volume, features)
    ready = ~np.isnan(values).any(axis=1)
    if not ready.any():
        raise DataError(f"{len(bars)} bars are too few: the indicators need more to warm up")
    first = int(np.argmax(ready))
    if not ready[first:].all():
        row = first + int(np.argmin(ready[first:]))
        raise DataError(f"the features of the bar at {_utc(bars.time_s[row])} are undefined")
    rows = slice(first, None)
    partial = np.zeros(len(bars), bool) if bars.partial is None else bars.partial
    origin = (
        f"a row is a bar after filling ({len(bars)} bars on the grid: {int(bars.filled.sum())} "
        f"filled, {int(partial.sum())} partial) less the first {first} bars, which warm the "
        "indicators up"
    )
    return Series.of(
        values[rows],
        CHANNELS,
        time_s=bars.time_s[rows],
        filled=bars.filled[rows],
        partial=partial[rows],
        origin=origin,
    )


def _recorded_bars(path: Path, product: str | None) -> Bars:
    """One product's recorded bars, filled and partial marks included."""
    from ..market.recording import Recording

    try:
        with Recording(path, readonly=True) as recording:
            products = recording.products()
            if not products:
                raise DataError(f"{path} is a recording without bars yet; let 'ovcast live' run")
            product = product or (products[0] if len(products) == 1 else None)
            if product is None or product not in products:
                raise DataError(f"{path} holds {products}; choose one with --product")
            bars = recording.read_bars(product)
    except OvcastError:
        raise
    except (sqlite3.DatabaseError, decimal.InvalidOperation, ValueError, TypeError) as exc:
        detail = (
            "a recorded price or volume is not a decimal number"
            if isinstance(exc, decimal.InvalidOperation)
            else f"{type(exc).__name__}: {exc}"
        )
        raise DataError(
            f"{path} is not a readable 'ovcast live' recording ({detail}); it may be damaged "
            "or cut short"
        ) from exc
    if len(bars) < 2:
        raise DataError(f"{path} has {len(bars)} bars of {product}; too few to train on")
    return bars


def _check_bars(bars: Bars, source: Path) -> None:
    """Recorded bars are refused for what a CSV would be refused for, naming the bar."""
    columns = (bars.open, bars.high, bars.low, bars.close, bars.volume)
    found = bar_value_problems(*columns)
    for name, values in zip(("open", "high", "low", "close", "volume"), columns, strict=True):
        found += [
            (int(r), name, "not a finite number") for r in np.flatnonzero(~np.isfinite(values))
        ]
    problems = Problems(source)
    for row, column, message in found:
        problems.add(row, f"bar {_utc(bars.time_s[row])}, column {column!r}: {message}")
    problems.raise_if_any()


def _utc(time_s: int) -> str:
    return dt.datetime.fromtimestamp(int(time_s), dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
