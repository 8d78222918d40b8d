"""`ovcast live` end to end against the fake Coinbase: backfill, bars, forecasts, recording, restart."""

from __future__ import annotations

import asyncio
import shutil
import signal
import time

import numpy as np
import pytest
from conftest import make_package
from fake_coinbase import FakeCoinbase
from live_process import open_minute, read_records, seed_candles, start_live, wait_subscribed

from ovcast.market.recording import Recording


@pytest.fixture(scope="module")
def other_market_package(tmp_path_factory):
    return make_package(tmp_path_factory, "live2", "market-2", seed=5, num_input_channels=7)


def test_live_backfills_forecasts_at_bar_close_and_records(
    tmp_path, market_package, other_market_package
):
    served, other = tmp_path / "served", tmp_path / "other"
    shutil.copytree(market_package, served)
    shutil.copytree(other_market_package, other)

    async def scenario():
        async with FakeCoinbase() as fake:
            end = await open_minute()
            seed_candles(fake, end)
            proc = await start_live(fake, "BTC-USD", served, tmp_path / "live.db")
            await wait_subscribed(fake, proc)
            await asyncio.sleep(0.2)
            await fake.trade("BTC-USD", "101.25", "0.5", t=end + 1.5)  # opens the bar at `end`
            await fake.trade("BTC-USD", "101.75", "0.25", t=end + 30.0)
            await fake.close_all(clean=False)  # an abrupt disconnect...
            while fake.subscribes < 2:
                await asyncio.sleep(0.05)  # ...and the resubscribe
            skipped = await fake.trade("BTC-USD", "99.5", "1", t=end + 61.0)  # proves `end` closed
            fake.skip_ids.add(skipped + 1)  # lost on the socket, kept on REST
            await fake.trade("BTC-USD", "99.25", "1", t=end + 100.0)
            await fake.trade("BTC-USD", "99.0", "1", t=end + 185.0)  # closes end+60, fills end+120
            records = await read_records(proc, 3)
            shutil.rmtree(served)  # a new model in the same place, then SIGHUP: hot swap
            shutil.copytree(other, served)
            proc.send_signal(signal.SIGHUP)
            await asyncio.sleep(1.5)
            await fake.trade("BTC-USD", "98.0", "1", t=end + 245.0)  # closes end+180
            records += await read_records(proc, 1)
            proc.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(proc.communicate(), 30)
            return end, records, proc.returncode, err.decode()

    end, records, code, err = asyncio.run(scenario())
    assert code == 0, err[-3000:]
    assert [r["bar_time_s"] for r in records] == [end, end + 60, end + 120, end + 180]
    assert records[2]["model"] == "market" and records[3]["model"] == "market-2"  # swapped live
    assert records[0]["bar_close"] == 101.75 and records[2]["bar_close"] == 99.25  # flat fill
    assert len(records[0]["forecast_close"]) == 16 and records[0]["model"] == "market"
    assert records[0]["forecast_time_s"][0] == end + 60
    with Recording(tmp_path / "live.db") as rec:
        bars = rec.bars("BTC-USD")
        starts = [b.start_s for b in bars]
        assert starts == list(range(starts[0], end + 240, 60))  # backfill + live, no seam, no hole
        filled = {b.start_s for b in bars if b.filled}
        assert end + 120 in filled  # the live minute without trades
        holes = {end - (400 - k) * 60 for k in range(400) if k % 50 == 7} & set(starts)
        assert holes and holes <= filled  # the candles' missing minutes, filled flat
        trades = list(rec.trades("BTC-USD"))
        assert len(trades) == 6  # the one lost on the socket was repaired over REST; none twice
        assert (
            bars[-3].volume == 2 and bars[-3].close.to_eng_string() == "99.25"
        )  # the repaired trade counted
        assert rec.meta("scaler:BTC-USD") is not None


def test_live_invalid_product_fails_fast(tmp_path, market_package):
    async def scenario():
        async with FakeCoinbase() as fake:
            fake.trades["BAD-USD"] = []
            fake.candles["BAD-USD"] = [
                [int(time.time() // 60) * 60 - 60 * k, 1, 1, 1, 1, 1] for k in range(1, 300)
            ]
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

    async def record():
        async with FakeCoinbase() as fake:
            end = await open_minute()
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
    """Two products in one process; bars on the exchange's clock (ahead of ours after the
    restart); out-of-order and late trades; a restart on the same recording resumes without
    refitting or duplicating."""

    async def session(first: bool):
        async with FakeCoinbase(products=("BTC-USD", "ETH-USD")) as fake:
            end = await open_minute()
            seed_candles(fake, end)  # BTC history
            fake.candles["ETH-USD"] = [
                [t, lo / 50, h / 50, o / 50, c / 50, v]
                for t, lo, h, o, c, v in fake.candles["BTC-USD"]
            ]
            proc = await start_live(
                fake, "BTC-USD", market_package, tmp_path / "multi.db", "--product", "ETH-USD"
            )
            await wait_subscribed(fake, proc)
            await asyncio.sleep(0.2)
            base = end if first else end + 180  # later: the fake's clock runs 3 minutes ahead
            fake._next_id = 100 if first else 1000  # a real exchange never reuses trade ids
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
            proc.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(proc.communicate(), 30)
            return (
                [r for r in records if r["bar_time_s"] == base],
                err.decode(),
                proc.returncode,
                base,
            )

    records, err, code, base = asyncio.run(session(first=True))
    assert code == 0, err[-2000:]
    assert {r["product"] for r in records} == {"BTC-USD", "ETH-USD"}
    assert all(r["bar_time_s"] == base for r in records)  # bars on exchange time, not ours
    assert "late trade" in err and "scalers fitted" in err
    with Recording(tmp_path / "multi.db") as rec:
        btc_bars = rec.bars("BTC-USD")
        assert btc_bars[-1].start_s == base and btc_bars[-1].trades == 2  # the late one not applied
        scaler = rec.meta("scaler:BTC-USD")

    records, err, code, base2 = asyncio.run(session(first=False))
    assert code == 0, err[-2000:]
    assert "scalers fitted" not in err  # frozen: the stored scaler is reused
    with Recording(tmp_path / "multi.db") as rec:
        starts = [b.start_s for b in rec.bars("BTC-USD")]
        assert len(starts) == len(set(starts)) and starts == sorted(starts)
        assert rec.meta("scaler:BTC-USD") == scaler
        assert len(list(rec.trades("BTC-USD"))) == 8  # both sessions, nothing twice
