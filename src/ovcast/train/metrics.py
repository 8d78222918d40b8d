"""Forecast errors, accumulated per horizon step so that any range of steps can be scored.

The benchmark definition (ETTh1, the Granite model cards): MSE and MAE averaged over every
scored cell, i.e. every (window, step, target channel). ``ErrorSums`` keeps the sums per
step, over the cells a mask keeps, so the whole horizon and its near/mid/far buckets come
from one pass, in the scaled space and in data units (e.g. price), with directional accuracy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Metrics:
    """Errors of one forecaster over one range of horizon steps."""

    mse: float  # scaled space
    mae: float
    mse_units: float  # data units (the scaler undone), e.g. price
    mae_units: float
    directional_accuracy: float | None  # share of called moves (vs the last value) called right
    cells: int  # (window, step, channel) cells averaged over

    def to_dict(self) -> dict[str, float | int | None]:
        return dict(vars(self))


class ErrorSums:
    """Per-step sums of a forecaster's errors over the cells a mask keeps; (horizon,) arrays."""

    def __init__(self, horizon: int) -> None:
        self.cells = np.zeros(horizon, np.int64)
        self.sq = np.zeros(horizon)
        self.abs = np.zeros(horizon)
        self.sq_units = np.zeros(horizon)
        self.abs_units = np.zeros(horizon)
        self.hits = np.zeros(horizon, np.int64)
        self.calls = np.zeros(horizon, np.int64)

    def add(
        self,
        pred: np.ndarray,
        truth: np.ndarray,
        units: tuple[np.ndarray, np.ndarray, np.ndarray],
        keep: np.ndarray,
    ) -> None:
        """Add a batch: ``pred`` and ``truth`` (batch, horizon, channels) scaled; ``units``
        the forecast, truth and last context value in data units, (batch, horizon|1, channels);
        ``keep`` (batch, horizon) bool, the target steps that count."""
        weight = np.broadcast_to(keep[..., None], pred.shape)
        diff = np.asarray(pred, np.float64) - truth
        pred_units, truth_units, last_units = (np.asarray(u, np.float64) for u in units)
        diff_units = pred_units - truth_units
        moved = np.sign(truth_units - last_units)
        called = np.sign(pred_units - last_units)
        decided = weight & (moved != 0) & (called != 0)
        self.cells += weight.sum(axis=(0, 2))
        self.sq += np.where(weight, diff**2, 0).sum(axis=(0, 2))
        self.abs += np.where(weight, np.abs(diff), 0).sum(axis=(0, 2))
        self.sq_units += np.where(weight, diff_units**2, 0).sum(axis=(0, 2))
        self.abs_units += np.where(weight, np.abs(diff_units), 0).sum(axis=(0, 2))
        self.calls += decided.sum(axis=(0, 2))
        self.hits += (decided & (moved == called)).sum(axis=(0, 2))

    def over(self, first_step: int, last_step: int) -> Metrics:
        """Metrics over horizon steps ``first_step``..``last_step`` (1-based, inclusive)."""
        steps = slice(first_step - 1, last_step)
        cells = int(self.cells[steps].sum())
        calls = int(self.calls[steps].sum())

        def mean(total: np.ndarray) -> float:
            return float(total[steps].sum() / cells) if cells else math.nan

        return Metrics(
            mse=mean(self.sq),
            mae=mean(self.abs),
            mse_units=mean(self.sq_units),
            mae_units=mean(self.abs_units),
            directional_accuracy=float(self.hits[steps].sum() / calls) if calls else None,
            cells=cells,
        )


def horizon_buckets(horizon: int) -> list[tuple[int, int]]:
    """Step ranges (1-based, inclusive) that split the horizon into near, mid and far."""
    edges = [b for b in (1, 4, 16, 48, 96) if b < horizon] + [horizon]
    return [
        (lo + 1 if i else 1, hi)
        for i, (lo, hi) in enumerate(zip([0, *edges[:-1]], edges, strict=True))
    ]
