"""A Coinbase trade feed you can trust: ordered, deduplicated, repaired, and unkillable by
bad input.

    feed = CoinbaseFeed(["BTC-USD"], deliver=handle, dialect="exchange",
                        ws_url="wss://ws-feed.exchange.coinbase.com", rest=rest, clock=clock)
    await feed.run(stop_event)

- subscribes right after connecting (Coinbase drops clients silent for 5 s) and waits for
  ``subscriptions``; an ``error`` reply (e.g. an invalid product) fails fast with the
  server's reason (``FeedRejected``) instead of reconnecting forever;
- reconnects after any close, clean (1000) or not, with jittered exponential backoff capped
  at ``max_backoff_s``; a watchdog treats ``silence_timeout_s`` without messages as a dead
  connection;
- applies each message's trades oldest first (Advanced Trade lists them newest first);
  drops repeats (``last_match`` and snapshots on every resubscribe); finds holes in trade
  ids (a jump, or an Exchange heartbeat's ``last_trade_id`` ahead of the last trade) and
  fetches the missing trades over REST *before* the trade that revealed the hole is
  delivered, so bars see trades in order. A repair that fails (after the REST client's
  retries) is reported through ``on_unrepaired`` and the feed goes on;
- rejects, counts (``status.rejected``) and logs, without ending the feed: text that is
  not JSON, JSON that is not an object, trades with a missing field, a non-finite or
  non-positive price or size, an unparseable time, a product not subscribed; a trade or
  heartbeat stamped more than ``max_ahead_s`` ahead of the exchange clock; a trade id or
  ``last_trade_id`` further ahead than any market could trade (``TradeTracker``).

Every accepted trade is handed to ``deliver`` (synchronously, in order); ``deliver`` must
not block (the live pipeline queues it to its writer thread).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from ..errors import OvcastError
from .clock import ExchangeClock
from .coinbase import (
    FeedError,
    Heartbeat,
    ParsedMessage,
    Subscribed,
    Trade,
    advanced_subscribe,
    exchange_subscribe,
    parse_advanced,
    parse_exchange,
)
from .rest import CoinbaseRest, CoinbaseRestError
from .tracker import TradeTracker

log = logging.getLogger(__name__)

SUBSCRIBE_TIMEOUT_S = 5.0
MAX_AHEAD_S = 120.0  # a message stamped further ahead of the exchange clock is not trusted
REPAIR_PAGES = 50  # at most 50,000 trades fetched to repair one hole
LOGGED_REJECTIONS = 20  # then one line per 100 rejections


class FeedRejected(OvcastError):
    """The exchange refused the subscription (e.g. an invalid product): retrying cannot help."""


@dataclass
class FeedStatus:
    connected: bool = False
    connects: int = 0
    reconnects: int = 0
    messages: int = 0
    trades: int = 0
    duplicates: int = 0
    rejected: int = 0
    gaps: int = 0
    repaired: int = 0  # gaps repaired in full
    repaired_trades: int = 0
    repair_failures: int = 0  # gaps left (partly) open: their bars are marked partial
    last_message_at: float = 0.0  # time.monotonic()
    last_error: str = ""
    last_rejection: str = ""
    products: list[str] = field(default_factory=list)


class CoinbaseFeed:
    def __init__(
        self,
        products: list[str],
        *,
        deliver: Callable[[list[Trade]], None],
        dialect: str = "exchange",
        ws_url: str,
        rest: CoinbaseRest | None = None,
        clock: ExchangeClock | None = None,
        tracker: TradeTracker | None = None,
        on_unrepaired: Callable[[str, float, float], None] | None = None,
        silence_timeout_s: float = 30.0,
        max_backoff_s: float = 30.0,
        first_backoff_s: float = 0.5,
        max_ahead_s: float = MAX_AHEAD_S,
    ) -> None:
        if dialect not in ("exchange", "advanced"):
            raise ValueError(f"dialect must be 'exchange' or 'advanced', got {dialect!r}")
        self.products = list(products)
        self.dialect = dialect
        self.ws_url = ws_url
        self.rest = rest
        self.deliver = deliver
        self.on_unrepaired = on_unrepaired
        self.clock = clock or ExchangeClock()
        self.tracker = tracker or TradeTracker()
        self.silence_timeout_s = silence_timeout_s
        self.max_backoff_s = max_backoff_s
        self.first_backoff_s = first_backoff_s
        self.max_ahead_s = max_ahead_s
        self.status = FeedStatus(products=list(products))
        self._last_time: dict[str, float] = {}  # per product: the newest accepted trade time

    def seed(self, product_id: str, trade_id: int, time_s: float) -> None:
        """Continue after a trade known from the recording or a REST fetch."""
        self.tracker.seed(product_id, trade_id, time_s)
        self._last_time[product_id] = max(time_s, self._last_time.get(product_id, time_s))

    def backoff_s(self, attempt: int) -> float:
        """Full-jitter exponential backoff, capped."""
        return random.uniform(0.5, 1.0) * min(self.max_backoff_s, self.first_backoff_s * 2**attempt)

    async def run(self, stop: asyncio.Event) -> None:
        attempt = 0
        while not stop.is_set():
            try:
                await self._session(stop)
                attempt = 0  # a session that subscribed resets the backoff
            except FeedRejected:
                raise
            except (ConnectionClosed, OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
                self.status.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("feed connection lost: %s", self.status.last_error)
            self.status.connected = False
            if stop.is_set():
                break
            delay = self.backoff_s(attempt)
            attempt += 1
            self.status.reconnects += 1
            log.info("reconnecting in %.2f s", delay)
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except TimeoutError:
                pass

    async def _session(self, stop: asyncio.Event) -> None:
        async with connect(self.ws_url, open_timeout=10, max_size=2**24) as ws:
            messages = (
                [exchange_subscribe(self.products)]
                if self.dialect == "exchange"
                else advanced_subscribe(self.products)
            )
            for message in messages:
                await ws.send(json.dumps(message))
            await self._await_subscribed(ws)
            self.status.connected = True
            self.status.connects += 1
            log.info("subscribed to %s (%s)", ", ".join(self.products), self.dialect)
            while not stop.is_set():
                recv = asyncio.ensure_future(ws.recv())
                stopping = asyncio.ensure_future(stop.wait())
                done, _ = await asyncio.wait(
                    {recv, stopping},
                    timeout=self.silence_timeout_s,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                stopping.cancel()
                if recv not in done:
                    recv.cancel()
                    if stop.is_set():
                        return
                    raise TimeoutError(f"no message for {self.silence_timeout_s:g} s")
                await self.handle_raw(recv.result())
            await ws.close()

    async def _await_subscribed(self, ws) -> None:
        deadline = asyncio.get_running_loop().time() + SUBSCRIBE_TIMEOUT_S
        while True:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise TimeoutError("no subscriptions reply within 5 s")
            parsed = await self.handle_raw(await asyncio.wait_for(ws.recv(), left))
            if parsed is None:
                continue
            for event in parsed.events:
                if isinstance(event, FeedError):
                    raise FeedRejected(
                        f"Coinbase refused the subscription: {event.message} {event.reason}".strip()
                    )
            if any(isinstance(e, Subscribed) for e in parsed.events):
                return

    # -- one message -------------------------------------------------------------------------
    async def handle_raw(self, raw: str | bytes) -> ParsedMessage | None:
        """Parse, validate and apply one WebSocket message; None if it was rejected whole."""
        self.status.messages += 1
        self.status.last_message_at = time.monotonic()
        try:
            message = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            self.reject(f"not JSON ({exc})", raw)
            return None
        if not isinstance(message, dict):
            self.reject(f"expected a JSON object, got a JSON {type(message).__name__}", raw)
            return None
        try:
            parse = parse_exchange if self.dialect == "exchange" else parse_advanced
            parsed = parse(message)
        except (TypeError, ValueError, AttributeError, KeyError) as exc:  # a shape not foreseen
            self.reject(f"malformed message ({type(exc).__name__}: {exc})", raw)
            return None
        for reason in parsed.rejected:
            self.reject(reason, raw)
        if parsed.time_s is not None:
            problem = self.clock.plausible(parsed.time_s, self.max_ahead_s)
            if problem:
                self.reject(f"message {problem}", raw)
                return None
            self.clock.observe(parsed.time_s)
        for event in parsed.events:
            if isinstance(event, Trade):
                await self._trade(event, raw)
            elif isinstance(event, Heartbeat):
                await self._heartbeat(event, raw)
            elif isinstance(event, FeedError):
                self.status.last_error = f"{event.message} {event.reason}".strip()
                log.warning("feed error: %s", self.status.last_error)
        return parsed

    def reject(self, reason: str, raw: Any = None) -> None:
        """Count and log a message or trade we will not use; the feed goes on."""
        self.status.rejected += 1
        self.status.last_rejection = reason
        n = self.status.rejected
        if n <= LOGGED_REJECTIONS or n % 100 == 0:
            shown = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
            log.warning(
                "rejected (%d so far%s): %s; message: %.200s",
                n,
                "" if n <= LOGGED_REJECTIONS else ", logging every 100th",
                reason,
                shown,
            )

    async def _trade(self, trade: Trade, raw: Any) -> None:
        if trade.product_id not in self.products:
            self.reject(f"trade for {trade.product_id!r}, which is not subscribed", raw)
            return
        problem = self.clock.plausible(trade.time_s, self.max_ahead_s)
        problem = problem and f"trade {trade.trade_id} {problem}"
        problem = problem or self.tracker.implausible(trade, self.clock.now())
        if problem:
            self.reject(problem, raw)
            return
        new, gap = self.tracker.accept(trade)
        if not new:
            self.status.duplicates += 1
            return
        if gap:
            await self.repair(trade.product_id, gap, until_s=trade.time_s)
        self.clock.observe(trade.time_s)
        self._accepted([trade])

    async def _heartbeat(self, heartbeat: Heartbeat, raw: Any) -> None:
        if heartbeat.product_id is not None and heartbeat.product_id not in self.products:
            self.reject(f"heartbeat for {heartbeat.product_id!r}, which is not subscribed", raw)
            return
        problem = self.tracker.implausible_heartbeat(heartbeat, self.clock.now())
        if problem:
            self.reject(f"heartbeat last_trade_id: {problem}", raw)
            return
        gap = self.tracker.heartbeat_gap(heartbeat)
        if gap and heartbeat.product_id is not None:
            await self.repair(heartbeat.product_id, gap, until_s=heartbeat.time_s)

    def _accepted(self, trades: list[Trade]) -> None:
        for trade in trades:
            self.status.trades += 1
            last = self._last_time.get(trade.product_id)
            if last is None or trade.time_s > last:
                self._last_time[trade.product_id] = trade.time_s
        self.deliver(trades)

    # -- repair ------------------------------------------------------------------------------
    async def repair(self, product_id: str, gap: tuple[int, int], until_s: float | None) -> None:
        """Fetch trades [first, last] over REST and deliver the ones still missing."""
        self.status.gaps += 1
        first, last = gap
        log.warning("%s: trade ids %d..%d missing; repairing over REST", product_id, first, last)
        since_s = self._last_time.get(product_id, until_s if until_s is not None else 0.0)
        found: list[Trade] = []
        if self.rest is not None:
            try:
                fetched, _ = await self.rest.trades_back(
                    product_id,
                    self.dialect,
                    to_id=first,
                    before_id=last + 1 if self.dialect == "exchange" else None,
                    max_pages=REPAIR_PAGES,
                )
                found = [t for t in fetched if first <= (t.numeric_id or -1) <= last]
                for trade in found:
                    problem = self.clock.plausible(trade.time_s, self.max_ahead_s)
                    if problem:
                        self.reject(f"REST trade {trade.trade_id} {problem}", trade)
                found = [t for t in found if not self.clock.plausible(t.time_s, self.max_ahead_s)]
            except CoinbaseRestError as exc:
                self.status.last_error = str(exc)
                log.warning("%s: REST repair failed: %s", product_id, exc)
        fresh = [t for t in found if self.tracker.accept(t)[0]]
        self.status.repaired_trades += len(fresh)
        if fresh:
            self._accepted(fresh)
        missing = self.tracker.still_missing(product_id, first, last)
        if missing == 0:
            self.status.repaired += 1
            return
        self.status.repair_failures += 1
        log.warning(
            "%s: %d of %d missing trades could not be repaired; the bars they fall in are "
            "marked partial",
            product_id,
            missing,
            last - first + 1,
        )
        if self.on_unrepaired is not None:
            self.on_unrepaired(product_id, since_s, until_s if until_s is not None else since_s)
