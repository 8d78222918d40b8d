"""The feed against a real local WebSocket + REST fake of Coinbase: nothing lost, nothing twice."""

from __future__ import annotations

import asyncio

import pytest
from fake_coinbase import FakeCoinbase

from ovcast.market.feed import CoinbaseFeed, FeedRejected
from ovcast.market.rest import CoinbaseRest, RestRetry


async def until(condition, timeout=10.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def run_feed(fake, dialect="exchange", products=("BTC-USD",), **kwargs):
    received = []
    rest = CoinbaseRest(
        exchange_url=fake.rest_url,
        advanced_url=fake.rest_url,
        retry=RestRetry(attempts=2, first_backoff_s=0.01),
        min_interval_s=0.0,
    )
    feed = CoinbaseFeed(
        list(products),
        deliver=received.extend,
        dialect=dialect,
        ws_url=fake.ws_url,
        rest=rest,
        first_backoff_s=0.05,
        max_backoff_s=0.2,
        **kwargs,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(feed.run(stop))
    return feed, received, stop, task


@pytest.mark.parametrize("dialect", ["exchange", "advanced"])
def test_trades_reconnects_and_no_duplicates(dialect):
    async def scenario():
        async with FakeCoinbase() as fake:
            feed, received, stop, task = run_feed(fake, dialect)
            await until(lambda: feed.status.connected)
            ids = [await fake.trade("BTC-USD", f"{100 + i}.5") for i in range(5)]
            await until(lambda: len(received) == 5)
            await fake.close_all(clean=True)  # code 1000: still reconnect
            await until(lambda: feed.status.connects == 2)
            ids.append(await fake.trade("BTC-USD", "200"))
            await fake.close_all(clean=False)  # abrupt
            await until(lambda: feed.status.connects == 3)
            ids.append(await fake.trade("BTC-USD", "201"))
            await until(lambda: len(received) == 7)
            stop.set()
            await asyncio.wait_for(task, 5)
            return feed, received, ids

    feed, received, ids = asyncio.run(scenario())
    assert [int(t.trade_id) for t in received] == ids  # each once, in order
    assert feed.status.duplicates >= 2  # the trades repeated on each resubscribe were dropped
    assert feed.status.reconnects >= 2 and str(received[0].price) == "100.5"


def test_invalid_product_fails_fast_with_the_servers_reason():
    async def scenario():
        async with FakeCoinbase() as fake:
            feed, _, stop, task = run_feed(fake, products=("FOO-BAR",))
            with pytest.raises(FeedRejected, match="FOO-BAR is not a valid product"):
                await asyncio.wait_for(task, 5)

    asyncio.run(scenario())


def test_silence_watchdog_reconnects():
    async def scenario():
        async with FakeCoinbase() as fake:
            feed, received, stop, task = run_feed(fake, silence_timeout_s=0.3)
            await until(lambda: feed.status.connected)
            await until(
                lambda: feed.status.connects >= 2, timeout=5
            )  # silent server: a new session
            assert "no message" in feed.status.last_error
            stop.set()
            await asyncio.wait_for(task, 5)

    asyncio.run(scenario())


def test_advanced_trade_gaps_are_repaired_from_recent_trades():
    async def scenario():
        async with FakeCoinbase() as fake:
            feed, received, stop, task = run_feed(fake, "advanced")
            await until(lambda: feed.status.connected)
            first = await fake.trade("BTC-USD", "1")
            fake.skip_ids |= {("BTC-USD", first + 1)}
            await fake.trade("BTC-USD", "2")
            await fake.trade("BTC-USD", "3")
            await until(lambda: len(received) == 3)
            stop.set()
            await asyncio.wait_for(task, 5)
            return feed, received, first

    feed, received, first = asyncio.run(scenario())
    assert [int(t.trade_id) for t in received] == [first, first + 1, first + 2]
    assert feed.status.gaps == 1 and feed.status.repaired == 1 and feed.status.repaired_trades == 1


def test_skipped_ids_are_repaired_over_rest():
    async def scenario():
        async with FakeCoinbase() as fake:
            feed, received, stop, task = run_feed(fake)
            await until(lambda: feed.status.connected)
            first = await fake.trade("BTC-USD", "1")
            fake.skip_ids |= {("BTC-USD", first + 1), ("BTC-USD", first + 2)}
            for price in ("2", "3", "4"):
                await fake.trade("BTC-USD", price)
            await until(lambda: len(received) == 4)
            fake.skip_ids |= {("BTC-USD", first + 4)}  # the last one lost: only a heartbeat tells
            await fake.trade("BTC-USD", "5")
            await fake.heartbeat("BTC-USD")
            await until(lambda: len(received) == 5)
            stop.set()
            await asyncio.wait_for(task, 5)
            return feed, received, first

    feed, received, first = asyncio.run(scenario())
    assert sorted(int(t.trade_id) for t in received) == list(range(first, first + 5))
    assert feed.status.gaps == 2 and feed.status.repaired == 2
    assert feed.status.repaired_trades == 3


def test_an_advanced_trade_snapshot_newest_first_is_taken_whole_in_order():
    """The real first event: about 100 recent trades listed newest first. All are new to a
    fresh feed, in trade-id order, with no false gap and no "duplicates"."""

    async def scenario():
        async with FakeCoinbase() as fake:
            for k in range(100):
                fake.add_trade("BTC-USD", f"{100 + k}", "0.01", t=1_700_000_000 + k / 10)
            feed, received, stop, task = run_feed(fake, "advanced")
            await until(lambda: len(received) == 100)
            ids = await fake.batch("BTC-USD", [(str(p + 1), "1", None) for p in range(5)])
            await until(lambda: len(received) == 105)
            stop.set()
            await asyncio.wait_for(task, 5)
            return feed, received, ids

    feed, received, ids = asyncio.run(scenario())
    assert [int(t.trade_id) for t in received] == list(range(101, 201)) + ids
    assert feed.status.duplicates == 0 and feed.status.gaps == 0
    assert received[99].price == 199 and all(t.snapshot for t in received[:100])


def test_odd_shapes_are_rejected_not_raised():
    """Shapes no parser foresaw (a subscriptions reply with numbers for lists, events that
    are not objects) are counted as rejected; the handler never raises."""

    async def scenario():
        feed = CoinbaseFeed(["BTC-USD"], deliver=lambda trades: None, ws_url="ws://unused")
        for raw in (
            '{"type": "subscriptions", "channels": [{"name": "matches", "product_ids": 5}]}',
            '{"type": "heartbeat", "product_id": ["BTC-USD"], "last_trade_id": 1}',
            '{"type": "match", "trade_id": true, "product_id": "BTC-USD", "price": "1",'
            ' "size": "1", "time": "2023-11-14T22:14:12Z"}',
            "",
            "null",
        ):
            await feed.handle_raw(raw)
        advanced = CoinbaseFeed(
            ["BTC-USD"], deliver=lambda trades: None, ws_url="ws://unused", dialect="advanced"
        )
        for raw in (
            '{"channel": "subscriptions", "events": [{"subscriptions": {"market_trades": 3}}]}',
            '{"channel": "market_trades", "events": ["x", {"type": "update", "trades": "y"}]}',
            '{"channel": "market_trades", "timestamp": "soon", "events": []}',
        ):
            await advanced.handle_raw(raw)
        return feed.status, advanced.status

    exchange, advanced = asyncio.run(scenario())
    assert exchange.rejected == 5 and exchange.messages == 5
    assert advanced.rejected == 4  # the subscriptions, "x", "y", the timestamp
