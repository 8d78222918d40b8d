"""Shared fixtures: small random checkpoints (save_pretrained in temp dirs) and packages.

No test touches the hub: checkpoints are built from the Granite configs with overrides.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # belt and braces: never reach the hub
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# Small enough to convert in about a second, with every structural feature of Granite's.
SMALL_PATCHTST = dict(
    context_length=64,
    prediction_length=16,
    num_input_channels=3,
    patch_length=8,
    patch_stride=8,
    d_model=32,
    num_attention_heads=4,
    num_hidden_layers=2,
    ffn_dim=64,
)


def make_checkpoint(
    folder: Path, family: str = "patchtst", *, seed: int = 0, scaler=None, **overrides
):
    """Write a random-weight ``*ForPrediction`` checkpoint (and optional scaler.json)."""
    import torch

    from ovcast.hf.configs import new_model

    torch.manual_seed(seed)
    model = new_model(family, **overrides).eval()
    model.save_pretrained(folder)
    if scaler is not None:
        (folder / "scaler.json").write_text(json.dumps(scaler.to_dict()))
    return folder


def small_scaler(channels: int = 3):
    from ovcast.scaling import Scaler

    kinds = ("standard", "log_standard", "minmax")[:channels]
    return Scaler(
        kinds,
        np.array([100.0, 2.0, 10.0][:channels]),
        np.array([5.0, 0.5, 40.0][:channels]),
        ("close", "volume", "rsi")[:channels],
    )


@pytest.fixture(scope="session")
def small_checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(
        tmp_path_factory.mktemp("ckpt") / "small", scaler=small_scaler(), **SMALL_PATCHTST
    )


@pytest.fixture(scope="session")
def small_package(tmp_path_factory, small_checkpoint) -> Path:
    from ovcast.convert import convert

    out = tmp_path_factory.mktemp("pkg") / "small"
    convert(small_checkpoint, out, name="small")
    return out


@pytest.fixture(scope="session")
def small_engine(small_package):
    from ovcast import Engine

    return Engine(small_package)


def torch_forecast(checkpoint: Path, windows: np.ndarray) -> np.ndarray:
    """The reference: the HuggingFace model in PyTorch, eval mode."""
    import torch

    from ovcast.hf.loading import load_model, resolve_source

    model = load_model(resolve_source(checkpoint))
    with torch.no_grad():
        return model(past_values=torch.from_numpy(windows)).prediction_outputs.numpy()


def random_windows(batch: int, context: int, channels: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.standard_normal((batch, context, channels)), axis=1).astype(np.float32) / 5


def make_package(
    tmp_path_factory, folder: str, name: str, *, seed: int = 0, scaler=None, **overrides
):
    """Convert a fresh random small checkpoint to ``<tmp>/<folder>/pkg``; returns that path."""
    from ovcast.convert import convert

    root = tmp_path_factory.mktemp(folder)
    checkpoint = make_checkpoint(
        root / "ckpt", seed=seed, scaler=scaler, **{**SMALL_PATCHTST, **overrides}
    )
    convert(checkpoint, root / "pkg", name=name)
    return root / "pkg"


@pytest.fixture(scope="session")
def other_package(tmp_path_factory) -> Path:
    """Same shapes and name as small_package, different weights: a model to hot-swap to."""
    return make_package(tmp_path_factory, "other", "small", seed=1, scaler=small_scaler())


@pytest.fixture(scope="session")
def wide_package(tmp_path_factory) -> Path:
    """A model that takes 4 channels: swapping to it would break clients of small_package."""
    return make_package(tmp_path_factory, "wide", "small", num_input_channels=4)


@pytest.fixture(scope="session")
def market_package(tmp_path_factory) -> Path:
    """A small model of the 7 market channels (close ... volatility), named 'market'."""
    return make_package(tmp_path_factory, "market", "market", num_input_channels=7)
