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
         "column 'close' is empty"),
        (lambda t: pa.concat_tables([t, t.slice(0, 1)]), "repeats; one row per series"),
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


def batch(tmp_path, small_package, source, out=None, *extra: str) -> int:
    out = out or tmp_path / "out.parquet"
    return main(["forecast-batch", str(source), "--model", str(small_package), "--out", str(out),
                 *extra])  # fmt: skip


def write_csv(path, text: str | bytes):
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_every_bad_input_gets_one_clear_line(tmp_path, small_package, capsys):
    """Inputs real exports have: each refused with a line naming what is wrong, no traceback."""
    good = series_table({"a": CONTEXT + 2}).sort_by("date")
    zero_rows = tmp_path / "zero.parquet"
    pq.write_table(good.slice(0, 0), zero_rows)
    text = good.set_column(2, "close", pa.array(["abc"] + [str(v) for v in good["close"][1:]]))
    pq.write_table(text, tmp_path / "text.parquet")
    folder = tmp_path / "folder"
    folder.mkdir()
    pq.write_table(good, folder / "part-0.parquet")
    (folder / "notes.txt").write_text("not parquet")
    dates = "series_id,date,close,volume,rsi\na,2024-01-01,1,2,3\na,yesterday,1,2,3\n"
    cases = [
        (write_csv(tmp_path / "header.csv", "series_id,date,close,volume,rsi\n"), (), "no rows"),
        (zero_rows, (), "has no rows"),
        (
            write_csv(
                tmp_path / "latin1.csv",
                "series_id,date,close,volume,rsi,caf\xe9\n".encode("latin-1"),
            ),
            (),
            "not UTF-8",
        ),  # fmt: skip
        (tmp_path / "text.parquet", (), "column 'close' is string, not numbers"),
        (write_csv(tmp_path / "dates.csv", dates), (), "not an ISO 8601 time"),
        (
            write_csv(tmp_path / "no-date.csv", dates.replace("yesterday", "")),
            (),
            "1 empty timestamp",
        ),
        (tmp_path / "text.parquet", ("--id-column", "close"), "asked for in two roles"),
        (folder, (), "cannot read"),
    ]
    for source, extra, message in cases:
        assert batch(tmp_path, small_package, source, None, *extra) == 1, source
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.splitlines()) == 1, err


def test_categorical_ids_and_header_names_in_any_case_are_read(
    tmp_path, small_package, small_engine
):
    table = series_table({"a": CONTEXT + 1, "b": CONTEXT})
    cats = table.set_column(0, "series_id", table["series_id"].dictionary_encode())
    pq.write_table(cats.rename_columns([" Series_ID ", "DATE", "Close", "volume", "RSI"]),
                   tmp_path / "in.parquet")  # fmt: skip
    assert batch(tmp_path, small_package, tmp_path / "in.parquet") == 0
    got = pq.read_table(tmp_path / "out.parquet")
    forecast, _ = expected(small_engine, table, "a")
    rows = got.filter(pa.compute.equal(got[" Series_ID "], "a"))
    values = np.stack([rows[c].to_numpy() for c in CHANNELS], -1).reshape(2, HORIZON, 3)
    np.testing.assert_array_equal(values, forecast)


def test_empty_ids_are_refused_alike_in_csv_and_parquet(tmp_path, small_package, capsys):
    table = series_table({"a": CONTEXT + 2}).sort_by("date")
    ids = table["series_id"].to_pylist()
    ids[5] = None
    with_null = table.set_column(0, "series_id", pa.array(ids, pa.string()))
    pq.write_table(with_null, tmp_path / "in.parquet")
    pa.csv.write_csv(with_null, tmp_path / "in.csv")
    for source in ("in.parquet", "in.csv"):
        assert batch(tmp_path, small_package, tmp_path / source) == 1
        assert "column 'series_id' has empty series ids (1 rows)" in capsys.readouterr().err


def test_when_no_series_is_long_enough_nothing_is_written_and_the_exit_is_1(
    tmp_path, small_package, capsys
):
    pq.write_table(series_table({"a": CONTEXT - 1, "b": 3}), tmp_path / "in.parquet")
    assert batch(tmp_path, small_package, tmp_path / "in.parquet") == 1
    assert "no series has a full window: all 2 have fewer than 64 rows" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [tmp_path / "in.parquet"]


def test_out_equal_to_the_input_is_refused(tmp_path, small_package, capsys):
    source = tmp_path / "in.parquet"
    pq.write_table(series_table({"a": CONTEXT}), source)
    before = source.read_bytes()
    assert batch(tmp_path, small_package, source, tmp_path / "." / "in.parquet") == 1
    assert "would overwrite the input" in capsys.readouterr().err
    assert source.read_bytes() == before


def test_a_failed_or_interrupted_run_leaves_the_previous_output_and_no_partial_file(
    tmp_path, small_package, monkeypatch, capsys
):
    import os
    import signal

    from ovcast.batch import forecast

    source, out = tmp_path / "in.csv", tmp_path / "out.csv"
    pa.csv.write_csv(series_table({"a": CONTEXT + 20, "b": CONTEXT + 20}), source)
    out.write_text("the previous run's forecasts\n")
    real = forecast.forecast_series

    def fail_on_the_second_series(fault):
        calls = []

        def forecast_series(engine, spec, series_id, rows):
            calls.append(series_id)
            if len(calls) == 2:
                fault()
            yield from real(engine, spec, series_id, rows)

        return forecast_series

    def interrupt():
        raise KeyboardInterrupt

    def terminate():  # SIGTERM, delivered to this process while it writes
        os.kill(os.getpid(), signal.SIGTERM)

    for fault, code in ((interrupt, 130), (terminate, 128 + signal.SIGTERM)):
        monkeypatch.setattr(forecast, "forecast_series", fail_on_the_second_series(fault))
        try:
            result = batch(tmp_path, small_package, source, out, "--batch-size", "4")
        except SystemExit as exc:
            result = exc.code
        assert result == code
        assert out.read_text() == "the previous run's forecasts\n"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "out.csv"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # put back


def test_a_value_beyond_float32_names_its_series(tmp_path, small_package, capsys):
    table = series_table({"a": CONTEXT + 2}).sort_by("date")
    close = table["close"].to_numpy().astype(np.float64)  # finite in float64, not in float32
    close[7] = 1e39
    pq.write_table(table.set_column(2, "close", pa.array(close)), tmp_path / "in.parquet")
    assert batch(tmp_path, small_package, tmp_path / "in.parquet") == 1
    err = capsys.readouterr().err
    assert "series 'a': row 7 of the series, column 'close' is 1e+39" in err, err
    assert "beyond float32's range" in err
