"""Coinbase's public market-data protocols, as pure functions (no sockets here).

Two WebSocket dialects (see the protocol notes for sources):
- Exchange (``wss://ws-feed.exchange.coinbase.com``): ``matches`` (``last_match``/``match``,
  numeric ``trade_id``) and ``heartbeat`` (``last_trade_id`` per product);
- Advanced Trade (``wss://advanced-trade-ws.coinbase.com``): ``market_trades`` (batched
  trades, string ``trade_id``, first event a snapshot) and ``heartbeats`` (a counter).
Both answer ``subscriptions`` and ``error``; unknown message types are ignored.

REST candles (Exchange ``/products/{id}/candles``) come newest first, at most 300 per
request, with no row for intervals without trades, and include the still-open bucket.
``TradeTracker`` deduplicates trades (resubscribes repeat them) and finds gaps in the ids.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .aggregator import Bar
from .bars import parse_time

EXCHANGE_WS_URL = "wss://ws-feed.exchange.coinbase.com"
ADVANCED_WS_URL = "wss://advanced-trade-ws.coinbase.com"
EXCHANGE_REST_URL = "https://api.exchange.coinbase.com"
ADVANCED_REST_URL = "https://api.coinbase.com"
MAX_CANDLES_PER_REQUEST = 300


@dataclass(frozen=True)
class Trade:
    product_id: str
    trade_id: str
    time_s: float  # exchange time, UTC epoch seconds (microsecond resolution)
    price: Decimal
    size: Decimal
    side: str = ""
    snapshot: bool = False  # part of Advanced Trade's first (historical) batch


@dataclass(frozen=True)
class Heartbeat:
    product_id: str | None  # None for Advanced Trade's connection-wide heartbeats
    last_trade_id: int | None
    counter: int | None = None


@dataclass(frozen=True)
class Subscribed:
    channels: dict[str, list[str]]


@dataclass(frozen=True)
class FeedError:
    message: str
    reason: str = ""


Event = Trade | Heartbeat | Subscribed | FeedError


def iso_seconds(text: str) -> float:
    """ISO 8601 (6 or 9 fractional digits, Z) to epoch seconds with microseconds."""
    whole = parse_time(text)
    fraction = text.split(".", 1)[1] if "." in text else ""
    digits = "".join(c for c in fraction if c.isdigit())[:6]
    return whole + (int(digits.ljust(6, "0")) / 1e6 if digits else 0.0)


def exchange_subscribe(products: list[str]) -> dict[str, Any]:
    return {"type": "subscribe", "product_ids": products, "channels": ["matches", "heartbeat"]}


def advanced_subscribe(products: list[str]) -> list[dict[str, Any]]:
    """One message per channel (Advanced Trade's rule); no JWT for public channels."""
    return [
        {"type": "subscribe", "product_ids": products, "channel": "market_trades"},
        {"type": "subscribe", "channel": "heartbeats"},
    ]


def parse_exchange(message: dict[str, Any]) -> list[Event]:
    kind = message.get("type")
    if kind in ("match", "last_match"):
        return [
            Trade(
                message["product_id"],
                str(message["trade_id"]),
                iso_seconds(message["time"]),
                Decimal(message["price"]),
                Decimal(message["size"]),
                message.get("side", ""),
            )
        ]
    if kind == "heartbeat":
        return [Heartbeat(message["product_id"], int(message["last_trade_id"]))]
    if kind == "subscriptions":
        return [
            Subscribed({c["name"]: c.get("product_ids", []) for c in message.get("channels", [])})
        ]
    if kind == "error":
        return [FeedError(message.get("message", ""), message.get("reason", ""))]
    return []


def parse_advanced(message: dict[str, Any]) -> list[Event]:
    if message.get("type") == "error":
        return [FeedError(message.get("message", ""), message.get("reason", ""))]
    channel = message.get("channel")
    events: list[Event] = []
    for event in message.get("events", []):
        if channel == "market_trades":
            snapshot = event.get("type") == "snapshot"
            for t in event.get("trades", []):
                events.append(
                    Trade(
                        t["product_id"],
                        str(t["trade_id"]),
                        iso_seconds(t["time"]),
                        Decimal(t["price"]),
                        Decimal(t["size"]),
                        t.get("side", ""),
                        snapshot,
                    )
                )
        elif channel == "heartbeats":
            events.append(Heartbeat(None, None, int(event.get("heartbeat_counter", 0))))
        elif channel == "subscriptions":
            events.append(Subscribed(dict(event.get("subscriptions", {}))))
    return events


def parse_candles(rows: list[list[Any]], granularity_s: int, now_s: float) -> list[Bar]:
    """Exchange candle rows ``[time, low, high, open, close, volume]`` (newest first) to
    oldest-first bars on a full grid: the still-open bucket dropped, empty buckets filled."""
    closed = sorted(
        (r for r in rows if int(r[0]) + granularity_s <= now_s), key=lambda r: int(r[0])
    )
    bars: list[Bar] = []
    for time_s, low, high, open_, close, volume in closed:
        start = int(time_s)
        while bars and bars[-1].start_s + granularity_s < start:
            price = bars[-1].close
            bars.append(
                Bar(bars[-1].start_s + granularity_s, price, price, price, price, filled=True)
            )
        if bars and bars[-1].start_s == start:
            continue  # the same bucket twice (overlapping requests): keep the first
        bars.append(
            Bar(
                start,
                Decimal(str(open_)),
                Decimal(str(high)),
                Decimal(str(low)),
                Decimal(str(close)),
                Decimal(str(volume)),
            )
        )
    return bars


def candle_windows(start_s: int, end_s: int, granularity_s: int) -> list[tuple[str, str]]:
    """ISO (start, end) ranges of at most 300 candles covering [start_s, end_s)."""
    step = MAX_CANDLES_PER_REQUEST * granularity_s
    return [(_iso_z(lo), _iso_z(min(lo + step, end_s) - 1)) for lo in range(start_s, end_s, step)]


def _iso_z(epoch_s: int) -> str:
    """ISO 8601 with 'Z' (a '+00:00' offset would need URL-encoding in a query string)."""
    return dt.datetime.fromtimestamp(epoch_s, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class TradeTracker:
    """Per product: drop repeated trades, report holes in numeric trade ids.

    An id inside a reported hole (a late or out-of-order trade, or one fetched over REST to
    repair the hole) is new; any other id at or below the highest seen is a repeat.
    """

    last_id: dict[str, int] = field(default_factory=dict)
    missing: dict[str, set[int]] = field(default_factory=dict)
    seen: dict[str, set[str]] = field(default_factory=dict)  # non-numeric ids (bounded)
    duplicates: int = 0

    def accept(self, trade: Trade) -> tuple[bool, tuple[int, int] | None]:
        """(is new, missing id range [first, last] or None)."""
        if not trade.trade_id.isdigit():
            seen = self.seen.setdefault(trade.product_id, set())
            if trade.trade_id in seen:
                self.duplicates += 1
                return False, None
            if len(seen) > 100_000:
                seen.clear()
            seen.add(trade.trade_id)
            return True, None
        trade_id = int(trade.trade_id)
        last = self.last_id.get(trade.product_id)
        missing = self.missing.setdefault(trade.product_id, set())
        if last is not None and trade_id <= last:
            if trade_id in missing:
                missing.discard(trade_id)
                return True, None
            self.duplicates += 1
            return False, None
        self.last_id[trade.product_id] = trade_id
        gap = (last + 1, trade_id - 1) if last is not None and trade_id > last + 1 else None
        if gap:
            self._remember(trade.product_id, gap)
        return True, gap

    def _remember(self, product_id: str, gap: tuple[int, int]) -> None:
        missing = self.missing.setdefault(product_id, set())
        if gap[1] - gap[0] < 100_000:  # a huge hole (a restart) is repaired from candles instead
            missing.update(range(gap[0], gap[1] + 1))

    def heartbeat_gap(self, heartbeat: Heartbeat) -> tuple[int, int] | None:
        """Trades the heartbeat says happened but we never saw (Exchange only)."""
        if heartbeat.product_id is None or heartbeat.last_trade_id is None:
            return None
        last = self.last_id.get(heartbeat.product_id)
        if last is None or heartbeat.last_trade_id <= last:
            return None
        gap = (last + 1, heartbeat.last_trade_id)
        self.last_id[heartbeat.product_id] = heartbeat.last_trade_id
        self._remember(heartbeat.product_id, gap)
        return gap
