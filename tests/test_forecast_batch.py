"""ovcast forecast-batch without Ray: every window of many series, equal to Engine.predict.

The Ray Data path is checked against this one on a real two-node cluster in test_ray.py.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401 - pa.compute
import pyarrow.csv  # noqa: F401 - pa.csv
import pyarrow.parquet as pq
import pytest
from conftest import random_windows

from ovcast.cli import main

CONTEXT, HORIZON, CHANNELS = 64, 16, ["close", "volume", "rsi"]


def series_table(lengths: dict[str, int], *, seed: int = 0, hours: int = 1) -> pa.Table:
    """Series of the given lengths, hourly, rows of all series interleaved (as in a real export)."""
    rng = np.random.default_rng(seed)
    parts = []
    for k, (name, n) in enumerate(lengths.items()):
        values = random_windows(1, n, len(CHANNELS), seed=seed + k)[0]
        start = np.datetime64("2024-01-01T00:00:00") + np.timedelta64(k, "m")
        times = start + np.arange(n) * np.timedelta64(hours, "h")
        parts.append(
            {"series_id": [name] * n, "date": times, **dict(zip(CHANNELS, values.T, strict=True))}
        )
    table = pa.concat_tables([pa.table(p) for p in parts])
    return table.take(pa.array(rng.permutation(table.num_rows)))  # order in the file: any


def expected(engine, table: pa.Table, name: str, stride: int = 1):
    rows = table.filter(pa.compute.equal(table["series_id"], name)).sort_by("date")
    values = np.column_stack([rows[c].to_numpy() for c in CHANNELS]).astype(np.float32)
    ends = np.arange(CONTEXT - 1, len(values), stride)
    windows = np.stack([values[e - CONTEXT + 1 : e + 1] for e in ends])
    return engine.predict(windows), rows["date"].to_numpy()[ends]


def test_every_window_of_every_series_equals_engine_predict(tmp_path, small_package, small_engine):
    table = series_table({"b": CONTEXT + 40, "a": CONTEXT + 9, "short": CONTEXT - 1})
    pq.write_table(table, tmp_path / "in.parquet")
    out = tmp_path / "out.parquet"
    code = main(["forecast-batch", str(tmp_path / "in.parquet"), "--model", str(small_package),
                 "--out", str(out), "--batch-size", "7"])  # fmt: skip
    assert code == 0
    got = pq.read_table(out)
    assert got.column_names == ["series_id", "origin", "date", "step", *CHANNELS]
    assert set(got["series_id"].to_pylist()) == {"a", "b"}  # "short" has no full window
    for name, windows in (("a", 10), ("b", 41)):
        rows = got.filter(pa.compute.equal(got["series_id"], name))
        forecast, origins = expected(small_engine, table, name)
        assert rows.num_rows == windows * HORIZON
        values = np.stack([rows[c].to_numpy() for c in CHANNELS], -1).reshape(windows, HORIZON, 3)
        np.testing.assert_array_equal(values, forecast)  # exactly: the same engine, same batches
        np.testing.assert_array_equal(rows["origin"].to_numpy()[::HORIZON], origins)
        steps = rows["step"].to_numpy().reshape(windows, HORIZON)
        assert (steps == np.arange(1, HORIZON + 1)).all()
        hours = (rows["date"].to_numpy() - rows["origin"].to_numpy()) / np.timedelta64(1, "h")
        assert (hours.reshape(windows, HORIZON) == steps).all()


def test_csv_in_and_out_stride_and_raw(tmp_path, small_package, small_engine):
    table = series_table({"x": CONTEXT + 30}, seed=3)
    raw = table.set_column(3, "volume", pa.compute.abs(table["volume"]))  # log-scaled: >= 0
    pa.csv.write_csv(
        raw.select(["date", "volume", "series_id", "close", "rsi"]), tmp_path / "in.csv"
    )
    out = tmp_path / "out.csv"
    assert main(["forecast-batch", str(tmp_path / "in.csv"), "--model", str(small_package),
                 "--out", str(out), "--stride", "10", "--raw"]) == 0  # fmt: skip
    got = pa.csv.read_csv(out)
    rows = raw.sort_by("date")
    values = np.column_stack([rows[c].to_numpy() for c in CHANNELS]).astype(np.float32)
    ends = np.arange(CONTEXT - 1, len(values), 10)
    want = small_engine.forecast(np.stack([values[e - CONTEXT + 1 : e + 1] for e in ends]))
    values = np.stack([got[c].to_numpy() for c in CHANNELS], -1).reshape(len(ends), HORIZON, 3)
    np.testing.assert_allclose(values, want, rtol=1e-6)  # CSV prints floats in decimal


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda t: t.drop_columns(["rsi"]), "no column(s) ['rsi']"),
        (lambda t: t.set_column(2, "close", pa.array([None] + t["close"].to_pylist()[1:])),
         "column 'close' is nan"),
        (lambda t: pa.concat_tables([t, t.slice(0, 1)]), "timestamps repeat"),
    ],
    ids=["missing channel", "empty cell", "repeated time"],
)  # fmt: skip
def test_bad_input_is_refused_with_what_was_expected(
    tmp_path, small_package, capsys, change, message
):
    table = series_table({"a": CONTEXT + 2}).sort_by("date")
    pq.write_table(change(table), tmp_path / "in.parquet")
    code = main(["forecast-batch", str(tmp_path / "in.parquet"), "--model", str(small_package),
                 "--out", str(tmp_path / "out.parquet")])  # fmt: skip
    assert code == 1
    assert message in capsys.readouterr().err


def test_without_ray_installed_both_ray_commands_say_which_extra(
    tmp_path, small_package, capsys, monkeypatch
):
    import sys

    pq.write_table(series_table({"a": CONTEXT}), tmp_path / "in.parquet")
    for name in ("ray", "ray.data", "ray.serve"):
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    code = main(["forecast-batch", str(tmp_path / "in.parquet"), "--model", str(small_package),
                 "--out", str(tmp_path / "o.parquet"), "--ray"])  # fmt: skip
    assert code == 1
    assert "[ray]'" in capsys.readouterr().err  # the pip command that adds the ray extra
    assert main(["serve", "--mode", "ray", "--model", str(small_package)]) == 1
    assert "[ray]'" in capsys.readouterr().err


def test_a_recording_forecasts_each_product_from_its_market_channels(tmp_path, market_package):
    from decimal import Decimal

    from ovcast import Engine
    from ovcast.market.aggregator import Bar
    from ovcast.market.features import compute_features, warmup_bars
    from ovcast.market.recording import Recording

    rng = np.random.default_rng(2)
    bars = 64 + warmup_bars() + 4
    with Recording(tmp_path / "run.db") as recording:
        for product in ("BTC-USD", "ETH-USD"):
            close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, bars)))
            for k, c in enumerate(close):
                price = Decimal(f"{c:.2f}")
                recording.add_bar(
                    product, Bar(60 * k, price, price + 1, price - 1, price, Decimal("2.5"), 3)
                )
    out = tmp_path / "out.parquet"
    assert main(["forecast-batch", str(tmp_path / "run.db"), "--model", str(market_package),
                 "--out", str(out)]) == 0  # fmt: skip
    got = pq.read_table(out)
    assert set(got["series_id"].to_pylist()) == {"BTC-USD", "ETH-USD"}
    engine = Engine(market_package)
    with Recording(tmp_path / "run.db") as recording:
        b = recording.read_bars("ETH-USD")
    features = compute_features(b.high, b.low, b.close, b.volume)[warmup_bars() :].astype(
        np.float32
    )
    windows = np.stack([features[e - 63 : e + 1] for e in range(63, len(features))])
    rows = got.filter(pa.compute.equal(got["series_id"], "ETH-USD"))
    values = np.stack([rows[c].to_numpy() for c in engine.channel_names], -1)
    np.testing.assert_array_equal(values.reshape(len(windows), 16, 7), engine.predict(windows))
    minutes = (rows["time"].to_numpy() - rows["origin"].to_numpy()) / np.timedelta64(1, "m")
    assert (minutes == rows["step"].to_numpy()).all()  # one-minute bars
