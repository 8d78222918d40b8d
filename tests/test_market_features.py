"""Indicators and features checked against TA-Lib on the same bars, after warm-up."""

from __future__ import annotations

import numpy as np
import pytest

from ovcast.market.features import CHANNELS, FeatureConfig, compute_features, warmup_bars
from ovcast.market.indicators import EMA, RSI

talib = pytest.importorskip("talib", reason="TA-Lib (ta-lib on PyPI) is a test dependency")


@pytest.fixture
def bars():
    rng = np.random.default_rng(4)
    close = 30000 * np.exp(np.cumsum(rng.normal(0, 0.002, 800)))
    close[200:210] = close[199]  # a flat stretch: zero moves, as in quiet minutes
    high = close * (1 + rng.uniform(0, 0.001, 800))
    low = close * (1 - rng.uniform(0, 0.001, 800))
    volume = rng.exponential(3.0, 800)
    volume[300:305] = 0.0  # empty minutes
    return high, low, close, volume


def test_channels_match_talib(bars):
    high, low, close, volume = bars
    features = compute_features(high, low, close, volume)
    assert features.shape == (800, len(CHANNELS))
    np.testing.assert_array_equal(features[:, 0], close)
    np.testing.assert_allclose(features[:, 3], np.log1p(volume))

    rsi = talib.RSI(close, timeperiod=14) / 100
    assert np.isnan(features[:14, 4]).all() and not np.isnan(features[14:, 4]).any()
    np.testing.assert_allclose(features[14:, 4], rsi[14:], rtol=1e-9, atol=1e-12)

    line, signal, hist = talib.MACD(close, fastperiod=12, slowperiod=26, signalperiod=9)
    valid = ~np.isnan(signal)  # TA-Lib reports all three from bar 34 on
    np.testing.assert_allclose(features[valid, 5], line[valid], rtol=1e-9, atol=1e-9)

    log_returns = np.r_[np.nan, np.diff(np.log(close))]
    stddev = talib.STDDEV(log_returns, timeperiod=20, nbdev=1)  # population std
    np.testing.assert_allclose(features[21:, 6], stddev[21:], rtol=1e-7, atol=1e-12)


@pytest.mark.parametrize("output, index", [("signal", 1), ("histogram", 2)])
def test_macd_signal_and_histogram_selectable(bars, output, index):
    high, low, close, volume = bars
    features = compute_features(high, low, close, volume, FeatureConfig(macd_output=output))
    expected = talib.MACD(close, 12, 26, 9)[index]
    valid = ~np.isnan(expected)
    np.testing.assert_allclose(features[valid, 5], expected[valid], rtol=1e-9, atol=1e-9)
    assert not np.isnan(features[warmup_bars(FeatureConfig(macd_output=output)) :]).any()


def test_ema_and_rsi_edge_cases():
    ema = EMA(3)
    assert np.isnan(ema.update(1.0)) and np.isnan(ema.update(2.0))
    assert ema.update(3.0) == 2.0  # SMA seed
    assert ema.update(4.0) == 3.0  # 2 + (4 - 2) * 0.5
    rsi = RSI(2)
    values = [rsi.update(x) for x in (5.0, 5.0, 5.0, 5.0)]
    assert values[-1] == 0.0  # no movement at all: TA-Lib's 0, not a division by zero
    with pytest.raises(ValueError, match="macd_output"):
        FeatureConfig(macd_output="fast")


def test_features_cli_fills_gaps_and_matches(tmp_path, bars):
    from ovcast.cli import main

    high, low, close, volume = bars
    lines = ["time,open,high,low,close,volume"]
    for i in range(800):
        if 400 <= i < 403:
            continue  # three empty minutes
        stamp = f"2024-01-01T{i // 60:02d}:{i % 60:02d}:00Z" if i < 1440 else ""
        lines.append(f"{stamp},{close[i]},{high[i]},{low[i]},{close[i]},{volume[i]}")
    (tmp_path / "c.csv").write_text("\n".join(lines))
    assert main(["-q", "features", str(tmp_path / "c.csv"), "--out", str(tmp_path / "f.csv")]) == 0
    rows = (tmp_path / "f.csv").read_text().splitlines()
    assert rows[0] == "time,close,high,low,volume,rsi,macd,volatility,filled,partial"
    assert len(rows) == 801
    assert [r.split(",")[-2:] for r in rows[401:404]] == [["1", "0"]] * 3  # filled, not partial
    filled_close = {float(r.split(",")[1]) for r in rows[401:404]}
    assert filled_close == {float(f"{close[399]:.10g}")}  # flat at the previous close
    assert rows[1].split(",")[5] == ""  # RSI warming up: empty, not 0


def test_ohlcv_errors(tmp_path):
    from ovcast.errors import DataError
    from ovcast.market.bars import parse_time, read_ohlcv_csv

    (tmp_path / "a.csv").write_text("time,open,high,low,close\n0,1,1,1,1\n")
    with pytest.raises(DataError, match="lacks column"):
        read_ohlcv_csv(tmp_path / "a.csv")
    (tmp_path / "b.csv").write_text("time,open,high,low,close,volume\n0,1,1,1,1,1\n90,1,1,1,1,x\n")
    with pytest.raises(DataError, match="non-numeric"):
        read_ohlcv_csv(tmp_path / "b.csv")
    with pytest.raises(DataError, match="cannot parse time"):
        parse_time("yesterday")
    assert parse_time("2024-01-01T00:00:30.123456789Z") == parse_time("1704067230")
