"""The live pipeline: Coinbase trades -> bars -> features -> a forecast at every bar close.

    ovcast live --product BTC-USD --model models/btc --recording runs/live.db

Start-up, per product: bars already in the recording, plus REST candles back far enough for
the window and the indicators' warm-up (newest-first pages of <= 300, holes filled, the open
bucket dropped), are replayed into the product's stream without emitting; the scaler stored
in the recording is used, or fitted once on that history and stored (never refitted). Then
live trades continue from the last bar without a seam. Every trade and bar is written to the
recording before it counts; every bar close yields one forecast record on the sink.
SIGHUP reloads the model package (checked first; a bad one is refused and logged).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import DataError, OvcastError
from ..runtime.engine import Engine
from ..runtime.slot import EngineSlot
from ..scaling import Scaler
from .aggregator import Bar, BarAggregator
from .coinbase import Trade, candle_windows, parse_candles
from .feed import CoinbaseFeed
from .recording import Recording
from .stream import ProductStream, fit_market_scaler

log = logging.getLogger(__name__)

WARMUP_EXTRA_BARS = 150  # beyond the window: indicators (EMA/Wilder) converge


@dataclass
class LiveConfig:
    products: list[str]
    model_dir: str
    recording: str
    ws_url: str
    rest_url: str | None  # Exchange REST: candles for backfill, trades for Exchange gap repair
    advanced_rest_url: str | None = None  # Advanced Trade REST: gap repair with --feed advanced
    feed: str = "exchange"
    interval_s: int = 60
    grace_s: float = 3.0
    status_every_s: float = 10.0
    backfill_bars: int = 0  # 0: the window plus indicator warm-up; more for a fine-tuning set


def fetch_candles(
    rest_url: str, product: str, start_s: int, end_s: int, interval_s: int, now_s: float
) -> list[Bar]:
    """Closed bars in [start_s, end_s) from the Exchange candles endpoint, oldest first."""
    rows: list[list[Any]] = []
    for start, end in candle_windows(start_s, end_s, interval_s):
        url = f"{rest_url.rstrip('/')}/products/{product}/candles?granularity={interval_s}&start={start}&end={end}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                rows.extend(json.loads(response.read()))
        except urllib.error.HTTPError as exc:  # e.g. 404 {"message": "NotFound"} for a bad product
            raise DataError(
                f"{product}: REST candles answered {exc.code} {exc.read()[:200]!r} ({url})"
            ) from exc
        except (OSError, ValueError) as exc:
            raise DataError(f"{product}: REST candles failed ({url}): {exc}") from exc
    return parse_candles(rows, interval_s, now_s)


class LivePipeline:
    def __init__(
        self,
        config: LiveConfig,
        sink: Callable[[dict[str, Any]], None],
        on_bar: Callable[[str, Bar], None] | None = None,
    ) -> None:
        """``sink`` gets every forecast record; ``on_bar`` every bar, history included."""
        self.config = config
        self.sink = sink
        self.on_bar = on_bar
        self.slot = EngineSlot(config.model_dir, Engine)
        self.recording = Recording(config.recording)
        self.streams: dict[str, ProductStream] = {}
        self.aggregators: dict[str, BarAggregator] = {}
        self.clock_offset_s = 0.0  # exchange time - local time, from the latest trade
        self.feed = CoinbaseFeed(
            config.products,
            on_trade=self.on_trade,
            dialect=config.feed,
            ws_url=config.ws_url,
            rest_url=config.rest_url if config.feed == "exchange" else config.advanced_rest_url,
        )

    @property
    def engine(self) -> Engine:
        return self.slot.engine

    def reload(self, model_dir: str | None = None) -> None:
        """Hot swap (SIGHUP): load and check the package, then every stream's next bar uses it."""
        try:
            engine = self.slot.reload(model_dir)
        except OvcastError as exc:
            log.error("%s", exc)
            return
        for stream in self.streams.values():
            stream.engine = engine

    def start_product(self, product: str) -> None:
        """Recorded bars + REST backfill -> warmed-up stream and a seeded aggregator."""
        interval = self.config.interval_s
        now = time.time()
        history = {b.start_s: b for b in self.recording.bars(product)}
        need = max(self.config.backfill_bars, self.engine.context_length + WARMUP_EXTRA_BARS)
        if self.config.rest_url:
            end = int(now // interval) * interval
            start = end - need * interval
            if history:
                start = max(start, max(history) + interval)
            if start < end:
                for bar in fetch_candles(self.config.rest_url, product, start, end, interval, now):
                    history.setdefault(bar.start_s, bar)
        bars = [history[t] for t in sorted(history)]
        if not bars:
            raise DataError(
                f"{product}: no history (no recording and no REST candles); cannot warm up"
            )
        for bar in bars:
            self.recording.add_bar(product, bar)
            if self.on_bar is not None:
                self.on_bar(product, bar)
        stored = self.recording.meta(f"scaler:{product}")
        if stored is None:
            scaler = fit_market_scaler(bars)
            self.recording.set_meta(f"scaler:{product}", scaler.to_dict())
            log.info(
                "%s: scalers fitted on %d backfilled bars and stored (frozen)", product, len(bars)
            )
        else:
            scaler = Scaler.from_dict(stored)
        stream = ProductStream(product, self.engine, scaler, interval_s=interval)
        for bar in bars:
            stream.on_bar(bar)
        aggregator = BarAggregator(interval, self.config.grace_s)
        aggregator.seed(bars[-1])
        self.streams[product], self.aggregators[product] = stream, aggregator
        state = "ready" if not stream.warming_up else f"warming up ({len(bars)} bars)"
        log.info("%s: %d bars of history, last %s; %s", product, len(bars), bars[-1].start_s, state)

    def on_trade(self, trade: Trade) -> None:
        if not self.recording.add_trade(trade):
            return  # already recorded (e.g. before a restart)
        self.clock_offset_s = trade.time_s - time.time()
        self._emit(
            trade.product_id,
            self.aggregators[trade.product_id].add_trade(trade.time_s, trade.price, trade.size),
        )

    def tick(self) -> None:
        """Close bars the exchange clock has passed (quiet markets produce no trades)."""
        now = time.time() + self.clock_offset_s
        for product, aggregator in self.aggregators.items():
            self._emit(product, aggregator.advance(now))

    def _emit(self, product: str, bars: list[Bar]) -> None:
        for bar in bars:
            self.recording.add_bar(product, bar)  # recorded before it counts
            if self.on_bar is not None:
                self.on_bar(product, bar)
            record = self.streams[product].on_bar(bar)
            if record is not None:
                self.sink(record)

    def feed_summary(self) -> dict[str, Any]:
        """The feed's health, for the dashboard: connection, message age, repairs."""
        s = self.feed.status
        age = time.monotonic() - s.last_message_at if s.last_message_at else None
        return {
            "source": f"Coinbase {self.config.feed}",
            "connected": s.connected,
            "last_message_age_s": None if age is None else round(age, 1),
            "reconnects": s.reconnects,
            "trades": s.trades,
            "duplicates": s.duplicates,
            "gaps": s.gaps,
            "repaired": s.repaired,
            "last_error": s.last_error,
        }

    def status_line(self) -> str:
        s = self.feed.status
        streams = ", ".join(
            f"{p} {st.bars} bars/{st.forecasts} forecasts" for p, st in self.streams.items()
        )
        return (
            f"{'connected' if s.connected else 'DISCONNECTED'}; reconnects {s.reconnects}, trades "
            f"{s.trades}, duplicates {s.duplicates}, gaps {s.gaps} (repaired {s.repaired}); {streams}"
        )

    async def run(self, stop: asyncio.Event) -> None:
        for product in self.config.products:
            self.start_product(product)
        feed = asyncio.create_task(self.feed.run(stop))
        last_status = 0.0
        try:
            while not stop.is_set() and not feed.done():
                self.tick()
                if time.monotonic() - last_status >= self.config.status_every_s:
                    log.info("%s", self.status_line())
                    last_status = time.monotonic()
                try:
                    await asyncio.wait_for(stop.wait(), 1.0)
                except TimeoutError:
                    pass
        finally:
            stop.set()
            await feed  # re-raises FeedRejected
            self.recording.close()
