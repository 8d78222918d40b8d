"""Time series from CSV files, split by time, cut into (context, horizon) windows.

Pure numpy, so evaluation of a converted package needs no torch. The split rule is the
standard one of the ETTh1 benchmark: validation and test start ``context_length`` rows
before their boundary, so their first window's context is history, while every forecast
target lies inside the split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._csv import read_rows
from ..errors import DataError


@dataclass(frozen=True)
class Series:
    """A multichannel series read from a CSV: values (time, channels) and their names."""

    values: np.ndarray  # (time, channels) float32
    columns: tuple[str, ...]
    timestamps: tuple[str, ...] = ()


def read_csv(
    path: str | Path,
    *,
    columns: Sequence[str] | None = None,
    timestamp_column: str | None = None,
) -> Series:
    """Read numeric ``columns`` (default: every column but the timestamp) from a CSV file.

    The timestamp column is ``timestamp_column``, else the first of date/time/timestamp
    found, else none.
    """
    path = Path(path)
    rows = read_rows(path, expected="a header line and numeric rows")
    header = [h.strip() for h in rows[0]]
    if timestamp_column is None:
        timestamp_column = next(
            (h for h in header if h.lower() in ("date", "time", "timestamp", "datetime")), None
        )
    elif timestamp_column not in header:
        raise DataError(f"{path} has no column {timestamp_column!r}; it has {header}")
    wanted = list(columns) if columns else [h for h in header if h != timestamp_column]
    missing = [c for c in wanted if c not in header]
    if missing:
        raise DataError(f"{path} has no column(s) {missing}; it has {header}")
    index = [header.index(c) for c in wanted]
    body = rows[1:]
    try:
        values = np.array([[float(r[i]) for i in index] for r in body], dtype=np.float32)
    except (ValueError, IndexError) as exc:
        raise DataError(
            f"{path}: non-numeric or missing value in columns {wanted} ({exc})"
        ) from exc
    if not np.all(np.isfinite(values)):
        raise DataError(f"{path}: columns {wanted} contain NaN or inf")
    stamps = ()
    if timestamp_column is not None:
        t = header.index(timestamp_column)
        stamps = tuple(r[t] for r in body)
    return Series(values, tuple(wanted), stamps)


@dataclass(frozen=True)
class Splits:
    """Row ranges [start, end) of train, validation and test, context included."""

    train: tuple[int, int]
    val: tuple[int, int]
    test: tuple[int, int]

    @classmethod
    def etth1(cls, context_length: int = 512) -> Splits:
        """The standard ETTh1 protocol: 12/4/4 months of hourly rows."""
        return cls.from_boundaries(8640, 11520, 14400, context_length)

    @classmethod
    def from_boundaries(cls, train_end: int, val_end: int, test_end: int, context_length: int):
        return cls(
            train=(0, train_end),
            val=(train_end - context_length, val_end),
            test=(val_end - context_length, test_end),
        )

    @classmethod
    def from_fractions(
        cls, n_rows: int, context_length: int, train: float = 0.7, val: float = 0.1
    ) -> Splits:
        """Train/val/test by fractions of the rows; test takes the rest."""
        if not (0 < train < 1 and 0 <= val < 1 and train + val < 1):
            raise DataError(
                f"split fractions train={train}, val={val} must be in (0, 1) with sum < 1"
            )
        train_end = round(n_rows * train)
        val_end = round(n_rows * (train + val))
        return cls.from_boundaries(train_end, val_end, n_rows, context_length)

    @classmethod
    def disjoint(cls, n_rows: int, train: float, val: float, gap: int) -> Splits:
        """Splits that share no row: every window (context and target) lies inside its split,
        and ``gap`` rows separate the splits, so nothing leaks across a boundary."""
        train_end = round(n_rows * train)
        val_end = round(n_rows * (train + val))
        return cls((0, train_end), (train_end + gap, val_end), (val_end + gap, n_rows))

    @classmethod
    def parse(
        cls, spec: str, n_rows: int, context_length: int, *, gap: int | None = None
    ) -> Splits:
        """'etth1', 'TRAIN_END,VAL_END,TEST_END' (rows) or 'TRAIN_FRAC,VAL_FRAC' (fractions).

        With ``gap`` (fractions only), the splits are disjoint (see ``disjoint``).
        """
        if spec == "etth1":
            return cls.etth1(context_length)
        try:
            parts = [float(p) for p in spec.split(",")]
        except ValueError:
            parts = []
        if len(parts) == 2 and all(p < 1 for p in parts):
            if gap is not None:
                return cls.disjoint(n_rows, parts[0], parts[1], gap)
            return cls.from_fractions(n_rows, context_length, parts[0], parts[1])
        if len(parts) == 3 and all(p.is_integer() for p in parts):
            return cls.from_boundaries(*(int(p) for p in parts), context_length)
        raise DataError(
            f"bad split spec {spec!r}; expected 'etth1', row ends 'TRAIN_END,VAL_END,TEST_END' "
            "or fractions 'TRAIN,VAL' (e.g. 0.7,0.1)"
        )


def window_starts(span: tuple[int, int], context_length: int, prediction_length: int) -> np.ndarray:
    """Start rows of every (context + horizon) window inside ``span``, stride 1."""
    start, end = span
    last = end - context_length - prediction_length
    if last < start:
        raise DataError(
            f"rows [{start}, {end}) are too few for one window of {context_length} + "
            f"{prediction_length} rows"
        )
    return np.arange(start, last + 1)


def gather_windows(
    values: np.ndarray, starts: np.ndarray, context_length: int, prediction_length: int
) -> tuple[np.ndarray, np.ndarray]:
    """Contexts (n, context, channels) and targets (n, horizon, channels) at ``starts``."""
    offsets = np.arange(context_length + prediction_length)
    windows = values[starts[:, None] + offsets[None, :]]  # (n, context + horizon, channels)
    return windows[:, :context_length], windows[:, context_length:]
