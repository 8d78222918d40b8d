"""Score forecasters on the same windows: the one evaluation that train, finetune and
`ovcast evaluate` all use, so what selects a checkpoint is what its report scores.

    report = evaluate({"model": predict, **baselines(96, 512, season=24)}, data.test, data.scaler)
    ovcast evaluate default ../shared/data/etth1/ETTh1.csv --splits etth1
    ovcast evaluate models/default ETTh1.csv --splits etth1      # the converted IR, no torch

The standard protocol (ETTh1 and the Granite model cards): a standard scaler fitted on the
train rows, every window of the split at stride 1, MSE and MAE over every scored cell
(window, step, target channel) in the scaled space.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..errors import DataError
from ..scaling import Scaler
from .config import EvaluateConfig
from .forecasters import Forecaster, baselines, load_forecaster
from .metrics import ErrorSums
from .report import Examples, Published, Report
from .splits import SplitData, Windows, split_series

# Published ETTh1 test figures (horizon 96, context 512 unless noted), scaled space.
PUBLISHED_ETTH1 = [
    Published("ibm-granite/granite-timeseries-patchtst (model card)", 0.3881),
    Published("ibm-granite/granite-timeseries-patchtsmixer (model card)", 0.3699),
    Published("PatchTST/64 paper (L=512, P=16, S=8)", 0.370, 0.400),
    Published("PatchTST/42 paper (L=336)", 0.375, 0.399),
]


def evaluate(
    forecasters: Mapping[str, Forecaster],
    windows: Windows,
    scaler: Scaler,
    *,
    batch_size: int = 256,
    examples: int = 0,
    data: str = "",
    split: str = "test",
    units: str = "",
) -> Report:
    """Every forecaster's errors over every window, on the scored target steps and on all."""
    horizon, targets = windows.prediction_length, list(windows.targets)
    scored = {name: ErrorSums(horizon) for name in forecasters}
    every = {name: ErrorSums(horizon) for name in forecasters}
    for batch in windows.batches(batch_size):
        truth = batch.futures[..., targets]  # (batch, horizon, targets)
        truth_units, last_units = _units(scaler, windows, truth, batch.contexts[:, -1:, targets])
        all_steps = np.ones_like(batch.scored)
        for name, forecast in forecasters.items():
            pred = forecast(batch.contexts)[..., targets]
            in_units = (_units(scaler, windows, pred)[0], truth_units, last_units)
            scored[name].add(pred, truth, in_units, batch.scored)
            every[name].add(pred, truth, in_units, all_steps)
    return Report(
        data=data,
        split=split,
        windows=len(windows),
        prediction_length=horizon,
        targets=windows.target_names,
        scoring=windows.scoring,
        scored=scored,
        every=every,
        units=units,
        examples=_examples(forecasters, windows, scaler, examples) if examples else None,
    )


def split_to_score(
    config: EvaluateConfig, context_length: int, prediction_length: int, num_channels: int
) -> tuple[Windows, SplitData, tuple[str, ...]]:
    """The windows of ``config.split`` for a model of these shapes, the whole split (its
    scaler fitted on the train rows) and the CSV's columns (the model's channels, checked)."""
    series = config.read()
    if len(series.columns) != num_channels:
        raise DataError(
            f"{config.model} takes {num_channels} channels; {config.data} gives "
            f"{len(series.columns)} ({', '.join(series.columns)}). Choose them with --columns"
        )
    data = split_series(
        series, config, context_length, prediction_length, targets=config.target_columns
    )
    windows = getattr(data, config.split).subsample(config.max_windows)
    return windows, data, series.columns


def evaluate_model(config: EvaluateConfig) -> Report:
    """MODEL and the naive baselines on one split of a CSV (``ovcast evaluate``)."""
    model = load_forecaster(config.model)
    windows, data, columns = split_to_score(
        config, model.context_length, model.prediction_length, model.num_channels
    )
    forecasters = {
        model.label: model.predict,
        **baselines(model.prediction_length, model.context_length, season=config.season),
    }
    report = evaluate(
        forecasters,
        windows,
        data.scaler,
        batch_size=config.batch_size,
        data=str(config.data),
        split=config.split,
    )
    if _is_etth1_protocol(columns, config) and len(windows) == len(data.test):
        report.published = PUBLISHED_ETTH1
    return report


def _units(scaler: Scaler, windows: Windows, *scaled: np.ndarray) -> list[np.ndarray]:
    """Scaled target-channel values back in data units."""
    return [scaler.inverse_transform(x, channels=windows.targets) for x in scaled]


def _examples(
    forecasters: Mapping[str, Forecaster], windows: Windows, scaler: Scaler, n: int
) -> Examples:
    picks = np.linspace(0, len(windows) - 1, min(n, len(windows))).astype(int)
    batch = windows.gather(windows.starts[picks])
    first = windows.targets[:1]  # the first scored channel, in data units

    def units(x: np.ndarray) -> np.ndarray:
        return scaler.inverse_transform(x[..., first], channels=first)[..., 0]

    history = batch.contexts[:, -3 * windows.prediction_length :]
    return Examples(
        history=units(history),
        truth=units(batch.futures),
        forecasts={name: units(f(batch.contexts)) for name, f in forecasters.items()},
    )


def _is_etth1_protocol(columns: tuple[str, ...], config: EvaluateConfig) -> bool:
    from ..hf.loading import ETTH1_COLUMNS

    standard = config.splits == "etth1" and config.split == "test" and not config.target_columns
    return standard and columns == ETTH1_COLUMNS
