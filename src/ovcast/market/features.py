"""The 7 model channels from OHLCV bars, with the same incremental indicators live and offline.

    channel 0 close, 1 high, 2 low          raw prices
    channel 3 volume                        log1p(volume)
    channel 4 RSI(14)                       Wilder RSI / 100, in [0, 1]
    channel 5 MACD(12, 26, 9)               the MACD line by default (signal/histogram selectable)
    channel 6 volatility                    population std of the last N log returns

``MARKET_SCALER_KINDS`` says how each channel is scaled for the model: standard scaling
fitted on training history for prices, log volume, MACD and volatility; RSI/100 is already
on fixed [0, 1] bounds and is not refitted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .indicators import MACD, RSI, LogReturnVolatility

CHANNELS = ("close", "high", "low", "volume", "rsi", "macd", "volatility")
MARKET_SCALER_KINDS = (
    "standard",
    "standard",
    "standard",
    "standard",
    "identity",
    "standard",
    "standard",
)
MACD_OUTPUTS = MACD.OUTPUTS


@dataclass
class FeatureConfig:
    macd_output: str = "line"  # line | signal | histogram
    volatility_window: int = 20
    rsi_period: int = 14

    def __post_init__(self) -> None:
        if self.macd_output not in MACD_OUTPUTS:
            raise ValueError(f"macd_output must be one of {MACD_OUTPUTS}, got {self.macd_output!r}")


class FeatureState:
    """Per-product indicator state; ``update`` turns one closed bar into one feature row."""

    def __init__(self, config: FeatureConfig | None = None) -> None:
        self.config = config or FeatureConfig()
        self._rsi = RSI(self.config.rsi_period)
        self._macd = MACD()
        self._volatility = LogReturnVolatility(self.config.volatility_window)
        self._macd_index = MACD_OUTPUTS.index(self.config.macd_output)

    def update(self, high: float, low: float, close: float, volume: float) -> np.ndarray:
        """The feature row of a bar (NaN where an indicator is still warming up)."""
        rsi = self._rsi.update(close)
        macd = self._macd.update(close)[self._macd_index]
        volatility = self._volatility.update(close)
        return np.array(
            [close, high, low, math.log1p(volume), rsi / 100.0, macd, volatility], dtype=np.float64
        )


def compute_features(
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    config: FeatureConfig | None = None,
) -> np.ndarray:
    """Feature rows (bars, 7) for a whole series, bar by bar as the live pipeline does."""
    state = FeatureState(config)
    return np.stack(
        [state.update(h, lo, c, v) for h, lo, c, v in zip(high, low, close, volume, strict=True)]
    )


def warmup_bars(config: FeatureConfig | None = None) -> int:
    """Bars before every channel is defined (MACD's signal needs the most: 26 + 9 - 1)."""
    config = config or FeatureConfig()
    macd = 26 - 1 + (9 - 1 if config.macd_output != "line" else 0)
    return max(config.rsi_period, macd, config.volatility_window) + 1
