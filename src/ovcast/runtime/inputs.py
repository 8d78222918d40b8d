"""Checking and reading model inputs: one place that says what a window must look like.

A window is (context_length, channels); a batch is (batch, context_length, channels).
Numbers only, finite, float32 after conversion. Every problem raises ``InvalidInputError``
naming the expected shape, so a server can answer it and go on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .._csv import is_number
from ..errors import DataError, InvalidInputError


def as_batch(past_values: Any, context_length: int, num_channels: int) -> tuple[np.ndarray, bool]:
    """Return a C-contiguous float32 (batch, context, channels) array and whether it was 2-D."""
    expected = f"[{context_length}, {num_channels}] or [batch, {context_length}, {num_channels}]"
    if isinstance(past_values, np.ndarray):
        array = past_values
    else:
        try:
            array = np.asarray(past_values)
        except ValueError as exc:  # ragged nested lists
            raise InvalidInputError(f"past_values is ragged; expected a {expected} array") from exc
    if array.dtype == object:
        raise InvalidInputError(
            f"past_values is ragged or holds non-numbers; expected {expected} floats"
        )
    if array.dtype.kind not in "fiu":
        raise InvalidInputError(
            f"past_values must be numbers, got dtype {array.dtype}; expected {expected} floats"
        )
    if array.size == 0:
        raise InvalidInputError(f"past_values is empty; expected {expected}")
    single = array.ndim == 2
    if single:
        array = array[None]
    if array.ndim != 3 or array.shape[1:] != (context_length, num_channels):
        shape = list(array.shape[1:] if single else array.shape)
        raise InvalidInputError(f"past_values has shape {shape}; expected {expected}")
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        bad = np.argwhere(~np.isfinite(array))[0].tolist()
        where = bad[1:] if single else bad
        raise InvalidInputError(
            f"past_values has NaN or inf (first at index {where}); expected finite numbers"
        )
    return array, single


def read_array(path: str | Path) -> np.ndarray:
    """Read a window or batch from .npy, .json (nested lists, or {"past_values": ...}) or .csv.

    A CSV holds one window: a row per time step, a column per channel, with an optional
    header line and an optional leading non-numeric (timestamp) column.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"input file {path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if suffix == ".json":
            data = json.loads(path.read_text())
            if isinstance(data, dict):
                if "past_values" not in data:
                    raise DataError(f"{path}: a JSON object needs a 'past_values' field")
                data = data["past_values"]
            return np.asarray(data, dtype=np.float32)
        if suffix == ".csv":
            return _read_csv_window(path)
    except (ValueError, OSError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    raise DataError(f"unsupported input file {path.name}; expected .npy, .json or .csv")


def _read_csv_window(path: Path) -> np.ndarray:
    import csv

    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f) if r]
    if rows and not is_number(rows[0][-1]):
        rows = rows[1:]  # header
    if not rows:
        raise DataError(f"{path} has no data rows")
    if not is_number(rows[0][0]):
        rows = [r[1:] for r in rows]  # timestamp column
    return np.array([[float(v) for v in r] for r in rows], dtype=np.float32)


def sliding_windows(series: np.ndarray, context_length: int, *, max_windows: int = 0) -> np.ndarray:
    """Windows (n, context, channels) cut from a long (time, channels) series, evenly spaced."""
    n = series.shape[0] - context_length + 1
    if n < 1:
        raise DataError(
            f"series of {series.shape[0]} rows is shorter than the context {context_length}"
        )
    starts = np.arange(n)
    if max_windows and n > max_windows:
        starts = np.linspace(0, n - 1, max_windows).astype(int)
    return series[starts[:, None] + np.arange(context_length)[None, :]]
