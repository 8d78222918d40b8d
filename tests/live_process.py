"""`ovcast live` as a real subprocess against the fake Coinbase, for the end-to-end tests."""

from __future__ import annotations

import asyncio
import json
import sys
import time

import numpy as np
from fake_coinbase import FakeCoinbase

# The fake's exchange clock is pinned and the tests move it minutes ahead in milliseconds
# (``clock_to``), which no exchange does: the pipeline's clock follows only what messages
# agree on, so the tests' trades would be "stamped minutes ahead". A day of --max-ahead lets
# them through; the clock itself is tested on an injected one (test_market_pipeline.py).
PINNED_CLOCK = ("--max-ahead", "86400")


async def start_live(fake: FakeCoinbase, product: str, model, recording, *extra: str):
    """`ovcast live` as a real subprocess, pointed at the fake (``extra`` options last)."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ovcast",
        "live",
        "--product",
        product,
        "--model",
        str(model),
        "--recording",
        str(recording),
        "--ws-url",
        fake.ws_url,
        "--rest-url",
        fake.rest_url,
        *PINNED_CLOCK,
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


def seed_candles(fake: FakeCoinbase, end: int, n: int = 400) -> None:
    rows = []
    for k in range(n + 1):  # the last one is the still-open bucket: must be dropped
        t = end - (n - k) * 60
        c = 100 + 3 * np.sin(2 * np.pi * k / 24)
        if k % 50 == 7:
            continue  # a minute without trades: no row, as Coinbase does
        rows.append([t, c - 0.2, c + 0.2, c, c, 1.5])
    fake.candles["BTC-USD"] = rows


async def read_records(proc, count: int, timeout: float = 30.0) -> list[dict]:
    records = []
    while len(records) < count:
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), timeout)
        except TimeoutError:
            proc.kill()
            line = b""
        assert line, (
            f"{len(records)} of {count} records; stderr:\n"
            + (await proc.stderr.read()).decode()[-3000:]
        )
        records.append(json.loads(line))
    return records


async def wait_subscribed(fake: FakeCoinbase, proc, timeout: float = 60.0) -> None:
    """Until `ovcast live` has subscribed to the fake; its stderr if it died or hung first."""
    deadline = time.monotonic() + timeout
    while fake.subscribes == 0:
        if proc.returncode is not None or time.monotonic() > deadline:
            raise AssertionError((await proc.stderr.read()).decode()[-3000:])
        await asyncio.sleep(0.05)


def bars_from_trades(trades: list[dict], interval_s: int = 60) -> dict[int, tuple]:
    """The truth, computed independently: per bar start, (open, high, low, close, volume,
    count) from every trade the exchange made, in trade-id order."""
    import datetime as dt
    from decimal import Decimal

    bars: dict[int, list] = {}
    for t in sorted(trades, key=lambda t: t["trade_id"]):
        when = dt.datetime.fromisoformat(t["time"].replace("Z", "+00:00")).timestamp()
        start = int(when // interval_s) * interval_s
        price, size = Decimal(t["price"]), Decimal(t["size"])
        if start not in bars:
            bars[start] = [price, price, price, price, Decimal(0), 0]
        bar = bars[start]
        bar[1], bar[2], bar[3] = max(bar[1], price), min(bar[2], price), price
        bar[4] += size
        bar[5] += 1
    return {start: tuple(v) for start, v in bars.items()}


def recorded_bar(bar) -> tuple:
    return (bar.open, bar.high, bar.low, bar.close, bar.volume, bar.trades)


async def clock_to(fake: FakeCoinbase, t: float, product: str = "BTC-USD") -> None:
    """Move the fake's pinned exchange clock to ``t``, saying so in heartbeats as the real
    one does every second (here: every 60 s of exchange time)."""
    while fake.now < t:
        fake.now = min(t, fake.now + 60)
        await fake.heartbeat(product)
