"""The scorecard where users meet it: live (kept in the recording, continued after a
restart), `ovcast replay`'s summary and --scorecard file, the dashboard state and
/api/scorecard, and replay's one status line."""

from __future__ import annotations

import asyncio
import http.client
import io
import json
import logging
import shutil
import subprocess
import sys
import types
from decimal import Decimal as D

import numpy as np
import pytest
from fake_coinbase import FakeCoinbase
from live_process import seed_candles
from test_market_pipeline import MINUTE, start

from ovcast.cli._status import CLEAR, StatusLine
from ovcast.dashboard import DashboardServer, DashboardState
from ovcast.market.aggregator import Bar
from ovcast.market.clock import ManualClock
from ovcast.market.recording import Recording
from ovcast.pipeline.scorecard import RULES, Scorecard


def expected_scores(records: list[dict], bars: dict[int, Bar], interval_s: int = 60) -> dict:
    """Scored by hand from the forecast records and the bars: for every forecast step whose
    bar exists, the model's and the random walk's absolute errors (partial bars skipped)."""
    model, random_walk, skipped, forecasts = [], [], 0, 0
    for record in records:
        scored = False
        for step, forecast in enumerate(record["forecast_close"], start=1):
            bar = bars.get(record["bar_time_s"] + step * interval_s)
            if bar is None:
                continue
            if bar.partial:
                skipped += 1
                continue
            model.append(abs(forecast - float(bar.close)))
            random_walk.append(abs(record["bar_close"] - float(bar.close)))
            scored = True
        forecasts += scored
    return {
        "scored": len(model),
        "model": float(np.mean(model)),
        "random_walk": float(np.mean(random_walk)),
        "skipped": skipped,
        "forecasts": forecasts,
    }


# -- live --------------------------------------------------------------------------------------
def test_live_scores_its_forecasts_keeps_the_card_in_the_recording_and_goes_on_after_a_restart(
    tmp_path, market_package
):
    m, clock = MINUTE, ManualClock(MINUTE + 10.0)  # the exchange's clock, moved by the test

    async def scenario():
        async with FakeCoinbase(clock=clock.time) as fake:
            seed_candles(fake, m, n=300)
            h = await start(tmp_path, market_package, fake, clock)
            for k in range(4):  # a trade in each minute, then the minute closes
                await fake.trade("BTC-USD", f"{100 + k}.5", "1", t=m + 60 * k + 20)
                await h.settle(trades=k + 1)
                await h.advance(60)
            scorecard = h.pipeline.streams["BTC-USD"].scorecard
            live = scorecard.summary()
            status = h.pipeline.status_line()
            with Recording(tmp_path / "live.db", readonly=True) as rec:
                stored = rec.meta("scorecard:BTC-USD")
            await h.finish()
            again = await start(tmp_path, market_package, fake, clock)  # a restart
            resumed = again.pipeline.streams["BTC-USD"].scorecard.summary()
            # The next bar scores the forecasts that were in flight when the first run ended.
            await fake.trade("BTC-USD", "104.5", "1", t=m + 240 + 20)
            await again.settle(trades=1)
            await again.advance(60)
            after = again.pipeline.streams["BTC-USD"].scorecard.summary()
            await again.finish()
            return h.records + again.records, live, status, stored, resumed, after

    records, live, status, stored, resumed, after = asyncio.run(scenario())
    assert [r["bar_time_s"] for r in records] == [m, m + 60, m + 120, m + 180, m + 240]
    with Recording(tmp_path / "live.db", readonly=True) as rec:
        every_bar = {b.start_s: b for b in rec.bars("BTC-USD")}
    bars = {start: bar for start, bar in every_bar.items() if start <= m + 180}
    expected = expected_scores(records[:4], bars)
    assert (expected["scored"], expected["forecasts"]) == (6, 3)  # 3 + 2 + 1 steps
    assert live["all"]["scored"] == 6 and live["forecasts"] == 3 and live["model"] == "market"
    assert live["all"]["mae"]["model"] == pytest.approx(expected["model"])
    assert live["all"]["mae"]["random_walk"] == pytest.approx(expected["random_walk"])
    assert f"scorecard 3 forecasts, 6 steps: MAE {live['all']['mae']['model']:.4g}" in status
    assert stored["cards"]["market"]["steps"][:3] == [3, 2, 1]  # stored as it was scored
    assert resumed["forecasts"] == 3 and resumed["all"]["scored"] == 6  # the restart goes on
    assert resumed["all"]["mae"] == live["all"]["mae"] and resumed["pending"] == 4
    assert stored["pending"][0]["origin_s"] == m  # the forecasts in flight are kept too
    expected = expected_scores(records, every_bar)  # step 4, 3, 2 and 1 of the four
    assert (after["all"]["scored"], after["forecasts"]) == (expected["scored"], 4) == (10, 4)
    assert after["all"]["mae"]["model"] == pytest.approx(expected["model"])
    assert after["all"]["mae"]["random_walk"] == pytest.approx(expected["random_walk"])


