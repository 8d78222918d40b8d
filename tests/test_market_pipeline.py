"""The live pipeline in-process against the fake Coinbase, on an injected clock: real-shaped
message sequences, the start-up minute, faults, and a forecast that does not block the feed.

Every test runs a minute's (or several minutes') life in milliseconds: the exchange clock is
a ManualClock shared by the fake and the pipeline, moved by the test.
"""

from __future__ import annotations

import asyncio
import json
import threading
from decimal import Decimal as D

import pytest
from fake_coinbase import FakeCoinbase
from live_process import bars_from_trades, recorded_bar, seed_candles

from ovcast.market.clock import ManualClock
from ovcast.market.recording import Recording
from ovcast.market.rest import RestRetry
from ovcast.pipeline.live import LiveConfig, LivePipeline

MINUTE = 1_700_000_040  # a minute start (UTC)


async def until(condition, what="condition", timeout=15.0):
    """Poll a condition (not a sleep for a signal): fail saying what did not happen."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


class Harness:
    def __init__(self, fake, pipeline, clock, records, task, stop):
        self.fake, self.pipeline, self.clock = fake, pipeline, clock
        self.records, self.task, self.stop = records, task, stop

    @property
    def status(self):
        return self.pipeline.feed.status

    async def settle(self, trades: int | None = None, rejected: int | None = None):
        """Until the feed has taken ``trades`` (and rejected ``rejected``), then until the
        writer has recorded and forecast everything handed to it."""
        if trades is not None:
            await until(lambda: self.status.trades >= trades, f"{trades} trades")
        if rejected is not None:
            await until(lambda: self.status.rejected >= rejected, f"{rejected} rejections")
        await self.pipeline.writer.drain()

    async def advance(self, seconds: float):
        """Move the exchange clock and let the pipeline close what that proves closed."""
        self.clock.advance(seconds)
        self.pipeline.tick()
        await self.pipeline.writer.drain()

    async def finish(self):
        self.stop.set()
        await asyncio.wait_for(self.task, 10)


def live_pipeline(tmp_path, package, fake, clock, records, *, dialect="exchange",
                  products=("BTC-USD",)):  # fmt: skip
    """The pipeline as the tests run it: the fake's URLs, the injected clock, fast retries."""
    config = LiveConfig(
        products=list(products),
        model_dir=str(package),
        recording=str(tmp_path / "live.db"),
        ws_url=fake.ws_url,
        rest_url=fake.rest_url,
        advanced_rest_url=fake.rest_url,
        feed=dialect,
        tick_s=3600,  # the test ticks (after moving the clock); no background ticks
        silence_timeout_s=5,
    )
    return LivePipeline(
        config,
        records.append,
        wall_clock=clock.time,
        rest_retry=RestRetry(attempts=3, first_backoff_s=0.01, max_backoff_s=0.02),
        rest_min_interval_s=0.0,
        reconnect_backoff_s=(0.01, 0.05),
    )


async def start(tmp_path, package, fake, clock, *, dialect="exchange", products=("BTC-USD",)):
    records: list[dict] = []
    pipeline = live_pipeline(
        tmp_path, package, fake, clock, records, dialect=dialect, products=products
    )
    stop = asyncio.Event()
    task = asyncio.create_task(pipeline.run(stop))
    await until(lambda: pipeline.feed.status.connected or task.done(), "subscribed")
    if task.done():
        task.result()
    return Harness(fake, pipeline, clock, records, task, stop)


async def start_after_one_trade(tmp_path, package, fake, clock):
    """History up to MINUTE, one trade (100, size 1) at MINUTE - 1, then the pipeline."""
    seed_candles(fake, MINUTE, n=300)
    fake.add_trade("BTC-USD", "100", "1", t=MINUTE - 1)
    return await start(tmp_path, package, fake, clock)


def check_bars_equal_truth(path, fake, product, starts):
    truth = bars_from_trades(fake.trades[product])
    with Recording(path) as rec:
        recorded = {b.start_s: b for b in rec.bars(product)}
        ids = [t.trade_id for t in rec.trades(product)]
    for start in starts:
        assert recorded_bar(recorded[start]) == truth[start], start
        assert not recorded[start].partial and not recorded[start].filled
    assert sorted(ids, key=int) == [str(t["trade_id"]) for t in fake.trades[product]]  # once each
    return recorded


