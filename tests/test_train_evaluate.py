"""Training, metrics and evaluation on generated data (and on ETTh1 when ../shared has it)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import SHARED_DATA

from ovcast.train.data import Splits, gather_windows, read_csv, window_starts
from ovcast.train.metrics import RunningErrors, last_value, mae, mse, seasonal_naive


def write_series_csv(path, rows: int = 1500, seed: int = 0):
    """A learnable 3-channel series: a 24-step cycle, a slower cycle, and noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(rows)
    a = 10 + 3 * np.sin(2 * np.pi * t / 24) + 0.3 * rng.standard_normal(rows)
    b = 5 + 2 * np.sin(2 * np.pi * t / 12 + 1) + 0.3 * rng.standard_normal(rows)
    c = 0.5 * a + np.cos(2 * np.pi * t / 48) + 0.3 * rng.standard_normal(rows)
    lines = ["date,a,b,c"] + [
        f"2024-01-01 {i},{x:.5f},{y:.5f},{z:.5f}" for i, x, y, z in zip(t, a, b, c, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_metrics_by_hand():
    pred = np.array([[[1.0, 2.0], [3.0, 4.0]]])
    target = np.array([[[0.0, 2.0], [5.0, 4.0]]])
    assert mse(pred, target) == pytest.approx((1 + 0 + 4 + 0) / 4)
    assert mae(pred, target) == pytest.approx((1 + 0 + 2 + 0) / 4)
    running = RunningErrors()
    running.update(pred[:, :1], target[:, :1])
    running.update(pred[:, 1:], target[:, 1:])
    assert running.mse == pytest.approx(1.25) and running.mae == pytest.approx(0.75)


def test_baselines_by_hand():
    contexts = np.arange(30, dtype=float).reshape(1, 30, 1)
    np.testing.assert_array_equal(last_value(contexts, 3)[0, :, 0], [29, 29, 29])
    np.testing.assert_array_equal(
        seasonal_naive(contexts, 5, season=3)[0, :, 0], [27, 28, 29, 27, 28]
    )


def test_splits_and_windows():
    s = Splits.etth1(512)
    assert s.train == (0, 8640) and s.val == (8128, 11520) and s.test == (11008, 14400)
    assert len(window_starts(s.test, 512, 96)) == 2785  # the model card's test windows
    assert Splits.parse("0.7,0.1", 1000, 10).val == (690, 800)
    assert Splits.parse("100,200,300", 1000, 10).test == (190, 300)
    values = np.arange(20, dtype=np.float32).reshape(10, 2)
    ctx, tgt = gather_windows(values, np.array([0, 3]), 4, 2)
    assert ctx.shape == (2, 4, 2) and tgt[1, 0, 0] == values[7, 0]
    from ovcast.errors import DataError

    with pytest.raises(DataError, match="bad split spec"):
        Splits.parse("seventy", 1000, 10)
    with pytest.raises(DataError, match="too few"):
        window_starts((0, 10), 8, 4)


def test_read_csv_errors(tmp_path):
    from ovcast.errors import DataError

    (tmp_path / "x.csv").write_text("date,a\n2024,1.0\n2025,oops\n")
    with pytest.raises(DataError, match="non-numeric"):
        read_csv(tmp_path / "x.csv")
    with pytest.raises(DataError, match="no column"):
        read_csv(tmp_path / "x.csv", columns=["b"])
    with pytest.raises(DataError, match="cannot read"):
        read_csv(tmp_path / "missing.csv")


def test_tiny_training_lowers_validation_loss_and_resumes(tmp_path):
    pytest.importorskip("torch", reason="training needs the ovcast[convert] extra")
    from ovcast.train.trainer import TrainConfig, train

    data = write_series_csv(tmp_path / "series.csv")
    config = TrainConfig(
        data=str(data),
        out=str(tmp_path / "run"),
        splits="0.6,0.2",
        context_length=48,
        prediction_length=12,
        epochs=2,
        batch_size=32,
        learning_rate=1e-2,
        patience=5,
        model_overrides=dict(
            patch_length=8,
            patch_stride=8,
            d_model=16,
            num_attention_heads=2,
            num_hidden_layers=1,
            ffn_dim=32,
            dropout=0.0,
            head_dropout=0.0,
        ),
    )
    first = train(config, progress=False)
    config.epochs = 5
    result = train(config, resume=True, progress=False)
    assert [h["epoch"] for h in result.history] == list(range(1, 6))  # continued, not restarted
    assert result.history[:2] == first.history
    val = [h["val_mse"] for h in result.history]
    assert min(val) < 0.6 * val[0]
    best = tmp_path / "run" / "best"
    assert {"config.json", "model.safetensors", "scaler.json"} <= {p.name for p in best.iterdir()}
    scaler = json.loads((best / "scaler.json").read_text())
    rows = read_csv(data).values[:900]  # the scaler saw the train rows only
    assert scaler["channels"][0]["offset"] == pytest.approx(rows[:, 0].mean(), rel=1e-5)

    # The trained checkpoint beats the naive baselines, in PyTorch and converted alike.
    from ovcast.convert import convert
    from ovcast.train.evaluate import evaluate

    torch_report = evaluate(best, data, splits="0.6,0.2", season=24)
    model_row, last_row, seasonal_row = torch_report.rows
    assert model_row.mse < last_row.mse
    package = convert(best, tmp_path / "pkg")
    assert package.manifest.channel_names == ["a", "b", "c"]
    ov_report = evaluate(tmp_path / "pkg", data, splits="0.6,0.2")
    assert ov_report.rows[0].name.endswith("(OpenVINO)")
    assert ov_report.rows[0].mse == pytest.approx(model_row.mse, rel=1e-3)


def test_evaluate_cli_writes_json(tmp_path, small_checkpoint, capsys):
    from ovcast.cli import main

    rng = np.random.default_rng(1)
    rows = ["date,close,volume,rsi"] + [
        f"{i},{v[0]:.4f},{v[1]:.4f},{v[2]:.4f}" for i, v in enumerate(rng.random((300, 3)))
    ]
    (tmp_path / "d.csv").write_text("\n".join(rows))
    code = main(
        [
            "-q",
            "evaluate",
            str(small_checkpoint),
            str(tmp_path / "d.csv"),
            "--splits",
            "0.5,0.2",
            "--json",
            str(tmp_path / "r.json"),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "last value (random walk)" in out and "seasonal naive (24 steps)" in out
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["split"] == "test" and len(report["results"]) == 3
    assert report["published"] == []  # not ETTh1


ETTH1 = SHARED_DATA / "etth1" / "ETTh1.csv"


@pytest.mark.shared_data
@pytest.mark.skipif(
    not ETTH1.is_file(), reason="needs ../shared/data/etth1/ETTh1.csv (not in a user's clone)"
)
def test_etth1_scaler_matches_the_published_one():
    from ovcast.hf.loading import ETTH1_MEAN, ETTH1_STD
    from ovcast.scaling import Scaler

    scaler = Scaler.fit(read_csv(ETTH1).values[:8640])
    np.testing.assert_allclose(scaler.offset, ETTH1_MEAN, rtol=1e-5)
    np.testing.assert_allclose(scaler.scale, ETTH1_STD, rtol=1e-5)
