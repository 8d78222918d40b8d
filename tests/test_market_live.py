"""`ovcast live` end to end, as a real subprocess against the fake Coinbase: backfill, the
open minute from REST, forecasts, hot swap, several products, `kill -9` and restart.

The fake's exchange clock is pinned (``now``): the pipeline reads it from REST ``/time``, so
no test depends on where in the wall-clock minute it runs. A long ``--grace`` leaves bar
closes to the trades the test sends (``start_live`` gives them room to run ahead of that
pinned clock: see ``live_process.PINNED_CLOCK``).
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import sqlite3

import numpy as np
import pytest
from conftest import make_package
from fake_coinbase import FakeCoinbase
from live_process import (
    bars_from_trades,
    clock_to,
    read_records,
    recorded_bar,
    seed_candles,
    start_live,
    wait_subscribed,
)

from ovcast.market.recording import Recording

MINUTE = 1_700_000_040  # a minute start (UTC)
TRADE_CLOSES = ("--grace", "600")  # bars close when a later trade says so, not on the clock


@pytest.fixture(scope="module")
def other_market_package(tmp_path_factory):
    return make_package(tmp_path_factory, "live2", "market-2", seed=5, num_input_channels=7)


async def recorded_trades(path, count: int, proc, timeout: float = 30.0, product="BTC-USD"):
    """Until the recording (read by another connection, as any reader would) holds
    ``count`` trades of ``product``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        with sqlite3.connect(path) as db:
            n = db.execute(
                "SELECT COUNT(*) FROM trades WHERE product_id = ?", (product,)
            ).fetchone()
        if n[0] >= count:
            return
        if proc.returncode is not None or loop.time() > deadline:
            raise AssertionError(f"{n[0]} of {count} trades recorded")
        await asyncio.sleep(0.02)


async def collect_lines(stream, lines: list[str]) -> None:
    async for line in stream:
        lines.append(line.decode())


def test_live_backfills_forecasts_at_bar_close_records_and_hot_swaps(
    tmp_path, market_package, other_market_package
):
    served, other = tmp_path / "served", tmp_path / "other"
    shutil.copytree(market_package, served)
    shutil.copytree(other_market_package, other)
    m = MINUTE

    async def scenario():
        async with FakeCoinbase(now=m + 10) as fake:
            seed_candles(fake, m)
            fake.add_trade("BTC-USD", "101.5", "2", t=m + 3)  # before start-up: REST has it
            proc = await start_live(fake, "BTC-USD", served, tmp_path / "live.db", *TRADE_CLOSES)
            await wait_subscribed(fake, proc)
            await fake.trade("BTC-USD", "101.25", "0.5", t=m + 11)
            await fake.trade("BTC-USD", "101.75", "0.25", t=m + 30.0)
            await fake.close_all(clean=False)  # an abrupt disconnect...
            while fake.subscribes < 2:
                await asyncio.sleep(0.02)  # ...and the resubscribe
            await clock_to(fake, m + 62)
            await fake.trade("BTC-USD", "99.5", "1", t=m + 61.0)  # proves `m` closed
            fake.skip_ids.add(("BTC-USD", fake.next_id["BTC-USD"] + 1))  # lost on the socket
            await fake.trade("BTC-USD", "99.25", "1", t=m + 100.0)
            await clock_to(fake, m + 186)
            await fake.trade("BTC-USD", "99.0", "1", t=m + 185.0)  # closes m+60, fills m+120
            records = await read_records(proc, 3)
            lines: list[str] = []
            reader = asyncio.create_task(collect_lines(proc.stderr, lines))
            shutil.rmtree(served)  # a new model in the same place, then SIGHUP: hot swap
            shutil.copytree(other, served)
            proc.send_signal(signal.SIGHUP)
            while not any("reloaded: now serving" in line for line in lines):
                assert proc.returncode is None and not reader.done(), "".join(lines)[-3000:]
                await asyncio.sleep(0.02)
            await clock_to(fake, m + 246)
            await fake.trade("BTC-USD", "98.0", "1", t=m + 245.0)  # closes m+180
            records += await read_records(proc, 1)
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 30)
            await reader
            err = "".join(lines).encode()
            return fake, records, proc.returncode, err.decode()

    fake, records, code, err = asyncio.run(scenario())
    assert code == 0, err[-3000:]
    assert [r["bar_time_s"] for r in records] == [m, m + 60, m + 120, m + 180]
    assert records[2]["model"] == "market" and records[3]["model"] == "market-2"  # swapped live
    assert records[0]["bar_close"] == 101.75 and records[2]["bar_close"] == 99.25  # flat fill
    assert len(records[0]["forecast_close"]) == 16 and records[0]["forecast_time_s"][0] == m + 60
    assert all(r["partial_in_window"] == 0 for r in records)
    assert "open minute complete from REST" in err and "stopped; reconnects 1" in err
    truth = bars_from_trades(fake.trades["BTC-USD"])
    with Recording(tmp_path / "live.db") as rec:
        bars = rec.bars("BTC-USD")
        starts = [b.start_s for b in bars]
        assert starts == list(range(starts[0], m + 240, 60))  # backfill + live, no seam, no hole
        by_start = {b.start_s: b for b in bars}
        assert recorded_bar(by_start[m]) == truth[m]  # the trade before start-up included
        assert recorded_bar(by_start[m + 60]) == truth[m + 60]  # the repaired trade included
        assert by_start[m + 120].filled and not any(b.partial for b in bars)
        holes = {m - (400 - k) * 60 for k in range(400) if k % 50 == 7} & set(starts)
        assert holes and holes <= {b.start_s for b in bars if b.filled}  # candles' missing minutes
        assert len(list(rec.trades("BTC-USD"))) == len(fake.trades["BTC-USD"])  # none lost/twice
        assert rec.meta("scaler:BTC-USD") is not None