@pytest.mark.parametrize("dialect", ["exchange", "advanced"])
def test_real_message_order_gives_the_true_bars(tmp_path, market_package, dialect):
    """Snapshot (Advanced Trade: 100 trades, newest first) or last_match, batches newest
    first, a batch straddling the minute, a trade lost on the socket, a heartbeat ahead,
    a resubscribe that repeats trades: the bars equal bars computed from every trade."""
    m = MINUTE

    async def scenario():
        clock = ManualClock(m + 20.0)
        async with FakeCoinbase(clock=clock.time) as fake:
            seed_candles(fake, m, n=300)
            for k in range(120):  # before start-up: REST (and the snapshot) have them
                fake.add_trade("BTC-USD", f"{100 + k % 7}.{k:02d}", "0.01", t=m - 40 + k / 2)
            h = await start(tmp_path, market_package, fake, clock, dialect=dialect)
            assert not h.records and h.status.trades == 0
            await h.fake.batch("BTC-USD", [("101.5", "0.2", m + 21.0), ("101.7", "0.3", m + 21.0)])
            clock.now_s = m + 61.5  # the exchange clock moves with its trades
            await h.fake.batch(
                "BTC-USD",
                [("102", "0.1", m + 57.5), ("103", "0.1", m + 59.9), ("99", "0.4", m + 60.1),
                 ("98.5", "0.1", m + 61.0)],
            )  # fmt: skip
            await h.settle(trades=4)  # the open minute closed by the later trades in the batch
            assert [r["bar_time_s"] for r in h.records] == [m]
            clock.now_s = m + 82
            lost = fake.next_id["BTC-USD"] + 1
            fake.skip_ids.add(("BTC-USD", lost))  # lost on the socket, kept on REST
            await h.fake.batch("BTC-USD", [("97", "1", m + 70), ("96", "1", m + 75)])
            await h.fake.close_all(clean=dialect == "exchange")  # resubscribe: repeats arrive
            await until(lambda: h.status.connects == 2, "the resubscribe")
            fake.skip_ids.add(("BTC-USD", fake.next_id["BTC-USD"] + 1))
            await h.fake.trade("BTC-USD", "95.5", "0.5", t=m + 80)
            if dialect == "exchange":
                await h.fake.heartbeat("BTC-USD")  # last_trade_id ahead: the only sign
            else:
                await h.fake.trade("BTC-USD", "95.25", "0.5", t=m + 81)
            total = len(fake.trades["BTC-USD"]) - 120
            await h.settle(trades=total)
            await h.advance(42)  # m + 124: the bar at m + 60 is over, grace included
            await h.finish()
            return fake, h

    fake, h = asyncio.run(scenario())
    assert [r["bar_time_s"] for r in h.records] == [m, m + 60]
    assert all(r["partial_in_window"] == 0 for r in h.records)
    assert h.records[0]["bar_close"] == 103.0  # the close is the minute's last trade (m + 59.9)
    check_bars_equal_truth(tmp_path / "live.db", fake, "BTC-USD", [m, m + 60])
    assert h.status.rejected == 0 and h.status.repair_failures == 0
    assert h.status.gaps >= 2 and h.status.repaired == h.status.gaps
    assert h.status.duplicates >= 1  # the resubscribe's repeats, dropped


def test_open_minute_is_partial_when_rest_cannot_prove_it(tmp_path, market_package):
    """REST trades unavailable at start-up: the first live bar lacks the minute's earlier
    trades, so it is recorded partial and the forecast says its window holds it."""
    m = MINUTE

    async def scenario():
        clock = ManualClock(m + 30.0)
        async with FakeCoinbase(clock=clock.time) as fake:
            seed_candles(fake, m, n=300)
            fake.add_trade("BTC-USD", "100", "4", t=m + 3)  # missed: REST is down...
            fake.add_trade("BTC-USD", "100", "5", t=m + 5)  # ...(the feed's last_match has it)
            fake.rest_faults += [("/trades", 503, "{}")] * 3
            h = await start(tmp_path, market_package, fake, clock)
            await h.fake.trade("BTC-USD", "101", "1", t=m + 31)
            await h.fake.trade("BTC-USD", "102", "1", t=m + 61)
            await h.settle(trades=3)  # the last_match, and the two
            await h.finish()
            return h

    h = asyncio.run(scenario())
    assert [r["bar_time_s"] for r in h.records] == [m]
    assert h.records[0]["partial_in_window"] == 1
    with Recording(tmp_path / "live.db") as rec:
        bars = rec.read_bars("BTC-USD")
    assert bars.time_s[-1] == m and bars.partial[-1] and bars.partial.sum() == 1
    assert not bars.filled[-1] and bars.volume[-1] == 6.0  # the 4 traded at m + 3 is missing


