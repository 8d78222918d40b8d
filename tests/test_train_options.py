"""Every option of train, evaluate, features and finetune refuses a bad value in one line
(no traceback), before any data is read or any model trained; CSVs that would read wrongly
(repeated or missing names, another delimiter, no header) are refused saying why; the time
column is found by one rule for train and predict."""

from __future__ import annotations

import re

import numpy as np
import pytest

from ovcast.cli import main
from ovcast.errors import ConfigError, DataError
from ovcast.runtime.series import read_series
from ovcast.train.data import read_csv

TINY = '{"d_model":8,"num_attention_heads":1,"num_hidden_layers":1,"ffn_dim":8,"patch_length":4,"patch_stride":4}'


def iso(i: int) -> str:
    return str(np.datetime64("2024-01-01T00:00") + np.timedelta64(i, "h"))


def write_table(path, header: str = "date,LUFL,LULL,OT", rows: int = 300, stamp=iso):
    """Hourly rows of three channels under ``header``; ``stamp(i)`` writes each row's time."""
    rng = np.random.default_rng(0)
    lines = [header] + [
        f"{stamp(i)}," + ",".join(f"{v:.4f}" for v in rng.standard_normal(3)) for i in range(rows)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def table(tmp_path):
    return write_table(tmp_path / "e3.csv")


def one_line_error(capsys, argv, command) -> str:
    """Run the CLI: it must fail with exit 1 and one 'ovcast COMMAND: error:' line."""
    assert main(["-q", *argv]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"ovcast {command}: error: ") and "\n" not in err, err
    return err


TRAIN_REFUSALS = [
    (["--context", "0"], "--context must be 1 or more"),
    (["--context", "-16"], "--context must be 1 or more"),
    (["--horizon", "0"], "--horizon must be 1 or more"),
    (["--batch-size", "0"], "--batch-size must be 1 or more"),
    (["--windows-per-epoch", "-5"], "--windows-per-epoch must be 0 (all) or more"),
    (["--lr", "-1"], "--lr must be a positive number"),
    (["--lr", "nan"], "--lr must be a positive number, got nan"),
    (["--threads", "-3"], "--threads must be 0"),
    (["--max-eval-windows", "-1"], "--max-eval-windows must be 0"),
    (["--epochs", "0"], "--epochs must be 1 or more"),
    (["--epochs", "-1"], "--epochs must be 1 or more"),
    (["--patience", "0"], "--patience must be 1 or more"),
    (["--warmup-fraction", "2"], "--warmup-fraction must be between 0 and 1"),
    (["--model-config", '{"context_length":32}'], "which this run sets itself: use --context"),
    (["--model-config", '{"nope":1}'], "has no setting 'nope'"),
    (["--model-config", '{"d_modle":16}'], "'d_modle' (did you mean 'd_model'?)"),
    (["--model-config", '{"d_model":7,"num_attention_heads":2}'], "multiple of num_attention"),
    (["--model-config", '{"d_model":9,"num_attention_heads":3}'], "must be even"),
    (
        ["--family", "patchtsmixer", "--model-config", '{"patch_length":16,"patch_stride":16}'],
        "has to be greater than the patch length",
    ),
    (["--columns", "OT,OT"], "--columns names ['OT'] more than once"),
    (["--columns", "OT,ot"], "more than once"),
    (["--columns", "date,OT"], "'date' is the time column"),
    (["--targets", "OT,OT"], "--targets names ['OT'] more than once"),
    (["--splits", "0.004,0.004"], "train rows [0, 1) are too few for one window of 16 + 4"),
    (["--splits", "0.001,0.001"], "of the data's 300 rows leaves a split without rows"),
    (["--out", "/dev/null/x"], "cannot create the run folder --out /dev/null/x"),
]


@pytest.mark.parametrize(
    "extra, message", TRAIN_REFUSALS, ids=[" ".join(a) for a, _ in TRAIN_REFUSALS]
)
def test_train_refuses_bad_options_in_one_line(tmp_path, table, capsys, extra, message):
    argv = ["train", str(table), "--out", str(tmp_path / "run"), "--context", "16", "--horizon"]
    argv += ["4", "--epochs", "1", "--model-config", TINY, "--no-progress", *extra]
    err = one_line_error(capsys, argv, "train")
    assert message in err
    assert not (tmp_path / "run" / "best").exists()  # refused before training


def test_evaluate_refuses_bad_options_before_loading_the_model(tmp_path, table, capsys):
    base = ["evaluate", "no-such-model", str(table)]
    assert "--batch-size must be 1 or more" in one_line_error(
        capsys, [*base, "--batch-size", "0"], "evaluate"
    )
    assert "--max-windows must be 0" in one_line_error(
        capsys, [*base, "--max-windows", "-2"], "evaluate"
    )
    assert "--season must be 0" in one_line_error(capsys, [*base, "--season", "-1"], "evaluate")
    err = one_line_error(capsys, [*base, "--json", "/nonexistent/x.json"], "evaluate")
    assert "--json /nonexistent/x.json: the folder /nonexistent does not exist" in err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--volatility-window", "0"], "--volatility-window must be 2 or more"),
        (["--volatility-window", "-1"], "--volatility-window must be 2 or more"),
        (["--interval", "-60"], "--interval must be a positive number of seconds, got -60"),
        (["--interval", "0"], "--interval must be a positive number of seconds, got 0"),
    ],
)
def test_market_options_are_checked(tmp_path, capsys, extra, message):
    candles = tmp_path / "c.csv"
    candles.write_text("time,open,high,low,close,volume\n0,1,1,1,1,1\n60,1,1,1,1,1\n")
    features = ["features", str(candles), "--out", str(tmp_path / "f.csv"), *extra]
    assert message in one_line_error(capsys, features, "features")
    finetune = ["finetune", "--data", str(candles), "--out", str(tmp_path / "r"), *extra]
    assert message in one_line_error(capsys, finetune, "finetune")


