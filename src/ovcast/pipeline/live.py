"""The live pipeline: Coinbase trades -> bars -> features -> a forecast at every bar close.

    ovcast live --product BTC-USD --model models/btc --recording runs/live.db

    pipeline = LivePipeline(config, sink=print, wall_clock=time.time)
    await pipeline.run(stop_event)

Start-up (``resume.resume_product``): recorded bars, REST candles for the window and the
indicators' warm-up, and the open minute completed from REST trades (or marked
``partial``); the scaler stored in the recording is used, or fitted once on that history
and stored (never refitted). The exchange clock is read from REST ``/time``; bars are cut
on it, never on local time.

Then three parts, each with one job:
- the feed (``market.feed``) reads the socket on the event loop: validates, orders,
  deduplicates and repairs, and hands trades on without blocking;
- a ticker on the event loop tells the writer every ``tick_s`` where the exchange clock is
  (quiet markets produce no trades, yet their bars must close);
- the writer thread (``writer.BarWriter``) records trades and bars and forecasts, so a slow
  forecast never delays reading the socket.

Time is injected (``wall_clock``): tests run a minute's life in milliseconds.
SIGHUP reloads the model package in the writer thread, between bars (checked first; a bad
one is refused and logged); the socket is read meanwhile, and the next bar uses the new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from ..errors import DataError, OvcastError
from ..market.aggregator import Bar
from ..market.clock import ExchangeClock
from ..market.coinbase import Trade
from ..market.feed import MAX_AHEAD_S, REPAIR_TIMEOUT_S, CoinbaseFeed
from ..market.recording import Recording
from ..market.rest import CoinbaseRest, CoinbaseRestError, RestRetry
from ..market.tracker import TradeTracker
from ..runtime.engine import Engine
from ..runtime.slot import EngineSlot
from ..scaling import Scaler
from .resume import ResumeSettings, resume_product
from .scorecard import Scorecard, meta_key
from .stream import ProductStream, fit_market_scaler
from .writer import Advance, BarWriter, Hold, MarkPartial, ProductState, Release, Trades

log = logging.getLogger(__name__)

WARMUP_EXTRA_BARS = 150  # beyond the window: indicators (EMA/Wilder) converge


@dataclass
class LiveConfig:
    products: list[str]
    model_dir: str
    recording: str
    ws_url: str
    rest_url: str | None  # Exchange REST: time, candles, and trades for Exchange repairs
    advanced_rest_url: str | None = None  # Advanced Trade REST: trades with --feed advanced
    feed: str = "exchange"
    interval_s: int = 60
    grace_s: float = 3.0
    status_every_s: float = 10.0
    backfill_bars: int = 0  # 0: the window plus indicator warm-up; more for a fine-tuning set
    tick_s: float = 1.0  # how often the exchange clock is checked for bars to close
    max_ahead_s: float = MAX_AHEAD_S
    silence_timeout_s: float = 30.0
    max_resume_s: int = 3600
    repair_timeout_s: float = REPAIR_TIMEOUT_S  # bars wait at most this long for a repair


class LivePipeline:
    def __init__(
        self,
        config: LiveConfig,
        sink: Callable[[dict[str, Any]], None],
        on_bar: Callable[[str, Bar], None] | None = None,
        *,
        wall_clock: Callable[[], float] = time.time,
        rest_retry: RestRetry | None = None,
        rest_min_interval_s: float = 0.11,
        reconnect_backoff_s: tuple[float, float] = (0.5, 30.0),
    ) -> None:
        """``sink`` gets every forecast record; ``on_bar`` every bar, history included.
        Both are called from the writer thread."""
        self.config = config
        self.sink = sink
        self.on_bar = on_bar
        self.slot = EngineSlot(config.model_dir, Engine)
        self.recording = Recording(config.recording)
        self.clock = ExchangeClock(wall_clock)
        self.tracker = TradeTracker()
        self.products: dict[str, ProductState] = {}
        self._rest_options = (rest_retry, rest_min_interval_s)
        self.rest: CoinbaseRest | None = None
        self.writer: BarWriter | None = None
        self._stop: asyncio.Event | None = None
        self._retired: list[Engine] = []  # engines swapped out, freed at close
        self.feed = CoinbaseFeed(
            config.products,
            deliver=self._deliver,
            dialect=config.feed,
            ws_url=config.ws_url,
            clock=self.clock,
            tracker=self.tracker,
            on_repair_start=self._repair_started,
            on_repair_end=self._repair_ended,
            silence_timeout_s=config.silence_timeout_s,
            first_backoff_s=reconnect_backoff_s[0],
            max_backoff_s=reconnect_backoff_s[1],
            max_ahead_s=config.max_ahead_s,
            repair_timeout_s=config.repair_timeout_s,
        )

    @property
    def engine(self) -> Engine:
        return self.slot.engine

    @property
    def streams(self) -> dict[str, ProductStream]:
        return {product: state.stream for product, state in list(self.products.items())}

    def request_reload(self) -> None:
        """Hot swap (SIGHUP), without blocking the event loop: done by the writer thread."""
        if self.writer is not None:
            self.writer.call(self.reload)

    def reload(self, model_dir: str | None = None) -> None:
        """Load and check the package, then every stream's next bar uses it (blocking: a
        compile; the live pipeline runs it in its writer thread)."""
        retired = self.slot.engine
        try:
            engine = self.slot.reload(model_dir)
        except OvcastError as exc:
            log.error("%s", exc)
            return
        for state in self.products.values():
            state.stream.engine = engine
        # Kept until the pipeline closes, after the writer thread ends: freeing a compiled
        # model in the writer thread, or on the loop while the writer infers with the new one,
        # crashed the process (SIGSEGV, OpenVINO 2025) in the hot-swap test. Reloads are rare.
        self._retired.append(retired)

    # -- start-up ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Clock, history and open minute for every product; then the writer thread."""
        retry, min_interval = self._rest_options
        if self.config.rest_url or self.config.advanced_rest_url:
            self.rest = CoinbaseRest(
                exchange_url=self.config.rest_url,
                advanced_url=self.config.advanced_rest_url,
                retry=retry,
                min_interval_s=min_interval,
            )
            self.feed.rest = self.rest
            try:
                self.clock.set(await self.rest.server_time())
            except CoinbaseRestError as exc:
                log.warning("exchange clock unavailable (%s); using the local clock until "
                            "messages say otherwise", exc)  # fmt: skip
        settings = ResumeSettings(
            dialect=self.config.feed,
            interval_s=self.config.interval_s,
            grace_s=self.config.grace_s,
            need_bars=max(
                self.config.backfill_bars, self.engine.context_length + WARMUP_EXTRA_BARS
            ),
            max_resume_s=self.config.max_resume_s,
        )
        for product in self.config.products:
            await self._start_product(product, settings)
        self.writer = BarWriter(
            self.recording,
            self.products,
            sink=lambda record: self.sink(record),  # read at call time: the CLI may tee it
            on_bar=lambda product, bar: self.on_bar and self.on_bar(product, bar),
            on_failure=self._writer_failed,
        )
        self.writer.start()

    async def _start_product(self, product: str, settings: ResumeSettings) -> None:
        resumed = await resume_product(
            product, self.recording, self.rest, settings, now_s=self.clock.now()
        )
        for note in resumed.notes:
            log.warning("%s: %s", product, note)

        def record() -> None:
            with self.recording.transaction():
                for start in resumed.late_starts:
                    self.recording.mark_partial(product, start)
                self.recording.add_trades(resumed.new_trades)
                for bar in resumed.new_bars:
                    self.recording.add_bar(product, bar)

        await _in_thread(record)
        history = resumed.history
        if self.on_bar is not None:
            for bar in history:
                self.on_bar(product, bar)
        stored = self.recording.meta(f"scaler:{product}")
        if stored is None:
            try:
                scaler = fit_market_scaler(history)
            except DataError as exc:
                raise DataError(
                    f"{product}: {exc}: the recording and REST candles gave {len(history)} "
                    "closed bars (is --rest-url, the Exchange REST that serves candles, set?)"
                ) from None
            self.recording.set_meta(f"scaler:{product}", scaler.to_dict())
            log.info(
                "%s: scalers fitted on %d backfilled bars and stored (frozen)",
                product,
                len(history),
            )
        else:
            scaler = Scaler.from_dict(stored)
        stream = ProductStream(product, self.engine, scaler, interval_s=self.config.interval_s)
        await _in_thread(lambda: [stream.on_bar(bar) for bar in history])
        # Scored from here on: the forecasts this process issues (the warm-up's were never
        # shown). A restart on the same recording goes on with the card stored there.
        stream.scorecard = Scorecard.from_dict(
            self.recording.meta(meta_key(product)), product, interval_s=self.config.interval_s
        )
        self.products[product] = ProductState(stream, resumed.aggregator)
        if resumed.last_trade is not None and resumed.last_trade.numeric_id is not None:
            self.feed.seed(product, resumed.last_trade.numeric_id, resumed.last_trade.time_s)
        state = "ready" if not stream.warming_up else f"warming up ({len(history)} bars)"
        last = history[-1].start_s if history else None
        log.info(
            "%s: %d bars of history, last %s; open minute %s; %s",
            product,
            len(history),
            last,
            "complete from REST" if resumed.complete else "PARTIAL (not provably complete)",
            state,
        )

    # -- the running pipeline ----------------------------------------------------------------
    def _deliver(self, trades: list[Trade]) -> None:
        assert self.writer is not None
        self.writer.submit(Trades(trades))

    def _repair_started(self, product: str, key: int, since_s: float) -> None:
        if self.writer is not None:
            self.writer.submit(Hold(product, key, since_s))

    def _repair_ended(self, product: str, key: int, missing: tuple[float, float] | None) -> None:
        """After the repair's trades (already submitted): mark what it could not cover, then
        let its bars close."""
        if self.writer is not None:
            if missing is not None:
                self.writer.submit(MarkPartial(product, *missing))
            self.writer.submit(Release(product, key))

    def _writer_failed(self, exc: BaseException) -> None:
        stop, loop = self._stop, self._loop
        if stop is not None and loop is not None:
            loop.call_soon_threadsafe(stop.set)

    def tick(self) -> None:
        """Tell the writer where the exchange clock is, so that quiet bars close."""
        if self.writer is not None:
            self.writer.submit(Advance(self.clock.now()))

    def feed_summary(self) -> dict[str, Any]:
        """The feed's health, for the dashboard and ``/api/status``."""
        s = self.feed.status
        age = time.monotonic() - s.last_message_at if s.last_message_at else None
        return {
            "source": f"Coinbase {self.config.feed}",
            "connected": s.connected,
            "last_message_age_s": None if age is None else round(age, 1),
            "reconnects": s.reconnects,
            "trades": s.trades,
            "duplicates": s.duplicates,
            "rejected": s.rejected,
            "last_rejection": s.last_rejection,
            "gaps": s.gaps,
            "repaired": s.repaired,
            "repaired_trades": s.repaired_trades,
            "repair_failures": s.repair_failures,
            "repairing": s.repairing,
            "held_trades": s.held,
            "late_trades": sum(p.aggregator.late_trades for p in self.products.values()),
            "partial_bars": sum(p.partial_bars for p in self.products.values()),
            "exchange_time_s": round(self.clock.now(), 3),
            "last_error": s.last_error,
        }

    def status_line(self, *, final: bool = False) -> str:
        s = self.feed.status
        state = "stopped" if final else "connected" if s.connected else "DISCONNECTED"
        summary = self.feed_summary()
        streams = ", ".join(
            f"{p} {st.stream.bars} bars/{st.stream.forecasts} forecasts"
            + (f" ({st.stream.scorecard.brief()})" if st.stream.scorecard else "")
            for p, st in self.products.items()
        )
        return (
            f"{state}; reconnects {s.reconnects}, trades "
            f"{s.trades}, duplicates {s.duplicates}, rejected {s.rejected}, gaps {s.gaps} "
            f"(repaired {s.repaired}, failed {s.repair_failures}, in flight {s.repairing}), "
            f"late {summary['late_trades']}, "
            f"partial bars {summary['partial_bars']}; {streams}"
        )

    async def run(self, stop: asyncio.Event) -> None:
        self._stop, self._loop = stop, asyncio.get_running_loop()
        try:
            if not await _unless_stopped(self.start(), stop):
                log.info("stopped during start-up")
                return
            feed = asyncio.create_task(self.feed.run(stop))
            last_status = time.monotonic()
            try:
                while not stop.is_set() and not feed.done():
                    self.tick()
                    if time.monotonic() - last_status >= self.config.status_every_s:
                        log.info("%s", self.status_line())
                        last_status = time.monotonic()
                    try:
                        await asyncio.wait_for(stop.wait(), self.config.tick_s)
                    except TimeoutError:
                        pass
            finally:
                stop.set()
                await feed  # re-raises FeedRejected
        finally:
            await self.close()
            if self.products:
                log.info("%s", self.status_line(final=True))
        if self.writer is not None and self.writer.failure is not None:
            raise OvcastError(f"the live pipeline stopped: {self.writer.failure}")

    async def close(self) -> None:
        if self.writer is not None:
            await asyncio.to_thread(self.writer.stop)
        if self.rest is not None:
            await self.rest.aclose()
        self.recording.close()
        self._retired.clear()

    _loop: asyncio.AbstractEventLoop | None = None


async def _unless_stopped(work: Coroutine[Any, Any, None], stop: asyncio.Event) -> bool:
    """Run ``work`` unless ``stop`` is set first (then cancel it); True if it finished."""
    task = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if task.done():
        task.result()  # its error, if any
        return True
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return False


async def _in_thread(fn: Callable[[], Any]) -> Any:
    """``asyncio.to_thread``, but a cancellation waits until the thread is done with the
    recording (closing it under a running write would fail that write)."""
    task = asyncio.ensure_future(asyncio.to_thread(fn))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise
