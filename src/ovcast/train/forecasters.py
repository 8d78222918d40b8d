"""Forecasters to score side by side: a model (PyTorch or OpenVINO) and naive baselines.

A forecaster maps scaled contexts (batch, context, channels) to scaled forecasts
(batch, horizon, channels). This module is the one place a torch model predicts in batches
and the one place each baseline is written (a torch model predicts through
``hf.loading.predictor``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, ModelSourceError
from ..package import MANIFEST_FILE
from ..scaling import Scaler

Forecaster = Callable[[np.ndarray], np.ndarray]

LAST_VALUE = "last value (random walk)"
DRIFT = "drift"


def last_value(contexts: np.ndarray, prediction_length: int) -> np.ndarray:
    """Repeat the last observed row (random walk / persistence forecast)."""
    return np.repeat(contexts[:, -1:, :], prediction_length, axis=1)


def seasonal_naive(contexts: np.ndarray, prediction_length: int, season: int = 24) -> np.ndarray:
    """Repeat the last ``season`` rows (e.g. yesterday's hours) across the horizon."""
    last = contexts[:, -season:, :]
    reps = -(-prediction_length // season)
    return np.tile(last, (1, reps, 1))[:, :prediction_length, :]


def drift(contexts: np.ndarray, prediction_length: int) -> np.ndarray:
    """Extend the straight line from the context's first to its last row."""
    slope = (contexts[:, -1, :] - contexts[:, 0, :]) / (contexts.shape[1] - 1)  # (batch, channels)
    steps = np.arange(1, prediction_length + 1)[None, :, None]
    return contexts[:, -1:, :] + slope[:, None, :] * steps


def baselines(
    prediction_length: int, context_length: int, *, season: int = 0, with_drift: bool = False
) -> dict[str, Forecaster]:
    """The random walk, and a seasonal naive of period ``season`` (if > 0) and drift if asked."""
    chosen: dict[str, Forecaster] = {
        LAST_VALUE: partial(last_value, prediction_length=prediction_length)
    }
    if season:
        if not 0 < season <= context_length:
            raise ConfigError(
                f"--season {season} is longer than the model's context of {context_length} "
                f"rows: give a season in 1..{context_length}, or --season 0 to leave the "
                "seasonal-naive baseline out"
            )
        chosen[f"seasonal naive ({season} steps)"] = partial(
            seasonal_naive, prediction_length=prediction_length, season=season
        )
    if with_drift:
        chosen[DRIFT] = partial(drift, prediction_length=prediction_length)
    return chosen


RUN_FILE = "training.json"  # how a model was trained: ``loop.fit`` writes it into OUT/best


@dataclass(frozen=True)
class LoadedModel:
    """A MODEL argument, loaded: its forecaster, shapes, a label for tables, and what it knows
    of itself: its channels' names, its scaler and the run that trained it (training.json)."""

    predict: Forecaster
    context_length: int
    prediction_length: int
    num_channels: int
    label: str
    channel_names: tuple[str, ...] | None = None  # None: unnamed (channel_0, ...)
    scaler: Scaler | None = None
    run: dict[str, Any] | None = None


def load_forecaster(model: str | Path) -> LoadedModel:
    """A package (runs on OpenVINO, no torch) or a checkpoint, 'default' or a hub id (PyTorch)."""
    if (Path(model) / MANIFEST_FILE).is_file():
        from ..runtime.engine import Engine

        engine = Engine(model)
        unnamed = [f"channel_{i}" for i in range(engine.num_channels)]
        return LoadedModel(
            engine.predict,
            engine.context_length,
            engine.prediction_length,
            engine.num_channels,
            f"{model} (OpenVINO)",
            None if engine.channel_names == unnamed else tuple(engine.channel_names),
            engine.scaler,
            read_run(Path(model)),
        )
    from ..hf.loading import load_model, load_scaler, predictor, resolve_source

    source = resolve_source(model)
    hf_model = load_model(source)
    scaler = load_scaler(source)
    c = hf_model.config
    return LoadedModel(
        predictor(hf_model),
        c.context_length,
        c.prediction_length,
        c.num_input_channels,
        f"{model} (PyTorch)",
        tuple(scaler.names) if scaler and scaler.names else None,
        scaler,
        read_run(source.path),
    )


def read_run(folder: Path) -> dict[str, Any] | None:
    """The training record beside a model (``RUN_FILE``), or None when it has none."""
    file = folder / RUN_FILE
    if not file.is_file():
        return None
    try:
        run = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise ModelSourceError(f"cannot read {file}: {exc}") from exc
    return run if isinstance(run, dict) and isinstance(run.get("config"), dict) else None
