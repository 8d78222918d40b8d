"""The feed against a real local WebSocket + REST fake of Coinbase: nothing lost, nothing twice."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from fake_coinbase import FakeCoinbase, iso

from ovcast.market.feed import CoinbaseFeed, FeedRejected
from ovcast.market.rest import CoinbaseRest, RestRetry


async def until(condition, timeout=10.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def finish(stop, task):
    stop.set()
    await asyncio.wait_for(task, 5)


async def after_one_trade(fake, dialect):
    """A seeded feed, subscribed, that has taken one trade."""
    feed, received, stop, task = run_feed(fake, dialect, seeded=True)
    await until(lambda: feed.status.connected)
    await fake.trade("BTC-USD", "100")
    await until(lambda: len(received) == 1)
    return feed, received, stop, task


def run_feed(fake, dialect="exchange", products=("BTC-USD",), seeded=False, **kwargs):
    """The feed against ``fake``; ``seeded``: it knows the fake's last trade id, as after a
    start-up whose REST fetch worked (else its first trades wait for a second opinion)."""
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
    if seeded:
        for product in products:
            feed.seed(product, fake.next_id[product], 0.0)
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
            await finish(stop, task)
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
            await finish(stop, task)

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
            await finish(stop, task)
            return feed, received, first

    feed, received, first = asyncio.run(scenario())
    # The repair runs beside the socket: the lost trade comes after the one that revealed it
    # (the bars wait for it; see test_market_pipeline).
    assert sorted(int(t.trade_id) for t in received) == [first, first + 1, first + 2]
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
            await finish(stop, task)
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
            await finish(stop, task)
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


# -- hostile input (attack report 12) ---------------------------------------------------------


@pytest.mark.parametrize("dialect", ["exchange", "advanced"])
def test_ids_no_int_can_hold_are_rejected_and_the_feed_goes_on(dialect):
    """'²' and 5000 digits pass str.isdigit(); they killed the process. On Advanced Trade the
    bad id came first in its batch."""

    async def scenario():
        async with FakeCoinbase() as fake:
            feed, received, stop, task = await after_one_trade(fake, dialect)
            t = iso(time.time())
            base = {"product_id": "BTC-USD", "price": "100", "size": "1", "time": t}
            for bad in ("²", "9" * 5000):
                if dialect == "exchange":
                    await fake.send_raw(json.dumps({"type": "match", "trade_id": bad, **base}))
                else:
                    trades = [{**base, "trade_id": "x1"}, {**base, "trade_id": bad}]
                    await fake.send_raw(json.dumps({
                        "channel": "market_trades", "timestamp": t,
                        "events": [{"type": "update", "trades": trades}],
                    }))  # fmt: skip
            await until(lambda: feed.status.rejected >= (2 if dialect == "exchange" else 4))
            await fake.trade("BTC-USD", "101")
            await until(lambda: len(received) == 2)
            alive = not task.done()
            await finish(stop, task)
            return feed, alive

    feed, alive = asyncio.run(scenario())
    assert alive and feed.status.trades == 2
    assert "not an id" in feed.status.last_rejection and len(feed.status.last_rejection) < 300


@pytest.mark.parametrize("dialect", ["exchange", "advanced"])
def test_an_error_on_a_resubscribe_is_retried_not_fatal(dialect):
    """After good service the connection drops and the resubscribe is answered with a
    transient error (a rate limit; Advanced Trade's bare "failure to subscribe"): the
    recorder backs off and reconnects instead of exiting."""
    error = (
        {"type": "error", "message": "rate limit exceeded"}
        if dialect == "exchange"
        else {"type": "error", "message": "failure to subscribe"}
    )

    async def scenario():
        async with FakeCoinbase() as fake:
            feed, received, stop, task = await after_one_trade(fake, dialect)
            fake.subscribe_errors += [error] * 4  # more than a first subscribe would take
            await fake.close_all(clean=False)
            await until(lambda: feed.status.connects == 2 or task.done())
            await fake.trade("BTC-USD", "101")
            await until(lambda: len(received) == 2 or task.done())
            await finish(stop, task)
            return feed, received

    feed, received = asyncio.run(scenario())
    assert len(received) == 2 and feed.status.connects == 2
    assert error["message"] in feed.status.last_error and feed.status.reconnects >= 5


def test_the_first_subscription_fails_fast_only_when_retrying_cannot_help():
    """A transient refusal of the very first subscribe is retried; a refusal without a
    reason, three times running, is given up with the server's words."""

    async def scenario():
        async with FakeCoinbase() as fake:
            fake.subscribe_errors.append({"type": "error", "message": "rate limit exceeded"})
            feed, received, stop, task = run_feed(fake)
            await until(lambda: feed.status.connected or task.done())
            first = feed.status.connects
            await finish(stop, task)
        async with FakeCoinbase() as fake:
            fake.subscribe_errors += [{"type": "error", "message": "failure to subscribe"}] * 3
            feed, received, stop, task = run_feed(fake, "advanced")
            with pytest.raises(FeedRejected, match="failure to subscribe"):
                await asyncio.wait_for(task, 5)
        return first

    assert asyncio.run(scenario()) == 1


def test_a_ws_url_that_is_not_a_websocket_url_is_refused_not_retried():
    from ovcast.errors import ConfigError

    async def scenario():
        feed = CoinbaseFeed(["BTC-USD"], deliver=lambda t: None, ws_url="http://127.0.0.1:9")
        with pytest.raises(ConfigError, match="not a WebSocket URL"):
            await asyncio.wait_for(feed.run(asyncio.Event()), 5)

    asyncio.run(scenario())


def test_a_bogus_first_id_cannot_poison_an_unseeded_feed():
    """REST trades failed at start (no last id): a first trade id of 10**12 is held, the
    real trades and heartbeats that follow agree with each other, and it is refused."""

    async def scenario():
        async with FakeCoinbase() as fake:
            feed, received, stop, task = run_feed(fake)  # not seeded
            await until(lambda: feed.status.connected)
            t = iso(time.time())
            await fake.send_raw(json.dumps({
                "type": "match", "trade_id": 10**12, "product_id": "BTC-USD", "price": "100",
                "size": "1", "time": t,
            }))  # fmt: skip
            ids = [await fake.trade("BTC-USD", str(101 + k)) for k in range(5)]
            await fake.heartbeat("BTC-USD")
            await until(lambda: len(received) == 5)
            await finish(stop, task)
            return feed, received, ids

    feed, received, ids = asyncio.run(scenario())
    assert [int(t.trade_id) for t in received] == ids
    assert feed.status.duplicates == 0 and "no other message agrees" in feed.status.last_rejection


def test_advanced_trade_history_with_more_than_a_page_in_one_second_is_not_proven():
    """Advanced Trade pages back by whole seconds: 1500 trades in one second cannot be paged
    past, so start-up must not claim the minute complete (it did: page 2 repeated page 1)."""

    async def scenario():
        async with FakeCoinbase() as fake:
            for _ in range(1500):
                fake.add_trade("BTC-USD", "100", "0.01", t=1_700_000_010.0)
            fake.add_trade("BTC-USD", "101", "0.01", t=1_700_000_011.0)
            async with CoinbaseRest(exchange_url=fake.rest_url, advanced_url=fake.rest_url,
                                    min_interval_s=0.0) as rest:  # fmt: skip
                short = await rest.trades_back("BTC-USD", "advanced", to_time_s=1_700_000_011.0)
                long = await rest.trades_back("BTC-USD", "advanced", to_time_s=1_700_000_000.0)
            return short, long

    (short, proven_short), (long, proven_long) = asyncio.run(scenario())
    assert proven_short and len(short) >= 1  # reached the asked time on the first page
    assert not proven_long and len(long) == 1000  # stuck in the crowded second: not proven
