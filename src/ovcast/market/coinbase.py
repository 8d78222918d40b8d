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
reason per item it had to reject (``ParsedMessage.rejected``).

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
    def numeric_id(self) -> int | None:
        return int(self.trade_id) if self.trade_id.isdigit() else None


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


def positive_decimal(value: Any, what: str) -> Decimal:
    """A decimal string (or number) that is finite and > 0; else ``BadMessage``."""
    try:
        number = Decimal(value if isinstance(value, str) else str(value))
    except (InvalidOperation, ValueError, TypeError):
        raise BadMessage(f"{what} {value!r} is not a decimal number") from None
    if not number.is_finite() or number <= 0:
        raise BadMessage(f"{what} {value!r} must be finite and > 0")
    return number


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
    trade_id = data["trade_id"]
    if isinstance(trade_id, bool) or not isinstance(trade_id, int | str) or str(trade_id) == "":
        raise BadMessage(f"trade_id {trade_id!r} is not an id")
    if isinstance(trade_id, int) and trade_id < 0:
        raise BadMessage(f"trade_id {trade_id!r} is negative")
    if not isinstance(product, str) or not product:
        raise BadMessage(f"product_id {product!r} is not a product")
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
    """Oldest first: by numeric trade id where every id is numeric, else by time."""
    if all(t.numeric_id is not None for t in trades):
        return sorted(trades, key=lambda t: t.numeric_id or 0)
    return sorted(trades, key=lambda t: (t.time_s, t.trade_id))


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
        elif kind == "heartbeat":
            last = message.get("last_trade_id")
            if isinstance(last, str) and last.isdigit():
                last = int(last)
            if isinstance(last, bool) or not isinstance(last, int) or last < 0:
                raise BadMessage(f"heartbeat last_trade_id {last!r} is not a trade id")
            product = message.get("product_id")
            if not isinstance(product, str):
                raise BadMessage(f"heartbeat product_id {product!r} is not a product")
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
            counter = event.get("heartbeat_counter", 0)
            if isinstance(counter, str) and counter.isdigit():
                counter = int(counter)
            if isinstance(counter, bool) or not isinstance(counter, int):
                out.rejected.append(f"heartbeats: heartbeat_counter {counter!r} is not a count")
                continue
            out.events.append(Heartbeat(None, None, counter, out.time_s))
        elif channel == "subscriptions":
            subscriptions = event.get("subscriptions", {})
            if isinstance(subscriptions, dict):
                out.events.append(Subscribed({k: list(v or []) for k, v in subscriptions.items()}))
    return out


def parse_candles(rows: Any, granularity_s: int, now_s: float) -> list[Bar]:
    """Exchange candle rows ``[time, low, high, open, close, volume]`` (newest first) to
    oldest-first bars on a full grid: the still-open bucket dropped, empty buckets filled."""
    if not isinstance(rows, list):
        raise BadMessage(f"candles: expected a list of rows, got {type(rows).__name__}")
    parsed = []
    for row in rows:
        if not isinstance(row, list) or len(row) != 6:
            raise BadMessage(
                f"candles: expected [time, low, high, open, close, volume], got {row!r}"
            )
        try:
            start = int(row[0])
            low, high, open_, close = (positive_decimal(v, "candle price") for v in row[1:5])
            volume = Decimal(str(row[5]))
        except (ValueError, TypeError, InvalidOperation) as exc:
            raise BadMessage(f"candles: bad row {row!r} ({exc})") from None
        if not volume.is_finite() or volume < 0:
            raise BadMessage(f"candles: bad volume in {row!r}")
        parsed.append((start, open_, high, low, close, volume))
    closed = sorted((r for r in parsed if r[0] + granularity_s <= now_s), key=lambda r: r[0])
    bars: list[Bar] = []
    for start, open_, high, low, close, volume in closed:
        while bars and bars[-1].start_s + granularity_s < start:
            price = bars[-1].close
            bars.append(
                Bar(bars[-1].start_s + granularity_s, price, price, price, price, filled=True)
            )
        if bars and bars[-1].start_s == start:
            continue  # the same bucket twice (overlapping requests): keep the first
        bars.append(Bar(start, open_, high, low, close, volume))
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
            if math.isfinite(value) and value > 0:
                return value
    raise BadMessage(f"server time: expected {{'epoch': seconds}}, got {str(answer)[:200]}")
