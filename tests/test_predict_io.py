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
from ovcast.errors import DataError
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
    (tmp_path / "n.csv").write_text(
        "date,a,b,note\n2024-01-01,1,2,x\n2024-01-02,3,x,y\n2024-01-03,,4,\n"
    )
    series = read_series(tmp_path / "n.csv")  # text is an error only in a column used
    with pytest.raises(DataError) as caught:
        series.window_for(3, ["a", "b"])
    assert "note" not in str(caught.value)
    assert "line 3, column 'b': non-numeric value 'x'" in str(caught.value)
    assert "line 4, column 'a': empty" in str(caught.value)  # with its line, as train says


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


@pytest.mark.parametrize(
    "order, message",
    [
        ("descending", "line 3 (2024-03-03 14:00) is earlier than line 2"),
        ("repeated", "line 11 (2024-03-01 08:00) repeats the time of line 10"),
    ],
)
def test_times_out_of_order_are_refused_as_train_refuses_them(
    tmp_path, small_package, capsys, order, message
):
    stamps = hourly(64)
    stamps = stamps[::-1] if order == "descending" else stamps[:9] + stamps[8:63]
    write_csv(tmp_path / "t.csv", ["date", *CHANNELS], stamps, series_values(64))
    assert main(["predict", str(small_package), "-i", str(tmp_path / "t.csv")]) == 1
    err = capsys.readouterr().err
    assert message in err and "Times must increase" in err


def test_bom_and_header_case_match_as_in_train(tmp_path, small_package, small_engine, capsys):
    """A BOM and other case used to fall back to position: channels swapped, a BOM in the key."""
    values = series_values(64, seed=6)
    mixed = np.column_stack([values[:, 2], values[:, 0], values[:, 1]])
    write_csv(tmp_path / "m.csv", [" DATE", "RSI", "Close ", "volume"], hourly(64), mixed)
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbf" + (tmp_path / "m.csv").read_bytes())
    assert (
        main(["-q", "predict", str(small_package), "-i", str(tmp_path / "bom.csv"), "--raw"]) == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"channels", "DATE", "predictions"}  # no "\ufeffdate"
    np.testing.assert_allclose(
        out["predictions"], small_engine.forecast(values.astype(np.float32)), rtol=1e-5
    )


def test_epoch_times_stay_whole_and_unreadable_times_are_said(tmp_path, small_package, caplog):
    values = series_values(64)
    epoch_ms = [str(1_709_251_200_000 + 3_600_000 * i) for i in range(64)]
    write_csv(tmp_path / "ms.csv", ["ts", *CHANNELS], epoch_ms, values)
    out = tmp_path / "f.json"
    assert (
        main(["predict", str(small_package), "-i", str(tmp_path / "ms.csv"), "-o", str(out)]) == 0
    )
    stamps = json.loads(out.read_text())["ts"]
    assert stamps[0] == 1_709_251_200_000 + 3_600_000 * 64 and isinstance(stamps[0], int)
    day_first = [f"{d % 28 + 1:02d}/03/2024 {d % 24:02d}:00" for d in range(64)]
    write_csv(tmp_path / "dmy.csv", ["date", *CHANNELS], day_first, values)
    assert (
        main(["predict", str(small_package), "-i", str(tmp_path / "dmy.csv"), "-o", str(out)]) == 0
    )
    assert "neither ISO 8601 nor epoch numbers (such as '01/03/2024 00:00')" in caplog.text
    assert "date" not in json.loads(out.read_text())


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("o.json", '{"past_values": {"a": 1}}', "past_values must be nested lists of numbers"),
        ("s.csv", "date;close;volume;rsi\n2024-01-01;1;2;3\n", "looks ';'-separated"),
        ("d.csv", "date,close,close,rsi\n2024-01-01,1,2,3\n", "alike"),
    ],
)
def test_unreadable_inputs_are_one_line(tmp_path, small_package, capsys, name, content, message):
    (tmp_path / name).write_text(content)
    assert main(["predict", str(small_package), "-i", str(tmp_path / name)]) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_an_output_folder_that_does_not_exist_is_refused_first(tmp_path, small_package, capsys):
    write_csv(tmp_path / "w.csv", ["date", *CHANNELS], hourly(64), series_values(64))
    argv = [
        "predict",
        str(small_package),
        "-i",
        str(tmp_path / "w.csv"),
        "-o",
        "/nonexistent/x.csv",
    ]
    assert main(argv) == 1
    assert "--output /nonexistent/x.csv: the folder /nonexistent does not exist" in (
        capsys.readouterr().err
    )


