"""Bad candles are refused with their line and column; epoch times in s, ms, us or ns are
told apart; bars from any source take the same path."""

from __future__ import annotations

import numpy as np
import pytest

from ovcast.cli import main
from ovcast.errors import DataError
from ovcast.market.bars import Bars, fill_gaps, parse_time, read_ohlcv_csv
from ovcast.market.features import warmup_bars
from ovcast.train.data import Series, load_bars, market_series

T0 = 1_735_689_600  # 2025-01-01T00:00:00Z


def write_candles(path, rows: int = 60, *, scale: float = 1, edit=None):
    """1-minute candles with times in seconds * ``scale``; ``edit(cells)`` spoils some cells."""
    cells = [
        [f"{(T0 + 60 * i) * scale:.0f}", "100", "101", "99", f"{100 + np.sin(i):.4f}", "2.5"]
        for i in range(rows)
    ]
    if edit:
        edit(cells)
    path.write_text("time,open,high,low,close,volume\n" + "\n".join(map(",".join, cells)) + "\n")
    return path


def refusal(path, **kwargs) -> str:
    with pytest.raises(DataError) as caught:
        read_ohlcv_csv(path, **kwargs)
    return str(caught.value)


def test_nan_inf_and_impossible_values_name_line_and_column(tmp_path):
    def spoil(cells):
        cells[9][4] = "nan"  # line 11 (the header is line 1)
        cells[19][5] = "inf"
        cells[29][5] = "-3"
        cells[39][1] = "0"
        cells[49][2] = "-101"

    message = refusal(write_candles(tmp_path / "bad.csv", edit=spoil))
    assert "line 11, column 'close': nan is not a finite number" in message
    assert "line 21, column 'volume': inf is not a finite number" in message
    assert "line 31, column 'volume': volume -3 is negative" in message
    assert "line 41, column 'open': price 0 is not positive" in message
    assert "line 51, column 'high': price -101 is not positive" in message


def test_many_problems_are_counted_not_all_listed(tmp_path):
    def spoil(cells):
        for row in cells[5:45]:
            row[4] = "NaN"

    message = refusal(write_candles(tmp_path / "bad.csv", edit=spoil))
    assert message.count("not a finite number") == 5 and "and 35 more" in message


def test_times_out_of_order_repeated_or_off_the_grid(tmp_path):
    def shuffle(cells):
        cells[10][0], cells[11][0] = cells[11][0], cells[10][0]
        cells[30][0] = cells[29][0]

    message = refusal(write_candles(tmp_path / "order.csv", edit=shuffle))
    assert "line 13 (" in message and "is earlier than line 12" in message
    assert "line 32 (" in message and "repeats the time of line 31" in message

    def nudge(cells):
        cells[20][0] = str(int(cells[20][0]) + 7)

    message = refusal(write_candles(tmp_path / "grid.csv", edit=nudge))
    assert "line 22: time" in message and "not on the 60-second grid" in message


@pytest.mark.parametrize("unit,scale", [("s", 1), ("ms", 1e3), ("us", 1e6), ("ns", 1e9)])
def test_epoch_units_by_magnitude(tmp_path, unit, scale):
    reference = read_ohlcv_csv(write_candles(tmp_path / "s.csv"))
    bars = read_ohlcv_csv(write_candles(tmp_path / f"{unit}.csv", scale=scale))
    np.testing.assert_array_equal(bars.time_s, reference.time_s)
    assert bars.time_s[0] == T0 and len(bars) == 60 and not bars.filled.any()
    explicit = read_ohlcv_csv(tmp_path / f"{unit}.csv", time_unit=unit)
    np.testing.assert_array_equal(explicit.time_s, reference.time_s)


def test_binance_microseconds_read_as_milliseconds_are_refused(tmp_path):
    """Binance kline files since 2025 carry epoch microseconds; read as ms they would land in
    the year 56970 (the issue's traceback). Told the wrong unit, the reader says so."""
    path = write_candles(tmp_path / "binance.csv", scale=1e6)
    message = refusal(path, time_unit="ms")
    assert "line 2: time" in message and "in milliseconds is beyond the year 2261" in message
    assert "--time-unit" in message


