"""The dashboard in a real headless Chromium (Debian's), driven by Playwright.

`ovcast live --dashboard` runs as a subprocess against the fake Coinbase; the page must load
without console errors, show the backfilled bars, draw a forecast after a bar closes and
move it at the next close, show a repaired gap, the reconnect after the fake drops the
connection, the new model after a SIGHUP hot swap, and the scorecard of its forecasts.
`ovcast replay --demo --dashboard` must draw the scorecard's table and plot, and lay out a
lone product over the whole window with nothing cut off.
One browser serves every test here (each gets its own page).
Screenshots are kept in $OVCAST_TEST_ARTIFACTS (default: artifacts/ in the checkout).
"""

from __future__ import annotations

import asyncio
import io
import math
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

from ovcast.market.recording import Recording

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
RANDOM_WALK = (0x8A, 0xB4, 0xF8)  # the scorecard plot's random-walk line

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


@pytest.fixture(scope="module")
def chromium():
    """(event loop, browser): one Chromium for the module, driven from one event loop; a
    test runs its scenario with ``loop.run_until_complete``."""
    from playwright.async_api import async_playwright

    loop = asyncio.new_event_loop()

    async def launch():
        playwright = await async_playwright().start()
        return playwright, await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS
        )

    playwright, browser = loop.run_until_complete(launch())
    try:
        yield loop, browser
    finally:
        loop.run_until_complete(browser.close())
        loop.run_until_complete(playwright.stop())
        loop.close()


async def open_page(browser, url: str):
    """A fresh page at ``url``; console errors and page errors are collected."""
    page = await browser.new_page(viewport={"width": 1280, "height": 760})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"uncaught: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    await page.goto(url)
    return page, problems


@pytest.fixture(scope="module")
def second_market_package(tmp_path_factory):
    return make_package(tmp_path_factory, "dash2", "market-2", seed=5, num_input_channels=7)


def test_live_dashboard_in_chromium_against_the_fake_coinbase(
    tmp_path, market_package, second_market_package, chromium
):
    loop, chrome = chromium
    served = tmp_path / "served"
    shutil.copytree(market_package, served)

    async def scenario():
        minute = int(time.time() // 60) * 60
        async with FakeCoinbase(now=minute + 5) as fake:
            seed_candles(fake, minute)  # the exchange clock is pinned: the test moves it
            # A long grace: only trades close bars, so a minute turning mid-test changes nothing.
            proc = await start_live(
                fake, "BTC-USD", served, tmp_path / "live.db",
                "--dashboard", "127.0.0.1:0", "--grace", "600",
            )  # fmt: skip
            try:
                url = await dashboard_url(proc)
                page, problems = await open_page(chrome, url)
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
                # The dashed line is really drawn (about 50 pixels: 16 short steps, and no
                # price tag on the axis any more), where there were none before.
                assert pixels_near(drawn, FORECAST) > pixels_near(empty_chart, FORECAST) + 30

                await clock_to(fake, end + 122)
                await fake.trade("BTC-USD", "103.0", "0.5", t=end + 121.0)  # closes end + 60
                moved = await until(
                    lambda: forecast_from(page, summary, end + 60), "the forecast to move"
                )
                assert moved["lastBarTime"] == end + 60 and moved["forecastTo"] == end + 17 * 60
                records = await read_records(proc, 2)
                assert [r["bar_time_s"] for r in records] == [end, end + 60]
                # The bar of `end + 60` scored the first forecast's first step, on the page:
                verdict = at("[data-product='BTC-USD'] .verdict")
                await until(lambda: has_text_starting(verdict, "1 forecast scored"), "a score")
                error = abs(records[0]["forecast_close"][0] - 102.5)  # end + 60 closed at 102.5
                step_one = at("[data-product='BTC-USD'] .scorecard tr:nth-child(2) td:nth-child(3)")
                assert float(await step_one.inner_text()) == pytest.approx(error, rel=2e-3)

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
                await page.screenshot(path=str(ARTIFACTS / "dashboard-live.png"), full_page=True)
                assert problems == []
                await page.close()
            finally:
                if proc.returncode is None:
                    proc.send_signal(signal.SIGTERM)
                    await asyncio.wait_for(proc.wait(), 30)
            return proc.returncode

    assert loop.run_until_complete(scenario()) == 0
    with Recording(tmp_path / "live.db", readonly=True) as recording:  # kept with the bars
        stored = recording.meta("scorecard:BTC-USD")
    assert stored["cards"]["market"]["steps"][0] >= 1


async def fake_subscribed(fake: FakeCoinbase) -> bool:
    return fake.subscribes > 0


async def has_text(locator, expected: str) -> bool:
    return (await locator.inner_text()).strip() == expected


async def has_text_starting(locator, expected: str) -> bool:
    return (await locator.inner_text()).strip().startswith(expected)


async def forecast_from(page, summary: str, bar_time: int):
    shown = await page.evaluate(summary)
    return shown if shown and shown["forecastFrom"] == bar_time else None


def test_replay_demo_dashboard_in_chromium(market_package, chromium):
    """The offline path a new user takes: `ovcast replay --demo --dashboard`, in a browser:
    forecasts moving, the scorecard's table and plot, one product laid out over the window."""
    import sys

    loop, chrome = chromium

    async def scenario():
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ovcast", "replay", "--demo", "--model", str(market_package),
            "--speed", "600", "--out", os.devnull, "--dashboard", "127.0.0.1:0",
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            url = await dashboard_url(proc)
            page, problems = await open_page(chrome, url)
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
            await check_scorecard(page)
            await check_layout(page)
            await keep_screenshot_and_close(page, problems, "dashboard-replay.png")
        finally:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 30)
        return proc.returncode

    assert loop.run_until_complete(scenario()) == 0