def test_text_columns_are_ignored_and_zones_kept(tmp_path, small_package, small_engine):
    values = series_values(64, seed=6)
    start = np.datetime64("2024-03-01T00:00")
    stamps = [f"{str(start + np.timedelta64(h, 'h'))}:00+02:00" for h in range(64)]
    write_csv(tmp_path / "z.csv", ["date", *CHANNELS], stamps, values)
    text = (tmp_path / "z.csv").read_text().splitlines()
    rows = [text[0] + ",symbol,comment"] + [line + ",BTC-USD," for line in text[1:]]
    (tmp_path / "z.csv").write_text("\n".join(rows) + "\n")
    result = run_cli("predict", str(small_package), "-i", str(tmp_path / "z.csv"), "--raw")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    # the last input is 2024-03-03 15:00+02:00; the next hour, in the same zone
    assert out["date"][0] == "2024-03-03 16:00:00+02:00"
    np.testing.assert_allclose(
        out["predictions"], small_engine.forecast(values.astype(np.float32)), rtol=1e-5
    )


def test_the_future_steps_at_the_recent_interval_and_gaps_are_warned(tmp_path, small_package):
    start = np.datetime64("2024-03-01T00:00")
    hours = [0, *range(10, 140, 2)][:20] + list(range(150, 194))  # 2-hourly, a gap, hourly
    stamps = [str(start + np.timedelta64(h, "h")).replace("T", " ") for h in hours]
    write_csv(tmp_path / "g.csv", ["date", *CHANNELS], stamps, series_values(64))
    result = run_cli("predict", str(small_package), "-i", str(tmp_path / "g.csv"), "--raw")
    assert result.returncode == 0, result.stderr
    # the last row is 193 h in, hourly; the 2-hourly start no longer sets the step
    assert json.loads(result.stdout)["date"][0] == "2024-03-09 02:00:00"
    assert "not evenly spaced: 20 of its 63 intervals differ from the usual step 1:00:00" in (
        result.stderr
    )
    assert "from 2024-03-02 22:00:00 to 2024-03-07 06:00:00" in result.stderr  # the widest


def test_a_forecast_that_is_not_finite_is_an_error(tmp_path, small_package, capsys):
    values = series_values(64)
    values[30, 0] = 3e38  # finite in float32, but overflows the model
    write_csv(tmp_path / "big.csv", ["date", *CHANNELS], hourly(64), values)
    for raw in ([], ["--raw"]):
        out = tmp_path / "f.csv"
        argv = ["predict", str(small_package), "-i", str(tmp_path / "big.csv"), "-o", str(out)]
        assert main([*argv, *raw]) == 1
        err = capsys.readouterr().err
        assert "is not finite" in err and "3e+38 in 'close'" in err and not out.exists()


def test_unwritable_outputs_are_one_line(tmp_path, small_package, capsys):
    write_csv(tmp_path / "w.csv", ["date", *CHANNELS], hourly(64), series_values(64))
    (tmp_path / "full.csv").symlink_to("/dev/full")
    argv = ["predict", str(small_package), "-i", str(tmp_path / "w.csv"), "-o"]
    assert main([*argv, str(tmp_path / "full.csv")]) == 1
    assert "cannot write the forecast to" in capsys.readouterr().err


FRAME_CASES = [
    ("shuffled", lambda f: f.sample(frac=1, random_state=0), DataError, "is earlier than row"),
    ("repeated", lambda f: f.iloc[[*range(64), 63]], DataError, "repeats the time of row 63"),
    ("nan", lambda f: f.assign(rsi=f.rsi.where(f.index != 5)), DataError, "row 5, column 'rsi'"),
    ("not a frame", lambda f: f.to_numpy(), DataError, "takes a pandas DataFrame"),
    ("bad times", lambda f: f.assign(date="soon"), DataError, "does not read as times"),
]


@pytest.mark.parametrize("name, change, error, message", FRAME_CASES)
def test_forecast_frame_refuses_as_predict_refuses(small_engine, name, change, error, message):
    pd = pytest.importorskip("pandas", reason="forecast_frame needs ovcast[pandas]")
    frame = pd.DataFrame(series_values(64), columns=CHANNELS)
    frame.insert(0, "date", pd.date_range("2024-03-01", periods=64, freq="h"))
    with pytest.raises(error, match=message):
        small_engine.forecast_frame(change(frame))


