"""`ovcast evaluate` of a trained run scores what the run did not train on: it takes the run's
splits, its channels by name and (on the run's own data) its scaler, and refuses splits that
would score trained rows; published ETTh1 figures appear only beside a model of their
protocol; a resume knows its data by content, not by how its path is spelt."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

pytest.importorskip("torch", reason="training needs the ovcast[convert] extra")

from conftest import make_checkpoint  # noqa: E402
from test_train_evaluate import TINY_PATCHTST, write_series_csv  # noqa: E402

from ovcast.cli import main  # noqa: E402
from ovcast.errors import ConfigError  # noqa: E402
from ovcast.scaling import Scaler  # noqa: E402
from ovcast.train.config import EvaluateConfig, SplitConfig, TrainConfig  # noqa: E402
from ovcast.train.data import read_csv  # noqa: E402
from ovcast.train.evaluate import evaluate, evaluate_model  # noqa: E402
from ovcast.train.forecasters import LAST_VALUE, baselines  # noqa: E402
from ovcast.train.splits import split_series  # noqa: E402
from ovcast.train.trainer import train  # noqa: E402

CONTEXT, HORIZON = 32, 8


def tiny_config(data, out, **changes) -> TrainConfig:
    """One short epoch of a tiny model with the default splits (0.7,0.1, no gap)."""
    settings = dict(
        data=str(data),
        out=str(out),
        context_length=CONTEXT,
        prediction_length=HORIZON,
        epochs=1,
        windows_per_epoch=64,
        batch_size=32,
        max_eval_windows=20,
        model_overrides=TINY_PATCHTST,
    )
    return TrainConfig(**{**settings, **changes})


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run trained with the defaults on 1500 rows: train rows [0, 1050), val to 1200."""
    folder = tmp_path_factory.mktemp("protocol")
    data = write_series_csv(folder / "series.csv", rows=1500)
    result = train(tiny_config(data, folder / "run"), progress=False)
    return data, folder / "run" / "best", result


def test_selected_on_says_when_it_is_a_subsample(run):
    _, best, result = run
    assert "on 20 of the 143 validation windows, evenly spaced (--max-eval-windows)" in (
        result.selected_on
    )
    stored = json.loads((best / "training.json").read_text())
    assert stored["splits"]["train"] == [0, 1050] and stored["splits"]["val"] == [1018, 1200]
    assert len(stored["data_source"]["sha256"]) == 64


def test_evaluate_without_splits_takes_the_runs(run, capsys):
    """The default train + evaluate pair: evaluate used to score ETTh1's rows (or fail on
    other data), whatever the run trained on."""
    data, best, _ = run
    assert main(["-q", "evaluate", str(best), str(data)]) == 0
    out = capsys.readouterr().out
    assert "test split of" in out and "293 windows" in out  # contexts from 1168, targets to 1500
    assert "note: splits 0.7,0.1: the model's run's (its training.json)" in out
    assert "note: scaled with the run's scaler" in out and "published" not in out


def test_evaluate_refuses_splits_that_score_trained_rows(run):
    data, best, _ = run
    with pytest.raises(ConfigError) as caught:
        evaluate_model(EvaluateConfig(model=str(best), data=str(data), splits="0.5,0.2"))
    message = str(caught.value)
    assert "the test split scores rows from 1050 on" in message
    assert "trained or selected its checkpoint on rows up to 1200" in message
    with pytest.raises(ConfigError, match="val split scores rows from 750 on.*up to 1050"):
        evaluate_model(
            EvaluateConfig(model=str(best), data=str(data), splits="0.5,0.2", split="val")
        )


def test_on_its_own_data_a_run_is_scaled_with_its_own_scaler(run):
    """Other (later) test rows are allowed, scaled as the model was trained: with the run's
    scaler (fitted on rows [0, 1050)), not one refitted on the new train rows."""
    data, best, _ = run
    report = evaluate_model(
        EvaluateConfig(model=str(best), data=str(data), splits="0.8,0.1", season=0)
    )
    scaler = Scaler.from_dict(json.loads((best / "scaler.json").read_text()))
    by_hand = split_series(read_csv(data), SplitConfig(splits="0.8,0.1"), CONTEXT, HORIZON)
    assert not np.allclose(by_hand.scaler.offset, scaler.offset)  # a refit would differ
    mine = split_series(
        read_csv(data), SplitConfig(splits="0.8,0.1"), CONTEXT, HORIZON, scaler=scaler
    )
    expected = evaluate(baselines(HORIZON, CONTEXT), mine.test, mine.scaler)
    assert report.score(LAST_VALUE).mse == pytest.approx(expected.score(LAST_VALUE).mse)


