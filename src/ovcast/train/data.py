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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._csv import Problems, read_table
from ..errors import DataError
from ..market.bars import Bars, bar_value_problems, fill_gaps, infer_interval, read_ohlcv_csv
from ..market.features import CHANNELS, FeatureConfig, compute_features

TIMESTAMP_NAMES = ("date", "time", "timestamp", "datetime")
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

    @classmethod
    def of(
        cls,
        values: np.ndarray,
        columns: Sequence[str],
        *,
        time_s: np.ndarray | None = None,
        filled: np.ndarray | None = None,
        partial: np.ndarray | None = None,
    ) -> Series:
        rows = len(values)
        no_row = np.zeros(rows, bool)
        return cls(
            np.asarray(values, np.float32),
            tuple(columns),
            time_s,
            no_row if filled is None else np.asarray(filled, bool),
            no_row if partial is None else np.asarray(partial, bool),
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
    """Numeric ``columns`` (default: all but the timestamp) of a CSV, refusing bad cells.

    The timestamp column is ``timestamp_column``, else the first of date/time/timestamp/
    datetime found, else none; its times must parse and increase strictly.
    """
    table = read_table(path, expected="a header line and numeric rows")
    if timestamp_column is None:
        timestamp_column = next((h for h in table.header if h.lower() in TIMESTAMP_NAMES), None)
    wanted = list(columns) if columns else [h for h in table.header if h != timestamp_column]
    missing = [c for c in wanted if c not in table.header]
    if missing:
        raise DataError(f"{table.path} has no column(s) {missing}; it has {table.header}")
    time_s = table.times(timestamp_column, time_unit) if timestamp_column else None
    values = table.numbers(wanted).astype(np.float32)
    return Series.of(values, wanted, time_s=time_s)


def load_bars(
    path: str | Path,
    *,
    product: str | None = None,
    interval_s: int | None = None,
    time_unit: str = "auto",
) -> Bars:
    """Bars on a regular grid from an OHLCV CSV or an `ovcast live` recording (SQLite)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            is_recording = f.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from exc
    if not is_recording:
        return read_ohlcv_csv(path, interval_s=interval_s, time_unit=time_unit)
    bars = _recorded_bars(path, product)
    _check_bars(bars, path)
    return fill_gaps(bars, interval_s or infer_interval(bars.time_s))


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
    return Series.of(
        values[rows],
        CHANNELS,
        time_s=bars.time_s[rows],
        filled=bars.filled[rows],
        partial=None if bars.partial is None else bars.partial[rows],
    )


def _recorded_bars(path: Path, product: str | None) -> Bars:
    """One product's recorded bars, filled and partial marks included."""
    from ..market.recording import Recording

    with Recording(path, readonly=True) as recording:
        products = recording.products()
        if not products:
            raise DataError(f"{path} is a recording without bars yet; let 'ovcast live' run")
        product = product or (products[0] if len(products) == 1 else None)
        if product is None or product not in products:
            raise DataError(f"{path} holds {products}; choose one with --product")
        bars = recording.read_bars(product)
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
