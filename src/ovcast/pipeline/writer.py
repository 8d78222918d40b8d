"""The live pipeline's writer thread: record, aggregate, forecast, off the event loop.

    writer = BarWriter(recording, products, sink=print, on_bar=None)
    writer.start()
    writer.submit(Trades([...]))        # from the event loop: never blocks it
    writer.submit(Advance(now_s))       # the exchange clock moved on: close bars
    await writer.drain()                # everything submitted so far is done (tests)
    writer.stop()

The event loop only reads the socket, validates and orders; everything that takes time
(SQLite writes, the model's forecast) happens here, in submission order, so a slow
forecast delays the next forecast, never the next message. Work that queued up meanwhile
is taken in one batch and written in one transaction; bars are committed before their
forecasts are made, so a forecast is never emitted for a bar the recording lacks. Each
product's scorecard is stored after its bars have scored the forecasts made for them.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..market.aggregator import Bar, BarAggregator
from ..market.coinbase import Trade
from ..market.recording import Recording
from .scorecard import meta_key
from .stream import ProductStream

log = logging.getLogger(__name__)

MAX_BATCH = 5000


@dataclass
class ProductState:
    stream: ProductStream
    aggregator: BarAggregator
    partial_bars: int = 0


@dataclass(frozen=True)
class Trades:
    trades: list[Trade]


@dataclass(frozen=True)
class Advance:
    now_s: float  # exchange time


@dataclass(frozen=True)
class MarkPartial:
    product: str
    from_s: float
    to_s: float


@dataclass(frozen=True)
class Hold:
    """A REST repair is in flight: the product's bars from ``since_s`` on stay open."""

    product: str
    key: int
    since_s: float


@dataclass(frozen=True)
class Release:
    """That repair ended (its trades, and any ``MarkPartial``, were submitted before)."""

    product: str
    key: int


@dataclass(frozen=True)
class _Call:
    fn: Callable[[], None]


Work = Trades | Advance | MarkPartial | Hold | Release | _Call | None


class BarWriter:
    def __init__(
        self,
        recording: Recording,
        products: dict[str, ProductState],
        *,
        sink: Callable[[dict[str, Any]], None],
        on_bar: Callable[[str, Bar], None] | None = None,
        on_failure: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.recording = recording
        self.products = products
        self.sink = sink
        self.on_bar = on_bar
        self.on_failure = on_failure
        self.failure: BaseException | None = None
        self.forecast_errors = 0
        self._queue: queue.SimpleQueue[Work] = queue.SimpleQueue()
        self._pending: list[tuple[str, Bar]] = []
        self._thread = threading.Thread(target=self._run, name="ovcast-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, work: Work) -> None:
        self._queue.put(work)

    def stop(self) -> None:
        """Finish what was submitted, then end the thread."""
        self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join()

    def call(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` in the writer thread, between batches (e.g. a model hot swap)."""
        self.submit(_Call(fn))

    async def drain(self) -> None:
        """Wait (without blocking the loop) until everything submitted so far is done."""
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def mark_done() -> None:
            loop.call_soon_threadsafe(_resolve, done)

        self.submit(_Call(mark_done))
        await done

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    # -- the thread --------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                batch = [self._queue.get()]
                while len(batch) < MAX_BATCH:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                if not self._process(batch):
                    return
        except BaseException as exc:  # a broken recording or sink: the pipeline must stop
            self.failure = exc
            log.exception("the writer failed; stopping the pipeline")
            if self.on_failure is not None:
                self.on_failure(exc)

    def _process(self, batch: list[Work]) -> bool:
        closed: list[tuple[str, Bar]] = []
        self._pending = closed  # bars closed in this batch, recorded at its end
        with self.recording.transaction():
            for work in batch:
                if isinstance(work, Trades):
                    closed += self._trades(work.trades)
                elif isinstance(work, Advance):
                    for product, state in self.products.items():
                        closed += [(product, bar) for bar in state.aggregator.advance(work.now_s)]
                elif isinstance(work, MarkPartial):
                    self._mark_partial(work)
                elif isinstance(work, Hold):
                    self.products[work.product].aggregator.hold(work.key, work.since_s)
                elif isinstance(work, Release):
                    aggregator = self.products[work.product].aggregator
                    closed += [(work.product, bar) for bar in aggregator.release(work.key)]
            for product, bar in closed:
                self.recording.add_bar(product, bar)  # recorded before it counts
                self.products[product].partial_bars += bar.partial
        for product, bar in closed:
            self._emit(product, bar)
        for product in dict.fromkeys(product for product, _ in closed):
            scorecard = self.products[product].stream.scorecard
            if scorecard is not None:  # what this batch's bars scored, kept with them
                self.recording.set_meta(meta_key(product), scorecard.to_dict())
        for work in batch:
            if isinstance(work, _Call):
                work.fn()
        return None not in batch

    def _trades(self, trades: list[Trade]) -> list[tuple[str, Bar]]:
        closed: list[tuple[str, Bar]] = []
        for trade in trades:
            if not self.recording.add_trade(trade):
                continue  # recorded before (e.g. before a restart): already in its bar
            aggregator = self.products[trade.product_id].aggregator
            closed += [
                (trade.product_id, bar)
                for bar in aggregator.add_trade(
                    trade.time_s, trade.price, trade.size, trade.numeric_id
                )
            ]
            for start in aggregator.take_late_starts():
                self._mark_recorded_partial(trade.product_id, start)
        return closed

    def _mark_partial(self, work: MarkPartial) -> None:
        state = self.products[work.product]
        interval = state.aggregator.interval_s
        start = state.aggregator.bucket(work.from_s)
        while start <= work.to_s:
            if not state.aggregator.mark_partial(start):
                self._mark_recorded_partial(work.product, start)
            start += interval

    def _mark_recorded_partial(self, product: str, start: int) -> None:
        """A closed bar lacks trades: mark it where it is (this batch's bars, or recorded)."""
        for pending_product, bar in self._pending:
            if pending_product == product and bar.start_s == start:
                bar.partial = True  # counted when recorded
                return
        if self.recording.mark_partial(product, start):  # counted once per bar
            self.products[product].partial_bars += 1

    def _emit(self, product: str, bar: Bar) -> None:
        if self.on_bar is not None:
            self.on_bar(product, bar)
        try:
            record = self.products[product].stream.on_bar(bar)
        except Exception:  # a model that fails one forecast must not stop the recording
            self.forecast_errors += 1
            log.exception("%s: the forecast for the bar at %d failed", product, bar.start_s)
            return
        if record is not None:
            self.sink(record)


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)
