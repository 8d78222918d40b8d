"""Streaming forecasts: per product, closed bars -> features -> ring buffer -> a forecast.

    stream = ProductStream("BTC-USD", engine, scaler, interval_s=60)
    record = stream.on_bar(bar)     # None while warming up, else the forecast record

The scaler is fitted once on history (``fit_market_scaler``, partial bars left out), stored
with the run and then frozen: a live window is never used to refit it. The close channel of
the forecast is inverse-scaled to prices; every record names its model so a hot swap is
visible downstream, and says how many bars of its input window are ``partial`` (trades may
be missing) in ``partial_in_window``: a partial bar is never model input unmarked.

Bars must come one interval apart. A hole (a recording with missing minutes) is never
run over as if the bars were consecutive: a hole shorter than the window becomes flat
bars marked partial (unknown: counted in ``partial_in_window`` of every window that holds
them, no forecast of their own); a longer one restarts the warm-up after it. A bar whose
prices a float cannot carry (an old recording's ``1e400``) counts as a one-bar hole.

With a ``scorecard`` (``scorecard.py``) each bar first scores the forecasts made for it,
then the bar's own forecast joins them.
"""

from __future__ import annotations

import logging
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
from .scorecard import Scorecard

log = logging.getLogger(__name__)

CLOSE = CHANNELS.index("close")
# The largest value a bar may hold: the model computes in float32, and a price beyond it
# (a corrupt 1e200 trade) would turn the window, scaler and scores into inf.
CARRIED = float(np.finfo(np.float32).max)
SIGNIFICANT = "{:.9g}"  # a float32 forecast's digits, whatever the price's magnitude


def fit_market_scaler(bars: list[Bar], config: FeatureConfig | None = None) -> Scaler:
    """Fit the channel scalers on historical bars (e.g. the backfill), warm-up rows dropped."""
    bars = [b for b in bars if usable(b)]
    if not bars:
        raise DataError("no bars with usable prices to fit scalers on")
    o, h, lo, c, v = (
        np.array(x, dtype=np.float64) for x in zip(*(b.as_floats() for b in bars), strict=True)
    )
    rows = compute_features(h, lo, c, v, config)
    complete = np.array([not b.partial for b in bars], dtype=bool)
    rows = rows[np.isfinite(rows).all(axis=1) & complete]
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
        scorecard: Scorecard | None = None,
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
        self._feature_config = features
        self._features = FeatureState(features)
        self._window: deque[np.ndarray] = deque(maxlen=engine.context_length)
        self._partial: deque[bool] = deque(maxlen=engine.context_length)
        self._last: Bar | None = None  # the last bar taken (for holes)
        self.bars = 0
        self.forecasts = 0
        self.holes = 0  # holes met (missing bars, unusable bars)
        self.hole_bars = 0  # bars missing in them
        self.scorecard = scorecard  # scores the forecasts made while it is set

    @property
    def warming_up(self) -> bool:
        return len(self._window) < self.engine.context_length

    def _take(self, bar: Bar) -> bool:
        """Features of one bar into the window; True when the window is full."""
        _, high, low, close, volume = bar.as_floats()
        row = self._features.update(high, low, close, volume)
        if np.isnan(row).any():
            return False  # indicators still warming up
        self._window.append(row)
        self._partial.append(bar.partial)
        return not self.warming_up

    def _bridge(self, last: Bar, next_start: int) -> None:
        """Bars missing between ``last`` and ``next_start``: unknown, never skipped over."""
        missing = (next_start - last.start_s) // self.interval_s - 1
        self.holes += 1
        self.hole_bars += missing
        if missing > self.engine.context_length:
            log.warning(
                "%s: %d bars missing before the bar at %d: no window spans them; warming up "
                "again after them", self.product_id, missing, next_start,
            )  # fmt: skip
            self._features = FeatureState(self._feature_config)
            self._window.clear()
            self._partial.clear()
            return
        log.warning(
            "%s: %d bars missing before the bar at %d: taken as unknown (partial) bars; "
            "forecasts whose window holds them count them in partial_in_window",
            self.product_id, missing, next_start,
        )  # fmt: skip
        for k in range(1, missing + 1):
            self._take(_unknown(last.start_s + k * self.interval_s, last))

    def on_bar(self, bar: Bar) -> dict[str, Any] | None:
        """Add a closed bar; returns the forecast record once the window is full."""
        last = self._last
        if last is not None and bar.start_s <= last.start_s:
            log.warning("%s: bar at %d after the one at %d: ignored (out of order)",
                        self.product_id, bar.start_s, last.start_s)  # fmt: skip
            return None
        self.bars += 1
        if not usable(bar):
            if last is None:
                return None
            log.warning("%s: the bar at %d (close %s) is out of range (prices must be > 0 and "
                        "below float32's %.3g); skipped: taken as unknown, never scored",
                        self.product_id, bar.start_s, bar.close, CARRIED)  # fmt: skip
            bar = _unknown(bar.start_s, last)
            self.holes += 1
            self.hole_bars += 1
        if last is not None and bar.start_s > last.start_s + self.interval_s:
            self._bridge(last, bar.start_s)
        self._last = bar
        if self.scorecard is not None:  # this bar's close scores the forecasts made for it
            self.scorecard.add_bar(bar.start_s, float(bar.close), partial=bar.partial)
        if not self._take(bar):
            return None
        raw = np.stack(self._window)
        engine = self.engine  # read once: a hot swap between bars takes effect at the next one
        start = time.perf_counter()
        with np.errstate(all="ignore"):  # out of range is said below, once, by name
            window = self.scaler.transform(raw)
            forecast = engine.predict(window) if np.isfinite(window).all() else window
            inference_ms = (time.perf_counter() - start) * 1e3
            prices = self.scaler.inverse_transform(forecast[:, :1], channels=[0])[:, 0]
        if not np.isfinite(prices).all():
            log.warning("%s: no forecast at the bar at %d: its window (or the forecast) is "
                        "beyond float32 after scaling; an out-of-range bar in the last %d?",
                        self.product_id, bar.start_s, len(raw))  # fmt: skip
            return None
        self.forecasts += 1
        if self.scorecard is not None:
            self.scorecard.add_forecast(bar.start_s, prices, raw[:, CLOSE], model=engine.name)
        horizon = np.arange(1, engine.prediction_length + 1)
        return {
            "product": self.product_id,
            "bar_time_s": bar.start_s,
            "bar_close": float(bar.close),
            "forecast_time_s": (bar.start_s + horizon * self.interval_s).tolist(),
            "forecast_close": [float(SIGNIFICANT.format(p)) for p in prices],
            "model": engine.name,
            "inference_ms": round(inference_ms, 3),
            "partial_in_window": sum(self._partial),
        }


def usable(bar: Bar) -> bool:
    """Prices float32 carries (> 0, below its max) and a volume it carries (NaN fails)."""
    o, h, lo, c, v = bar.as_floats()
    return all(0 < x < CARRIED for x in (o, h, lo, c)) and 0 <= v < CARRIED


def _unknown(start_s: int, last: Bar) -> Bar:
    """A bar nothing is known of: flat at the last close, no volume, filled and partial."""
    price = last.close
    return Bar(start_s, price, price, price, price, filled=True, partial=True)