async def keep_screenshot_and_close(page, problems: list[str], name: str) -> None:
    """Keep the page's screenshot in ARTIFACTS; the page had no errors; close it."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / name), full_page=True)
    assert problems == []
    await page.close()


async def check_scorecard(page) -> None:
    """A row per horizon bucket plus the total, the verdict, and both lines of the plot."""

    async def scored():
        card = await page.evaluate("fetch('/api/scorecard').then(r => r.json())")
        demo = card["products"].get("DEMO-USD")
        return demo if demo and demo["all"] and demo["all"]["scored"] >= 100 else None

    api = await until(scored, "a hundred forecast steps scored")
    assert [b["steps"] for b in api["buckets"]] == ["1", "2-5", "6-15", "16"]  # horizon 16
    section = page.locator("[data-product='DEMO-USD'] .scorecard")
    rows = await section.locator("tr").all_inner_texts()
    assert [row.split()[0] for row in rows] == ["Steps", "1", "2-5", "6-15", "16", "all"]
    assert "random walk" in await section.locator(".verdict").inner_text()

    # Real numbers, consistent with each other: the buckets' scored steps add up to the
    # total, and the total's MAEs are the buckets' weighted by them (to display rounding).
    async def table():  # one snapshot of the cells (the table is redrawn every second)
        cells = await section.locator("table").evaluate(
            "t => [...t.rows].slice(1).map(r => [...r.cells].map("
            "c => (c.classList.contains('better') ? '*' : '') + c.textContent))"
        )
        return cells if int(cells[-1][1]) >= 100 else None

    cells = await until(table, "a hundred steps scored in the table")
    scored = [int(row[1]) for row in cells]
    assert sum(scored[:-1]) == scored[-1]
    total = [float(cell.lstrip("*")) for cell in cells[-1][2:5]]  # model, random walk, drift
    buckets = [(n, row) for n, row in zip(scored[:-1], cells[:-1], strict=True) if n]
    for column in (2, 3, 4):
        maes = [(n, float(row[column].lstrip("*"))) for n, row in buckets]
        assert all(math.isfinite(mae) and mae >= 0 for _, mae in maes)
        weighted = sum(n * mae for n, mae in maes) / scored[-1]
        assert weighted == pytest.approx(total[column - 2], rel=0.01)
    marked = [cell for cell in cells[-1][2:4] if cell.startswith("*")]
    assert marked == [f"*{cells[-1][2:4][int(total[1] < total[0])].lstrip('*')}"]  # the better
    plot = await section.locator("svg").screenshot()
    assert pixels_near(plot, FORECAST) > 100  # the model's error line...
    assert pixels_near(plot, RANDOM_WALK) > 100  # ...beside the random walk's


async def check_layout(page) -> None:
    """A lone product fills the window; the forecast has no price tag over the axis labels;
    the package path breaks only after a slash."""
    fill = await page.evaluate(
        "() => document.querySelector('.product').getBoundingClientRect().bottom / innerHeight"
    )
    assert fill > 0.9  # (it ended at 0.64, with the lower part of the page empty)
    tag = await page.evaluate(
        "() => window.ovcast.views.get('DEMO-USD').forecast.options().lastValueVisible"
    )
    assert tag is False
    assert (await page.locator("[data-product='DEMO-USD'] .ahead").inner_text()).startswith(
        "forecast "
    )
    # The path wraps only when it is longer than its row (it depends on the temp dir's
    # name): a narrow row makes it wrap whatever the path, and the breaks must follow slashes.
    await page.evaluate(
        "() => { document.querySelector(\"[data-key='path']\").style.width = '9em'; }"
    )
    breaks = await page.evaluate(LINE_BREAKS, "[data-key='path']")
    assert breaks and all(before.endswith("/") for before in breaks), breaks
    # The chart follows the bars edge to edge (no bar, and no time label, cut at the left
    # edge; it drifted one bar per close), until the user scrolls; a double click follows again.
    view = "window.ovcast.views.get('DEMO-USD')"
    follows = (
        f"() => {view}.follow && {view}.chart.timeScale().getVisibleLogicalRange().from <= 1.5"
    )
    for _ in range(3):  # three checks, bars closing in between
        await until(lambda: page.evaluate(follows), "the chart showing its first bar")
        await asyncio.sleep(0.3)
    chart = page.locator("[data-product='DEMO-USD'] .chart")
    await chart.hover()
    await page.mouse.wheel(0, -300)
    assert await page.evaluate(f"() => {view}.follow") is False
    await chart.dblclick()
    await until(lambda: page.evaluate(follows), "following again after a double click")


# The text before each line break inside an element (one entry per wrapped line but the last).
LINE_BREAKS = """(selector) => {
  const node = document.querySelector(selector);
  const walker = document.createTreeWalker(node, NodeFilter.SHOW_TEXT);
  const range = document.createRange();
  let text = "", top = null;
  const breaks = [];
  for (let t = walker.nextNode(); t; t = walker.nextNode()) {
    for (let i = 0; i < t.length; i++) {
      range.setStart(t, i);
      range.setEnd(t, i + 1);
      const y = Math.round(range.getBoundingClientRect().top);
      if (top !== null && y > top) breaks.push(text);
      top = y;
      text += t.data[i];
    }
  }
  return breaks;
}"""


def test_a_sub_cent_product_keeps_its_digits(tmp_path, market_package, chromium):
    """A token at 0.000123 read "0.00" in the header, had no price-axis labels and a cut-off
    error label: prices and errors are formatted by magnitude."""
    import sys
    from decimal import Decimal as D

    from ovcast.market.aggregator import Bar
    from ovcast.market.recording import Recording

    path = tmp_path / "sub.db"
    with Recording(path) as rec:
        for i in range(400):
            c = D("0.000123") + D(i % 7) / 10**7
            rec.add_bar("SUB-USD", Bar(60 * i, c, c, c, c, D(1), 3))
    loop, chrome = chromium

    async def scenario():
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ovcast", "replay", str(path), "--model", str(market_package),
            "--speed", "600", "--out", os.devnull, "--dashboard", "127.0.0.1:0",
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            page, problems = await open_page(chrome, await dashboard_url(proc))

            async def shown():
                view = await page.evaluate("() => window.ovcast.summary()['SUB-USD']")
                return view if view and view["forecastPoints"] else None

            view = await until(shown, "the sub-cent product's forecast")
            assert re.fullmatch(r"0\.0001\d{3}", view["price"]), view
            assert re.fullmatch(r"0\.0001\d{3}", view["axisLabel"]), view
            ahead = await page.locator("[data-product='SUB-USD'] .ahead").inner_text()
            assert re.search(r"forecast 0\.000\d{4} at", ahead), ahead

            async def labels():
                texts = page.locator("[data-product='SUB-USD'] svg text")
                found = await texts.evaluate_all("nodes => nodes.map((n) => n.textContent)")
                return found or None

            assert any("e-" in text for text in await until(labels, "the error plot"))
            # the header's badge says what the page shows (it stayed a green "live")
            assert await page.locator("#stream").inner_text() in ("replaying", "finished")
            await page.set_viewport_size({"width": 390, "height": 800})  # a phone

            async def fits():
                width = await page.evaluate("document.documentElement.scrollWidth")
                return width if width <= 390 else None

            await until(fits, "the page to fit a 390 px phone without sideways scrolling")
            title = page.locator("[data-product='SUB-USD'] h2")
            assert (await title.bounding_box())["height"] < 30  # "SUB-USD" on one line
            await keep_screenshot_and_close(page, problems, "dashboard-sub-cent.png")
        finally:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 30)

    loop.run_until_complete(scenario())
