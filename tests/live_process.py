"""`ovcast live` as a real subprocess against the fake Coinbase, for the end-to-end tests."""

from __future__ import annotations

import asyncio
import json
import sys

import numpy as np
from fake_coinbase import FakeCoinbase


async def start_live(fake: FakeCoinbase, product: str, model, recording, *extra: str):
    """`ovcast live` as a real subprocess, pointed at the fake."""
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
        line = await asyncio.wait_for(proc.stdout.readline(), timeout)
        assert line, (await proc.stderr.read()).decode()[-2000:]
        records.append(json.loads(line))
    return records