def test_kill_9_mid_minute_and_restart_loses_nothing_and_doubles_nothing(tmp_path, market_package):
    """The issue's test: `kill -9` mid-minute, trades while down (one closing the minute),
    restart on the same recording: every trade recorded exactly once, and the bars equal
    bars computed independently from all trades. A second process on the recording while
    the first runs is refused (two overwrote each other's bars); the crash frees it."""
    m = MINUTE
    db = tmp_path / "crash.db"

    async def scenario():
        async with FakeCoinbase(now=m + 10) as fake:
            seed_candles(fake, m)
            fake.add_trade("BTC-USD", "100", "1", t=m + 2)
            fake.add_trade("BTC-USD", "101", "1", t=m + 4)
            proc = await start_live(fake, "BTC-USD", market_package, db, *TRADE_CLOSES)
            await wait_subscribed(fake, proc)
            second = await start_live(fake, "BTC-USD", market_package, db, *TRADE_CLOSES)
            _, second_err = await asyncio.wait_for(second.communicate(), 60)  # one per recording
            for k in range(3):
                await fake.trade("BTC-USD", f"{102 + k}", "0.5", t=m + 11 + k)
            await recorded_trades(db, 5, proc)
            proc.kill()  # SIGKILL: no clean-up at all; the lock goes with the process
            await proc.wait()
            assert proc.returncode == -signal.SIGKILL
            for price, t in (("106", 20), ("107", 30), ("90", 65), ("91", 70)):
                await fake.trade("BTC-USD", price, "1", t=m + t)  # while down; 90 closes m
            fake.now = m + 75
            proc = await start_live(fake, "BTC-USD", market_package, db, *TRADE_CLOSES)
            while fake.subscribes < 2:
                if proc.returncode is not None:
                    raise AssertionError((await proc.stderr.read()).decode()[-3000:])
                await asyncio.sleep(0.02)
            await fake.send_raw('{"type": "match", "price": "NaN"}')  # counted, not fatal
            await fake.trade("BTC-USD", "92", "2", t=m + 80)
            await fake.trade("BTC-USD", "93", "1", t=m + 125)  # closes m + 60
            records = await read_records(proc, 1)
            proc.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(proc.communicate(), 30)
            return fake, records, proc.returncode, err.decode(), second, second_err.decode()

    fake, records, code, err, second, second_err = asyncio.run(scenario())
    assert second.returncode == 1 and fake.subscribes == 2  # the second never subscribed
    assert "being recorded by another process" in second_err and "Traceback" not in second_err
    assert code == 0, err[-3000:]
    assert [r["bar_time_s"] for r in records] == [m + 60] and records[0]["partial_in_window"] == 0
    assert "rejected 1," in err  # the final status line counts the bad message
    truth = bars_from_trades(fake.trades["BTC-USD"])
    with Recording(db) as rec:
        ids = [t.trade_id for t in rec.trades("BTC-USD")]
        bars = {b.start_s: b for b in rec.bars("BTC-USD")}
    assert sorted(ids, key=int) == [str(t["trade_id"]) for t in fake.trades["BTC-USD"]]
    assert len(ids) == len(set(ids)) == 11
    for start in (m, m + 60):
        assert recorded_bar(bars[start]) == truth[start] and not bars[start].partial


def test_live_invalid_product_fails_fast(tmp_path, market_package):
    async def scenario():
        async with FakeCoinbase(now=MINUTE) as fake:
            fake.trades["BAD-USD"], fake.next_id["BAD-USD"] = [], 100
            fake.candles["BAD-USD"] = [[MINUTE - 60 * k, 1, 1, 1, 1, 1] for k in range(1, 300)]
            # REST answers for it, the socket refuses it
            proc = await start_live(fake, "BAD-USD", market_package, tmp_path / "bad.db")
            _, err = await asyncio.wait_for(proc.communicate(), 60)
            return proc.returncode, err.decode()

    code, err = asyncio.run(scenario())
    assert code == 1 and "BAD-USD is not a valid product" in err


def test_live_unknown_product_at_rest_says_what_the_server_said(tmp_path, market_package):
    async def scenario():
        async with FakeCoinbase() as fake:
            proc = await start_live(fake, "NOPE-USD", market_package, tmp_path / "n.db")
            _, err = await asyncio.wait_for(proc.communicate(), 60)
            return proc.returncode, err.decode()

    code, err = asyncio.run(scenario())
    assert code == 1 and "NOPE-USD: REST candles answered 404" in err and "NotFound" in err
    assert "Traceback" not in err


