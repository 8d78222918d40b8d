"""Replay: recorded bars through the live per-product code, a forecast at every bar close."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal as D

import numpy as np

from ovcast.market.aggregator import Bar
from ovcast.market.features import compute_features
from ovcast.market.recording import Recording


def record_bars(path, n=300):
    t = np.arange(n)
    close = 100 + 3 * np.sin(2 * np.pi * t / 24)
    with Recording(path) as rec:
        for i in t:
            c = D(f"{close[i]:.4f}")
            rec.add_bar(
                "BTC-USD", Bar(60 * int(i), c, c + D("0.1"), c - D("0.1"), c, D("2.5") + i % 3, 5)
            )
    return close


def replay(*args):
    return subprocess.run(
        [sys.executable, "-m", "ovcast", "replay", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_replay_forecasts_at_every_bar_after_warmup(tmp_path, market_package):
    close = record_bars(tmp_path / "run.db")
    before = (tmp_path / "run.db").read_bytes()
    first = replay(tmp_path / "run.db", "--model", market_package)
    assert first.returncode == 0, first.stderr
    records = [json.loads(line) for line in first.stdout.splitlines()]
    assert len(records) == 300 - (25 + 64 - 1)  # MACD warm-up (26 bars), then a 64-bar window
    last = records[-1]
    assert (
        last["product"] == "BTC-USD"
        and last["model"] == "market"
        and last["bar_time_s"] == 60 * 299
    )
    assert (
        np.diff(last["forecast_time_s"]).tolist() == [60] * 15
        and last["forecast_time_s"][0] == 60 * 300
    )
    assert "fitted on the first 300 bars" in first.stderr  # said so...
    assert (tmp_path / "run.db").read_bytes() == before  # ...but a reader never writes

    # The same numbers as doing it by hand: features -> scaler -> engine -> prices.
    from ovcast import Engine
    from ovcast.pipeline.stream import fit_market_scaler

    with Recording(tmp_path / "run.db", readonly=True) as rec:
        scaler = fit_market_scaler(rec.bars("BTC-USD"))
    assert [c["kind"] for c in scaler.to_dict()["channels"]][4] == "identity"
    high, low = close + 0.1, close - 0.1
    volume = 2.5 + np.arange(300) % 3
    rows = compute_features(high, low, np.round(close, 4), volume)
    forecast = Engine(market_package).predict(scaler.transform(rows[-64:]))
    expected = scaler.inverse_transform(forecast[:, :1], channels=[0])[:, 0]
    np.testing.assert_allclose(last["forecast_close"], expected, rtol=1e-5)

    second = replay(tmp_path / "run.db", "--model", market_package, "--out", tmp_path / "f.jsonl")
    assert second.returncode == 0
    again = json.loads((tmp_path / "f.jsonl").read_text().splitlines()[-1])
    assert again["forecast_close"] == last["forecast_close"]  # the same scaler every run


def test_replay_refuses_a_model_with_other_channels(tmp_path, small_package):
    record_bars(tmp_path / "run.db", n=120)
    result = replay(tmp_path / "run.db", "--model", small_package)
    assert result.returncode == 1 and "feeds 7 channels" in result.stderr


def test_replay_interleaves_products_in_bar_time_and_paces_after_warmup(tmp_path, market_package):
    """Two products as they happened, one bar time after the other; only forecasting bars wait."""
    import threading

    from ovcast import Engine
    from ovcast.market.synthetic import synthetic_bars
    from ovcast.pipeline.replay import Pace
    from ovcast.pipeline.replay import replay as run_replay

    with Recording(tmp_path / "two.db") as rec:
        for seed, product in enumerate(("BTC-USD", "ETH-USD")):
            for bar in synthetic_bars(100, end_s=60 * 100 + 60 * seed, seed=seed):
                rec.add_bar(product, bar)  # ETH's bars start a minute later
    waits: list[int] = []

    stop = threading.Event()

    class CountingPace(Pace):
        def wait(self, stop: threading.Event) -> bool:
            waits.append(1)
            if len(waits) == 5:
                stop.set()  # as SIGINT/SIGTERM would
            return not stop.is_set()

    records: list[dict] = []
    with Recording(tmp_path / "two.db") as rec:
        streams = run_replay(
            rec, Engine(market_package), sink=records.append,
            pace=CountingPace(60, 1.0), stop=stop,
        )  # fmt: skip
    times = [(r["bar_time_s"], r["product"]) for r in records]
    assert times == sorted(times)  # interleaved by bar time, BTC before ETH at equal times
    assert {p for _, p in times} == {"BTC-USD", "ETH-USD"}
    assert len(waits) == 5  # a wait per bar time once forecasting, none during warm-up
    assert streams["BTC-USD"].bars + streams["ETH-USD"].bars < 200  # stopped early, as asked


def test_an_unpaced_replay_stops_at_the_next_bar_when_asked(tmp_path, market_package):
    """Ctrl-C/SIGTERM set the stop event: a long fast replay ends at the next bar."""
    import threading

    from ovcast import Engine
    from ovcast.pipeline.replay import replay as run_replay

    record_bars(tmp_path / "run.db")
    stop, records = threading.Event(), []

    def sink(record: dict) -> None:
        records.append(record)
        if len(records) == 3:
            stop.set()

    with Recording(tmp_path / "run.db") as rec:
        run_replay(rec, Engine(market_package), sink=sink, stop=stop)
    assert len(records) == 3


def test_replay_never_runs_a_window_across_a_hole(tmp_path, market_package, caplog):
    """A recording with missing minutes (an outage before the fix, a hand-made file) and a
    bar priced 1e400 (finite as a Decimal, infinite as a float: it crashed replay and every
    restart). A short hole counts as partial bars in partial_in_window; a hole longer than
    the window restarts the warm-up after it; the unusable bar is a one-bar hole."""
    import sqlite3

    from ovcast import Engine
    from ovcast.pipeline.replay import ReplayProgress
    from ovcast.pipeline.replay import replay as run_replay

    path = tmp_path / "holes.db"
    record_bars(path, n=500)
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM bars WHERE start_s BETWEEN ? AND ?", (60 * 150, 60 * 159))
        db.execute("DELETE FROM bars WHERE start_s BETWEEN ? AND ?", (60 * 250, 60 * 319))
        db.execute("UPDATE bars SET close = '1e400', high = '1e400' WHERE start_s = ?", (60 * 450,))
    records: list[dict] = []
    progress = ReplayProgress(str(path))
    with Recording(path, readonly=True) as rec:
        shown: list[int] = []  # what the dashboard gets: never the unusable bar
        run_replay(
            rec,
            Engine(market_package),
            sink=records.append,
            progress=progress,
            on_bar=lambda product, bar: shown.append(bar.start_s // 60),
        )
    assert 449 in shown and 450 not in shown and 451 in shown
    by_time = {r["bar_time_s"] // 60: r for r in records}
    assert by_time[149]["partial_in_window"] == 0
    assert by_time[160]["partial_in_window"] == 10  # the ten missing minutes, marked
    assert by_time[222]["partial_in_window"] == 1 and by_time[223]["partial_in_window"] == 0
    assert not {b for b in by_time if 150 <= b < 160 or 250 <= b < 320}  # none for missing bars
    # 70 missing (more than the 64-bar window): MACD's 26 bars and a window after it
    assert min(b for b in by_time if b >= 250) == 320 + 25 + 63
    assert by_time[449]["partial_in_window"] == 0 and by_time[450]["partial_in_window"] == 1
    assert progress.summary()["holes"] == 3 and progress.summary()["missing_bars"] == 81
    assert "70 bars missing" in caplog.text and "(close 1E+400) is out of range" in caplog.text


def test_an_out_of_range_bar_is_skipped_and_the_other_products_go_on(tmp_path, market_package):
    """A corrupt 1e200 close (finite as a float64, beyond the model's float32): replay went
    down with it (scaler, window, scorecard sums all inf, numpy warnings first)."""
    path = tmp_path / "huge.db"
    record_bars(path, n=200)
    with Recording(path) as rec:
        for i in range(200):
            c = D("1e200") if i == 150 else D("0.000123") + D(i % 7) / 10**7
            rec.add_bar("SUB-USD", Bar(60 * i, c, c, c, c, D(1), 3))
    result = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-m", "ovcast", "replay", str(path)]
        + ["--model", str(market_package), "--scorecard", str(tmp_path / "card.json")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "SUB-USD: the bar at 9000 (close 1E+200) is out of range" in result.stderr
    assert "RuntimeWarning" not in result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert {r["product"] for r in records} == {"BTC-USD", "SUB-USD"}
    sub = [r for r in records if r["product"] == "SUB-USD"]
    assert all(np.isfinite(r["forecast_close"]).all() for r in sub)
    # sub-cent forecasts keep their significant digits (8 decimals left 3-4 of them)
    assert any(
        len(f"{abs(v):.12e}".split("e")[0].rstrip("0")) > 6 for v in sub[0]["forecast_close"]
    )
    card = json.loads((tmp_path / "card.json").read_text())
    assert "SUB-USD" in json.dumps(card) and "Infinity" not in json.dumps(card)
