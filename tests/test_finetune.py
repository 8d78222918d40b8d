"""Fine-tuning on candles: selects on the scored close, leaves filled bars out of the score,
learns a learnable pattern, beats the random walk, converts."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import make_checkpoint

pytest.importorskip("torch", reason="fine-tuning needs ovcast[convert]")

from ovcast.train.config import FinetuneConfig  # noqa: E402
from ovcast.train.finetune import finetune  # noqa: E402
from ovcast.train.metrics import horizon_buckets  # noqa: E402

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
# Empty minutes early (training) and late (test), so the test split scores around filled bars.
MISSING = (500, 501, 502, *range(1450, 1462))


def write_candles(path, bars: int = 1600, missing=MISSING):
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


def test_finetune_selects_on_the_close_beats_random_walk_and_converts(tmp_path):
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
    assert report["beats_random_walk"] and report["beats_base"]
    overall = {r["forecaster"]: r["scored"] for r in report["results"] if r["steps"] == "1-16"}
    assert set(overall) == {"fine-tuned", "base", "last value (random walk)", "drift"}
    assert overall["fine-tuned"]["mse_units"] < overall["last value (random walk)"]["mse_units"]
    assert {r["steps"] for r in report["results"]} == {"1-1", "2-4", "5-16", "1-16"}
    accuracy = [
        r["scored"]["directional_accuracy"]
        for r in report["results"]
        if r["forecaster"] == "fine-tuned"
    ]
    assert all(a is not None and a > 0.5 for a in accuracy)  # it calls the cycle's turns

    # What is scored is what was selected on: the close, real bars only.
    assert report["scored"]["channels"] == ["close"]
    assert report["scored"]["target_steps_left_out"] > 0  # the filled minutes near 1450
    assert report["selected_on"].startswith("validation MSE (scaled) of close; real bars only")
    run = tmp_path / "run"
    history = json.loads((run / "best" / "training.json").read_text())["history"]
    assert history[0]["epoch"] == 0  # the base model was a candidate too
    assert min(h["val_mse"] for h in history) == history[report["best_epoch"]]["val_mse"]

    assert (run / "forecasts.png").stat().st_size > 5000
    card = (run / "best" / "MODEL_CARD.md").read_text()
    assert "beats the random walk" in card and "ovcast finetune --data" in card
    assert "selected on: validation MSE (scaled) of close" in card and "scored: close" in card
    assert "--epochs 4 --lr 0.003" in card  # the reproduce line carries what differed
    scaler = json.loads((run / "best" / "scaler.json").read_text())
    assert [c["kind"] for c in scaler["channels"]][4] == "identity"  # RSI keeps its [0, 1] bounds
    assert not (run / "features.csv").exists()  # no CSV round trip
    package = json.loads((run / "package" / "ovcast.json").read_text())
    assert package["channel_names"][:3] == ["close", "high", "low"]
    assert package["parity"]["fp32_vs_torch"]["max_abs_error"] < 1e-4


def test_a_finetune_that_only_hurts_keeps_the_base(tmp_path):
    """A learning rate far too high wrecks every epoch: best/ stays the base model."""
    base = make_checkpoint(tmp_path / "base", **BASE)
    report = finetune(
        FinetuneConfig(
            data=str(write_candles(tmp_path / "c.csv")),
            base=str(base),
            out=str(tmp_path / "run"),
            epochs=3,
            patience=1,
            learning_rate=10.0,
            windows_per_epoch=64,
            score_filled=True,
        ),
        progress=False,
    )
    assert report["best_epoch"] == 0 and "the base model: no epoch beat it" in report["selected_on"]
    overall = {r["forecaster"]: r["scored"] for r in report["results"] if r["steps"] == "1-16"}
    assert overall["fine-tuned"] == overall["base"]
    assert report["scored"]["target_steps_left_out"] == 0  # --score-filled: filled bars count


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


def test_finetune_reads_a_live_recording(tmp_path, capsys):
    """The recording `ovcast live` writes is a fine-tuning data set as it is, holes and all."""
    from decimal import Decimal

    from ovcast.cli import main
    from ovcast.market.aggregator import Bar
    from ovcast.market.recording import Recording

    rng = np.random.default_rng(1)
    with Recording(tmp_path / "live.db") as rec:
        for i in range(1600):
            if 700 <= i < 710:  # the process was down for ten minutes
                continue
            c = Decimal(f"{100 + 4 * np.sin(2 * np.pi * i / 24) + 0.2 * rng.standard_normal():.4f}")
            filled = 1500 <= i < 1505  # the live pipeline filled these, flat
            rec.add_bar(
                "BTC-USD",
                Bar(60 * i, c, c + Decimal("0.1"), c - Decimal("0.1"), c, Decimal("2"), 3, filled),
            )
        rec.add_bar("ETH-USD", Bar(0, Decimal(1), Decimal(1), Decimal(1), Decimal(1)))
    base = make_checkpoint(tmp_path / "base", **BASE)
    args = ["-q", "finetune", "--data", str(tmp_path / "live.db"), "--base", str(base)]
    args += ["--out", str(tmp_path / "run"), "--epochs", "3", "--lr", "3e-3", "--no-progress"]
    assert main(args) == 1  # two products: which one?
    assert "choose one with --product" in capsys.readouterr().err
    assert main([*args, "--product", "BTC-USD"]) == 0
    out = capsys.readouterr().out
    assert "scored: close, scaled and in price; real bars only" in out
    assert "selected on: validation MSE (scaled) of close" in out
    report = json.loads((tmp_path / "run" / "evaluation.json").read_text())
    assert report["beats_random_walk"] and report["config"]["product"] == "BTC-USD"
    assert report["scored"]["target_steps_left_out"] > 0  # the recorded filled bars


def test_partial_bars_of_a_recording_reach_training_marked(tmp_path):
    """Bars the live pipeline marked partial come back marked, so they are never scored."""
    from decimal import Decimal

    from ovcast.market.aggregator import Bar
    from ovcast.market.recording import Recording
    from ovcast.train.data import load_bars, market_series

    with Recording(tmp_path / "live.db") as rec:
        for i in range(400):
            c = Decimal(100 + i % 7)
            rec.add_bar("BTC-USD", Bar(60 * i, c, c, c, c, Decimal(1), 1, False, i in (300, 301)))
    bars = load_bars(tmp_path / "live.db", product="BTC-USD")
    assert np.flatnonzero(bars.partial).tolist() == [300, 301]
    series = market_series(bars)
    partial_times = series.time_s[series.partial]
    assert partial_times.tolist() == [60 * 300, 60 * 301]


def test_a_rerun_leaves_no_stale_package_beside_new_weights(tmp_path):
    """Without --convert a rerun into the same OUT used to keep the old package, whose scaler
    no longer matched best/scaler.json."""
    base = make_checkpoint(tmp_path / "base", **BASE)
    run = tmp_path / "run"
    (run / "package").mkdir(parents=True)
    (run / "package" / "ovcast.json").write_text("{}")
    (run / "forecasts.png").write_bytes(b"old")
    finetune(
        FinetuneConfig(
            data=str(write_candles(tmp_path / "c.csv", bars=700, missing=())),
            base=str(base),
            out=str(run),
            epochs=1,
            windows_per_epoch=32,
        ),
        progress=False,
    )
    assert not (run / "package").exists()
    assert (run / "forecasts.png").read_bytes() != b"old"


def test_a_verdict_within_the_noise_is_a_tie():
    """0.16979 vs 0.16980 is not 'beats the base model'."""
    from ovcast.train.config import SplitConfig
    from ovcast.train.data import Series
    from ovcast.train.evaluate import evaluate
    from ovcast.train.finetune import BASE, FINETUNED, verdict
    from ovcast.train.forecasters import LAST_VALUE, last_value
    from ovcast.train.splits import split_series

    close = 100 + np.cumsum(np.random.default_rng(0).standard_normal(400))
    data = split_series(Series.of(close[:, None], ["close"]), SplitConfig(splits="0.5,0.2"), 16, 4)

    def shifted(by):
        return lambda c: last_value(c, 4) + by

    report = evaluate(
        {FINETUNED: shifted(0.0), BASE: shifted(1e-5), LAST_VALUE: shifted(0.0)},
        data.test,
        data.scaler,
    )
    assert report.score(FINETUNED).mse < report.score(BASE).mse  # but by a hair
    line = verdict(report)
    assert "is within 1% of (no better than) the base model" in line
    assert "is within 1% of (no better than) the random walk" in line


def test_too_few_rows_are_counted_as_bars(tmp_path):
    """Row numbers in a split error are feature rows: the message says what they are."""
    from ovcast.errors import DataError

    base = make_checkpoint(tmp_path / "base", **BASE)
    config = FinetuneConfig(
        data=str(write_candles(tmp_path / "c.csv", bars=200, missing=())),
        base=str(base),
        out=str(tmp_path / "run"),
        splits="100,150,300",
    )
    with pytest.raises(DataError) as caught:
        finetune(config, progress=False)
    message = str(caught.value)
    assert "the data has 175 rows" in message
    assert "200 bars on the grid: 0 filled, 0 partial) less the first 25 bars" in message
