"""The dashboard in a real headless Chromium (Debian's), driven by Playwright.

`ovcast live --dashboard` runs as a subprocess against the fake Coinbase; the page must load
without console errors, show the backfilled bars, draw a forecast after a bar closes and
move it at the next close, show a repaired gap, the reconnect after the fake drops the
connection, and the new model after a SIGHUP hot swap.
Screenshots are kept in $OVCAST_TEST_ARTIFACTS (default: artifacts/ in the checkout).
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import make_package
from fake_coinbase import FakeCoinbase
from live_process import clock_to, read_records, seed_candles, start_live

CHROMIUM = os.environ.get("OVCAST_CHROMIUM") or shutil.which("chromium")
ARTIFACTS = Path(
    os.environ.get("OVCAST_TEST_ARTIFACTS") or Path(__file__).resolve().parent.parent / "artifacts"
)
# Closed network: without these, Chromium keeps dialling Google's services and logs failures.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
UP, DOWN, FORECAST = (0x26, 0xA6, 0x9A), (0xEF, 0x53, 0x50), (0xF5, 0xA6, 0x23)

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="the browser tests drive Debian's Chromium: apt-get install chromium "
    "(or set OVCAST_CHROMIUM to a Chromium binary)",
)


async def until(check, what: str, timeout: float = 30.0):
    """Poll an async ``check`` until it returns something truthy; fail saying ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what} (last: {value!r})")
        await asyncio.sleep(0.1)


async def dashboard_url(proc) -> str:
    """Read stderr up to the dashboard's address, then keep draining it in the background."""
    seen = []
    while True:
        line = (await asyncio.wait_for(proc.stderr.readline(), 60)).decode()
        assert line, "".join(seen)[-3000:]
        seen.append(line)
        if match := re.search(r"dashboard at (http://\S+)", line):
            asyncio.get_running_loop().create_task(proc.stderr.read())
            return match.group(1)


def pixels_near(png: bytes, colour: tuple[int, int, int], tolerance: int = 12) -> int:
    """How many pixels of a screenshot are (nearly) ``colour``."""
    from PIL import Image

    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)
    return int((np.abs(rgb - np.array(colour)).max(axis=-1) <= tolerance).sum())


async def open_page(playwright, url: str):
    """A fresh browser and page at ``url``; console errors and page errors are collected."""
    browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    page = await browser.new_page(viewport={"width": 1280, "height": 760})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"uncaught: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    await page.goto(url)
    return browser, page, problems


@pytest.fixture(scope="module")
def second_market_package(tmp_path_factory):
    return make_package(tmp_path_factory, "dash2", "market-2", seed=5, num_input_channels=7)