def test_channels_are_read_by_name_not_by_position(run, tmp_path):
    data, best, _ = run
    lines = data.read_text().splitlines()
    reordered = tmp_path / "reordered.csv"  # the same rows, columns c,a,b
    reordered.write_text(
        "\n".join(",".join(c[i] for i in (0, 3, 1, 2)) for c in (ln.split(",") for ln in lines))
    )
    label = f"{best} (PyTorch)"
    same = evaluate_model(EvaluateConfig(model=str(best), data=str(data)))
    moved = evaluate_model(EvaluateConfig(model=str(best), data=str(reordered)))
    assert moved.score(label).mse == pytest.approx(same.score(label).mse, rel=1e-6)
    with pytest.raises(ConfigError, match=r"trained on the channels \['a', 'b', 'c'\]"):
        evaluate_model(EvaluateConfig(model=str(best), data=str(data), columns=["c", "a", "b"]))


def test_a_converted_run_keeps_its_record(run, tmp_path):
    from ovcast.convert import convert

    data, best, _ = run
    package = convert(best, tmp_path / "pkg")
    assert (package.path / "training.json").is_file()
    with pytest.raises(ConfigError, match="scores rows from 1050 on"):
        evaluate_model(EvaluateConfig(model=str(package.path), data=str(data), splits="0.5,0.2"))


def etth1_shaped(path, rows: int = 14400):
    """A CSV with ETTh1's columns and enough rows for its standard splits."""
    rng = np.random.default_rng(0)
    t = np.arange(rows)
    values = np.sin(2 * np.pi * t[:, None] / 24 + np.arange(7)) + 0.1 * rng.standard_normal(
        (rows, 7)
    )
    lines = ["date,HUFL,HULL,MUFL,MULL,LUFL,LULL,OT"] + [
        f"{1_467_331_200 + 3600 * i}," + ",".join(f"{v:.3f}" for v in row)
        for i, row in enumerate(values)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_published_figures_only_beside_a_model_of_their_protocol(tmp_path):
    """A context-64, horizon-16 model is not comparable to the h=96/L=512 figures."""
    from conftest import SMALL_PATCHTST

    checkpoint = make_checkpoint(tmp_path / "ckpt", **{**SMALL_PATCHTST, "num_input_channels": 7})
    report = evaluate_model(
        EvaluateConfig(
            model=str(checkpoint), data=str(etth1_shaped(tmp_path / "e.csv")), splits="etth1"
        )
    )
    assert report.windows == 2865 and report.published == []
    assert "published (not run here)" not in report.table()


def test_resume_knows_its_data_by_content(tmp_path, monkeypatch):
    """The same run given with absolute paths resumes; changed data at the same path does not."""
    monkeypatch.chdir(tmp_path)
    write_series_csv(tmp_path / "s.csv", rows=400)
    first = train(tiny_config("s.csv", "run", epochs=1, patience=5), progress=False)
    again = tiny_config(tmp_path / "s.csv", tmp_path / "run", epochs=2, patience=5)
    resumed = train(again, resume=True, progress=False)
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    assert resumed.history[0] == first.history[0]
    write_series_csv(tmp_path / "s.csv", rows=400, seed=5)  # other values, same path
    again.epochs = 3
    with pytest.raises(ConfigError, match="s.csv changed since the run began"):
        train(again, resume=True, progress=False)
    assert os.path.isdir(tmp_path / "run" / "best")


def test_a_new_run_removes_an_older_runs_checkpoint(tmp_path, monkeypatch):
    """A run that never scores leaves no best/ behind, even where an older run left one."""
    from ovcast.errors import TrainingError
    from ovcast.train import loop
    from ovcast.train.metrics import Metrics

    data = write_series_csv(tmp_path / "s.csv", rows=300)
    train(tiny_config(data, tmp_path / "run"), progress=False)
    assert (tmp_path / "run" / "best").is_dir()
    nan = float("nan")
    monkeypatch.setattr(loop, "_validate", lambda *a: Metrics(nan, nan, nan, nan, None, 1))
    with pytest.raises(TrainingError):
        train(tiny_config(data, tmp_path / "run"), progress=False)
    assert not (tmp_path / "run" / "best").exists()