def test_output_folders_that_do_not_exist_are_one_line(tmp_path, capsys):
    candles = tmp_path / "c.csv"
    candles.write_text("time,open,high,low,close,volume\n0,1,1,1,1,1\n60,1,1,1,1,1\n")
    err = one_line_error(
        capsys, ["features", str(candles), "--out", "/nonexistent/x.csv"], "features"
    )
    assert "the folder /nonexistent does not exist" in err


def test_finetune_refuses_the_etth1_splits_without_blaming_a_gap(tmp_path, capsys):
    argv = ["finetune", "--data", str(tmp_path / "c.csv"), "--out", str(tmp_path / "r")]
    err = one_line_error(capsys, [*argv, "--splits", "etth1"], "finetune")
    assert "split market data by fractions" in err and "--gap" not in err


@pytest.mark.parametrize(
    "header, message",
    [
        ("date,LUFL,LUFL,OT", "names column 2 ('LUFL') and column 3 ('LUFL') alike"),
        ("date,date,LULL,OT", "names column 1 ('date') and column 2 ('date') alike"),
        ("date,OT,lull,ot", "column 2 ('OT') and column 4 ('ot') alike"),
    ],
)
def test_repeated_header_names_are_refused_by_train_and_predict(tmp_path, header, message):
    path = write_table(tmp_path / "dup.csv", header=header)
    for read in (read_csv, read_series):
        with pytest.raises(DataError, match="alike") as caught:
            read(path)
        assert message in str(caught.value)


@pytest.mark.parametrize("name", ["ts", "open_time", "Date", " TIMESTAMP "])
def test_train_and_predict_find_the_same_time_column(tmp_path, name):
    """An epoch column named ts or open_time is the time, not a channel, for both."""
    path = write_table(
        tmp_path / "t.csv", header=f"{name},a,b,c", stamp=lambda i: str(1_704_067_200 + 3600 * i)
    )
    series = read_csv(path)
    assert series.columns == ("a", "b", "c") and series.time_s[1] - series.time_s[0] == 3600
    predict = read_series(path)
    assert predict.columns == ["a", "b", "c"] and predict.timestamp_name == name.strip()
    assert predict.timestamps.dtype == np.int64  # epoch numbers stay whole numbers


def test_header_names_are_matched_trimmed_and_ignoring_case(tmp_path):
    path = write_table(tmp_path / "t.csv", header="Date, lufl ,LULL,ot")
    series = read_csv(path, columns=["OT", "LUFL"], timestamp_column="date")
    assert series.columns == ("ot", "lufl")  # the file's own spelling
    np.testing.assert_array_equal(series.values[:, 0], read_csv(path).values[:, 2])


@pytest.mark.parametrize(
    "text, message",
    [
        ("date;a;b\n2024-01-01;1.5;2\n2024-01-02;3;4\n", "looks ';'-separated"),
        ("date;a;b\n2024-01-01;1,5;2\n2024-01-02;3,1;4\n", "'.' as the decimal point"),
        ("date\ta\tb\n2024-01-01\t1\t2\n2024-01-02\t3\t4\n", "looks tab-separated"),
        ("2024-01-01,1,2\n2024-01-02,3,4\n", "has no header line; its first line is data"),
        ("date,,b\n2024-01-01,1,2\n2024-01-02,3,4\n", "column 2 has no name"),
    ],
)
def test_malformed_csvs_say_what_is_wrong(tmp_path, text, message):
    (tmp_path / "m.csv").write_text(text)
    with pytest.raises(DataError, match=re.escape(message)):
        read_csv(tmp_path / "m.csv")


def test_row_counts_too_small_for_the_splits_are_said_plainly(tmp_path, capsys):
    one = write_table(tmp_path / "one.csv", rows=1)
    err = one_line_error(
        capsys, ["train", str(one), "--out", str(tmp_path / "r"), "--splits", "0.7,0.1"], "train"
    )
    assert "the data's 1 rows leaves a split without rows" in err
    assert "must increase" not in err


def test_model_config_checks_do_not_need_data():
    from ovcast.train.config import TrainConfig

    with pytest.raises(ConfigError, match="--horizon"):
        TrainConfig(data="x.csv", out="o", model_overrides={"prediction_length": 3})
