"""Fine-tuning on candles: learns a learnable pattern, beats the random walk, converts."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import make_checkpoint

pytest.importorskip("torch", reason="fine-tuning needs ovcast[convert]")

from ovcast.train.finetune import FinetuneConfig, finetune, horizon_buckets  # noqa: E402

BASE = dict(
    context_length=64,
    prediction_length=16,
    num_input_channels=7,
    patch_length=8,
    patch_stride=8,
    d_model=32,
    num_attention_heads=4,
    num_hidden_layers=1,
    ffn_dim=64,
    dropout=0.0,
    head_dropout=0.0,
)


def write_candles(path, bars: int = 1600, missing=(500, 501, 502)):
    """A price with a 24-bar cycle (learnable) plus noise; a few empty minutes."""
    rng = np.random.default_rng(0)
    t = np.arange(bars)
    close = 100 + 4 * np.sin(2 * np.pi * t / 24) + 0.2 * rng.standard_normal(bars)
    lines = ["time,open,high,low,close,volume"]
    for i in t:
        if i in missing:
            continue
        c = close[i]
        lines.append(
            f"{1_700_000_000 + 60 * i},{c},{c + 0.1},{c - 0.1},{c},{rng.exponential(2):.4f}"
        )
    path.write_text("\n".join(lines) + "\n")
    return path


def test_horizon_buckets_cover_every_step():
    assert horizon_buckets(96) == [(1, 1), (2, 4), (5, 16), (17, 48), (49, 96)]
    assert horizon_buckets(16) == [(1, 1), (2, 4), (5, 16)]


def test_finetune_beats_random_walk_and_converts(tmp_path):
    base = make_checkpoint(tmp_path / "base", **BASE)
    candles = write_candles(tmp_path / "candles.csv")
    report = finetune(
        FinetuneConfig(
            data=str(candles),
            base=str(base),
            out=str(tmp_path / "run"),
            epochs=4,
            learning_rate=3e-3,
            batch_size=32,
            convert=True,
        ),
        progress=False,
    )
    assert report["beats_random_walk"]
    mse = report["overall_mse_price"]
    assert mse["fine-tuned"] < mse["random walk (last value)"] and mse["fine-tuned"] < mse["base"]
    names = {r["forecaster"] for r in report["rows"]}
    assert names == {"fine-tuned", "base", "random walk (last value)", "drift"}
    assert {r["steps"] for r in report["rows"]} == {"1-1", "2-4", "5-16"}
    accuracy = [
        r["directional_accuracy"] for r in report["rows"] if r["forecaster"] == "fine-tuned"
    ]
    assert all(a is not None and a > 0.5 for a in accuracy)  # it calls the cycle's turns
    run = tmp_path / "run"
    assert (run / "forecasts.png").stat().st_size > 5000
    card = (run / "best" / "MODEL_CARD.md").read_text()
    assert "beats the random walk" in card and "ovcast finetune" in card
    scaler = json.loads((run / "best" / "scaler.json").read_text())
    assert [c["kind"] for c in scaler["channels"]][4] == "identity"  # RSI keeps its [0, 1] bounds
    header = (run / "features.csv").read_text().splitlines()[0]
    assert header == "time,close,high,low,volume,rsi,macd,volatility"
    package = json.loads((run / "package" / "ovcast.json").read_text())
    assert package["channel_names"][:3] == ["close", "high", "low"]
    assert package["parity"]["fp32_vs_torch"]["max_abs_error"] < 1e-4


def test_base_with_wrong_channel_count_is_refused(tmp_path):
    from ovcast.errors import DataError

    base = make_checkpoint(tmp_path / "base", **{**BASE, "num_input_channels": 3})
    with pytest.raises(DataError, match="takes 3 channels"):
        finetune(
            FinetuneConfig(
                data=str(write_candles(tmp_path / "c.csv")),
                base=str(base),
                out=str(tmp_path / "run"),
            ),
            progress=False,
        )


def test_finetune_reads_a_live_recording(tmp_path):
    """The recording `ovcast live` writes is a fine-tuning data set as it is."""
    from decimal import Decimal

    from ovcast.cli import main
    from ovcast.market.aggregator import Bar
    from ovcast.market.recording import Recording

    rng = np.random.default_rng(1)
    with Recording(tmp_path / "live.db") as rec:
        for i in range(1600):
            c = Decimal(f"{100 + 4 * np.sin(2 * np.pi * i / 24) + 0.2 * rng.standard_normal():.4f}")
            rec.add_bar(
                "BTC-USD",
                Bar(60 * i, c, c + Decimal("0.1"), c - Decimal("0.1"), c, Decimal("2"), 3),
            )
        rec.add_bar("ETH-USD", Bar(0, Decimal(1), Decimal(1), Decimal(1), Decimal(1)))
    base = make_checkpoint(tmp_path / "base", **BASE)
    args = [
        "-q",
        "finetune",
        "--data",
        str(tmp_path / "live.db"),
        "--base",
        str(base),
        "--out",
        str(tmp_path / "run"),
        "--epochs",
        "3",
        "--lr",
        "3e-3",
        "--no-progress",
    ]
    assert main(args) == 1  # two products: which one?
    assert main([*args, "--product", "BTC-USD"]) == 0
    report = json.loads((tmp_path / "run" / "evaluation.json").read_text())
    assert report["beats_random_walk"] and report["config"]["product"] == "BTC-USD"
