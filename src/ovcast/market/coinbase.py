"""Coinbase's public market-data protocols, as pure functions (no sockets, no HTTP here).

Two WebSocket dialects (sources in ``shared/notes/coinbase-protocol.md``):

- Exchange (``wss://ws-feed.exchange.coinbase.com``): ``matches`` sends one trade per
  message, ``last_match`` first after every (re)subscribe (a repeat of a trade already
  seen), then ``match``; ids are numeric and consecutive per product, so a jump is a lost
  trade. ``heartbeat`` (once a second per product) carries ``last_trade_id`` and ``time``.
  ``sequence`` jumps are normal on these channels and are not used.
- Advanced Trade (``wss://advanced-trade-ws.coinbase.com``): ``market_trades`` envelopes
  hold events; the first is a ``snapshot`` (about 100 recent trades), then ``update``
  events batch 250 ms of trades. Within every event trades are listed **newest first**
  (descending ``trade_id`` and ``time``; seen in every multi-trade event of a real
  recording), so ``parse_advanced`` returns them oldest first. ``trade_id`` is a string;
  ``heartbeats`` carry a counter (integer or string) and a Go-format ``current_time`` that
  is not parsed: the envelope's ``timestamp`` (up to 9 fractional digits) is the clock.

Both answer ``subscriptions`` and ``error``; unknown message types are ignored. Anything
malformed is not an exception that ends the feed: parsing returns the good events plus one
reason per item it had to reject (``ParsedMessage.rejected``). Trade ids are whole numbers
on both feeds (Advanced Trade writes them as strings of ASCII digits); anything else, or a
number beyond 64 bits, is rejected. Prices and sizes must also be usable as floats (the
features are floats): finite, > 0 and at most ``MAX_QUANTITY``.

REST candles (Exchange ``/products/{id}/candles``) come newest first, at most 300 per
request, with no row for intervals without trades, and include the still-open bucket.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from ..errors import DataError
from .aggregator import Bar
from .bars import parse_time

EXCHANGE_WS_URL = "wss://ws-feed.exchange.coinbase.com"
ADVANCED_WS_URL = "wss://advanced-trade-ws.coinbase.com"
EXCHANGE_REST_URL = "https://api.exchange.coinbase.com"
ADVANCED_REST_URL = "https://api.coinbase.com"
MAX_CANDLES_PER_REQUEST = 300
MAX_TRADE_ID = 2**63 - 1  # Coinbase ids are far below; larger text is not an id
MAX_QUANTITY = Decimal("1e15")  # beyond any price or size; larger overflows float features
MIN_QUANTITY = Decimal("1e-15")  # smaller underflows to a float 0
EPOCH_RANGE_S = (1e9, 1e10)  # 2001..2286: seconds; a millisecond clock is 1000x larger


class BadMessage(DataError):
    """A message or REST answer that does not hold what the protocol says it should."""


@dataclass(frozen=True)
class Trade:
    product_id: str
    trade_id: str
    time_s: float  # exchange time, UTC epoch seconds (microsecond resolution)
    price: Decimal
    size: Decimal
    side: str = ""
    snapshot: bool = False  # part of Advanced Trade's first (historical) batch

    @property
    def numeric_id(self) -> int:
        """The id as a number (``trade_from`` admits ASCII digits only)."""
        return int(self.trade_id)


@dataclass(frozen=True)
class Heartbeat:
    product_id: str | None  # None for Advanced Trade's connection-wide heartbeats
    last_trade_id: int | None
    counter: int | None = None
    time_s: float | None = None


@dataclass(frozen=True)
class Subscribed:
    channels: dict[str, list[str]]


@dataclass(frozen=True)
class FeedError:
    message: str
    reason: str = ""


Event = Trade | Heartbeat | Subscribed | FeedError


@dataclass
class ParsedMessage:
    """What one WebSocket message says: events in the order to apply them, the reasons for
    every item rejected, and the exchange's clock when it was sent (if the message says)."""

    events: list[Event] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    time_s: float | None = None


def iso_seconds(text: Any) -> float:
    """ISO 8601 (6 or 9 fractional digits, Z) to epoch seconds with microseconds."""
    if not isinstance(text, str):
        raise BadMessage(f"time {text!r} is not an ISO 8601 string")
    try:
        whole = parse_time(text)
    except DataError as exc:
        raise BadMessage(str(exc)) from exc
    fraction = text.split(".", 1)[1] if "." in text else ""
    digits = "".join(c for c in fraction if c.isdigit())[:6]
    return whole + (int(digits.ljust(6, "0")) / 1e6 if digits else 0.0)