# -- replay ------------------------------------------------------------------------------------
def record_market(path, n: int = 260) -> dict[int, Bar]:
    """Minute bars with a partial one, quiet (filled) ones and a three-minute hole."""
    t = np.arange(n)
    close = 100 + 3 * np.sin(2 * np.pi * t / 24) + 0.01 * t
    bars = {}
    with Recording(path) as rec:
        for i in t:
            if 200 <= i < 203:
                continue  # a hole: nothing recorded, nothing scored against it
            c = D(f"{close[i]:.4f}")
            quiet = i % 40 == 5
            bar = Bar(60 * int(i), c, c + D("0.1"), c - D("0.1"), c, D("2.5"), 5)
            if quiet:
                bar = Bar(60 * int(i), c, c, c, c, D(0), 0, filled=True)
            bar.partial = i == 150
            rec.add_bar("BTC-USD", bar)
            bars[bar.start_s] = bar
    return bars


def test_replay_scores_a_recorded_day_offline(tmp_path, market_package):
    bars = record_market(tmp_path / "day.db")
    done = subprocess.run(
        [sys.executable, "-m", "ovcast", "replay", str(tmp_path / "day.db"), "--model",
         str(market_package), "--out", str(tmp_path / "f.jsonl"),
         "--scorecard", str(tmp_path / "score.json")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in (tmp_path / "f.jsonl").read_text().splitlines()]
    expected = expected_scores(records, bars)
    document = json.loads((tmp_path / "score.json").read_text())
    assert document["rules"] == RULES and document["source"].startswith("replay of ")
    card = document["products"]["BTC-USD"]
    assert card["all"]["scored"] == expected["scored"] > 1000
    assert card["forecasts"] == expected["forecasts"]
    assert card["skipped_partial"] == expected["skipped"] == 16  # the partial bar, each step
    assert card["all"]["mae"]["model"] == pytest.approx(expected["model"])
    assert card["all"]["mae"]["random_walk"] == pytest.approx(expected["random_walk"])
    assert [b["steps"] for b in card["buckets"]] == ["1", "2-5", "6-15", "16"]
    # stderr: the one status line (not a terminal: a plain line), then the table
    assert f"finished 257/257 bars, {len(records)} forecasts" in done.stderr
    assert f"BTC-USD, model market: {expected['forecasts']} forecasts scored over" in done.stderr
    assert "(16 steps skipped)" in done.stderr and card["verdict"] in done.stderr
    assert not any(line.startswith("{") for line in done.stderr.splitlines())


def test_replay_refuses_a_scorecard_file_it_could_not_write(tmp_path, market_package):
    record_market(tmp_path / "day.db", n=10)
    for target, said in (
        (tmp_path / "missing" / "s.json", "does not exist"),
        (tmp_path / "day.db", "must not be the RECORDING"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "ovcast", "replay", str(tmp_path / "day.db"), "--model",
             str(market_package), "--scorecard", str(target)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 1 and said in done.stderr and done.stdout == ""
        assert len(done.stderr.strip().splitlines()) == 1


# -- the dashboard -----------------------------------------------------------------------------
def test_status_and_api_scorecard_give_each_products_card(tmp_path):
    card = Scorecard("BTC-USD")
    card.add_bar(0, 100.0)
    card.add_forecast(0, np.array([101.0, 99.0]), np.array([99.0, 100.0]), model="m")
    card.add_bar(60, 100.5)

    class Stream:
        scorecard = card

    class Warming:
        scorecard = None

    from ovcast.pipeline.scorecard import summaries

    state = DashboardState(
        model=lambda: {"name": "m"},
        feed=lambda: {"connected": True},
        scorecards=lambda: summaries({"BTC-USD": Stream(), "ETH-USD": Warming()}),
    )
    assert state.status()["scorecard"] == {"BTC-USD": card.summary()}
    server = DashboardServer(state, "127.0.0.1", 0)
    server.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("GET", "/api/scorecard")
        response = conn.getresponse()
        body = json.loads(response.read())
    finally:
        server.close()
    assert response.status == 200 and body["rules"] == RULES
    assert body["products"]["BTC-USD"]["all"]["mae"]["model"] == 0.5
    assert list(body["products"]) == ["BTC-USD"]  # a product still warming up has none
    assert DashboardState(model=dict, feed=dict).status()["scorecard"] == {}


# -- the status line ---------------------------------------------------------------------------
class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_status_line_is_one_line_on_a_terminal_and_log_lines_print_above_it():
    now = [0.0]
    screen = Terminal()
    root = logging.getLogger()
    handler = logging.StreamHandler(screen)
    root.addHandler(handler)
    try:
        with StatusLine(screen, clock=lambda: now[0]) as status:
            status.show("1 of 9")
            status.show("2 of 9")  # too soon: not redrawn
            now[0] = 1.0
            status.show("3 of 9")
            logging.getLogger("ovcast.test").warning("a hole")  # clears the line first
            status.show("4 of 9")  # redrawn at once after a log line
    finally:
        root.removeHandler(handler)
    assert screen.getvalue() == (f"{CLEAR}1 of 9{CLEAR}3 of 9{CLEAR}a hole\n{CLEAR}4 of 9\n")
    assert not handler.filters  # the filter goes with the status line


def test_the_status_line_is_a_plain_line_now_and_then_elsewhere():
    now = [0.0]
    log_file = io.StringIO()
    with StatusLine(log_file, every_s=10, clock=lambda: now[0]) as status:
        for second in range(25):
            now[0] = float(second)
            status.show(f"at {second}")
        status.show("done", now=True)
    assert log_file.getvalue().splitlines() == ["at 0", "at 10", "at 20", "done"]


def test_the_status_line_keeps_the_scorecard_on_a_narrow_terminal(monkeypatch):
    """On 80 columns the line was cut right after the product: the scorecard never showed."""
    import os

    from ovcast.cli.replay_cmd import _status_text
    from ovcast.pipeline.replay import ReplayProgress

    card = Scorecard("DEMO-USD", interval_s=60)
    card.add_forecast(0, np.array([101.0, 102.0]), np.array([99.0, 100.0]), model="m")
    card.add_bar(60, 100.5)
    progress = ReplayProgress("demo", total_bars=1440, replayed_bars=1200)
    stream = types.SimpleNamespace(forecasts=1100, scorecard=card, holes=0, hole_bars=0)
    progress.streams = {"DEMO-USD": stream}
    texts = _status_text(progress, "http://127.0.0.1:8765/")
    monkeypatch.setattr(shutil, "get_terminal_size", lambda: os.terminal_size((80, 24)))
    screen = Terminal()
    with StatusLine(screen) as status:
        status.show(*texts)
    line = screen.getvalue().strip().removeprefix(CLEAR)
    assert len(texts[0]) >= 80 and len(line) < 80, (texts, line)
    assert "DEMO-USD MAE" in line and "random walk" in line and "…" not in line