def test_bad_input_is_counted_and_skipped_and_the_feed_goes_on(tmp_path, market_package):
    """The issue's malformed kinds, a poisoned heartbeat, a far-future trade, a malformed REST
    page during a repair: nothing kills the feed, nothing invalid is recorded."""
    m = MINUTE
    good = {"type": "match", "product_id": "BTC-USD", "side": "buy", "size": "1"}

    async def scenario():
        clock = ManualClock(m + 10.0)
        async with FakeCoinbase(clock=clock.time) as fake:
            h = await start_after_one_trade(tmp_path, market_package, fake, clock)
            next_id = fake.next_id["BTC-USD"] + 1
            t = "2023-11-14T22:14:12.000000Z"  # m + 12
            bad = [
                "this is not json",
                "[1, 2, 3]",
                "42",
                json.dumps({"type": "match", "trade_id": next_id, "product_id": "BTC-USD"}),
                json.dumps({**good, "trade_id": next_id, "price": "abc", "time": t}),
                json.dumps({**good, "trade_id": next_id, "price": "NaN", "time": t}),
                json.dumps({**good, "trade_id": next_id, "price": "-5", "time": t}),
                json.dumps({**good, "trade_id": next_id, "price": "1", "size": "-1", "time": t}),
                json.dumps({**good, "trade_id": next_id, "price": "1", "time": "yesterday"}),
                json.dumps(
                    {"type": "heartbeat", "product_id": "BTC-USD", "last_trade_id": "x", "time": t}
                ),  # fmt: skip
                json.dumps(
                    {**good, "product_id": "DOGE-USD", "trade_id": 5, "price": "1", "time": t}
                ),  # fmt: skip
            ]
            for text in bad:
                await fake.send_raw(text)
            await h.settle(rejected=len(bad))
            await fake.heartbeat("BTC-USD", last_trade_id=next_id + 10**9)  # poison
            ahead = {**good, "trade_id": next_id, "price": "101", "time": "2023-11-14T23:14:12Z"}
            await fake.send_raw(json.dumps(ahead))  # an hour ahead: poison
            await h.settle(rejected=len(bad) + 2)
            await fake.trade("BTC-USD", "102", "2", t=m + 15)  # real again: not a "duplicate"
            fake.rest_faults.append(("/trades", 200, '[{"trade_id": oops'))  # malformed page
            fake.skip_ids.add(("BTC-USD", fake.next_id["BTC-USD"] + 1))
            await fake.trade("BTC-USD", "103", "3", t=m + 20)
            await fake.trade("BTC-USD", "104", "4", t=m + 25)
            await h.settle(trades=3)  # 102, 104 and the repaired 103
            await h.advance(60)  # m + 70: the bar at m closes on the clock
            alive = not h.task.done()
            await h.finish()
            return fake, h, alive, len(bad) + 2

    fake, h, alive, rejected = asyncio.run(scenario())
    assert alive and h.status.rejected == rejected
    assert h.status.duplicates == 1  # only the subscribe's last_match: 102 was not "seen"
    assert h.pipeline.feed_summary()["rejected"] == rejected
    assert "rejected 13" in h.pipeline.status_line()
    assert h.status.repaired == 1 and h.status.repair_failures == 0  # retried past the bad page
    with Recording(tmp_path / "live.db") as rec:
        bars = {b.start_s: b for b in rec.bars("BTC-USD")}
        prices = {t.price for t in rec.trades("BTC-USD")}
    assert prices == {D("100"), D("102"), D("103"), D("104")}  # nothing rejected recorded
    assert bars[m].volume == 2 + 3 + 4 and bars[m].close == D("104") and not bars[m].partial
    assert max(bars) == m  # no flat bars up to the poisoned hour


