"""Coinbase message parsing (real order, validation), candles and trade-id bookkeeping."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from ovcast.market.clock import ExchangeClock, ManualClock
from ovcast.market.coinbase import (
    BadMessage,
    FeedError,
    Heartbeat,
    Subscribed,
    Trade,
    candle_windows,
    iso_seconds,
    parse_advanced,
    parse_candles,
    parse_exchange,
)
from ovcast.market.tracker import TradeTracker

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
    (trade,) = parse_exchange(MATCH).events
    assert trade == Trade(
        "BTC-USD",
        "10",
        iso_seconds("2014-11-07T08:19:27.028459Z"),
        D("400.23"),
        D("5.23512"),
        "sell",
    )
    assert trade.time_s == 1415348367.028459
    assert parse_exchange({**MATCH, "type": "last_match"}).events[0].trade_id == "10"
    hb = {
        "type": "heartbeat",
        "sequence": 90,
        "last_trade_id": 20,
        "product_id": "BTC-USD",
        "time": "2014-11-07T08:19:28.464459Z",
    }
    parsed = parse_exchange(hb)
    assert parsed.events == [Heartbeat("BTC-USD", 20, time_s=iso_seconds(hb["time"]))]
    assert parsed.time_s == 1415348368.464459  # the exchange clock
    subs = {"type": "subscriptions", "channels": [{"name": "matches", "product_ids": ["BTC-USD"]}]}
    assert parse_exchange(subs).events == [Subscribed({"matches": ["BTC-USD"]})]
    err = {
        "type": "error",
        "message": "Failed to subscribe",
        "reason": "FOO-BAR is not a valid product",
    }
    assert parse_exchange(err).events == [
        FeedError("Failed to subscribe", "FOO-BAR is not a valid product")
    ]
    unknown = parse_exchange({"type": "ticker", "price": "1"})  # unknown types are ignored
    assert unknown.events == [] and unknown.rejected == []


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
    message["events"][0]["trades"].reverse()  # as Coinbase lists them: newest first
    first, second = parse_advanced(message).events  # applied oldest first
    assert first.snapshot and first.trade_id == "995098700" and first.price == D("68900.50")
    assert second.trade_id == "995098701"
    assert abs(first.time_s - (iso_seconds("2026-04-07T14:30:02Z") + 0.789012)) < 1e-6
    hb = {
        "channel": "heartbeats",
        "events": [
            {"current_time": "2023-06-23 20:31:56.12 +0000 UTC m=+9", "heartbeat_counter": "3049"}
        ],
    }
    assert parse_advanced(hb).events == [Heartbeat(None, None, 3049)]  # Go time not parsed
    subs = {
        "channel": "subscriptions",
        "events": [{"subscriptions": {"market_trades": ["BTC-USD"]}}],
    }
    assert parse_advanced(subs).events == [Subscribed({"market_trades": ["BTC-USD"]})]
    error = parse_advanced({"type": "error", "message": "failure to subscribe"})
    assert error.events[0].message == "failure to subscribe"


def test_a_bad_trade_in_a_batch_is_rejected_alone_and_the_rest_kept():
    trade = {"trade_id": "7", "product_id": "BTC-USD", "price": "1", "size": "1",
             "time": "2026-04-07T14:30:02.1Z"}  # fmt: skip
    bad = [
        ({**trade, "price": "abc"}, "not a decimal"),
        ({**trade, "price": "NaN"}, "finite"),
        ({**trade, "price": "Infinity"}, "finite"),
        ({**trade, "price": "0"}, "> 0"),
        ({**trade, "size": "-1"}, "> 0"),
        ({**trade, "time": "yesterday"}, "cannot parse time"),
        ({**trade, "time": 5}, "not an ISO 8601 string"),
        ({k: v for k, v in trade.items() if k != "price"}, "lacks price"),
        ({**trade, "trade_id": None}, "not an id"),
        ("a string", "expected a trade object"),
    ]
    message = {
        "channel": "market_trades",
        "timestamp": "2026-04-07T14:30:02.5Z",
        "events": [{"type": "update", "trades": [b for b, _ in bad] + [trade]}],
    }
    parsed = parse_advanced(message)
    assert [t.trade_id for t in parsed.events] == ["7"]
    assert len(parsed.rejected) == len(bad)
    for reason, (_, expected) in zip(parsed.rejected, bad, strict=True):
        assert expected in reason
    hb = {"channel": "heartbeats", "events": [{"heartbeat_counter": "many"}]}
    assert parse_advanced(hb).events == [] and "not a count" in parse_advanced(hb).rejected[0]
    assert parse_advanced({"channel": "market_trades", "events": 5}).rejected
    with pytest.raises(BadMessage, match="not a decimal"):
        parse_candles([[60, "x", 1, 1, 1, 1]], 60, now_s=1e9)


def test_exchange_clock_follows_messages_and_bounds_them():
    wall = ManualClock(1000.0)
    clock = ExchangeClock(wall.time)
    clock.set(1010.0)  # the exchange is 10 s ahead of us
    wall.advance(5)
    assert clock.now() == 1015.0
    clock.observe(1012.0)  # a late message never sets the clock back
    assert clock.now() == 1015.0
    clock.observe(1020.0)
    assert clock.now() == 1020.0
    assert clock.plausible(1100.0, max_ahead_s=120) is None
    assert "ahead" in clock.plausible(1020.0 + 3600, max_ahead_s=120)
    unsynced = ExchangeClock(wall.time)  # no REST /time: the local clock, 5 minutes fast
    wall.advance(300)
    assert unsynced.plausible(1000.0, max_ahead_s=120) is None
    unsynced.observe(1006.0)  # the first message sets it, even backwards
    assert unsynced.now() == 1006.0 and unsynced.synced


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


def test_trade_tracker_holes_as_ranges_seed_and_poison():
    tracker = TradeTracker()
    t = lambda i, s=100.0: Trade("BTC-USD", str(i), s, D(1), D(1))  # noqa: E731
    tracker.seed("BTC-USD", 1_000, 100.0)  # the recording's last trade
    assert tracker.accept(t(1_000)) == (False, None)  # recorded already
    assert tracker.accept(t(500_000, 3600.0)) == (True, (1_001, 499_999))  # an outage
    assert tracker.still_missing("BTC-USD", 1_001, 499_999) == 498_999
    for i in (1_001, 250_000, 499_999):  # repaired or late: each accepted once
        assert tracker.accept(t(i)) == (True, None) and tracker.accept(t(i)) == (False, None)
    assert tracker.holes("BTC-USD") == [(1_002, 249_999), (250_001, 499_998)]
    assert tracker.implausible(t(500_001 + 10**9), now_s=3601.0)  # a billion ahead in 1 s
    assert tracker.implausible(t(500_100), now_s=3601.0) is None
    assert tracker.implausible_heartbeat(Heartbeat("BTC-USD", 10**12), now_s=3601.0)
