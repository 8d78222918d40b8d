"""OHLCV bars from CSV files, on a regular UTC grid with empty intervals filled and marked.

Coinbase publishes nothing for an interval without trades; a model needs every step, so a
missing bar is filled flat at the previous close with zero volume and ``filled=True``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._csv import read_rows
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


def parse_time(text: str) -> int:
    """Epoch seconds (or milliseconds) as a number, or ISO 8601 (Z or offset; any fraction)."""
    text = text.strip()
    try:
        value = float(text)
        return int(value / 1000) if value > 1e11 else int(value)
    except ValueError:
        pass
    iso = text.replace("Z", "+00:00").replace(" ", "T", 1)
    if "." in iso:  # truncate fractions to microseconds: 9-digit fractions break fromisoformat
        head, _, rest = iso.partition(".")
        digits = "".join(ch for ch in rest if ch.isdigit())
        iso = head + "." + digits[:6].ljust(6, "0") + rest[len(digits) :]
    try:
        stamp = dt.datetime.fromisoformat(iso)
    except ValueError as exc:
        raise DataError(f"cannot parse time {text!r}; expected epoch seconds or ISO 8601") from exc
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.timezone.utc)
    return int(stamp.timestamp())


def read_ohlcv_csv(path: str | Path, *, interval_s: int | None = None) -> Bars:
    """Read time, open, high, low, close, volume (header required, any order, extra columns ok)."""
    path = Path(path)
    rows = read_rows(path, expected=f"a header {','.join(COLUMNS)} and bars")
    header = [h.strip().lower() for h in rows[0]]
    if "timestamp" in header and "time" not in header:
        header[header.index("timestamp")] = "time"
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise DataError(f"{path} lacks column(s) {missing}; expected {','.join(COLUMNS)}")
    index = {c: header.index(c) for c in COLUMNS}
    try:
        times = np.array([parse_time(r[index["time"]]) for r in rows[1:]], dtype=np.int64)
        values = {c: np.array([float(r[index[c]]) for r in rows[1:]]) for c in COLUMNS[1:]}
    except (ValueError, IndexError) as exc:
        raise DataError(f"{path}: a row has a missing or non-numeric value ({exc})") from exc
    order = np.argsort(times, kind="stable")
    times = times[order]
    keep = np.r_[True, np.diff(times) > 0]  # a repeated bar time keeps its first row
    bars = Bars(
        times[keep], *(values[c][order][keep] for c in COLUMNS[1:]), np.zeros(keep.sum(), bool)
    )
    return fill_gaps(bars, interval_s or infer_interval(bars.time_s))


def infer_interval(time_s: np.ndarray) -> int:
    if len(time_s) < 2:
        raise DataError("need at least two bars to infer the interval; pass interval_s")
    steps, counts = np.unique(np.diff(time_s), return_counts=True)
    return int(steps[np.argmax(counts)])


def fill_gaps(bars: Bars, interval_s: int) -> Bars:
    """Put bars on the grid of ``interval_s``; missing ones flat at the previous close, volume 0."""
    if np.any((bars.time_s - bars.time_s[0]) % interval_s):
        raise DataError(f"bar times are not on a {interval_s}-second grid")
    slots = (bars.time_s - bars.time_s[0]) // interval_s
    n = int(slots[-1]) + 1
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
    partial = np.zeros(n, bool)
    partial[slots] = bars.partial
    return Bars(
        time_s, out["open"], out["high"], out["low"], out["close"], volume, ~present, partial
    )


def _spread(values: np.ndarray, slots: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros(n)
    out[slots] = values
    return out
