"""Coinbase message parsing, candles and trade-id bookkeeping (pure functions)."""

from __future__ import annotations

from decimal import Decimal as D

from ovcast.market.coinbase import (
    FeedError,
    Heartbeat,
    Subscribed,
    Trade,
    TradeTracker,
    candle_windows,
    iso_seconds,
    parse_advanced,
    parse_candles,
    parse_exchange,
)

MATCH = {
    "type": "match",
    "trade_id": 10,
    "sequence": 50,
    "maker_order_id": "a",
    "taker_order_id": "b",
    "time": "2014-11-07T08:19:27.028459Z",
    "product_id": "BTC-USD",
    "size": "5.23512",
    "price": "400.23",
    "side": "sell",
}


def test_exchange_messages():
    (trade,) = parse_exchange(MATCH)
    assert trade == Trade(
        "BTC-USD",
        "10",
        iso_seconds("2014-11-07T08:19:27.028459Z"),
        D("400.23"),
        D("5.23512"),
        "sell",
    )
    assert trade.time_s == 1415348367.028459
    assert parse_exchange({**MATCH, "type": "last_match"})[0].trade_id == "10"
    hb = {
        "type": "heartbeat",
        "sequence": 90,
        "last_trade_id": 20,
        "product_id": "BTC-USD",
        "time": "2014-11-07T08:19:28.464459Z",
    }
    assert parse_exchange(hb) == [Heartbeat("BTC-USD", 20)]
    subs = {"type": "subscriptions", "channels": [{"name": "matches", "product_ids": ["BTC-USD"]}]}
    assert parse_exchange(subs) == [Subscribed({"matches": ["BTC-USD"]})]
    err = {
        "type": "error",
        "message": "Failed to subscribe",
        "reason": "FOO-BAR is not a valid product",
    }
    assert parse_exchange(err) == [
        FeedError("Failed to subscribe", "FOO-BAR is not a valid product")
    ]
    assert parse_exchange({"type": "ticker", "price": "1"}) == []  # unknown types are ignored


def test_advanced_trade_messages():
    message = {
        "channel": "market_trades",
        "timestamp": "2023-02-09T20:19:35.39625135Z",
        "sequence_num": 5,
        "events": [
            {
                "type": "snapshot",
                "trades": [
                    {
                        "trade_id": "995098700",
                        "product_id": "BTC-USD",
                        "price": "68900.50",
                        "size": "0.0015",
                        "side": "BUY",
                        "time": "2026-04-07T14:30:02.789012345Z",
                    },
                    {
                        "trade_id": "995098701",
                        "product_id": "BTC-USD",
                        "price": "68901",
                        "size": "0.1",
                        "side": "SELL",
                        "time": "2026-04-07T14:30:02.9Z",
                    },
                ],
            }
        ],
    }
    first, second = parse_advanced(message)
    assert first.snapshot and first.trade_id == "995098700" and first.price == D("68900.50")
    assert abs(first.time_s - (iso_seconds("2026-04-07T14:30:02Z") + 0.789012)) < 1e-6
    hb = {
        "channel": "heartbeats",
        "events": [
            {"current_time": "2023-06-23 20:31:56.12 +0000 UTC m=+9", "heartbeat_counter": "3049"}
        ],
    }
    assert parse_advanced(hb) == [Heartbeat(None, None, 3049)]
    subs = {
        "channel": "subscriptions",
        "events": [{"subscriptions": {"market_trades": ["BTC-USD"]}}],
    }
    assert parse_advanced(subs) == [Subscribed({"market_trades": ["BTC-USD"]})]
    assert (
        parse_advanced({"type": "error", "message": "failure to subscribe"})[0].message
        == "failure to subscribe"
    )


def test_candles_newest_first_with_holes_and_open_bucket():
    rows = [
        [1_000_200, 9, 11, 10, 10.5, 3],  # still open at now = 1_000_230: dropped
        [1_000_140, 8, 10, 9, 9.5, 2],
        [1_000_020, 7, 9, 8, 8.5, 1],
    ]  # 1_000_080 had no trades
    bars = parse_candles(rows, 60, now_s=1_000_230)
    assert [(b.start_s, b.filled) for b in bars] == [
        (1_000_020, False),
        (1_000_080, True),
        (1_000_140, False),
    ]
    assert bars[1].close == D("8.5") and bars[1].volume == 0
    assert (bars[0].open, bars[0].high, bars[0].low, bars[0].close) == (
        D("8"),
        D("9"),
        D("7"),
        D("8.5"),
    )
    ranges = candle_windows(0, 700 * 60, 60)
    assert len(ranges) == 3  # at most 300 candles a request


def test_trade_tracker_dedup_and_gaps():
    tracker = TradeTracker()
    t = lambda i: Trade("BTC-USD", str(i), 0.0, D(1), D(1))  # noqa: E731
    assert tracker.accept(t(10)) == (True, None)
    assert tracker.accept(t(10)) == (False, None)  # resubscribe repeats it
    assert tracker.accept(t(13)) == (True, (11, 12))  # a hole
    assert tracker.accept(t(12)) == (True, None)  # late, or repaired over REST: fills the hole
    assert tracker.accept(t(12)) == (False, None)
    assert tracker.heartbeat_gap(Heartbeat("BTC-USD", 15)) == (14, 15)  # heartbeat ahead
    assert tracker.accept(t(14)) == (True, None)
    assert tracker.duplicates == 2
    advanced = Trade("ETH-USD", "abc-1", 0.0, D(1), D(1))
    assert tracker.accept(advanced) == (True, None) and tracker.accept(advanced) == (False, None)
