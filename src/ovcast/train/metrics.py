"""Forecast metrics and naive baselines (pure numpy).

All take arrays shaped (windows, horizon, channels) and average over every element,
which is the ETTh1 benchmark's definition (MSE/MAE over all test windows, all channels).
"""

from __future__ import annotations

import numpy as np


def mse(pred: np.ndarray, target: np.ndarray) -> float:
    return float(np.mean((np.asarray(pred, np.float64) - target) ** 2))


def mae(pred: np.ndarray, target: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(pred, np.float64) - target)))


class RunningErrors:
    """Accumulates squared and absolute errors over batches, for data too big to hold."""

    def __init__(self) -> None:
        self.sq = 0.0
        self.abs = 0.0
        self.count = 0

    def update(self, pred: np.ndarray, target: np.ndarray) -> None:
        diff = np.asarray(pred, np.float64) - target
        self.sq += float(np.sum(diff**2))
        self.abs += float(np.sum(np.abs(diff)))
        self.count += diff.size

    @property
    def mse(self) -> float:
        return self.sq / self.count

    @property
    def mae(self) -> float:
        return self.abs / self.count


def last_value(contexts: np.ndarray, prediction_length: int) -> np.ndarray:
    """Repeat the last observed row (random walk / persistence forecast)."""
    return np.repeat(contexts[:, -1:, :], prediction_length, axis=1)


def seasonal_naive(contexts: np.ndarray, prediction_length: int, season: int = 24) -> np.ndarray:
    """Repeat the last ``season`` rows (e.g. yesterday's hours) across the horizon."""
    if season > contexts.shape[1]:
        raise ValueError(f"season {season} is longer than the context {contexts.shape[1]}")
    last = contexts[:, -season:, :]
    reps = -(-prediction_length // season)
    return np.tile(last, (1, reps, 1))[:, :prediction_length, :]