def test_a_repair_that_keeps_failing_marks_bars_partial_and_the_feed_goes_on(
    tmp_path, market_package
):
    m = MINUTE

    async def scenario():
        clock = ManualClock(m + 10.0)
        async with FakeCoinbase(clock=clock.time) as fake:
            h = await start_after_one_trade(tmp_path, market_package, fake, clock)
            fake.rest_faults += [("/trades", 500, "down")] * 3
            fake.skip_ids.add(("BTC-USD", fake.next_id["BTC-USD"] + 1))
            await fake.trade("BTC-USD", "101", "1", t=m + 12)
            await fake.trade("BTC-USD", "102", "1", t=m + 14)
            await fake.trade("BTC-USD", "103", "1", t=m + 70)
            await h.settle(trades=2)
            await until(lambda: h.status.repair_failures == 1, "the repair to give up")
            await h.settle()
            await h.finish()
            return h

    h = asyncio.run(scenario())
    # The lost trade came after the last one known (m - 1) and before m + 14: both bars that
    # span may lack it, the closed one before (re-marked in the recording) and the open one.
    assert h.status.repair_failures == 1 and h.pipeline.feed_summary()["partial_bars"] == 2
    with Recording(tmp_path / "live.db") as rec:
        bars = rec.read_bars("BTC-USD")
    assert bars.time_s[-1] == m and bars.partial[-2:].all() and bars.partial.sum() == 2
    assert h.records[-1]["bar_time_s"] == m and h.records[-1]["partial_in_window"] == 1


def test_quiet_minutes_close_on_the_injected_clock_and_a_slow_forecast_never_blocks_the_feed(
    tmp_path, market_package
):
    m = MINUTE
    release = threading.Event()

    class SlowEngine:
        """The real engine, whose forecast waits until the test lets it go."""

        def __init__(self, engine):
            self._engine = engine

        def __getattr__(self, name):
            return getattr(self._engine, name)

        def predict(self, window):
            release.wait(10)
            return self._engine.predict(window)

    async def scenario():
        clock = ManualClock(m + 10.0)
        async with FakeCoinbase(clock=clock.time) as fake:
            seed_candles(fake, m, n=300)
            h = await start(tmp_path, market_package, fake, clock)
            await h.advance(59)  # m + 69: minute m had no trades; it closes, flat
            assert [r["bar_time_s"] for r in h.records] == [m]
            stream = h.pipeline.products["BTC-USD"].stream
            stream.engine = SlowEngine(stream.engine)
            await fake.trade("BTC-USD", "101", "1", t=m + 70)
            await fake.trade("BTC-USD", "102", "1", t=m + 121)  # closes m + 60: a slow forecast
            for k in range(30):  # the socket is still read while the forecast waits
                await fake.trade("BTC-USD", "103", "0.1", t=m + 122 + k)
            await until(lambda: h.status.trades == 32, "every trade read during the forecast")
            blocked = len(h.records) == 1 and not release.is_set()
            release.set()
            await h.settle()
            await h.finish()
            return h, blocked

    h, blocked = asyncio.run(scenario())
    assert blocked  # all 32 trades were read while the forecast of m + 60 was still running
    assert [r["bar_time_s"] for r in h.records] == [m, m + 60]
    with Recording(tmp_path / "live.db") as rec:
        bars = {b.start_s: b for b in rec.bars("BTC-USD")}
    assert bars[m].filled and bars[m + 60].close == D("101")


# -- attack report 12 ------------------------------------------------------------------------


