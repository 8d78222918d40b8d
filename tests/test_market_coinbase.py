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


# -- hostile input (attack report 12): ids, prices, clocks, first ids -------------------------

T = "2026-04-07T14:30:02.789012Z"


def exchange_match(trade_id, **fields):
    return {"type": "match", "trade_id": trade_id, "product_id": "BTC-USD", "price": "100",
            "size": "1", "side": "buy", "time": T, **fields}  # fmt: skip


def test_ids_that_are_not_64_bit_numbers_are_rejected_not_raised():
    """'²'.isdigit() is True but int('²') raises; 5000 digits are no id; a non-numeric id in
    an Advanced Trade batch must not reorder the real ones (ids 999 and 1000 at one time)."""
    for bad in ("²", "٣", " 5", "9" * 5000, str(2**63), "x7", -1, 1.5, "", None, True):
        parsed = parse_exchange(exchange_match(bad))
        assert parsed.events == [] and "not an id" in parsed.rejected[0], bad
        assert len(parsed.rejected[0]) < 200  # a 5000-digit id is cut in the reason
    hb = {"type": "heartbeat", "last_trade_id": "²", "product_id": "BTC-USD", "time": T}
    assert "not an id" in parse_exchange(hb).rejected[0]
    hb_at = {"channel": "heartbeats", "events": [{"heartbeat_counter": "²"}]}
    assert "not a count" in parse_advanced(hb_at).rejected[0]

    def at(trade_id, price):
        return {"trade_id": trade_id, "product_id": "BTC-USD", "price": price, "size": "1",
                "side": "BUY", "time": T}  # fmt: skip

    batch = [at("x", "1"), at("²", "1"), at("1000", "101"), at("999", "100"), at("x7", "100.5")]
    parsed = parse_advanced(
        {
            "channel": "market_trades",
            "timestamp": T,
            "events": [{"type": "update", "trades": batch}],
        }
    )
    assert [(t.trade_id, str(t.price)) for t in parsed.events] == [("999", "100"), ("1000", "101")]
    assert len(parsed.rejected) == 3


def test_prices_and_sizes_a_float_cannot_carry_are_rejected():
    """1e400 is finite as a Decimal and infinite as a float: it would poison every feature."""
    for field, value in (("price", "1e400"), ("price", "1e-400"), ("size", "1e400"),
                         ("price", "1e16"), ("price", [1]), ("size", True)):  # fmt: skip
        parsed = parse_exchange(exchange_match(7, **{field: value}))
        assert parsed.events == [] and field in parsed.rejected[0], (field, value)
    assert parse_exchange(exchange_match(7, price="0.00000001", size="1e9")).events
    with pytest.raises(BadMessage, match="bad volume"):
        parse_candles([[60, 1, 1, 1, 1, "1e400"]], 60, now_s=1e9)
    with pytest.raises(BadMessage, match="bad row"):
        parse_candles([[1e400, 1, 1, 1, 1, 1]], 60, now_s=1e9)


def test_server_time_in_milliseconds_is_refused_not_taken_for_seconds():
    from ovcast.market.coinbase import server_epoch

    assert server_epoch({"epoch": 1_700_000_000.5}) == 1_700_000_000.5
    assert server_epoch({"epochSeconds": "1700000000"}) == 1_700_000_000.0
    for answer in ({"epoch": 1_700_000_000_000.0}, {"epoch": 0}, {"epoch": -5}, {"x": 1}, []):
        with pytest.raises(BadMessage, match="server time"):
            server_epoch(answer)


def test_candles_fill_quiet_minutes_from_the_previous_bar_and_ignore_rows_outside():
    """After an outage the first minutes may have had no trades (no rows): with the bar
    before, they are filled too; a row far outside the asked range cannot make the grid
    span decades."""
    from ovcast.market.aggregator import Bar

    start = 1_000_020  # a minute start
    previous = Bar(start - 60, D(5), D(5), D(5), D("5.5"))
    rows = [[start + 180, 1, 2, 1, 2, 3], [60, 1, 1, 1, 1, 1]]
    bars = parse_candles(rows, 60, now_s=2e6, start_s=start, end_s=start + 300,
                         previous=previous)  # fmt: skip
    assert [(b.start_s - start, b.filled, b.close) for b in bars] == [
        (0, True, D("5.5")), (60, True, D("5.5")), (120, True, D("5.5")), (180, False, D(2)),
    ]  # fmt: skip