def test_forecast_frame_index_zones_and_text_columns(small_engine):
    pd = pytest.importorskip("pandas", reason="forecast_frame needs ovcast[pandas]")
    values = series_values(64, seed=7)
    times = pd.date_range("2024-03-01", periods=64, freq="h", tz="Europe/Paris", name="date")
    frame = pd.DataFrame(values, columns=CHANNELS, index=times).assign(note="x")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = small_engine.forecast_frame(frame)  # a DatetimeIndex, tz-aware, a text column
    assert list(out.columns) == ["date", *CHANNELS]
    assert out.date.iloc[0] == times[-1] + pd.Timedelta(hours=1)
    assert str(out.date.dt.tz) == "Europe/Paris"
    np.testing.assert_allclose(
        out[CHANNELS].to_numpy(), small_engine.forecast(values.astype(np.float32)), rtol=1e-5
    )
    with pytest.raises(DataError, match="column 'note' holds 'x', not a number"):
        small_engine.forecast_frame(frame.drop(columns="rsi"))  # by position: note is used


def test_pandas_shaped_json_and_parquet_inputs(tmp_path, small_package, small_engine):
    pd = pytest.importorskip("pandas", reason="the inputs are written with pandas")
    values = series_values(64, seed=8)
    frame = pd.DataFrame(values, columns=CHANNELS)
    frame.insert(0, "date", pd.date_range("2024-03-01", periods=64, freq="h"))
    frame["note"] = "x"  # a text column, ignored as in a CSV
    expected = small_engine.forecast(values.astype(np.float32))
    frame.to_json(tmp_path / "records.json", orient="records")  # dates as epoch ms
    frame.to_json(tmp_path / "columns.json", orient="columns", date_format="iso")
    lists = frame.astype({"date": str}).to_dict("list")  # {"date": [...], "close": [...]}
    (tmp_path / "lists.json").write_text(json.dumps(lists))
    inputs = [tmp_path / "records.json", tmp_path / "columns.json", tmp_path / "lists.json"]
    pytest.importorskip("pyarrow.parquet", reason="Parquet needs ovcast[parquet]")
    frame.to_parquet(tmp_path / "in.parquet")
    inputs.append(tmp_path / "in.parquet")
    for path in inputs:
        result = run_cli("predict", str(small_package), "-i", str(path), "--raw")
        assert result.returncode == 0, (path, result.stderr)
        out = json.loads(result.stdout)
        np.testing.assert_allclose(out["predictions"], expected, rtol=1e-5)
        stamp = out["date"][0]  # 2024-03-03 15:00 + 1 h, as epoch ms or as a time
        assert stamp in (1709481600000, "2024-03-03 16:00:00"), (path, stamp)
    shuffled = frame.iloc[::-1].to_json(orient="records")
    (tmp_path / "late.json").write_text(shuffled)
    result = run_cli("predict", str(small_package), "-i", str(tmp_path / "late.json"))
    assert (
        result.returncode == 1
        and "record 2 (" in result.stderr
        and "is earlier than record 1" in (result.stderr)
    )


def test_parquet_output_times_are_timestamps_in_their_zone(tmp_path, small_package):
    pq = pytest.importorskip("pyarrow.parquet", reason="Parquet output needs ovcast[parquet]")
    stamps = [s.replace(" ", "T") + "+02:00" for s in hourly(64)]
    write_csv(tmp_path / "z.csv", ["date", *CHANNELS], stamps, series_values(64))
    out = tmp_path / "f.parquet"
    assert main(["predict", str(small_package), "-i", str(tmp_path / "z.csv"), "-o", str(out)]) == 0
    column = pq.read_table(out).column("date")
    assert str(column.type) == "timestamp[us, tz=+02:00]"
    assert column[0].as_py().isoformat() == "2024-03-03 16:00:00+02:00".replace(" ", "T")


def test_channels_ignore_case_and_a_longer_batch_is_cut(tmp_path, small_package, small_engine):
    batch = np.stack([series_values(80, seed=9), series_values(80, seed=10)]).astype(np.float32)
    np.save(tmp_path / "b.npy", batch)
    out = tmp_path / "f.json"
    argv = ["predict", str(small_package), "-i", str(tmp_path / "b.npy"), "--channels", "RSI"]
    assert main([*argv, "-o", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["channels"] == ["rsi"]
    np.testing.assert_allclose(
        result["predictions"], small_engine.predict(batch[:, -64:])[..., [2]], rtol=1e-5
    )
