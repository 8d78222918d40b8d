"""Technical indicators, updated one bar at a time, matching TA-Lib after warm-up.

Each indicator has ``update(value) -> float`` (NaN while warming up) so the live pipeline
adds one bar at a time; ``features.compute_features`` runs the same objects over a whole
series, so training and serving share one implementation. Definitions (TA-Lib's):

- EMA(n): seeded with the SMA of the first n values, then ``ema += (x - ema) * 2/(n+1)``.
- RSI(14): Wilder: first average gain/loss is the SMA of the first 14 moves, then
  ``avg = (avg*13 + x)/14``; RSI = 100*G/(G+L), 0 when G+L = 0. First value at bar 15.
- MACD(12, 26, 9): EMA12 - EMA26 with both EMAs aligned to end on the slow one's first
  bar (TA-Lib seeds the fast EMA on the 12 closes before that bar); signal = EMA9 of MACD
  seeded with an SMA; histogram = MACD - signal.
- Volatility(n): population std (ddof 0) of the last n log returns ln(c_t/c_{t-1}).
"""

from __future__ import annotations

import math
from collections import deque

NAN = float("nan")


class EMA:
    """Exponential moving average seeded with the simple average of the first ``period`` values."""

    def __init__(self, period: int) -> None:
        self.period = period
        self.alpha = 2.0 / (period + 1)
        self._seed: list[float] = []
        self.value = NAN

    def update(self, x: float) -> float:
        if len(self._seed) < self.period:
            self._seed.append(x)
            if len(self._seed) == self.period:
                self.value = sum(self._seed) / self.period
            return self.value
        self.value += (x - self.value) * self.alpha
        return self.value


class RSI:
    """Wilder's relative strength index in [0, 100]."""

    def __init__(self, period: int = 14) -> None:
        self.period = period
        self._previous = NAN
        self._gains: list[float] = []
        self._losses: list[float] = []
        self._avg_gain = NAN
        self._avg_loss = NAN

    def update(self, close: float) -> float:
        previous, self._previous = self._previous, close
        if math.isnan(previous):
            return NAN
        move = close - previous
        gain, loss = max(move, 0.0), max(-move, 0.0)
        if math.isnan(self._avg_gain):
            self._gains.append(gain)
            self._losses.append(loss)
            if len(self._gains) < self.period:
                return NAN
            self._avg_gain = sum(self._gains) / self.period
            self._avg_loss = sum(self._losses) / self.period
        else:
            self._avg_gain = (self._avg_gain * (self.period - 1) + gain) / self.period
            self._avg_loss = (self._avg_loss * (self.period - 1) + loss) / self.period
        total = self._avg_gain + self._avg_loss
        return 0.0 if total == 0 else 100.0 * self._avg_gain / total


class MACD:
    """MACD line, signal and histogram, TA-Lib style (fast EMA aligned to the slow one)."""

    OUTPUTS = ("line", "signal", "histogram")

    def __init__(self, fast: int = 12, slow: int = 26, signal: int = 9) -> None:
        self.fast, self.slow = fast, slow
        self._closes: deque[float] = deque(maxlen=slow)
        self._fast_ema = EMA(fast)
        self._slow_ema = EMA(slow)
        self._signal_ema = EMA(signal)
        self._seen = 0

    def update(self, close: float) -> tuple[float, float, float]:
        self._seen += 1
        self._closes.append(close)
        slow = self._slow_ema.update(close)
        if self._seen < self.slow:
            return NAN, NAN, NAN
        if self._seen == self.slow:  # seed the fast EMA on the fast-window ending here
            for c in list(self._closes)[-self.fast :]:
                self._fast_ema.update(c)
        else:
            self._fast_ema.update(close)
        line = self._fast_ema.value - slow
        signal = self._signal_ema.update(line)
        return line, signal, (line - signal) if not math.isnan(signal) else NAN


class LogReturnVolatility:
    """Population std of the last ``window`` log returns."""

    def __init__(self, window: int = 20) -> None:
        self.window = window
        self._previous = NAN
        self._returns: deque[float] = deque(maxlen=window)

    def update(self, close: float) -> float:
        previous, self._previous = self._previous, close
        if math.isnan(previous) or previous <= 0 or close <= 0:
            return NAN
        self._returns.append(math.log(close / previous))
        if len(self._returns) < self.window:
            return NAN
        mean = sum(self._returns) / self.window
        return math.sqrt(sum((r - mean) ** 2 for r in self._returns) / self.window)