def test_a_headerless_binance_kline_file_says_what_to_add(tmp_path):
    """Binance's kline CSVs have no header and 12 columns, the first six ours."""
    row = f"{T0 * 10**6},100,101,99,100.5,2.5,{(T0 + 59) * 10**6 + 999999},251.2,17,1.2,120.6,0"
    (tmp_path / "k.csv").write_text(f"{row}\n{row.replace(str(T0), str(T0 + 60), 1)}\n")
    message = refusal(tmp_path / "k.csv")
    assert "no header line" in message and "'time,open,high,low,close,volume'" in message
    fixed = tmp_path / "fixed.csv"
    fixed.write_text("time,open,high,low,close,volume\n" + (tmp_path / "k.csv").read_text())
    bars = read_ohlcv_csv(fixed)
    assert bars.time_s.tolist() == [T0, T0 + 60] and bars.close.tolist() == [100.5, 100.5]


def test_a_unit_that_changes_midway_is_refused(tmp_path):
    def mix(cells):
        cells[30][0] = f"{int(cells[30][0]) * 1000}"

    message = refusal(write_candles(tmp_path / "mixed.csv", edit=mix))
    assert "line 32: " in message and "reads as milliseconds but line 2's" in message


def test_parse_time_keeps_its_iso_and_epoch_forms():
    assert parse_time("2024-01-01T00:00:30.123456789Z") == parse_time("1704067230")
    assert parse_time("1704067230123") == parse_time("1704067230123456") == 1704067230
    assert parse_time("2024-01-01 00:00:30+01:00") == 1704067230 - 3600


def test_features_cli_refuses_nan_and_reads_microseconds(tmp_path, capsys):
    def spoil(cells):
        cells[54][4] = "nan"

    bad = write_candles(tmp_path / "bad.csv", rows=100, edit=spoil)
    assert main(["features", str(bad), "--out", str(tmp_path / "f.csv")]) == 1
    assert "line 56, column 'close': nan is not a finite number" in capsys.readouterr().err
    good = write_candles(tmp_path / "us.csv", rows=100, scale=1e6)
    assert main(["features", str(good), "--out", str(tmp_path / "f.csv")]) == 0
    rows = (tmp_path / "f.csv").read_text().splitlines()
    assert rows[1].startswith("2025-01-01T00:00:00Z,") and len(rows) == 101
    assert all(np.isfinite(float(c)) for c in rows[-1].split(",")[1:])


def test_filling_keeps_the_marks_bars_came_with():
    """A recording's bars are already marked filled or partial; putting them on the grid
    marks the missing ones too and keeps the marks they had."""
    time_s = np.array([0, 60, 120, 300, 360], dtype=np.int64)
    ones = np.ones(5)
    bars = Bars(
        time_s,
        ones,
        ones,
        ones,
        ones,
        ones,
        filled=np.array([False, True, False, False, False]),
        partial=np.array([True, False, False, False, False]),
    )
    grid = fill_gaps(bars, 60)
    assert grid.filled.tolist() == [False, True, False, True, True, False, False]
    assert grid.partial.tolist() == [True] + [False] * 6
    with pytest.raises(DataError, match="would invent"):
        fill_gaps(Bars(np.array([0, 60 * 10**7]), *[np.ones(2)] * 5, np.zeros(2, bool)), 60)


def test_market_series_carries_the_marks_and_drops_the_warm_up(tmp_path):
    def hole(cells):
        del cells[40:43]

    bars = load_bars(write_candles(tmp_path / "c.csv", rows=120, edit=hole))
    series = market_series(bars)
    assert series.columns[0] == "close" and len(series) == 120 - (warmup_bars() - 1)
    assert series.filled.sum() == 3 and np.isfinite(series.values).all()
    with pytest.raises(DataError, match="too few"):
        market_series(load_bars(write_candles(tmp_path / "short.csv", rows=20)))


def test_a_series_from_arrays_is_checked():
    with pytest.raises(DataError, match="first in row 2, channel 'b'"):
        Series.of(np.array([[1.0, 2.0], [3.0, 4.0], [5.0, np.inf]]), ["a", "b"])
    with pytest.raises(DataError, match="do not match"):
        Series.of(np.zeros((3, 2)), ["a"])


