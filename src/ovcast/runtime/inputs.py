"""Checking and reading model inputs: one place that says what a window must look like.

A window is (context_length, channels); a batch is (batch, context_length, channels).
Numbers only, finite, float32 after conversion. Every problem raises ``InvalidInputError``
naming the expected shape, so a server can answer it and go on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

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
    with np.errstate(over="ignore"):  # beyond float32's range becomes inf: reported below
        array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        bad = np.argwhere(~np.isfinite(array))[0].tolist()
        where = bad[1:] if single else bad
        raise InvalidInputError(
            f"past_values has NaN or inf (first at index {where}); expected finite numbers "
            "(a value beyond float32's range, ±3.4e38, counts as inf)"
        )
    return array, single


def read_array(path: str | Path) -> np.ndarray:
    """The values of a window or batch in a .npy, .json or .csv file (see ``series.read_series``)."""
    from .series import read_series

    return np.asarray(read_series(path).values, dtype=np.float32)


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
