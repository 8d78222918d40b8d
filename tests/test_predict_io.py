"""Forgiving predict I/O: long series, named and reordered columns, labelled forecasts.

The small package takes 64 steps of channels (close, volume, rsi) and forecasts 16.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import warnings

import numpy as np
import pytest

from ovcast import InvalidInputError
from ovcast.cli import main
from ovcast.runtime.series import ForecastTable, Series, future_timestamps, read_series

CHANNELS = ["close", "volume", "rsi"]


def series_values(rows: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack(
        [
            100 + np.cumsum(rng.standard_normal(rows)),
            rng.uniform(1, 5, rows),
            rng.uniform(0.2, 0.8, rows),
        ]
    )


def write_csv(path, header, stamps, values) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        if header:
            writer.writerow(header)
        for stamp, row in zip(stamps, values, strict=True):
            writer.writerow(([stamp] if stamp is not None else []) + [f"{v:.9g}" for v in row])


def hourly(rows: int) -> list[str]:
    start = np.datetime64("2024-03-01T00:00")
    return [str(start + np.timedelta64(h, "h")).replace("T", " ") for h in range(rows)]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ovcast", *args], capture_output=True, text=True, check=False
    )


def test_a_longer_csv_uses_its_last_rows_and_says_so(tmp_path, small_package, small_engine):
    values = series_values(100)
    write_csv(tmp_path / "long.csv", ["date", *CHANNELS], hourly(100), values)
    result = run_cli("predict", str(small_package), "-i", str(tmp_path / "long.csv"), "--raw")
    assert result.returncode == 0, result.stderr
    assert "using the last 64 of 100 rows" in result.stderr
    out = json.loads(result.stdout)
    assert out["channels"] == CHANNELS
    # the future continues the hourly grid after the last input row (row 99)
    assert out["date"][0] == "2024-03-05 04:00:00" and out["date"][-1] == "2024-03-05 19:00:00"
    np.testing.assert_allclose(
        out["predictions"], small_engine.forecast(values[-64:].astype(np.float32)), rtol=1e-5
    )
    quiet = run_cli("-q", "predict", str(small_package), "-i", str(tmp_path / "long.csv"), "--raw")
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_columns_are_taken_by_name_in_any_order(tmp_path, small_package, small_engine):
    values = series_values(64, seed=1)
    shuffled = ["rsi", "extra", "close", "volume"]
    mixed = np.column_stack([values[:, 2], np.zeros(64), values[:, 0], values[:, 1]])
    write_csv(tmp_path / "mixed.csv", ["timestamp", *shuffled], hourly(64), mixed)
    out_csv = tmp_path / "forecast.csv"
    code = main(
        [
            "predict",
            str(small_package),
            "-i",
            str(tmp_path / "mixed.csv"),
            "--raw",
            "-o",
            str(out_csv),
        ]
    )
    assert code == 0
    rows = list(csv.reader(out_csv.open()))
    assert rows[0] == ["timestamp", *CHANNELS]
    assert rows[1][0] == "2024-03-03 16:00:00" and len(rows) == 1 + 16
    forecast = np.array([[float(v) for v in r[1:]] for r in rows[1:]])
    np.testing.assert_allclose(
        forecast, small_engine.forecast(values.astype(np.float32)), rtol=1e-5
    )


def test_without_header_or_timestamps_columns_go_by_position(tmp_path, small_package, small_engine):
    values = series_values(64, seed=2)
    write_csv(tmp_path / "plain.csv", None, [None] * 64, values)
    out_csv = tmp_path / "out.csv"
    assert (
        main(["predict", str(small_package), "-i", str(tmp_path / "plain.csv"), "-o", str(out_csv)])
        == 0
    )
    rows = list(csv.reader(out_csv.open()))
    assert rows[0] == ["step", *CHANNELS] and rows[1][0] == "1" and rows[-1][0] == "16"
    np.testing.assert_allclose(
        np.array([[float(v) for v in r[1:]] for r in rows[1:]]),
        small_engine.predict(values.astype(np.float32)),
        rtol=1e-5,
        atol=1e-6,
    )


@pytest.mark.parametrize(
    "header, rows, message",
    [
        (["date", "a", "b"], 64, "the model takes 3 channels ['close', 'volume', 'rsi']"),
        (["date", *CHANNELS], 40, "the input has 40 rows; the model needs 64"),
    ],
)
def test_unusable_series_are_one_clear_line(tmp_path, small_package, capsys, header, rows, message):
    width = len(header) - 1
    write_csv(tmp_path / "bad.csv", header, hourly(rows), series_values(rows)[:, :width])
    assert main(["predict", str(small_package), "-i", str(tmp_path / "bad.csv")]) == 1
    assert message in capsys.readouterr().err


def test_channels_by_name_json_and_parquet_outputs(tmp_path, small_package, small_engine):
    values = series_values(64, seed=3)
    write_csv(tmp_path / "w.csv", ["date", *CHANNELS], hourly(64), values)
    expected = small_engine.forecast(values.astype(np.float32))
    assert (
        main(
            [
                "predict",
                str(small_package),
                "-i",
                str(tmp_path / "w.csv"),
                "--raw",
                "--channels",
                "rsi,0",
                "-o",
                str(tmp_path / "f.json"),
            ]
        )
        == 0
    )
    out = json.loads((tmp_path / "f.json").read_text())
    assert out["channels"] == ["rsi", "close"] and len(out["date"]) == 16
    np.testing.assert_allclose(out["predictions"], expected[:, [2, 0]], rtol=1e-5)

    pq = pytest.importorskip("pyarrow.parquet", reason="Parquet output needs ovcast[parquet]")
    assert (
        main(
            [
                "predict",
                str(small_package),
                "-i",
                str(tmp_path / "w.csv"),
                "--raw",
                "-o",
                str(tmp_path / "f.parquet"),
            ]
        )
        == 0
    )
    table = pq.read_table(tmp_path / "f.parquet")
    assert table.column_names == ["date", *CHANNELS]
    np.testing.assert_allclose(table.column("volume").to_numpy(), expected[:, 1], rtol=1e-5)


def test_unknown_channel_or_output_kind_is_refused(tmp_path, small_package, capsys):
    write_csv(tmp_path / "w.csv", ["date", *CHANNELS], hourly(64), series_values(64))
    base = ["predict", str(small_package), "-i", str(tmp_path / "w.csv")]
    assert main([*base, "--channels", "price"]) == 1
    assert "channel 'price' is not one of ['close', 'volume', 'rsi']" in capsys.readouterr().err
    assert main([*base, "-o", str(tmp_path / "f.xlsx")]) == 1
    assert "expected one of ('.csv', '.json', '.npy', '.parquet')" in capsys.readouterr().err


def test_out_of_range_input_is_an_error_without_numpy_warnings(small_engine):
    window = np.full((64, 3), 1e300)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow RuntimeWarning would fail here
        with pytest.raises(InvalidInputError, match=r"beyond float32's range"):
            small_engine.predict(window)


def test_future_timestamps_follow_the_usual_step():
    stamps = np.array(
        ["2024-01-01T00:00", "2024-01-01T00:05", "2024-01-01T00:15", "2024-01-01T00:20"],
        "datetime64[s]",
    )
    future = future_timestamps(stamps, 2)  # the most common step (5 min), not the gap
    assert [str(t) for t in future] == ["2024-01-01T00:25:00", "2024-01-01T00:30:00"]
    assert future_timestamps(np.array([1.0, 2.0, 4.0, 6.0]), 3).tolist() == [8.0, 10.0, 12.0]
    assert future_timestamps(np.array([5.0]), 3) is None
    table = ForecastTable.after(
        Series(np.zeros((3, 1)), ["x"], np.array([10.0, 20.0, 30.0])), np.ones((2, 1)), ["x"]
    )
    assert table.timestamps.tolist() == [40.0, 50.0]


def test_read_series_reports_ragged_and_non_numeric_rows(tmp_path):
    (tmp_path / "r.csv").write_text("date,a,b\n2024-01-01,1,2\n2024-01-02,3\n")
    with pytest.raises(Exception, match="line 3 has 2 fields; expected 3"):
        read_series(tmp_path / "r.csv")
    (tmp_path / "n.csv").write_text("date,a,b\n2024-01-01,1,2\n2024-01-02,3,x\n")
    with pytest.raises(Exception, match="a value is not a number"):
        read_series(tmp_path / "n.csv")


def test_forecast_frame_per_series_with_future_timestamps(small_engine):
    pd = pytest.importorskip("pandas", reason="forecast_frame needs ovcast[pandas]")
    frames, expected = [], {}
    for symbol, seed in (("BTC", 4), ("ETH", 5)):
        values = series_values(80, seed)
        frame = pd.DataFrame(values, columns=CHANNELS)
        frame.insert(0, "date", pd.date_range("2024-03-01", periods=80, freq="min"))
        frame.insert(0, "symbol", symbol)
        frames.append(frame)
        expected[symbol] = small_engine.forecast(values[-64:].astype(np.float32))
    out = small_engine.forecast_frame(pd.concat(frames), id_columns=["symbol"])
    assert list(out.columns) == ["symbol", "date", *CHANNELS] and len(out) == 32
    for symbol, forecast in expected.items():
        part = out[out.symbol == symbol]
        np.testing.assert_allclose(part[CHANNELS].to_numpy(), forecast, rtol=1e-5)
        assert part.date.iloc[0] == pd.Timestamp("2024-03-01 01:20")
        assert part.date.iloc[-1] == pd.Timestamp("2024-03-01 01:35")