def test_a_slow_repair_never_stalls_the_socket_and_its_bars_wait_for_it(tmp_path, market_package):
    """A lost trade, and REST /trades that does not answer yet: the socket is read on (the
    rest of the minute's trades are taken, not left "late" in the socket), the exchange
    clock passes the bar's end, yet the bar waits for the repair, then closes whole."""
    m = MINUTE

    async def scenario():
        clock = ManualClock(m + 10.0)
        async with FakeCoinbase(clock=clock.time) as fake:
            h = await start_after_one_trade(tmp_path, market_package, fake, clock)
            gate = fake.rest_gates["/trades"] = threading.Event()
            fake.skip_ids.add(("BTC-USD", fake.next_id["BTC-USD"] + 1))
            await fake.trade("BTC-USD", "101", "1", t=m + 12)  # lost on the socket
            for k in range(5):  # the market goes on while REST is slow
                await fake.trade("BTC-USD", f"{102 + k}", "1", t=m + 13 + k)
            await h.settle(trades=5)  # all read: the repair did not block the socket
            await until(lambda: fake.rest_waiting, "the repair at the REST gate")
            await h.advance(60)  # m + 70: the bar at m is over on the clock...
            waited = [r["bar_time_s"] for r in h.records] == [] and h.status.repairing == 1
            gate.set()  # ...but waits for the repair
            await until(lambda: h.status.repaired == 1, "the repair")
            await h.advance(1)
            await h.finish()
            return fake, h, waited

    fake, h, waited = asyncio.run(scenario())
    assert waited
    assert [r["bar_time_s"] for r in h.records] == [m] and h.records[0]["bar_close"] == 106.0
    assert h.records[0]["partial_in_window"] == 0 and h.pipeline.feed_summary()["late_trades"] == 0
    check_bars_equal_truth(tmp_path / "live.db", fake, "BTC-USD", [m])


@pytest.mark.parametrize("attack", ["ratchet", "rest_behind"])
def test_the_exchange_clock_cannot_be_walked_off(tmp_path, market_package, attack):
    """ratchet: heartbeats each 100 s ahead of the last, among honest ones; rest_behind:
    REST /time 5 minutes behind the socket. Either way the next minutes' trades make true
    bars, no bar is recorded for minutes that have not happened, none is late."""
    m = MINUTE

    async def scenario():
        clock = ManualClock(m + 10.0)
        async with FakeCoinbase(clock=clock.time) as fake:
            if attack == "rest_behind":
                fake.rest_faults.append(("/time", 200, json.dumps({"epoch": m + 10 - 300})))
            h = await start_after_one_trade(tmp_path, market_package, fake, clock)
            for k in range(1, 30):
                clock.advance(2)  # m + 12 ... m + 68
                await fake.trade("BTC-USD", f"{100 + k % 5}", "1", t=clock.now_s - 0.5)
                await fake.heartbeat("BTC-USD")
                if attack == "ratchet" and k % 3 == 0:
                    await fake.heartbeat("BTC-USD", t=clock.now_s + 100 * k)
                sent = h.status.messages + 2 + (attack == "ratchet" and k % 3 == 0)
                await until(lambda: h.status.messages >= sent, "the messages read")  # noqa: B023
                await h.advance(0)
            clock.advance(10)  # m + 78
            await fake.heartbeat("BTC-USD")
            await h.settle(trades=29)
            await h.advance(0)
            await h.finish()
            return fake, h

    fake, h = asyncio.run(scenario())
    # Nothing from the future (rest_behind started 5 minutes back: the bar at m - 60 was open)
    assert [r["bar_time_s"] for r in h.records if r["bar_time_s"] >= m] == [m]
    assert abs(h.pipeline.clock.now() - (m + 78)) < 2
    # ratchet: its 9 heartbeats (the clock never followed them); rest_behind: the messages
    # before two agreed that REST /time was behind (a lost trade, repaired over REST)
    assert h.status.rejected == 9 if attack == "ratchet" else h.status.rejected <= 2
    check_bars_equal_truth(tmp_path / "live.db", fake, "BTC-USD", [m])
    with Recording(tmp_path / "live.db", readonly=True) as rec:
        assert max(b.start_s for b in rec.bars("BTC-USD")) == m


def test_partial_bars_count_bars_not_late_trades(tmp_path, market_package):
    m = MINUTE

    async def scenario():
        clock = ManualClock(m + 10.0)
        async with FakeCoinbase(clock=clock.time) as fake:
            h = await start_after_one_trade(tmp_path, market_package, fake, clock)
            await fake.trade("BTC-USD", "101", "1", t=m + 12)
            await fake.trade("BTC-USD", "102", "1", t=m + 70)  # closes m
            await h.settle(trades=2)
            for k in range(5):
                await fake.trade("BTC-USD", "103", "1", t=m + 20 + k)  # late, each
                await h.settle(trades=3 + k)
            await h.finish()
            return h

    h = asyncio.run(scenario())
    summary = h.pipeline.feed_summary()
    assert summary["late_trades"] == 5 and summary["partial_bars"] == 1
    assert "partial bars 1;" in h.pipeline.status_line()
    with Recording(tmp_path / "live.db", readonly=True) as rec:
        assert rec.read_bars("BTC-USD").partial.sum() == 1