def test_the_exchange_clock_follows_what_messages_agree_on():
    """A ratchet (each message 100 s ahead of the last, within --max-ahead of the clock the
    last one set) moves nothing; REST /time minutes off is overruled by the socket; elapsed
    time is monotonic, so a host clock stepped back moves nothing."""
    mono = ManualClock(50.0)  # time.monotonic
    clock = ExchangeClock(wall=lambda: 1e9, elapsed=mono.time)
    clock.set(1_700_000_000.0)
    for k in range(1, 30):
        mono.advance(1)
        clock.observe(1_700_000_000.0 + k - 0.05)  # honest heartbeats, a little late
        if k % 5 == 0:
            clock.observe(1_700_000_000.0 + k + 100 * k)  # the ratchet, among them
    assert abs(clock.now() - 1_700_000_029.0) < 0.1
    assert clock.plausible(1_700_000_029.0 + 200, max_ahead_s=120)

    behind = ExchangeClock(wall=lambda: 1e9, elapsed=mono.time)
    behind.set(1_700_000_000.0 - 300)  # REST /time 5 minutes behind the socket
    behind.observe(1_700_000_000.0)
    assert behind.plausible(1_700_000_000.0, 120)  # one message is not enough...
    behind.observe(1_700_000_000.2)
    assert behind.plausible(1_700_000_000.3, 120) is None  # ...two agreeing ones are
    ahead = ExchangeClock(wall=lambda: 1e9, elapsed=mono.time)
    ahead.set(1_700_000_000.0 + 300)  # 5 minutes ahead: every trade would be late
    ahead.observe(1_700_000_000.0)
    ahead.observe(1_700_000_000.1)
    assert abs(ahead.now() - 1_700_000_000.1) < 0.01 and ahead.set_back == 1

    wall = ManualClock(1_700_000_000.0)
    stepped = ExchangeClock(wall=wall.time, elapsed=mono.time)
    assert stepped.now() == 1_700_000_000.0
    wall.advance(-300)  # NTP steps the host clock back: no effect
    mono.advance(10)
    assert stepped.now() == 1_700_000_010.0


def test_an_unseeded_first_id_is_held_until_a_second_message_agrees():
    """No last id known (REST trades failed at start, no recording): a bogus first id would
    make every later real trade a "repeat". It is held, and refused when the others agree
    on ids far from it; agreeing trades are admitted in id order."""
    tracker = TradeTracker()
    t = lambda i: Trade("BTC-USD", str(i), 100.0, D(1), D(1))  # noqa: E731
    assert tracker.hold(t(10**12)) == ([], [])  # alone: no verdict yet
    admitted, refused = tracker.hold(t(501))
    assert admitted == [] and refused == []  # two that disagree: still none
    admitted, refused = tracker.hold(t(500))
    assert [x.trade_id for x in admitted] == ["500", "501"]
    assert [x.trade_id for x in refused] == [str(10**12)]
    assert [tracker.accept(x) for x in admitted] == [(True, None), (True, None)]
    assert tracker.accept(t(502)) == (True, None)  # the real ones go on
    other = TradeTracker()  # Exchange: heartbeats vouch for the ids
    assert other.hold(t(10**12)) == ([], [])
    assert other.vouch("BTC-USD", 499, 99.0) == ([], [])
    admitted, refused = other.vouch("BTC-USD", 499, 100.0)
    assert admitted == [] and [x.trade_id for x in refused] == [str(10**12)]
    assert other.seeded("BTC-USD") and other.accept(t(500)) == (True, None)