def test_live_dashboard_in_chromium_against_the_fake_coinbase(
    tmp_path, market_package, second_market_package
):
    from playwright.async_api import async_playwright

    served = tmp_path / "served"
    shutil.copytree(market_package, served)

    async def scenario():
        minute = int(time.time() // 60) * 60
        async with FakeCoinbase(now=minute + 5) as fake, async_playwright() as playwright:
            seed_candles(fake, minute)  # the exchange clock is pinned: the test moves it
            # A long grace: only trades close bars, so a minute turning mid-test changes nothing.
            proc = await start_live(
                fake, "BTC-USD", served, tmp_path / "live.db",
                "--dashboard", "127.0.0.1:0", "--grace", "600",
            )  # fmt: skip
            try:
                url = await dashboard_url(proc)
                browser, page, problems = await open_page(playwright, url)
                summary = "() => window.ovcast && window.ovcast.summary()['BTC-USD']"
                at = page.locator

                await until(lambda: fake_subscribed(fake), "the feed's subscription")

                async def backfilled():  # the window plus the indicators' warm-up
                    shown = await page.evaluate(summary)
                    return shown if shown and shown["bars"] == 64 + 150 else None

                before = await until(backfilled, "the backfilled bars")
                assert before["forecastPoints"] == 0  # none until a bar closes live
                end = before["lastBarTime"] + 60  # the open minute when live started
                await until(lambda: has_text(at("#feed-badge"), "connected"), "the connected badge")
                chart = page.locator("[data-product='BTC-USD'] .chart")
                empty_chart = await chart.screenshot()
                assert pixels_near(empty_chart, UP) + pixels_near(empty_chart, DOWN) > 500
                assert pixels_near(empty_chart, FORECAST) < 20

                await fake.trade("BTC-USD", "101.25", "0.5", t=end + 1.5)
                await clock_to(fake, end + 62)
                await fake.trade("BTC-USD", "102.5", "0.5", t=end + 61.0)  # closes `end`
                first = await until(lambda: forecast_from(page, summary, end), "the first forecast")
                assert first["forecastPoints"] == 17 and first["forecastTo"] == end + 16 * 60
                assert first["lastBarTime"] == end
                drawn = await chart.screenshot()
                assert pixels_near(drawn, FORECAST) > 50  # the dashed line is really drawn

                await clock_to(fake, end + 122)
                await fake.trade("BTC-USD", "103.0", "0.5", t=end + 121.0)  # closes end + 60
                moved = await until(
                    lambda: forecast_from(page, summary, end + 60), "the forecast to move"
                )
                assert moved["lastBarTime"] == end + 60 and moved["forecastTo"] == end + 17 * 60
                records = await read_records(proc, 2)
                assert [r["bar_time_s"] for r in records] == [end, end + 60]

                await clock_to(fake, end + 136)
                lost = await fake.trade("BTC-USD", "103.5", "0.5", t=end + 125.0) + 1
                fake.skip_ids.add(("BTC-USD", lost))  # lost on the socket, kept on REST: a gap
                await fake.trade("BTC-USD", "104.0", "0.5", t=end + 130.0)
                await fake.trade("BTC-USD", "104.5", "0.5", t=end + 135.0)
                await until(lambda: has_text(at("[data-key='gaps']"), "1 of 1"), "gap repaired")
                await fake.send_raw('{"type": "match", "price": "NaN"}')  # bad input: counted
                await until(lambda: has_text(at("[data-key='rejected']"), "1"), "rejected = 1")
                status = await page.evaluate("fetch('/api/status').then(r => r.json())")
                assert status["feed"]["rejected"] == 1 and status["feed"]["partial_bars"] == 0

                await fake.close_all(clean=False)  # an abrupt drop: the page must say so
                await until(lambda: has_text(at("[data-key='reconnects']"), "1"), "reconnects = 1")
                await until(lambda: has_text(at("#feed-badge"), "connected"), "connected again")
                assert fake.subscribes >= 2
                latency = await at("[data-key='p50']").inner_text()
                assert latency.endswith(" ms") and float(latency.split()[0]) > 0
                assert await at("[data-key='name']").inner_text() == "market"
                precision = await at("[data-key='precision']").inner_text()  # and why
                assert precision.startswith(("f32: ", "bf16: ")) and len(precision) > 10
                assert await at("[data-key='static_batch1']").inner_text() == "static batch-1 model"
                shutil.rmtree(served)  # a new model in the same place, then SIGHUP: hot swap
                shutil.copytree(second_market_package, served)
                proc.send_signal(signal.SIGHUP)
                await until(lambda: has_text(at("[data-key='name']"), "market-2"), "the new model")
                assert await page.locator("#histogram rect").count() >= 6
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                await page.screenshot(path=str(ARTIFACTS / "dashboard-live.png"))
                assert problems == []
                await browser.close()
            finally:
                if proc.returncode is None:
                    proc.send_signal(signal.SIGTERM)
                    await asyncio.wait_for(proc.wait(), 30)
            return proc.returncode

    assert asyncio.run(scenario()) == 0


async def fake_subscribed(fake: FakeCoinbase) -> bool:
    return fake.subscribes > 0


async def has_text(locator, expected: str) -> bool:
    return (await locator.inner_text()).strip() == expected


async def forecast_from(page, summary: str, bar_time: int):
    shown = await page.evaluate(summary)
    return shown if shown and shown["forecastFrom"] == bar_time else None


def test_replay_demo_dashboard_in_chromium(market_package):
    """The offline path a new user takes: `ovcast replay --demo --dashboard`, in a browser."""
    import sys

    from playwright.async_api import async_playwright

    async def scenario():
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ovcast", "replay", "--demo", "--model", str(market_package),
            "--speed", "600", "--out", os.devnull, "--dashboard", "127.0.0.1:0",
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            url = await dashboard_url(proc)
            async with async_playwright() as playwright:
                browser, page, problems = await open_page(playwright, url)
                summary = "() => window.ovcast && window.ovcast.summary()['DEMO-USD']"

                async def forecasting():
                    shown = await page.evaluate(summary)
                    return shown if shown and shown["forecastPoints"] == 17 else None

                first = await until(forecasting, "the demo's first forecast")

                async def moved_on():
                    """At 600x bars can outpace polling, hence "at least three"; and skip the
                    moment between a bar's event and its forecast's."""
                    shown = await page.evaluate(summary)
                    settled = shown["lastBarTime"] == shown["forecastFrom"]
                    return (
                        shown
                        if settled and shown["forecastFrom"] >= first["forecastFrom"] + 180
                        else None
                    )

                moved = await until(moved_on, "the forecast to move three bars on")
                assert moved["lastBarTime"] == moved["forecastFrom"]  # drawn from the last bar
                assert await page.locator("#feed-badge").inner_text() in ("replaying", "finished")
                replayed = await page.locator("[data-key='replayed']").inner_text()
                done, total = map(int, re.findall(r"\d+", replayed))
                assert 0 < done <= total
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                await page.screenshot(path=str(ARTIFACTS / "dashboard-replay.png"))
                assert problems == []
                await browser.close()
        finally:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 30)
        return proc.returncode

    assert asyncio.run(scenario()) == 0
