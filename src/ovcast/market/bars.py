"""OHLCV bars from CSV files, on a regular UTC grid with empty intervals filled and marked.

Coinbase publishes nothing for an interval without trades; a model needs every step, so a
missing bar is filled flat at the previous close with zero volume and ``filled=True``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._csv import Problems, is_number, read_table
from .._csv import parse_time as parse_time  # where the market modules have always found it
from ..errors import DataError

COLUMNS = ("time", "open", "high", "low", "close", "volume")


@dataclass
class Bars:
    time_s: np.ndarray  # (n,) int64 bar start, UTC epoch seconds
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    filled: np.ndarray  # (n,) bool: no trades in this interval, filled flat
    # (n,) bool: the bar may lack trades (e.g. a live start-up minute not proven complete);
    # never scored or trained on. None: no bar is partial.
    partial: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.partial is None:
            self.partial = np.zeros(len(self.time_s), bool)

    def __len__(self) -> int:
        return len(self.time_s)


def read_ohlcv_csv(
    path: str | Path, *, interval_s: int | None = None, time_unit: str = "auto"
) -> Bars:
    """Read time, open, high, low, close, volume (header required, any order, extra columns ok).

    Refuses, naming line and column: missing, non-numeric, NaN or infinite cells; prices that
    are not positive; negative volumes; times that repeat, go backwards or leave the grid.
    ``time_unit`` ('auto', 's', 'ms', 'us', 'ns') is the unit of epoch-number times.
    """
    table = read_table(path, expected=f"a header {','.join(COLUMNS)} and one bar per line")
    table.header = [h.lower() for h in table.header]
    if "timestamp" in table.header and "time" not in table.header:
        table.header[table.header.index("timestamp")] = "time"
    missing = [c for c in COLUMNS if c not in table.header]
    if missing and is_number(table.header[0]):
        raise DataError(
            f"{table.path} has no header line; its first line is data. Add the line "
            f"'{','.join(COLUMNS)}' above it (Binance kline files: those are their first six "
            "columns; the others are then ignored)"
        )
    if missing:
        raise DataError(f"{table.path} lacks column(s) {missing}; expected {','.join(COLUMNS)}")
    seconds = table.times("time", time_unit)
    problems = Problems(table.path)
    values = table.numbers(COLUMNS[1:], problems=problems)
    for row, column, message in bar_value_problems(*values.T):
        problems.add(row, f"line {table.lines[row]}, column {column!r}: {message}")
    interval_s = interval_s or infer_interval(seconds)
    for off_grid in np.flatnonzero((seconds - seconds[0]) % interval_s).tolist():
        problems.add(
            off_grid,
            f"line {table.lines[off_grid]}: time {seconds[off_grid]:.0f} is not on the {interval_s}-second "
            f"grid of line {table.lines[0]} (pass --interval if the bars are not {interval_s} s)",
        )
    problems.raise_if_any()
    open_, high, low, close, volume = values.T
    time_s = seconds.astype(np.int64)
    bars = Bars(time_s, open_, high, low, close, volume, filled=np.zeros(len(time_s), bool))
    return fill_gaps(bars, interval_s)


def bar_value_problems(
    open: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray
) -> list[tuple[int, str, str]]:
    """(row, column, what is wrong) for every price that is not positive and every negative
    volume, in row order. (NaN and infinities are the parser's to report: they fail neither.)"""
    found = []
    for name, column in zip(COLUMNS[1:], (open, high, low, close, volume), strict=True):
        if name == "volume":
            found += [
                (int(r), name, f"volume {column[r]:g} is negative")
                for r in np.flatnonzero(column < 0)
            ]
        else:
            found += [
                (int(r), name, f"price {column[r]:g} is not positive")
                for r in np.flatnonzero(column <= 0)
            ]
    return sorted(found)


def infer_interval(time_s: np.ndarray) -> int:
    """The most common step between bar times, in whole seconds."""
    if len(time_s) < 2:
        raise DataError("need at least two bars to infer the interval; pass interval_s")
    steps, counts = np.unique(np.diff(time_s), return_counts=True)
    step = steps[np.argmax(counts)]
    if step < 1 or step != int(step):
        raise DataError(
            f"bars {step:g} s apart: bar times must be whole seconds apart (is the time unit right?)"
        )
    return int(step)


def fill_gaps(bars: Bars, interval_s: int) -> Bars:
    """Put bars on the grid of ``interval_s``; missing ones flat at the previous close, volume 0.

    A missing bar is ``filled``; a bar that was already filled or partial stays so.
    """
    if np.any((bars.time_s - bars.time_s[0]) % interval_s):
        raise DataError(f"bar times are not on a {interval_s}-second grid")
    slots = (bars.time_s - bars.time_s[0]) // interval_s
    n = int(slots[-1]) + 1
    if n > 10 * len(bars) + 10_000:
        raise DataError(
            f"{len(bars)} bars span {n} intervals of {interval_s} s: filling would invent "
            f"{n - len(bars)} bars. Is the interval (--interval) or the time unit right?"
        )
    present = np.zeros(n, bool)
    present[slots] = True
    position = np.maximum.accumulate(np.where(present, np.arange(n), 0))  # last real bar
    source = np.cumsum(present) - 1
    close = bars.close[source[position]]
    out = {
        name: np.where(present, _spread(getattr(bars, name), slots, n), close)
        for name in ("open", "high", "low", "close")
    }
    volume = np.where(present, _spread(bars.volume, slots, n), 0.0)
    time_s = bars.time_s[0] + np.arange(n, dtype=np.int64) * interval_s
    filled = ~present
    filled[slots] = bars.filled
    partial = np.zeros(n, bool)
    partial[slots] = bars.partial
    return Bars(time_s, out["open"], out["high"], out["low"], out["close"], volume, filled, partial)


def _spread(values: np.ndarray, slots: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros(n)
    out[slots] = values
    return out
