"""The embedded default model: loads offline, converts with parity, predicts; quickstart runs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ovcast.hf.loading import DEFAULT_MODEL_DIR, ETTH1_COLUMNS

pytest.importorskip("torch", reason="converting the default needs ovcast[convert]")


@pytest.fixture(scope="module")
def default_package(tmp_path_factory):
    from ovcast.convert import convert

    return convert("default", tmp_path_factory.mktemp("default") / "pkg", name="default")


def test_embedded_files_and_card():
    names = {p.name for p in DEFAULT_MODEL_DIR.iterdir()}
    assert {"config.json", "model.safetensors", "scaler.json", "MODEL_CARD.md"} <= names
    size_mb = sum(p.stat().st_size for p in DEFAULT_MODEL_DIR.iterdir()) / 1e6
    assert size_mb < 10  # "a few MB"
    config = json.loads((DEFAULT_MODEL_DIR / "config.json").read_text())
    # The Granite PatchTST architecture exactly.
    for key, value in dict(
        context_length=512,
        prediction_length=96,
        num_input_channels=7,
        patch_length=12,
        patch_stride=12,
        d_model=128,
        num_attention_heads=16,
        num_hidden_layers=3,
        ffn_dim=512,
        norm_type="batchnorm",
        use_cls_token=True,
        scaling="std",
    ).items():
        assert config[key] == value, key


def test_default_converts_and_predicts(default_package):
    from ovcast import Engine

    m = default_package.manifest
    assert m.channel_names == list(ETTH1_COLUMNS)
    assert m.parity["fp32_vs_torch"]["max_abs_error"] < 1e-4
    assert m.source["name"] == "default"
    engine = Engine(default_package.path)
    from ovcast.cli.quickstart_cmd import sample_window

    raw = sample_window(engine)
    forecast = engine.forecast(raw)
    assert forecast.shape == (96, 7) and np.isfinite(forecast).all()
    # A trained model continues a daily cycle: the forecast is not flat.
    assert forecast[:, 6].std() > 0.05 * raw[:, 6].std()


def test_quickstart_runs_offline_and_caches(tmp_path, capsys):
    from ovcast.cli import main

    args = ["-q", "quickstart", "--cache-dir", str(tmp_path), "--duration", "0.3"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "converted the embedded default" in first
    assert "max abs error" in first and "PyTorch eager" in first and "x PyTorch" in first
    assert "+96" in first  # the last forecast step
    assert main(args) == 0
    assert "cached (same weights sha256)" in capsys.readouterr().out


def test_an_unwritable_cache_is_one_clear_error(tmp_path):
    from ovcast.default_model import default_package
    from ovcast.errors import ConfigError

    (tmp_path / "file").write_text("")  # a file where the cache's folder should be
    with pytest.raises(ConfigError, match="cannot keep the default model in .*OVCAST_HOME"):
        default_package(tmp_path / "file" / "cache")
