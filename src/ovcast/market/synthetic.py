"""A synthetic market for demos that must run offline: minute bars with a daily rhythm.

    bars = synthetic_bars(1200, interval_s=60, end_s=now, seed=0)

A random walk in log price (volatility that drifts, a slight intraday cycle) with trade
counts and volumes that follow the cycle too. It looks like a market on a chart; it is not
a model of one, and nothing is evaluated on it.
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np

from .aggregator import Bar

START_PRICE = 100.0
DAY_S = 86_400


def synthetic_bars(
    count: int, *, interval_s: int = 60, end_s: int, seed: int = 0, start_price: float = START_PRICE
) -> list[Bar]:
    """``count`` closed bars, the last one starting at ``end_s - interval_s``, oldest first."""
    rng = np.random.default_rng(seed)
    starts = end_s - interval_s * np.arange(count, 0, -1)
    cycle = np.sin(2 * np.pi * (starts % DAY_S) / DAY_S)  # (count,) busier in "the afternoon"
    vol = 0.0012 * np.exp(0.3 * cycle + np.cumsum(rng.normal(0, 0.03, count)).clip(-1, 1))
    ticks = 8  # price path within each bar, for highs and lows
    steps = rng.standard_normal((count, ticks)) * vol[:, None] / np.sqrt(ticks)
    path = np.log(start_price) + np.cumsum(steps.ravel()).reshape(count, ticks)
    opens = np.concatenate([[np.log(start_price)], path[:-1, -1]])
    high = np.maximum(path.max(axis=1), opens)
    low = np.minimum(path.min(axis=1), opens)
    volume = rng.lognormal(np.log(2.0) + 0.5 * cycle, 0.5)

    def price(x: float) -> Decimal:
        return Decimal(f"{np.exp(x):.2f}")

    return [
        Bar(
            start_s=int(starts[k]),
            open=price(opens[k]),
            high=price(high[k]),
            low=price(low[k]),
            close=price(path[k, -1]),
            volume=Decimal(f"{volume[k]:.4f}"),
            trades=int(rng.integers(5, 60)),
        )
        for k in range(count)
    ]
