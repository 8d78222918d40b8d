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
- a trade for a bar already closed is not applied: it is counted in ``late_trades``, logged
  once per bar, and that bar's start is handed out by ``take_late_starts`` so the pipeline
  can mark the recorded bar ``partial``; emitted bars (and the forecasts made from them)
  never change afterwards;
- a bar whose start was passed to ``mark_partial`` (trades known or feared missing: an
  unproven start-up minute, an unrepaired gap) comes out with ``partial=True``;
- ``hold(key, since_s)`` keeps every bar from ``since_s`` on open (a REST repair of trades
  that may fall in them is in flight; later trades open later bars meanwhile) until
  ``release(key)``; so several bars can be open at once;
- within a bar, trades may come in any order (a repair delivers older trades after newer
  ones): given each trade's ``order`` (its trade id), open is the first trade's price and
  close the last one's; without it, arrival order;
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
    partial: bool = False  # trades may be missing: never a scored target or unmarked input

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
    _open: dict[int, Bar] = field(default_factory=dict, repr=False)  # start -> bar
    _order: dict[int, tuple[float, float]] = field(default_factory=dict, repr=False)
    _last_closed: Bar | None = field(default=None, repr=False)
    _partial: set[int] = field(default_factory=set, repr=False)
    _late: list[int] = field(default_factory=list, repr=False)
    _holds: dict[object, int] = field(default_factory=dict, repr=False)  # key -> first start
    _arrivals: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        if self.interval_s <= 0 or not self.grace_s >= 0:
            raise ValueError("interval_s must be > 0 and grace_s >= 0")

    def bucket(self, time_s: float) -> int:
        return int(time_s // self.interval_s) * self.interval_s

    def seed(self, last_bar: Bar) -> None:
        """Continue after a known bar (e.g. the last backfilled candle) without a seam."""
        self._last_closed = last_bar
        self._open.clear()
        self._order.clear()

    @property
    def open_bar(self) -> Bar | None:
        """The newest bar not yet closed."""
        return self._open[max(self._open)] if self._open else None

    @property
    def last_closed(self) -> Bar | None:
        return self._last_closed

    def mark_partial(self, start_s: int) -> bool:
        """The bar at ``start_s`` may lack trades. True if it is still to come (or open) and
        will carry the mark; False if it already closed (the caller marks the record)."""
        if self._last_closed is not None and start_s <= self._last_closed.start_s:
            return False
        if start_s in self._open:
            self._open[start_s].partial = True
        else:
            self._partial.add(start_s)
        return True

    def take_late_starts(self) -> list[int]:
        """Starts of closed bars that late trades missed since the last call."""
        late, self._late = self._late, []
        return late

    def hold(self, key: object, since_s: float) -> None:
        """Keep the bars from ``since_s`` on open until ``release(key)``."""
        self._holds[key] = self.bucket(since_s)

    def release(self, key: object) -> list[Bar]:
        """End a hold; returns the bars later trades had proved closed meanwhile."""
        self._holds.pop(key, None)
        if not self._open:
            return []
        return self._close_through(max(self._open) - self.interval_s)

    def add_trade(
        self, time_s: float, price: Decimal, size: Decimal, order: float | None = None
    ) -> list[Bar]:
        """Apply a trade (``order``: its trade id); returns the bars it proved closed."""
        start = self.bucket(time_s)
        if self._last_closed is not None and start <= self._last_closed.start_s:
            self.late_trades += 1
            if start not in self._late:
                log.warning(
                    "late trade at %.3f for the closed bar at %d (%d late so far); not applied, "
                    "the bar is marked partial",
                    time_s,
                    start,
                    self.late_trades,
                )
                self._late.append(start)
            return []
        self._arrivals += 1
        key = float(self._arrivals) if order is None else float(order)
        bar = self._open.get(start)
        if bar is None:
            self._open[start] = Bar(start, price, price, price, price, size, 1)
            self._open[start].partial = self._take_partial(start)
            self._order[start] = (key, key)
        else:
            first, last = self._order[start]
            bar.high, bar.low = max(bar.high, price), min(bar.low, price)
            bar.volume += size
            bar.trades += 1
            if key < first:
                bar.open, first = price, key
            if key >= last:
                bar.close, last = price, key
            self._order[start] = (first, last)
        return self._close_through(start - self.interval_s)

    def close_until(self, start_s: int) -> list[Bar]:
        """Close every bar that starts before ``start_s`` (filling empty intervals)."""
        return self._close_through(start_s - self.interval_s)

    def advance(self, now_s: float) -> list[Bar]:
        """The exchange clock reached ``now_s``: close every bar that ended ``grace_s`` ago."""
        complete_before = self.bucket(now_s - self.grace_s)  # bars starting before this are done
        return self._close_through(complete_before - self.interval_s)

    def _take_partial(self, start: int) -> bool:
        if start in self._partial:
            self._partial.discard(start)
            return True
        return False

    def _close_through(self, last_start: int) -> list[Bar]:
        """Close open bars and fill empty intervals up to the bar starting at ``last_start``,
        short of any held bar."""
        if self._holds:
            last_start = min(last_start, min(self._holds.values()) - self.interval_s)
        closed: list[Bar] = []
        while True:
            if self._last_closed is not None:
                start = self._last_closed.start_s + self.interval_s
            elif self._open:
                start = min(self._open)
            else:
                break
            if start > last_start:
                break
            bar = self._open.pop(start, None)
            if bar is None:
                price = self._last_closed.close  # type: ignore[union-attr]  # set: see above
                upto = last_start
                if self._open:
                    upto = min(upto, min(self._open) - self.interval_s)
                bar = Bar(start, price, price, price, price, filled=True)
                bar.partial = self._take_partial(start)
                closed.append(bar)
                for fill in range(start + self.interval_s, upto + 1, self.interval_s):
                    bar = Bar(fill, price, price, price, price, filled=True)
                    bar.partial = self._take_partial(fill)
                    closed.append(bar)
            else:
                self._order.pop(start, None)
                closed.append(bar)
            self._last_closed = bar
        return closed