def test_a_live_recording_fine_tunes_to_beat_the_random_walk(tmp_path, market_package):
    """The issue's flow: `ovcast live` records, `ovcast finetune` learns from the recording."""
    from ovcast.train.finetune import FinetuneConfig, finetune

    end = MINUTE

    async def record():
        async with FakeCoinbase(now=end + 5) as fake:
            rng = np.random.default_rng(2)
            fake.candles["BTC-USD"] = [
                [end - (1600 - k) * 60, c - 0.1, c + 0.1, c, c, 2.0]
                for k in range(1600)
                for c in [100 + 4 * np.sin(2 * np.pi * k / 24) + 0.2 * rng.standard_normal()]
            ]
            proc = await start_live(
                fake, "BTC-USD", market_package, tmp_path / "rec.db", "--backfill-bars", "1500"
            )
            await wait_subscribed(fake, proc)
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.communicate(), 30)
            return proc.returncode

    assert asyncio.run(record()) == 0
    with Recording(tmp_path / "rec.db") as rec:
        assert len(rec.bars("BTC-USD")) == 1500
    report = finetune(
        FinetuneConfig(
            data=str(tmp_path / "rec.db"),
            base=str(market_package.parent / "ckpt"),
            out=str(tmp_path / "ft"),
            epochs=4,
            learning_rate=3e-3,
            convert=True,
        ),
        progress=False,
    )
    assert report["beats_random_walk"] and (tmp_path / "ft" / "package" / "ovcast.json").is_file()


def test_live_several_products_skewed_clock_late_trades_and_restart(tmp_path, market_package):
    """Two products in one process; bars on the exchange's clock (3 minutes on after the
    restart); out-of-order and late trades; a restart on the same recording resumes without
    refitting or duplicating."""

    history: dict[str, list[dict]] = {}

    async def session(first: bool):
        base = MINUTE if first else MINUTE + 180
        async with FakeCoinbase(products=("BTC-USD", "ETH-USD"), now=base + 1) as fake:
            seed_candles(fake, MINUTE)  # BTC history
            fake.candles["ETH-USD"] = [
                [t, lo / 50, h / 50, o / 50, c / 50, v]
                for t, lo, h, o, c, v in fake.candles["BTC-USD"]
            ]
            if not first:  # the same exchange: its trade history and ids go on
                fake.trades = history
                fake.next_id = {p: trades[-1]["trade_id"] for p, trades in history.items()}
            proc = await start_live(
                fake, "BTC-USD", market_package, tmp_path / "multi.db", "--product", "ETH-USD",
                *TRADE_CLOSES,
            )  # fmt: skip
            await wait_subscribed(fake, proc)
            for product, price in (("BTC-USD", "101"), ("ETH-USD", "2.02")):
                await fake.trade(product, price, t=base + 10.0)
                await fake.trade(product, price, t=base + 5.0)  # out of order, same bar: counts
                await fake.trade(product, price, t=base + 70.0)  # closes the bar at `base`
                await fake.trade(product, price, t=base + 2.0)  # late: that bar is closed
            records = []
            while {r["product"] for r in records if r["bar_time_s"] == base} != {
                "BTC-USD",
                "ETH-USD",
            }:
                records += await read_records(proc, 1)
            for product in ("BTC-USD", "ETH-USD"):  # the late ones too, before stopping
                await recorded_trades(tmp_path / "multi.db", 4 * (2 - first), proc, product=product)
            proc.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(proc.communicate(), 30)
            history.update(fake.trades)
            return [r for r in records if r["bar_time_s"] == base], err.decode(), proc.returncode

    records, err, code = asyncio.run(session(first=True))
    assert code == 0, err[-2000:]
    assert {r["product"] for r in records} == {"BTC-USD", "ETH-USD"}
    assert "late trade" in err and "scalers fitted" in err
    with Recording(tmp_path / "multi.db") as rec:
        btc_bars = rec.bars("BTC-USD")
        last = btc_bars[-1]
        assert last.start_s == MINUTE and last.trades == 2  # the late one not applied...
        assert last.partial  # ...so the recorded bar is marked: it lacks a trade
        scaler = rec.meta("scaler:BTC-USD")

    records, err, code = asyncio.run(session(first=False))
    assert code == 0, err[-2000:]
    assert "scalers fitted" not in err  # frozen: the stored scaler is reused
    assert all(r["bar_time_s"] == MINUTE + 180 for r in records)  # the exchange's clock
    # The first session's late bar; and this one's, if its late trade came in the same batch
    # as the trade that closed it (the bar is then marked before its forecast).
    assert all(r["partial_in_window"] in (1, 2) for r in records)
    with Recording(tmp_path / "multi.db") as rec:
        starts = [b.start_s for b in rec.bars("BTC-USD")]
        assert len(starts) == len(set(starts)) and starts == sorted(starts)
        assert rec.meta("scaler:BTC-USD") == scaler
        assert len(list(rec.trades("BTC-USD"))) == 8  # both sessions, nothing twice
