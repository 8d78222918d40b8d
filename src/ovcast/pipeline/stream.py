"""Streaming forecasts: per product, closed bars -> features -> ring buffer -> a forecast.

    stream = ProductStream("BTC-USD", engine, scaler, interval_s=60)
    record = stream.on_bar(bar)     # None while warming up, else the forecast record

The scaler is fitted once on history (``fit_market_scaler``, partial bars left out), stored
with the run and then frozen: a live window is never used to refit it. The close channel of
the forecast is inverse-scaled to prices; every record names its model so a hot swap is
visible downstream, and says how many bars of its input window are ``partial`` (trades may
be missing) in ``partial_in_window``: a partial bar is never model input unmarked.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import numpy as np

from ..errors import DataError
from ..market.aggregator import Bar
from ..market.features import (
    CHANNELS,
    MARKET_SCALER_KINDS,
    FeatureConfig,
    FeatureState,
    compute_features,
)
from ..runtime.engine import Engine
from ..scaling import Scaler


def fit_market_scaler(bars: list[Bar], config: FeatureConfig | None = None) -> Scaler:
    """Fit the channel scalers on historical bars (e.g. the backfill), warm-up rows dropped."""
    o, h, lo, c, v = (
        np.array(x, dtype=np.float64) for x in zip(*(b.as_floats() for b in bars), strict=True)
    )
    rows = compute_features(h, lo, c, v, config)
    complete = np.array([not b.partial for b in bars], dtype=bool)
    rows = rows[~np.isnan(rows).any(axis=1) & complete]
    if len(rows) < 2:
        raise DataError(f"{len(bars)} bars are too few to fit scalers after indicator warm-up")
    return Scaler.fit(rows, MARKET_SCALER_KINDS, CHANNELS)


class ProductStream:
    """The per-product state of the live pipeline (and of replay: same code)."""

    def __init__(
        self,
        product_id: str,
        engine: Engine,
        scaler: Scaler,
        *,
        interval_s: int = 60,
        features: FeatureConfig | None = None,
    ) -> None:
        if engine.num_channels != len(CHANNELS) or scaler.num_channels != len(CHANNELS):
            raise DataError(
                f"the market pipeline feeds {len(CHANNELS)} channels ({', '.join(CHANNELS)}); the model "
                f"takes {engine.num_channels} and the scaler has {scaler.num_channels}"
            )
        self.product_id = product_id
        self.engine = engine
        self.scaler = scaler
        self.interval_s = interval_s
        self._features = FeatureState(features)
        self._window: deque[np.ndarray] = deque(maxlen=engine.context_length)
        self._partial: deque[bool] = deque(maxlen=engine.context_length)
        self.bars = 0
        self.forecasts = 0

    @property
    def warming_up(self) -> bool:
        return len(self._window) < self.engine.context_length

    def on_bar(self, bar: Bar) -> dict[str, Any] | None:
        """Add a closed bar; returns the forecast record once the window is full."""
        _, high, low, close, volume = bar.as_floats()
        row = self._features.update(high, low, close, volume)
        self.bars += 1
        if np.isnan(row).any():
            return None  # indicators still warming up
        self._window.append(row)
        self._partial.append(bar.partial)
        if self.warming_up:
            return None
        window = self.scaler.transform(np.stack(self._window))
        engine = self.engine  # read once: a hot swap between bars takes effect at the next one
        start = time.perf_counter()
        forecast = engine.predict(window)  # (horizon, channels), model space
        inference_ms = (time.perf_counter() - start) * 1e3
        prices = self.scaler.inverse_transform(forecast[:, :1], channels=[0])[:, 0]
        self.forecasts += 1
        horizon = np.arange(1, engine.prediction_length + 1)
        return {
            "product": self.product_id,
            "bar_time_s": bar.start_s,
            "bar_close": float(bar.close),
            "forecast_time_s": (bar.start_s + horizon * self.interval_s).tolist(),
            "forecast_close": prices.astype(float).round(8).tolist(),
            "model": engine.name,
            "inference_ms": round(inference_ms, 3),
            "partial_in_window": sum(self._partial),
        }
