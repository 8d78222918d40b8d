"""Trades -> OHLCV bars on exchange time, closed only when time has provably moved on.

    agg = BarAggregator(interval_s=60, grace_s=3)
    closed = agg.add_trade(trade_time_s, Decimal("43000.12"), Decimal("0.01"))
    closed += agg.advance(exchange_now_s)      # heartbeats / clock: close after end + grace

Rules (the pitfalls of feed handlers, see the Coinbase notes):
- bucket by the trade's exchange time, ``floor(t / interval) * interval`` in UTC, never by
  receipt time;
- a bar closes when a trade of a later bucket arrives, or when ``advance`` is told that the
  exchange clock passed its end plus ``grace_s`` (late trades of the open bar still count);
- intervals without trades become flat bars at the previous close, volume 0, ``filled``;
- a trade for a bar already closed is not applied: it is counted in ``late_trades`` and
  logged, so emitted bars (and the forecasts made from them) never change afterwards;
- prices and sizes stay ``Decimal`` (exact) until a bar is turned into floats for features.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from decimal import Decimal

log = logging.getLogger(__name__)


@dataclass
class Bar:
    start_s: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal = Decimal(0)
    trades: int = 0
    filled: bool = False  # no trades: flat at the previous close

    def add(self, price: Decimal, size: Decimal) -> None:
        self.high = max(self.high, price)
        self.low = min(self.low, price)
        self.close = price
        self.volume += size
        self.trades += 1

    def as_floats(self) -> tuple[float, float, float, float, float]:
        return (
            float(self.open),
            float(self.high),
            float(self.low),
            float(self.close),
            float(self.volume),
        )


@dataclass
class BarAggregator:
    interval_s: int = 60
    grace_s: float = 3.0
    late_trades: int = 0
    _open: Bar | None = field(default=None, repr=False)
    _last_closed: Bar | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.interval_s <= 0 or self.grace_s < 0:
            raise ValueError("interval_s must be > 0 and grace_s >= 0")

    def bucket(self, time_s: float) -> int:
        return int(time_s // self.interval_s) * self.interval_s

    def seed(self, last_bar: Bar) -> None:
        """Continue after a known bar (e.g. the last backfilled candle) without a seam."""
        self._last_closed = last_bar
        self._open = None

    def add_trade(self, time_s: float, price: Decimal, size: Decimal) -> list[Bar]:
        """Apply a trade; returns the bars this trade proved closed (oldest first)."""
        start = self.bucket(time_s)
        if self._open is not None and start == self._open.start_s:
            self._open.add(price, size)
            return []
        newest_closed = self._last_closed.start_s if self._last_closed else None
        if (self._open is not None and start < self._open.start_s) or (
            newest_closed is not None and start <= newest_closed
        ):
            self.late_trades += 1
            log.warning(
                "late trade at %.3f for a closed bar (%d so far); not applied",
                time_s,
                self.late_trades,
            )
            return []
        closed = self._close_through(start - self.interval_s)
        self._open = Bar(start, price, price, price, price, size, 1)
        return closed

    def advance(self, now_s: float) -> list[Bar]:
        """The exchange clock reached ``now_s``: close every bar that ended ``grace_s`` ago."""
        complete_before = self.bucket(now_s - self.grace_s)  # bars starting before this are done
        return self._close_through(complete_before - self.interval_s)

    def _close_through(self, last_start: int) -> list[Bar]:
        """Close the open bar and fill empty intervals, up to the bar starting at ``last_start``."""
        closed: list[Bar] = []
        if self._open is not None and self._open.start_s <= last_start:
            closed.append(self._open)
            self._last_closed, self._open = self._open, None
        if self._last_closed is None:
            return closed
        start = self._last_closed.start_s + self.interval_s
        upto = (
            last_start
            if self._open is None
            else min(last_start, self._open.start_s - self.interval_s)
        )
        while start <= upto:
            price = self._last_closed.close
            flat = Bar(start, price, price, price, price, filled=True)
            closed.append(flat)
            self._last_closed = flat
            start += self.interval_s
        return closed