def test_an_interval_the_data_contradicts_is_refused(tmp_path):
    """30 s on minute bars would invent every other bar (the attack's 1499 filled bars)."""
    path = write_candles(tmp_path / "m.csv", rows=100)
    message = refusal(path, interval_s=30)
    assert "--interval 30 disagrees with the data" in message
    assert "no two of its 100 bars are closer than 60 s" in message and "invent 99 bars" in message
    assert "line 3: time" in refusal(path, interval_s=120)  # off its grid
    assert len(read_ohlcv_csv(path, interval_s=60)) == 100


def test_impossible_candles_are_refused(tmp_path):
    def spoil(cells):
        cells[3][2], cells[3][3] = "98", "99.5"  # high below low
        cells[7][4] = "101.5"  # close above high

    message = refusal(write_candles(tmp_path / "bad.csv", edit=spoil))
    assert "line 5, column 'high': high 98 is below low 99.5" in message
    assert "line 9, column 'close': close 101.5 is above high 101" in message


def test_an_off_grid_time_is_shown_as_written(tmp_path):
    def nudge(cells):
        cells[5][0] = f"{T0 + 300}.5"  # rounds to a time on the grid

    message = refusal(write_candles(tmp_path / "sub.csv", edit=nudge))
    assert f"line 7: time {T0 + 300}.5 is not on the 60-second grid" in message


def test_product_is_refused_for_a_csv(tmp_path):
    from ovcast.errors import ConfigError

    with pytest.raises(ConfigError, match="a CSV, which holds one product"):
        load_bars(write_candles(tmp_path / "c.csv"), product="BTC-USD")


def record(path, minutes, *, filled=(), partial=()):
    """A recording of one product's minute bars at ``minutes`` (others are missing)."""
    from decimal import Decimal

    from ovcast.market.aggregator import Bar
    from ovcast.market.recording import Recording

    with Recording(path) as rec:
        for i in minutes:
            c = Decimal(100 + i % 7)
            bar = Bar(60 * i, c, c + 1, c - 1, c, Decimal(1), 1, i in filled, i in partial)
            rec.add_bar("BTC-USD", bar)
    return path


def test_a_hole_in_a_recording_is_unknown_not_empty(tmp_path):
    """The recording marks the bars it filled itself; a bar it lacks (the process was down)
    may have had trades: partial, never scored, not 'filled' as if the market was quiet."""
    minutes = [i for i in range(200) if not 100 <= i < 110]
    bars = load_bars(record(tmp_path / "r.db", minutes, filled={50, 51}, partial={150}))
    assert np.flatnonzero(bars.filled).tolist() == [50, 51]
    assert np.flatnonzero(bars.partial).tolist() == [*range(100, 110), 150]


def test_features_keeps_the_partial_marks(tmp_path, capsys):
    minutes = [i for i in range(200) if not 100 <= i < 110]
    db = record(tmp_path / "r.db", minutes, filled={50})
    assert main(["features", str(db), "--out", str(tmp_path / "f.csv")]) == 0
    assert "200 bars (1 filled, 10 partial)" in capsys.readouterr().out
    rows = (tmp_path / "f.csv").read_text().splitlines()
    assert rows[0].endswith(",filled,partial")
    assert [r.split(",")[-2:] for r in rows[100:102]] == [["0", "0"], ["0", "1"]]


def test_a_damaged_recording_is_one_clear_line(tmp_path, capsys):
    import sqlite3

    db = record(tmp_path / "ok.db", range(100))
    broken = {
        "truncated.db": db.read_bytes()[: len(db.read_bytes()) // 3],
        "header_only.db": b"SQLite format 3\x00" + b"\x00" * 100,
    }
    for name, raw in broken.items():
        (tmp_path / name).write_bytes(raw)
    bad_text = record(tmp_path / "bad_text.db", range(100))
    with sqlite3.connect(bad_text) as connection:
        connection.execute("UPDATE bars SET close = 'abc' WHERE start_s = 600")
    for name in (*broken, "bad_text.db"):
        assert main(["features", str(tmp_path / name), "--out", str(tmp_path / "f.csv")]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("ovcast features: error: ") and "\n" not in err, err