def shown(value: Any, limit: int = 40) -> str:
    """``repr(value)``, cut to ``limit`` characters: a 5000-digit id is not a log line."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


def positive_decimal(value: Any, what: str) -> Decimal:
    """A decimal string (or number) in [MIN_QUANTITY, MAX_QUANTITY]; else ``BadMessage``.
    Finite as a ``Decimal`` is not enough: ``1e400`` is, and becomes an infinite float."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise BadMessage(f"{what} {shown(value)} is not a decimal number")
    try:
        number = Decimal(value if isinstance(value, str) else str(value))
    except (InvalidOperation, ValueError, TypeError):
        raise BadMessage(f"{what} {shown(value)} is not a decimal number") from None
    if not number.is_finite() or number <= 0:
        raise BadMessage(f"{what} {shown(value)} must be finite and > 0")
    if not MIN_QUANTITY <= number <= MAX_QUANTITY:
        raise BadMessage(f"{what} {shown(value)} is outside [{MIN_QUANTITY}, {MAX_QUANTITY:f}]")
    return number


def trade_id_of(value: Any, what: str = "trade_id") -> int:
    """A Coinbase trade id: a non-negative integer, or a string of ASCII digits (Advanced
    Trade), below 2**63. ``"²".isdigit()`` is True, so digits are checked as ASCII."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise BadMessage(f"{what} {shown(value)} is not an id")
    if isinstance(value, str):
        if not (value.isascii() and value.isdigit() and len(value) <= 19):
            raise BadMessage(f"{what} {shown(value)} is not an id (ASCII digits expected)")
        value = int(value)
    if not 0 <= value <= MAX_TRADE_ID:
        raise BadMessage(f"{what} {shown(value)} is not an id (0 to 2**63 - 1)")
    return value


def trade_from(data: Any, *, product_id: str | None = None, snapshot: bool = False) -> Trade:
    """One trade object (socket or REST) to a validated ``Trade``; ``BadMessage`` otherwise."""
    if not isinstance(data, dict):
        raise BadMessage(f"expected a trade object, got {type(data).__name__}")
    missing = [k for k in ("trade_id", "price", "size", "time") if k not in data]
    if product_id is None and "product_id" not in data:
        missing.append("product_id")
    if missing:
        raise BadMessage(f"trade lacks {', '.join(missing)}")
    product = data.get("product_id", product_id)
    trade_id = trade_id_of(data["trade_id"])
    if not isinstance(product, str) or not product:
        raise BadMessage(f"product_id {shown(product)} is not a product")
    return Trade(
        product,
        str(trade_id),
        iso_seconds(data["time"]),
        positive_decimal(data["price"], "price"),
        positive_decimal(data["size"], "size"),
        str(data.get("side", "")),
        snapshot,
    )


def apply_order(trades: list[Trade]) -> list[Trade]:
    """Oldest first: by trade id (consecutive per product, in the order they happened)."""
    return sorted(trades, key=lambda t: t.numeric_id)


def exchange_subscribe(products: list[str]) -> dict[str, Any]:
    return {"type": "subscribe", "product_ids": products, "channels": ["matches", "heartbeat"]}


def advanced_subscribe(products: list[str]) -> list[dict[str, Any]]:
    """One message per channel (Advanced Trade's rule); no JWT for public channels."""
    return [
        {"type": "subscribe", "product_ids": products, "channel": "market_trades"},
        {"type": "subscribe", "channel": "heartbeats"},
    ]


def parse_exchange(message: dict[str, Any]) -> ParsedMessage:
    out = ParsedMessage()
    kind = message.get("type")
    try:
        if kind in ("match", "last_match"):
            trade = trade_from(message)
            out.events.append(trade)
            if kind == "match":  # sent when it happens: the exchange clock (a last_match
                out.time_s = trade.time_s  # repeats an old trade on every subscribe)
        elif kind == "heartbeat":
            last = trade_id_of(message.get("last_trade_id"), "heartbeat last_trade_id")
            product = message.get("product_id")
            if not isinstance(product, str):
                raise BadMessage(f"heartbeat product_id {shown(product)} is not a product")
            out.time_s = iso_seconds(message.get("time"))
            out.events.append(Heartbeat(product, last, time_s=out.time_s))
        elif kind == "subscriptions":
            channels = message.get("channels", [])
            out.events.append(
                Subscribed(
                    {
                        c["name"]: list(c.get("product_ids", []))
                        for c in channels
                        if isinstance(c, dict) and "name" in c
                    }
                )
            )
        elif kind == "error":
            out.events.append(
                FeedError(str(message.get("message", "")), str(message.get("reason", "")))
            )
    except BadMessage as exc:
        out.rejected.append(f"{kind}: {exc}")
    return out


def parse_advanced(message: dict[str, Any]) -> ParsedMessage:
    out = ParsedMessage()
    if message.get("type") == "error":
        out.events.append(
            FeedError(str(message.get("message", "")), str(message.get("reason", "")))
        )
        return out
    channel = message.get("channel")
    if "timestamp" in message and channel in ("market_trades", "heartbeats"):
        try:
            out.time_s = iso_seconds(message["timestamp"])
        except BadMessage as exc:
            out.rejected.append(f"{channel} envelope: {exc}")
    events = message.get("events", [])
    if not isinstance(events, list):
        out.rejected.append(f"{channel}: events is {type(events).__name__}, expected a list")
        return out
    for event in events:
        if not isinstance(event, dict):
            out.rejected.append(f"{channel}: event is {type(event).__name__}, expected an object")
            continue
        if channel == "market_trades":
            snapshot = event.get("type") == "snapshot"
            batch: list[Trade] = []
            raw_trades = event.get("trades", [])
            for raw in raw_trades if isinstance(raw_trades, list) else [raw_trades]:
                try:
                    batch.append(trade_from(raw, snapshot=snapshot))
                except BadMessage as exc:
                    out.rejected.append(f"market_trades: {exc}")
            out.events.extend(apply_order(batch))  # listed newest first: apply oldest first
        elif channel == "heartbeats":
            try:
                counter = trade_id_of(event.get("heartbeat_counter", 0), "heartbeat_counter")
            except BadMessage as exc:
                out.rejected.append(f"heartbeats: {exc} (not a count)")
                continue
            out.events.append(Heartbeat(None, None, counter, out.time_s))
        elif channel == "subscriptions":
            subscriptions = event.get("subscriptions", {})
            if isinstance(subscriptions, dict):
                out.events.append(Subscribed({k: list(v or []) for k, v in subscriptions.items()}))
    return out


def parse_candles(
    rows: Any,
    granularity_s: int,
    now_s: float,
    *,
    start_s: int | None = None,
    end_s: int | None = None,
    previous: Bar | None = None,
) -> list[Bar]:
    """Exchange candle rows ``[time, low, high, open, close, volume]`` (newest first) to
    oldest-first bars on a full grid: the still-open bucket and rows outside
    [``start_s``, ``end_s``) dropped, empty buckets between rows filled flat. Given the bar
    before ``start_s`` (``previous``), the empty buckets from ``start_s`` to the first row are
    filled too (a quiet stretch right after it has no rows)."""
    if not isinstance(rows, list):
        raise BadMessage(f"candles: expected a list of rows, got {type(rows).__name__}")
    parsed = []
    for row in rows:
        if not isinstance(row, list) or len(row) != 6:
            raise BadMessage(
                f"candles: expected [time, low, high, open, close, volume], got {shown(row, 120)}"
            )
        try:
            start = int(row[0])
            low, high, open_, close = (positive_decimal(v, "candle price") for v in row[1:5])
            volume = Decimal(str(row[5]))
        except (ValueError, TypeError, OverflowError, InvalidOperation) as exc:
            raise BadMessage(f"candles: bad row {shown(row, 120)} ({exc})") from None
        if not volume.is_finite() or not 0 <= volume <= MAX_QUANTITY:
            raise BadMessage(f"candles: bad volume in {shown(row, 120)}")
        if start % granularity_s:
            raise BadMessage(f"candles: time {start} is not on the {granularity_s} s grid")
        parsed.append((start, open_, high, low, close, volume))
    lo = float("-inf") if start_s is None else start_s
    hi = float("inf") if end_s is None else end_s
    closed = sorted(
        (r for r in parsed if r[0] + granularity_s <= now_s and lo <= r[0] < hi),
        key=lambda r: r[0],
    )
    bars: list[Bar] = []
    last = previous if previous is not None and start_s is not None else None
    if last is not None and start_s is not None:
        last = Bar(start_s - granularity_s, last.close, last.close, last.close, last.close)
    for start, open_, high, low, close, volume in closed:
        while last is not None and last.start_s + granularity_s < start:
            price = last.close
            last = Bar(last.start_s + granularity_s, price, price, price, price, filled=True)
            bars.append(last)
        if last is not None and last.start_s == start:
            continue  # the same bucket twice (overlapping requests): keep the first
        last = Bar(start, open_, high, low, close, volume)
        bars.append(last)
    return bars


def candle_windows(start_s: int, end_s: int, granularity_s: int) -> list[tuple[str, str]]:
    """ISO (start, end) ranges of at most 300 candles covering [start_s, end_s)."""
    step = MAX_CANDLES_PER_REQUEST * granularity_s
    return [(iso_z(lo), iso_z(min(lo + step, end_s) - 1)) for lo in range(start_s, end_s, step)]


def iso_z(epoch_s: float) -> str:
    """ISO 8601 with 'Z' (a '+00:00' offset would need URL-encoding in a query string)."""
    return dt.datetime.fromtimestamp(int(epoch_s), dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def server_epoch(answer: Any) -> float:
    """The server clock from Exchange ``GET /time`` (``epoch``) or Advanced Trade
    ``GET /api/v3/brokerage/time`` (``epochSeconds``, a string)."""
    if isinstance(answer, dict):
        for key in ("epoch", "epochSeconds", "epoch_seconds"):
            try:
                value = float(answer[key])
            except (KeyError, TypeError, ValueError):
                continue
            if math.isfinite(value) and EPOCH_RANGE_S[0] <= value <= EPOCH_RANGE_S[1]:
                return value
            raise BadMessage(
                f"server time: {key} {shown(answer[key])} is not epoch seconds "
                f"(expected {EPOCH_RANGE_S[0]:.0e} to {EPOCH_RANGE_S[1]:.0e}; milliseconds?)"
            )
    raise BadMessage(f"server time: expected {{'epoch': seconds}}, got {str(answer)[:200]}")
