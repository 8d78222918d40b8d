"""A Coinbase trade feed that does not lose trades: reconnects, deduplicates, repairs gaps.

    feed = CoinbaseFeed(["BTC-USD"], on_trade=handle, dialect="exchange",
                        ws_url="wss://ws-feed.exchange.coinbase.com",
                        rest_url="https://api.exchange.coinbase.com")
    await feed.run(stop_event)

- subscribes right after connecting (Coinbase drops clients silent for 5 s) and waits for
  ``subscriptions``; an ``error`` reply (e.g. an invalid product) fails fast with the
  server's reason (``FeedRejected``) instead of reconnecting forever;
- reconnects after any close, clean (1000) or not, with jittered exponential backoff capped
  at ``max_backoff_s``; a watchdog treats ``silence_timeout_s`` without messages as a dead
  connection;
- drops repeated trades (a resubscribe replays ``last_match``/snapshots), detects holes in
  trade ids (a jump, or an Exchange heartbeat's ``last_trade_id`` ahead of the last trade)
  and fetches the missing trades over REST: Exchange pages back by id; Advanced Trade, which
  has no by-id history, from its latest public trades (``rest_url`` is then its API base).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal

import orjson
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from ..errors import OvcastError
from .coinbase import (
    FeedError,
    Heartbeat,
    Subscribed,
    Trade,
    TradeTracker,
    advanced_subscribe,
    exchange_subscribe,
    iso_seconds,
    parse_advanced,
    parse_exchange,
)

log = logging.getLogger(__name__)

SUBSCRIBE_TIMEOUT_S = 5.0


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
    gaps: int = 0
    repaired: int = 0
    last_message_at: float = 0.0  # loop time
    last_error: str = ""
    products: list[str] = field(default_factory=list)


class CoinbaseFeed:
    def __init__(
        self,
        products: list[str],
        *,
        on_trade: Callable[[Trade], Awaitable[None] | None],
        on_heartbeat: Callable[[Heartbeat], Awaitable[None] | None] | None = None,
        dialect: str = "exchange",
        ws_url: str,
        rest_url: str | None = None,
        silence_timeout_s: float = 30.0,
        max_backoff_s: float = 30.0,
        first_backoff_s: float = 0.5,
    ) -> None:
        if dialect not in ("exchange", "advanced"):
            raise ValueError(f"dialect must be 'exchange' or 'advanced', got {dialect!r}")
        self.products = products
        self.dialect = dialect
        self.ws_url = ws_url
        self.rest_url = rest_url
        self.on_trade = on_trade
        self.on_heartbeat = on_heartbeat
        self.silence_timeout_s = silence_timeout_s
        self.max_backoff_s = max_backoff_s
        self.first_backoff_s = first_backoff_s
        self.tracker = TradeTracker()
        self.status = FeedStatus(products=list(products))

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
                await self._handle(orjson.loads(recv.result()))
            await ws.close()

    async def _await_subscribed(self, ws) -> None:
        deadline = asyncio.get_running_loop().time() + SUBSCRIBE_TIMEOUT_S
        while True:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise TimeoutError("no subscriptions reply within 5 s")
            message = orjson.loads(await asyncio.wait_for(ws.recv(), left))
            events = self._parse(message)
            for event in events:
                if isinstance(event, FeedError):
                    raise FeedRejected(
                        f"Coinbase refused the subscription: {event.message} {event.reason}".strip()
                    )
            if any(isinstance(e, Subscribed) for e in events):
                return
            await self._handle(message)  # trades may precede the reply

    def _parse(self, message: dict) -> list:
        return parse_exchange(message) if self.dialect == "exchange" else parse_advanced(message)

    async def _handle(self, message: dict) -> None:
        self.status.messages += 1
        self.status.last_message_at = asyncio.get_running_loop().time()
        for event in self._parse(message):
            if isinstance(event, Trade):
                await self._trade(event)
            elif isinstance(event, Heartbeat):
                gap = self.tracker.heartbeat_gap(event)
                if gap:
                    await self._repair(event.product_id, gap)
                if self.on_heartbeat:
                    await _maybe_await(self.on_heartbeat(event))
            elif isinstance(event, FeedError):
                self.status.last_error = f"{event.message} {event.reason}".strip()
                log.warning("feed error: %s", self.status.last_error)

    async def _trade(self, trade: Trade) -> None:
        new, gap = self.tracker.accept(trade)
        if not new:
            self.status.duplicates += 1
            return
        if gap:
            await self._repair(trade.product_id, gap)
        self.status.trades += 1
        await _maybe_await(self.on_trade(trade))

    async def _repair(self, product_id: str, gap: tuple[int, int]) -> None:
        """Fetch trades [first, last] over REST (Exchange ``/products/{id}/trades``)."""
        self.status.gaps += 1
        first, last = gap
        log.warning("%s: trade ids %d..%d missing; repairing over REST", product_id, first, last)
        if self.rest_url is None:
            return
        fetch = fetch_trades if self.dialect == "exchange" else fetch_recent_trades_advanced
        try:
            trades = await asyncio.to_thread(fetch, self.rest_url, product_id, first, last)
        except OSError as exc:
            log.warning("%s: REST repair failed: %s", product_id, exc)
            return
        for trade in sorted(trades, key=lambda t: int(t.trade_id)):
            new, _ = self.tracker.accept(trade)
            if new:
                self.status.repaired += 1
                self.status.trades += 1
                await _maybe_await(self.on_trade(trade))


def fetch_trades(rest_url: str, product_id: str, first: int, last: int) -> list[Trade]:
    """Trades with ids in [first, last], paging backwards with the ``after`` cursor."""
    found: list[Trade] = []
    cursor = last + 1
    while cursor > first:
        url = f"{rest_url.rstrip('/')}/products/{product_id}/trades?after={cursor}&limit=1000"
        with urllib.request.urlopen(url, timeout=10) as response:
            page = json.loads(response.read())
        if not page:
            break
        for t in page:
            trade_id = int(t["trade_id"])
            if first <= trade_id <= last:
                found.append(
                    Trade(
                        product_id,
                        str(trade_id),
                        iso_seconds(t["time"]),
                        Decimal(t["price"]),
                        Decimal(t["size"]),
                        t.get("side", ""),
                    )
                )
        cursor = min(int(t["trade_id"]) for t in page)
    return found


def fetch_recent_trades_advanced(
    rest_url: str, product_id: str, first: int, last: int
) -> list[Trade]:
    """Advanced Trade has no by-id trade history; its public market-trades endpoint returns the
    latest trades (up to 1000), which covers a hole noticed while streaming."""
    url = f"{rest_url.rstrip('/')}/api/v3/brokerage/market/products/{product_id}/ticker?limit=1000"
    with urllib.request.urlopen(url, timeout=10) as response:
        page = json.loads(response.read()).get("trades", [])
    found = [
        t for t in page if str(t["trade_id"]).isdigit() and first <= int(t["trade_id"]) <= last
    ]
    if len(found) < last - first + 1:
        log.warning(
            "%s: only %d of %d missing trades are still in the recent-trades window",
            product_id,
            len(found),
            last - first + 1,
        )
    return [
        Trade(
            product_id,
            str(t["trade_id"]),
            iso_seconds(t["time"]),
            Decimal(t["price"]),
            Decimal(t["size"]),
            t.get("side", ""),
        )
        for t in found
    ]


async def _maybe_await(result) -> None:
    if asyncio.iscoroutine(result):
        await result
