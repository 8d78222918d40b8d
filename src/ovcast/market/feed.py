"""A Coinbase trade feed you can trust: ordered, deduplicated, repaired, and unkillable by
bad input.

    feed = CoinbaseFeed(["BTC-USD"], deliver=handle, dialect="exchange",
                        ws_url="wss://ws-feed.exchange.coinbase.com", rest=rest, clock=clock)
    await feed.run(stop_event)

- subscribes right after connecting (Coinbase drops clients silent for 5 s) and waits for
  ``subscriptions``. An ``error`` reply to the *first* subscription fails fast
  (``FeedRejected``, with the server's words) when it cannot change: an invalid product,
  no channels, authentication required; or after ``FIRST_REFUSALS`` refusals in a row
  without a reason (Advanced Trade's bare "failure to subscribe"). An error on a later
  resubscribe (a rate limit after an hour of service) is logged and retried: a recorder
  that worked keeps trying. A ``--ws-url`` that is not a WebSocket URL is refused at once;
- reconnects after any close, clean (1000) or not, with jittered exponential backoff capped
  at ``max_backoff_s``; a watchdog treats ``silence_timeout_s`` without messages as a dead
  connection;
- applies each message's trades oldest first (Advanced Trade lists them newest first);
  drops repeats (``last_match`` and snapshots on every resubscribe); finds holes in trade
  ids (a jump, or an Exchange heartbeat's ``last_trade_id`` ahead of the last trade) and
  repairs them over REST *concurrently*: the socket is read on meanwhile, and the bars the
  hole may touch wait (``on_repair_start``: bars from that time on stay open) until the
  repair ends (``on_repair_end``, after its trades were delivered; with the time span
  still missing if it failed or ran past ``repair_timeout_s``, so those bars are marked
  ``partial``);
- rejects, counts (``status.rejected``) and logs, without ending the feed: text that is
  not JSON, JSON that is not an object, trades with a missing field, an id that is not a
  64-bit number, a price or size no float can carry, an unparseable time, a product not
  subscribed; a trade or heartbeat stamped more than ``max_ahead_s`` ahead of the exchange
  clock; a trade id or ``last_trade_id`` further ahead than any market could trade, or
  (before any id is known) one no second message agrees with (``TradeTracker``).

Every accepted trade is handed to ``deliver`` (synchronously); ``deliver`` must not block
(the live pipeline queues it to its writer thread).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from ..errors import ConfigError, OvcastError
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
    shown,
)
from .rest import CoinbaseRest, CoinbaseRestError
from .tracker import TradeTracker

log = logging.getLogger(__name__)

SUBSCRIBE_TIMEOUT_S = 5.0
MAX_AHEAD_S = 120.0  # a message stamped further ahead of the exchange clock is not trusted
REPAIR_PAGES = 50  # at most 50,000 trades fetched to repair one hole
REPAIR_TIMEOUT_S = 60.0  # bars wait at most this long for a repair
LOGGED_REJECTIONS = 20  # then one line per 100 rejections
FIRST_REFUSALS = 3  # refusals of the first subscription, without a known reason, before giving up
# Refusals that no retry can change (shared/notes/coinbase-protocol.md, section 1).
PERMANENT_REFUSAL = re.compile(
    r"not a valid product|invalid product|no channels provided|require authentication",
    re.IGNORECASE,
)

RepairStart = Callable[[str, int, float], None]  # (product, repair id, bars from this time wait)
RepairEnd = Callable[[str, int, "tuple[float, float] | None"], None]  # (.., span still missing)


class FeedRejected(OvcastError):
    """The exchange refused the subscription (e.g. an invalid product): retrying cannot help."""


class _Refused(Exception):
    """An ``error`` answered a subscribe (whether to give up is ``run``'s decision)."""


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
    repairing: int = 0  # repairs in flight (their bars wait)
    held: int = 0  # trades waiting for a second opinion (no trade id known yet)
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
        on_repair_start: RepairStart | None = None,
        on_repair_end: RepairEnd | None = None,
        silence_timeout_s: float = 30.0,
        max_backoff_s: float = 30.0,
        first_backoff_s: float = 0.5,
        max_ahead_s: float = MAX_AHEAD_S,
        repair_timeout_s: float = REPAIR_TIMEOUT_S,
    ) -> None:
        if dialect not in ("exchange", "advanced"):
            raise ValueError(f"dialect must be 'exchange' or 'advanced', got {dialect!r}")
        self.products = list(products)
        self.dialect = dialect
        self.ws_url = ws_url
        self.rest = rest
        self.deliver = deliver
        self.on_repair_start = on_repair_start
        self.on_repair_end = on_repair_end
        self.clock = clock or ExchangeClock()
        self.tracker = tracker or TradeTracker()
        self.silence_timeout_s = silence_timeout_s
        self.max_backoff_s = max_backoff_s
        self.first_backoff_s = first_backoff_s
        self.max_ahead_s = max_ahead_s
        self.repair_timeout_s = repair_timeout_s
        self.status = FeedStatus(products=list(products))
        self._last_time: dict[str, float] = {}  # per product: the newest accepted trade time
        self._repairs: set[asyncio.Task] = set()
        self._repair_locks: dict[str, asyncio.Lock] = {}
        self._repair_ids = 0

    def seed(self, product_id: str, trade_id: int, time_s: float) -> None:
        """Continue after a trade known from the recording or a REST fetch."""
        self.tracker.seed(product_id, trade_id, time_s)
        self._last_time[product_id] = max(time_s, self._last_time.get(product_id, time_s))

    def backoff_s(self, attempt: int) -> float:
        """Full-jitter exponential backoff, capped."""
        return random.uniform(0.5, 1.0) * min(self.max_backoff_s, self.first_backoff_s * 2**attempt)

    async def run(self, stop: asyncio.Event) -> None:
        attempt = refusals = 0
        try:
            while not stop.is_set():
                try:
                    await self._session(stop)
                    attempt = 0  # a session that subscribed resets the backoff
                except InvalidURI as exc:
                    raise ConfigError(
                        f"--ws-url {self.ws_url!r} is not a WebSocket URL (ws:// or wss://): {exc}"
                    ) from None
                except _Refused as exc:
                    refusals += 1
                    self.status.last_error = str(exc)
                    first = self.status.connects == 0
                    if first and (PERMANENT_REFUSAL.search(str(exc)) or refusals >= FIRST_REFUSALS):
                        raise FeedRejected(f"Coinbase refused the subscription: {exc}") from None
                    log.warning("Coinbase refused the subscription: %s; retrying", exc)
                except (ConnectionClosed, OSError, TimeoutError, InvalidHandshake) as exc:
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
        finally:
            self.status.connected = False
            for task in self._repairs:
                task.cancel()
            await asyncio.gather(*self._repairs, return_exceptions=True)

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
                    raise _Refused(f"{event.message} {event.reason}".strip())
            if any(isinstance(e, Subscribed) for e in parsed.events):
                return

    # -- one message -------------------------------------------------------------------------
    async def handle_raw(self, raw: str | bytes) -> ParsedMessage | None:
        """Parse, validate and apply one WebSocket message; None if it was rejected whole.
        Never waits for REST: repairs run beside it."""
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
            self.reject(f"malformed message ({type(exc).__name__}: {str(exc)[:100]})", raw)
            return None
        for reason in parsed.rejected:
            self.reject(reason, raw)
        if parsed.time_s is not None:
            self.clock.observe(parsed.time_s)  # one opinion among the recent ones
            problem = self.clock.plausible(parsed.time_s, self.max_ahead_s)
            if problem:
                self.reject(f"message {problem}", raw)
                return None
        for event in parsed.events:
            if isinstance(event, Trade):
                self._trade(event, raw)
            elif isinstance(event, Heartbeat):
                self._heartbeat(event, raw)
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
            shown_raw = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
            log.warning(
                "rejected (%d so far%s): %.300s; message: %.200s",
                n,
                "" if n <= LOGGED_REJECTIONS else ", logging every 100th",
                reason,
                shown_raw,
            )

    def _trade(self, trade: Trade, raw: Any) -> None:
        if trade.product_id not in self.products:
            self.reject(f"trade for {shown(trade.product_id)}, which is not subscribed"
                        f"{self._alias_hint(trade.product_id)}", raw)  # fmt: skip
            return
        problem = self.clock.plausible(trade.time_s, self.max_ahead_s)
        problem = problem and f"trade {trade.trade_id} {problem}"
        problem = problem or self.tracker.implausible(trade, self.clock.now())
        if problem:
            self.reject(problem, raw)
            return
        if not self.tracker.seeded(trade.product_id):
            self._settled(*self.tracker.hold(trade))
        else:
            self._take(trade)

    def _take(self, trade: Trade) -> None:
        new, gap = self.tracker.accept(trade)
        if not new:
            self.status.duplicates += 1
            return
        if gap:
            self._start_repair(trade.product_id, gap, until_s=trade.time_s)
        self._accepted([trade])

    def _settled(self, admitted: list[Trade], refused: list[Trade]) -> None:
        """An unseeded product's held trades, now judged: the agreeing ones go on."""
        self.status.held = self.tracker.held()
        for trade in refused:
            self.reject(
                f"trade id {trade.trade_id} of {trade.product_id}: no other message agrees "
                "with it (the first ids seen must agree before any is trusted)"
            )
        for trade in admitted:
            self._take(trade)

    def _heartbeat(self, heartbeat: Heartbeat, raw: Any) -> None:
        product = heartbeat.product_id
        if product is not None and product not in self.products:
            self.reject(f"heartbeat for {shown(product)}, which is not subscribed", raw)
            return
        if product is None or heartbeat.last_trade_id is None:
            return
        if not self.tracker.seeded(product):
            self._settled(*self.tracker.vouch(product, heartbeat.last_trade_id, heartbeat.time_s))
            return
        problem = self.tracker.implausible_heartbeat(heartbeat, self.clock.now())
        if problem:
            self.reject(f"heartbeat last_trade_id: {problem}", raw)
            return
        gap = self.tracker.heartbeat_gap(heartbeat)
        if gap:
            self._start_repair(product, gap, until_s=heartbeat.time_s)

    def _alias_hint(self, product: str) -> str:
        usdc = f"{product}C"
        if self.dialect == "advanced" and product.endswith("-USD") and usdc in self.products:
            return (
                f" (Advanced Trade is reported to send {product} data for {usdc}; ovcast does "
                f"not rename products: subscribe to {product})"
            )
        return ""

    def _accepted(self, trades: list[Trade]) -> None:
        for trade in trades:
            self.status.trades += 1
            last = self._last_time.get(trade.product_id)
            if last is None or trade.time_s > last:
                self._last_time[trade.product_id] = trade.time_s
        self.deliver(trades)

    # -- repair ------------------------------------------------------------------------------
    def _start_repair(self, product_id: str, gap: tuple[int, int], until_s: float | None) -> None:
        """Repair ``gap`` beside the socket; the bars from the last trade before it wait."""
        self.status.gaps += 1
        self._repair_ids += 1
        repair_id = self._repair_ids
        since_s = self._last_time.get(product_id, until_s if until_s is not None else 0.0)
        until_s = until_s if until_s is not None else since_s
        log.warning("%s: trade ids %d..%d missing; repairing over REST", product_id, gap[0], gap[1])
        if self.on_repair_start is not None:
            self.on_repair_start(product_id, repair_id, since_s)
        self.status.repairing += 1
        task = asyncio.ensure_future(self._repair(product_id, gap, repair_id, since_s, until_s))
        self._repairs.add(task)
        task.add_done_callback(self._repairs.discard)

    async def _repair(
        self, product_id: str, gap: tuple[int, int], repair_id: int, since_s: float, until_s: float
    ) -> None:
        lock = self._repair_locks.setdefault(product_id, asyncio.Lock())
        missing_span: tuple[float, float] | None = (since_s, until_s)
        try:
            async with lock:  # one product's repairs in the order their holes were found
                await asyncio.wait_for(self.repair(product_id, gap), self.repair_timeout_s)
                missing_span = None
        except TimeoutError:
            self.status.last_error = f"{product_id}: repair ran past {self.repair_timeout_s:g} s"
            log.warning("%s", self.status.last_error)
        except CoinbaseRestError as exc:
            self.status.last_error = str(exc)
            log.warning("%s: REST repair failed: %s", product_id, exc)
        finally:
            self.status.repairing -= 1
        if missing_span is not None or self.tracker.still_missing(product_id, *gap):
            self.status.repair_failures += 1
            log.warning(
                "%s: %d of %d missing trades could not be repaired; the bars they fall in are "
                "marked partial",
                product_id,
                self.tracker.still_missing(product_id, *gap),
                gap[1] - gap[0] + 1,
            )
            missing_span = (since_s, until_s)
        else:
            self.status.repaired += 1
        if self.on_repair_end is not None:
            self.on_repair_end(product_id, repair_id, missing_span)

    async def repair(self, product_id: str, gap: tuple[int, int]) -> None:
        """Fetch trades [first, last] over REST and deliver the ones still missing."""
        if self.rest is None:
            return
        first, last = gap
        fetched, _ = await self.rest.trades_back(
            product_id,
            self.dialect,
            to_id=first,
            before_id=last + 1 if self.dialect == "exchange" else None,
            max_pages=REPAIR_PAGES,
        )
        found = []
        for trade in fetched:
            if not first <= trade.numeric_id <= last:
                continue
            problem = self.clock.plausible(trade.time_s, self.max_ahead_s)
            if problem:
                self.reject(f"REST trade {trade.trade_id} {problem}", trade)
            else:
                found.append(trade)
        fresh = [t for t in found if self.tracker.accept(t)[0]]
        self.status.repaired_trades += len(fresh)
        if fresh:
            self._accepted(fresh)
