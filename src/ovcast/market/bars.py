"""OHLCV bars from CSV files, on a regular UTC grid with empty intervals filled and marked.

Coinbase publishes nothing for an interval without trades; a model needs every step, so a
missing bar of a candle file is filled flat at the previous close with zero volume and
``filled=True``. A recording marks its filled bars itself: a bar it lacks is unknown, and is
put on the grid marked ``partial`` instead (``fill_gaps(..., missing="partial")``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._csv import Problems, read_table, time_column
from .._csv import parse_time as parse_time  # where the market modules have always found it
from ..errors import ConfigError, DataError

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
    are not positive; highs below lows, opens or closes outside [low, high]; negative volumes;
    times that repeat, go backwards or leave the grid; an ``interval_s`` the times contradict.
    ``time_unit`` ('auto', 's', 'ms', 'us', 'ns') is the unit of epoch-number times.
    """
    table = read_table(path, expected=f"a header {','.join(COLUMNS)} and one bar per line")
    table.header = [h.lower() for h in table.header]
    named_time = time_column(table.header, [])  # by name only: the other columns are prices
    if "time" not in table.header and named_time is not None:
        table.header[named_time] = "time"
    missing = [c for c in COLUMNS if c not in table.header]
    if missing and table.header_is_data():
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
    advice = "check --interval" if interval_s else "pass --interval if they are not"
    interval_s = bar_interval(seconds, interval_s)  # a finer --interval would invent bars
    times = table.cells("time")
    for off_grid in np.flatnonzero((seconds - seconds[0]) % interval_s).tolist():
        problems.add(
            off_grid,
            f"line {table.lines[off_grid]}: time {times[off_grid]} is not on the "
            f"{interval_s}-second grid of line {table.lines[0]} ({times[0]}); bars are "
            f"{interval_s} s apart ({advice})",
        )
    problems.raise_if_any()
    open_, high, low, close, volume = values.T
    time_s = seconds.astype(np.int64)
    bars = Bars(time_s, open_, high, low, close, volume, filled=np.zeros(len(time_s), bool))
    return fill_gaps(bars, interval_s)


def bar_value_problems(
    open: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray
) -> list[tuple[int, str, str]]:
    """(row, column, what is wrong) for every price that is not positive, high below low,
    open or close outside [low, high], and negative volume, in row order. (NaN and infinities
    are the parser's to report: they fail none of these.)"""
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
    priced = (open > 0) & (high > 0) & (low > 0) & (close > 0)  # else reported above
    found += [
        (int(r), "high", f"high {high[r]:g} is below low {low[r]:g}")
        for r in np.flatnonzero(priced & (high < low))
    ]
    for name, column in (("open", open), ("close", close)):
        found += [
            (int(r), name, f"{name} {column[r]:g} is above high {high[r]:g}")
            for r in np.flatnonzero(priced & (high >= low) & (column > high))
        ]
        found += [
            (int(r), name, f"{name} {column[r]:g} is below low {low[r]:g}")
            for r in np.flatnonzero(priced & (high >= low) & (column < low))
        ]
    return sorted(found)


def infer_interval(time_s: np.ndarray) -> int:
    """The most common step between bar times, in whole seconds."""
    if len(time_s) < 2:
        raise DataError("need at least two bars to infer the bar interval; pass --interval")
    steps, counts = np.unique(np.diff(time_s), return_counts=True)
    step = steps[np.argmax(counts)]
    if step < 1 or step != int(step):
        raise DataError(
            f"bars {step:g} s apart: bar times must be whole seconds apart (is the time unit right?)"
        )
    return int(step)


def bar_interval(time_s: np.ndarray, interval_s: int | None = None) -> int:
    """The bars' interval: ``interval_s`` once the times agree with it, else the commonest step.

    An interval finer than every step between bars is refused: no two bars would be
    neighbours, and filling would invent the bars in between (half of them for 30 s on
    minute bars).
    """
    if interval_s is None:
        return infer_interval(time_s)
    if interval_s <= 0:
        raise ConfigError(f"--interval must be a positive number of seconds, got {interval_s}")
    steps = np.diff(time_s)
    if len(steps) and steps.min() > interval_s:
        spans = int((time_s[-1] - time_s[0]) // interval_s) + 1
        raise DataError(
            f"--interval {interval_s} disagrees with the data: no two of its {len(time_s)} bars "
            f"are closer than {steps.min():g} s, so a {interval_s}-second grid would invent "
            f"{spans - len(time_s)} bars. Leave --interval out (the commonest step, "
            f"{infer_interval(time_s)} s, is taken) or give the bars' interval"
        )
    return interval_s


def fill_gaps(bars: Bars, interval_s: int, *, missing: str = "filled") -> Bars:
    """Put bars on the grid of ``interval_s``; missing ones flat at the previous close, volume 0.

    A missing bar is marked ``missing``: "filled" (a candle file: an interval without trades)
    or "partial" (a recording, which marks its filled bars itself: a bar it lacks is
    unknown). A bar that was already filled or partial stays so.
    """
    if missing not in ("filled", "partial"):
        raise ValueError(f"missing must be 'filled' or 'partial', got {missing!r}")
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
    filled = ~present if missing == "filled" else np.zeros(n, bool)
    filled[slots] = bars.filled
    partial = ~present if missing == "partial" else np.zeros(n, bool)
    partial[slots] = bars.partial
    return Bars(time_s, out["open"], out["high"], out["low"], out["close"], volume, filled, partial)


def _spread(values: np.ndarray, slots: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros(n)
    out[slots] = values
    return out
