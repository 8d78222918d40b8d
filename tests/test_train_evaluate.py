"""Splits, scoring, training and evaluation on generated data (and ETTh1 when ../shared has it)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import SHARED_DATA

from ovcast.errors import ConfigError, DataError
from ovcast.train.config import SplitConfig
from ovcast.train.data import Series, read_csv
from ovcast.train.evaluate import evaluate
from ovcast.train.forecasters import LAST_VALUE, baselines, drift, last_value, seasonal_naive
from ovcast.train.metrics import ErrorSums
from ovcast.train.splits import Splits, split_series, window_starts

TINY_PATCHTST = dict(
    patch_length=8,
    patch_stride=8,
    d_model=16,
    num_attention_heads=2,
    num_hidden_layers=1,
    ffn_dim=32,
    dropout=0.0,
    head_dropout=0.0,
)


def write_series_csv(path, rows: int = 1500, seed: int = 0):
    """A learnable 3-channel series: a 24-step cycle, a slower cycle, and noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(rows)
    a = 10 + 3 * np.sin(2 * np.pi * t / 24) + 0.3 * rng.standard_normal(rows)
    b = 5 + 2 * np.sin(2 * np.pi * t / 12 + 1) + 0.3 * rng.standard_normal(rows)
    c = 0.5 * a + np.cos(2 * np.pi * t / 48) + 0.3 * rng.standard_normal(rows)
    lines = ["date,a,b,c"] + [
        f"{1_704_067_200 + 3600 * i},{x:.5f},{y:.5f},{z:.5f}"
        for i, x, y, z in zip(t, a, b, c, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_error_sums_by_hand():
    pred = np.array([[[1.0], [3.0]], [[2.0], [2.0]]])  # (windows 2, horizon 2, channels 1)
    truth = np.array([[[0.0], [5.0]], [[2.0], [4.0]]])
    last = np.array([[[1.0]], [[1.0]]])
    keep = np.array([[True, True], [True, False]])  # window 2's step 2 is not scored
    sums = ErrorSums(2)
    sums.add(pred, truth, (pred * 10, truth * 10, last * 10), keep)
    whole = sums.over(1, 2)
    assert whole.cells == 3
    assert whole.mse == pytest.approx((1 + 4 + 0) / 3) and whole.mae == pytest.approx(3 / 3)
    assert whole.mse_units == pytest.approx(500 / 3)  # the same errors, in units 10x larger
    # moves vs the last value: truth down/up/up, forecast equal/up/up -> 2 calls, both right
    assert whole.directional_accuracy == 1.0
    assert sums.over(2, 2).mse == pytest.approx(4.0) and sums.over(2, 2).cells == 1


def test_baselines_by_hand():
    contexts = np.arange(30, dtype=float).reshape(1, 30, 1)
    np.testing.assert_array_equal(last_value(contexts, 3)[0, :, 0], [29, 29, 29])
    np.testing.assert_array_equal(
        seasonal_naive(contexts, 5, season=3)[0, :, 0], [27, 28, 29, 27, 28]
    )
    np.testing.assert_array_equal(drift(contexts, 2)[0, :, 0], [30, 31])
    with pytest.raises(ConfigError, match="season 40"):
        baselines(3, 30, season=40)


def test_split_forms_and_the_gap():
    etth1 = Splits.parse("etth1", 17420, 512)
    assert etth1.train == (0, 8640) and etth1.val == (8128, 11520) and etth1.test == (11008, 14400)
    assert len(window_starts(etth1.test, 512, 96)) == 2785  # the model card's test windows
    assert Splits.parse("0.7,0.1", 1000, 10).val == (690, 800)
    assert Splits.parse("100,200,300", 1000, 10).test == (190, 300)
    # --gap applies to fractions and to row ends alike: disjoint splits, gap rows apart
    for spec in ("0.7,0.1", "700,800,1000"):
        gapped = Splits.parse(spec, 1000, 10, gap=5)
        assert (gapped.train, gapped.val, gapped.test) == ((0, 700), (705, 800), (805, 1000))
        assert "disjoint, 5 rows" in gapped.describe()
    with pytest.raises(ConfigError, match="cannot apply to it.*--splits 8640,11520,14400 --gap"):
        Splits.parse("etth1", 17420, 512, gap=96)
    with pytest.raises(ConfigError, match="bad split spec"):
        Splits.parse("seventy", 1000, 10)
    with pytest.raises(ConfigError, match="must increase"):
        Splits.parse("300,200,400", 1000, 10)
    with pytest.raises(ConfigError, match="0 or more"):
        Splits.parse("0.7,0.1", 1000, 10, gap=-1)
    with pytest.raises(DataError, match="end at row 14400; the data has 1000"):
        Splits.parse("etth1", 1000, 512)
    with pytest.raises(DataError, match="too few"):
        window_starts((0, 10), 8, 4)


def test_with_a_gap_no_window_crosses_a_boundary():
    series = Series.of(np.arange(1000, dtype=np.float32)[:, None] + 1, ["x"])
    data = split_series(series, SplitConfig(splits="600,800,1000", gap=7), 20, 5)
    rows = {
        name: set(range(w.starts.min(), w.starts.max() + 25))
        for name, w in (("train", data.train), ("val", data.val), ("test", data.test))
    }
    assert max(rows["train"]) < 600 <= min(rows["val"]) - 7
    assert max(rows["val"]) < 800 <= min(rows["test"]) - 7


def test_filled_and_partial_targets_are_left_out_of_the_score():
    """A filled bar is flat at the last close: a random walk 'predicts' it perfectly. Scored,
    it flatters the random walk; left out (the default), the error is over real bars only."""
    rng = np.random.default_rng(0)
    n, context, horizon = 400, 16, 4
    close = 100 + np.cumsum(rng.standard_normal(n))
    filled = np.zeros(n, bool)
    filled[rng.choice(np.arange(20, n), 100, replace=False)] = True
    for i in np.flatnonzero(filled):
        close[i] = close[i - 1]  # flat, as fill_gaps makes them
    partial = np.zeros(n, bool)
    partial[300] = True
    series = Series.of(close[:, None], ["close"], filled=filled, partial=partial)
    common = (SplitConfig(splits="0.5,0.2"), context, horizon)
    data = split_series(series, *common)
    report = evaluate(baselines(horizon, context), data.test, data.scaler)
    scored, every = report.score(LAST_VALUE), report.score(LAST_VALUE, every_step=True)

    # By hand, in price units: every (window, step) target of the test split.
    starts = data.test.starts
    target_rows = starts[:, None] + context + np.arange(horizon)[None, :]
    errors = (close[target_rows] - close[starts + context - 1][:, None]) ** 2
    real = ~filled[target_rows] & ~partial[target_rows]
    assert scored.mse_units == pytest.approx(errors[real].mean(), rel=1e-4)
    assert every.mse_units == pytest.approx(errors.mean(), rel=1e-4)
    assert scored.mse_units > every.mse_units  # filled bars flattered it
    assert report.left_out == (~real).sum() > 0
    table = report.table()
    assert "real bars only" in table and "MSE all steps" in table

    with_filled = split_series(series, *common, score_filled=True)
    report = evaluate(baselines(horizon, context), with_filled.test, with_filled.scaler)
    assert report.left_out == partial[target_rows].sum()  # partial bars are never scored


def test_partial_bars_are_never_training_targets():
    partial = np.zeros(300, bool)
    partial[100] = True
    series = Series.of(np.linspace(1, 2, 300)[:, None], ["x"], partial=partial)
    data = split_series(series, SplitConfig(splits="0.8,0.1"), 10, 5)
    targets = data.train.starts[:, None] + 10 + np.arange(5)[None, :]
    assert not (targets == 100).any() and len(data.train) == 240 - 15 + 1 - 5


def test_read_csv_names_line_and_column(tmp_path):
    (tmp_path / "x.csv").write_text(
        "date,a,b\n2024-01-01,1.0,2\n2024-01-02,nan,2\n2024-01-03,3,inf\n\n2024-01-04,oops,\n"
    )
    with pytest.raises(DataError) as caught:
        read_csv(tmp_path / "x.csv")
    message = str(caught.value)
    assert "line 3, column 'a': nan is not a finite number" in message
    assert "line 4, column 'b': inf is not a finite number" in message
    assert "line 6, column 'a': non-numeric value 'oops'" in message  # line 5 is blank
    assert "line 6, column 'b': empty" in message
    (tmp_path / "t.csv").write_text("date,a\n2024-01-02,1\n2024-01-01,2\n2024-01-01,3\n")
    with pytest.raises(DataError) as caught:
        read_csv(tmp_path / "t.csv")
    assert "line 3 (2024-01-01) is earlier than line 2 (2024-01-02)" in str(caught.value)
    assert "line 4 (2024-01-01) repeats the time of line 3" in str(caught.value)
    with pytest.raises(DataError, match="no column"):
        read_csv(tmp_path / "x.csv", columns=["c"])
    with pytest.raises(DataError, match="cannot read"):
        read_csv(tmp_path / "missing.csv")


def test_tiny_training_selects_what_it_scores_and_resumes(tmp_path):
    pytest.importorskip("torch", reason="training needs the ovcast[convert] extra")
    from ovcast.train.config import EvaluateConfig, TrainConfig
    from ovcast.train.evaluate import evaluate_model
    from ovcast.train.trainer import train

    data = write_series_csv(tmp_path / "series.csv")
    config = TrainConfig(
        data=str(data),
        out=str(tmp_path / "run"),
        splits="0.6,0.2",
        target_columns=["a"],
        context_length=48,
        prediction_length=12,
        epochs=2,
        batch_size=32,
        learning_rate=1e-2,
        patience=5,
        model_overrides=TINY_PATCHTST,
    )
    first = train(config, progress=False)
    config.epochs = 5
    result = train(config, resume=True, progress=False)
    assert [h["epoch"] for h in result.history] == list(range(1, 6))  # continued, not restarted
    assert result.history[:2] == first.history
    val = [h["val_mse"] for h in result.history]
    assert min(val) < 0.6 * val[0] and result.best_val_mse == min(val)
    best = tmp_path / "run" / "best"
    assert {"config.json", "model.safetensors", "scaler.json"} <= {p.name for p in best.iterdir()}
    stored = json.loads((best / "training.json").read_text())
    assert stored["config"]["target_columns"] == ["a"] and "of a;" in stored["selected_on"]
    scaler = json.loads((best / "scaler.json").read_text())
    rows = read_csv(data).values[:900]  # the scaler saw the train rows only
    assert scaler["channels"][0]["offset"] == pytest.approx(rows[:, 0].mean(), rel=1e-5)

    # The selection score is the report's score: `evaluate` of best/ on the validation split
    # of the target column gives the selected epoch's validation MSE.
    common = dict(data=str(data), splits="0.6,0.2", target_columns=["a"])
    val_report = evaluate_model(EvaluateConfig(model=str(best), split="val", **common))
    assert val_report.score(f"{best} (PyTorch)").mse == pytest.approx(result.best_val_mse, 1e-5)

    # A resume with other settings is refused: it would mix two runs.
    config.learning_rate = 1e-3
    with pytest.raises(ConfigError, match="learning_rate was 0.01, now 0.001"):
        train(config, resume=True, progress=False)

    # The trained checkpoint beats the naive baselines, in PyTorch and converted alike.
    from ovcast.convert import convert

    torch_report = evaluate_model(EvaluateConfig(model=str(best), **common))
    label = f"{best} (PyTorch)"
    assert torch_report.score(label).mse < torch_report.score(LAST_VALUE).mse
    package = convert(best, tmp_path / "pkg")
    assert package.manifest.channel_names == ["a", "b", "c"]
    ov_report = evaluate_model(EvaluateConfig(model=str(tmp_path / "pkg"), **common))
    ov_mse = ov_report.score(f"{tmp_path / 'pkg'} (OpenVINO)").mse
    assert ov_mse == pytest.approx(torch_report.score(label).mse, rel=1e-3)


def test_a_run_that_never_scores_is_an_error_not_a_stale_checkpoint(tmp_path, monkeypatch):
    """Diverged weights score NaN on validation every epoch: no best/ to hand on."""
    pytest.importorskip("torch", reason="training needs the ovcast[convert] extra")
    from ovcast.errors import TrainingError
    from ovcast.train import loop
    from ovcast.train.config import TrainConfig
    from ovcast.train.metrics import Metrics
    from ovcast.train.trainer import train

    nan = float("nan")
    monkeypatch.setattr(loop, "_validate", lambda *a: Metrics(nan, nan, nan, nan, None, 1))
    config = TrainConfig(
        data=str(write_series_csv(tmp_path / "s.csv", rows=300)),
        out=str(tmp_path / "run"),
        context_length=48,
        prediction_length=12,
        epochs=2,
        windows_per_epoch=32,
        model_overrides=TINY_PATCHTST,
    )
    with pytest.raises(TrainingError, match="no epoch had a finite validation score"):
        train(config, progress=False)
    assert not (tmp_path / "run" / "best").exists()


def test_evaluate_cli_writes_json(tmp_path, small_checkpoint, capsys):
    from ovcast.cli import main

    rng = np.random.default_rng(1)
    rows = ["date,close,volume,rsi"] + [
        f"{i},{v[0]:.4f},{v[1]:.4f},{v[2]:.4f}" for i, v in enumerate(rng.random((600, 3)))
    ]
    (tmp_path / "d.csv").write_text("\n".join(rows))
    args = ["-q", "evaluate", str(small_checkpoint), str(tmp_path / "d.csv"), "--splits"]
    code = main([*args, "0.5,0.25", "--gap", "16", "--json", str(tmp_path / "r.json")])
    assert code == 0
    out = capsys.readouterr().out
    assert "last value (random walk)" in out and "seasonal naive (24 steps)" in out
    assert "scored: close, volume, rsi, scaled; every target step" in out
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["split"] == "test" and report["published"] == []  # not ETTh1
    assert {r["forecaster"] for r in report["results"]} == {
        f"{small_checkpoint} (PyTorch)",
        "last value (random walk)",
        "seasonal naive (24 steps)",
    }
    assert main([*args, "etth1", "--gap", "16"]) == 1
    assert "a --gap cannot apply to it" in capsys.readouterr().err
    assert main([*args, "0.5,0.2", "--columns", "close,volume"]) == 1
    assert "takes 3 channels" in capsys.readouterr().err


ETTH1 = SHARED_DATA / "etth1" / "ETTh1.csv"
needs_etth1 = pytest.mark.skipif(
    not ETTH1.is_file(), reason="needs ../shared/data/etth1/ETTh1.csv (not in a user's clone)"
)


@pytest.mark.shared_data
@needs_etth1
def test_etth1_scaler_matches_the_published_one():
    from ovcast.hf.loading import ETTH1_MEAN, ETTH1_STD
    from ovcast.scaling import Scaler

    scaler = Scaler.fit(read_csv(ETTH1).values[:8640])
    np.testing.assert_allclose(scaler.offset, ETTH1_MEAN, rtol=1e-5)
    np.testing.assert_allclose(scaler.scale, ETTH1_STD, rtol=1e-5)


@pytest.mark.shared_data
@needs_etth1
def test_the_default_models_card_figures_reproduce():
    """MODEL_CARD.md's ETTh1 test figures, by the standard protocol, from the embedded weights."""
    pytest.importorskip("torch", reason="evaluating a checkpoint needs ovcast[convert]")
    from ovcast.train.config import EvaluateConfig
    from ovcast.train.evaluate import evaluate_model

    report = evaluate_model(EvaluateConfig(model="default", data=str(ETTH1)))
    assert report.windows == 2785 and len(report.published) == 4
    model = report.score("default (PyTorch)")
    assert (round(model.mse, 4), round(model.mae, 4)) == (0.3941, 0.4274)
    assert round(report.score(LAST_VALUE).mse, 4) == 1.2944
    assert round(report.score("seasonal naive (24 steps)").mse, 4) == 0.5122


def test_a_split_with_nothing_to_score_is_refused():
    filled = np.zeros(300, bool)
    filled[180:] = True  # the market closed for good: validation and test are all filled
    series = Series.of(np.linspace(1, 2, 300)[:, None], ["x"], filled=filled)
    common = (SplitConfig(splits="0.6,0.2"), 10, 5)
    with pytest.raises(DataError, match="validation split has no target step to score"):
        split_series(series, *common)
    assert len(split_series(series, *common, score_filled=True).test) == 56