def test_a_stop_during_a_slow_start_up_is_honoured_at_once(tmp_path, market_package):
    """SIGTERM while start-up waits on a slow REST: the pipeline stops without subscribing
    (it took 34 s, waiting for each request in turn)."""

    async def scenario():
        clock = ManualClock(MINUTE + 10.0)
        async with FakeCoinbase(clock=clock.time) as fake:
            seed_candles(fake, MINUTE, n=300)
            gate = fake.rest_gates["/candles"] = threading.Event()
            pipeline = live_pipeline(tmp_path, market_package, fake, clock, [])
            stop = asyncio.Event()
            task = asyncio.create_task(pipeline.run(stop))
            await until(lambda: fake.rest_waiting, "start-up at the REST gate")
            stop.set()
            done, _ = await asyncio.wait({task}, timeout=5)
            gate.set()
            task.result()
            return done, fake

    done, fake = asyncio.run(scenario())
    assert done and fake.subscribes == 0
    with Recording(tmp_path / "live.db") as rec:  # the lock was released on the way out
        assert rec.bars("BTC-USD") == []


def test_a_long_outage_is_bridged_bar_for_bar_quiet_minutes_included(tmp_path):
    """A day's outage: every minute since the last recorded bar comes back from REST
    candles (not only the window's worth), the quiet minutes right after it (no candle
    rows) included; with REST candles down, the outage is recorded flat and partial: the
    grid never has a hole. A recorded trade id far above REST's newest is not trusted."""
    from decimal import Decimal

    from ovcast.market.aggregator import Bar
    from ovcast.market.coinbase import Trade
    from ovcast.market.rest import CoinbaseRest
    from ovcast.pipeline.resume import ResumeSettings, resume_product

    m = MINUTE
    day = 86_400
    settings = ResumeSettings(need_bars=100)

    async def resume(fake, path):
        async with CoinbaseRest(exchange_url=fake.rest_url, advanced_url=fake.rest_url,
                                retry=RestRetry(attempts=2, first_backoff_s=0.01),
                                min_interval_s=0.0) as rest:  # fmt: skip
            with Recording(path) as rec:
                resumed = await resume_product("BTC-USD", rec, rest, settings, now_s=m + day + 5)
                return resumed, [b.start_s for b in rec.bars("BTC-USD")]

    async def scenario():
        results = []
        for rest_down in (False, True):
            path = tmp_path / f"r{rest_down}.db"
            with Recording(path) as rec:
                for k in range(10):
                    rec.add_bar("BTC-USD", Bar(m - 600 + 60 * k, *[Decimal(100)] * 4))
                rec.add_trade(Trade("BTC-USD", str(10**12), m - 5.0, Decimal(1), Decimal(1)))
            async with FakeCoinbase(now=m + day + 5) as fake:
                seed_candles(fake, m + day, n=1500)
                quiet = range(m, m + 300, 60)  # the first five minutes: no trades, no rows
                fake.candles["BTC-USD"] = [r for r in fake.candles["BTC-USD"] if r[0] not in quiet]
                fake.add_trade("BTC-USD", "101", "1", t=m + day + 1)
                if rest_down:
                    fake.rest_faults += [("/candles", 500, "down")] * 2
                results.append(await resume(fake, path))
        return results

    (bridged, _), (down, _) = asyncio.run(scenario())
    for resumed in (bridged, down):
        starts = [b.start_s for b in resumed.history]
        assert starts == list(range(m - 600, m + day, 60))  # every minute, no hole
        assert resumed.last_trade.trade_id != str(10**12)
    by_start = {b.start_s: b for b in bridged.new_bars}
    assert all(by_start[s].filled and by_start[s].close == 100 for s in range(m, m + 300, 60))
    assert not any(b.partial for b in bridged.new_bars)
    assert all(b.partial and b.filled for b in down.new_bars)  # unknown, not quiet
