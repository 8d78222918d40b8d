"""Score forecasters on the same windows: the one evaluation that train, finetune and
`ovcast evaluate` all use, so what selects a checkpoint is what its report scores.

    report = evaluate({"model": predict, **baselines(96, 512, season=24)}, data.test, data.scaler)
    ovcast evaluate default ../shared/data/etth1/ETTh1.csv --splits etth1
    ovcast evaluate models/default ETTh1.csv --splits etth1      # the converted IR, no torch

The standard protocol (ETTh1 and the Granite model cards): a standard scaler fitted on the
train rows, every window of the split at stride 1, MSE and MAE over every scored cell
(window, step, target channel) in the scaled space.

A model that ``ovcast train`` made knows its run (training.json: the data's SHA-256, the
rows of each split, its channels, and its scaler beside it). Evaluating it takes the run's
splits unless told otherwise, reads the channels by name, and on the run's own data uses
the run's scaler and refuses splits whose scored rows the run trained or selected on: a
default ``train`` + ``evaluate`` pair cannot leak.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from .._csv import Table, name_key
from ..errors import ConfigError, DataError
from ..scaling import Scaler
from .config import EvaluateConfig
from .data import Series, read_csv_table, table_series
from .forecasters import RUN_FILE, Forecaster, LoadedModel, baselines, load_forecaster
from .metrics import ErrorSums
from .report import Examples, Published, Report
from .splits import SplitData, Splits, Windows, split_series

log = logging.getLogger(__name__)

# Published ETTh1 test figures (horizon 96, context 512 unless noted), scaled space: shown
# only beside a model of that protocol (``_published_protocol``).
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


def evaluate_model(config: EvaluateConfig) -> Report:
    """MODEL and the naive baselines on one split of a CSV (``ovcast evaluate``)."""
    model = load_forecaster(config.model)
    run = model.run or {}
    same_data = _is_run_data(run, config.data)
    notes: list[str] = []
    series = _read_channels(
        model.channel_names,
        model.num_channels,
        read_csv_table(config.data),
        config,
        same_data,
        notes,
    )
    split = _splits(config, run, notes)
    if same_data:
        _refuse_trained_rows(run, split, config.split, len(series), model.context_length)
    data = split_series(
        series,
        split,
        model.context_length,
        model.prediction_length,
        targets=config.target_columns,
        scaler=model.scaler if same_data else None,
    )
    if same_data and model.scaler is not None:
        notes.append(f"scaled with the run's scaler (fitted on its train rows {data.splits.train})")
    windows = getattr(data, config.split).subsample(config.max_windows)
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
    report.notes = notes
    if _published_protocol(series.columns, model, split, config) and len(windows) == len(data.test):
        report.published = PUBLISHED_ETTH1
    return report


def split_to_score(
    config: EvaluateConfig,
    context_length: int,
    prediction_length: int,
    num_channels: int,
    channel_names: Sequence[str] | None = None,
) -> tuple[Windows, SplitData, tuple[str, ...]]:
    """The windows of ``config.split`` for a model of these shapes (a package, not a run:
    its splits are those given, else the standard ETTh1 rows), the whole split (its scaler
    fitted on the train rows) and the CSV's columns, read as ``evaluate`` reads them: by the
    model's channel names when it has them, never reordered against them."""
    notes: list[str] = []
    series = _read_channels(
        tuple(channel_names) if channel_names else None,
        num_channels,
        read_csv_table(config.data),
        config,
        False,
        notes,
    )
    for note in notes:
        log.warning("%s", note)
    split = _splits(config, {}, [])
    data = split_series(
        series, split, context_length, prediction_length, targets=config.target_columns
    )
    return getattr(data, config.split).subsample(config.max_windows), data, series.columns


def _is_run_data(run: dict[str, Any], data: str) -> bool:
    """Whether ``data`` is the very file the run trained on (by SHA-256, not by name)."""
    from ..hf.loading import sha256_file

    recorded = run.get("data_source") or {}
    if not recorded.get("sha256") or not Path(data).is_file():
        return False
    if sha256_file(Path(data)) == recorded["sha256"]:
        return True
    if Path(recorded.get("path", "")).resolve() == Path(data).resolve():
        log.warning(
            "%s changed since the model's run trained on it (its SHA-256 differs): the run's "
            "splits cannot be checked against it",
            data,
        )
    return False


def _read_channels(
    names: tuple[str, ...] | None,
    num_channels: int,
    table: Table,
    config: EvaluateConfig,
    same_data: bool,
    notes: list[str],
) -> Series:
    """The model's channels (``names``, in order, when it knows them) from the CSV: by name
    when it has them all; other columns only in an order that does not swap the model's."""
    columns = config.columns
    if columns is None and names and all(table.has(n) for n in names):
        columns = list(names)
    series = table_series(
        table,
        columns=columns,
        timestamp_column=config.timestamp_column,
        time_unit=config.time_unit,
    )
    if len(series.columns) != num_channels:
        raise DataError(
            f"{config.model} takes {num_channels} channels"
            + (f" ({', '.join(names)})" if names else "")
            + f"; {config.data} gives {len(series.columns)} ({', '.join(series.columns)}). "
            "Choose them with --columns"
        )
    if names and [name_key(c) for c in series.columns] != [name_key(n) for n in names]:
        if same_data or {name_key(c) for c in series.columns} == {name_key(n) for n in names}:
            raise ConfigError(
                f"{config.model} was trained on the channels {list(names)}, in that order; "
                f"the columns {list(series.columns)} would feed it other ones. Leave --columns "
                "out (the model's channels are then read by name)"
            )
        notes.append(
            f"columns {', '.join(series.columns)} taken in order as the model's channels "
            f"{', '.join(names)} (other data than the model's)"
        )
    return series


def _splits(config: EvaluateConfig, run: dict[str, Any], notes: list[str]) -> EvaluateConfig:
    """``config`` with its splits: those given, else the run's, else the standard ETTh1 rows."""
    if config.splits is not None:
        return config
    recorded = run.get("config", {}).get("splits")
    if recorded is None:
        return replace(config, splits="etth1")
    spans = run.get("splits") or {}
    gap = config.gap if config.gap is not None else spans.get("gap", run["config"].get("gap"))
    notes.append(
        f"splits {recorded}"
        + (f" with a gap of {gap}" if gap is not None else "")
        + f": the model's run's (its {RUN_FILE})"
    )
    return replace(config, splits=recorded, gap=gap)


def _refuse_trained_rows(
    run: dict[str, Any], split: EvaluateConfig, name: str, rows: int, context: int
) -> None:
    """Refuse to score the run's own data on rows it trained on (or selected on, for test)."""
    trained = run.get("splits") or {}
    if name == "train" or "train" not in trained or split.splits is None:
        return
    spans = Splits.parse(split.splits, rows, context, gap=split.gap)
    span = spans.val if name == "val" else spans.test
    first_target = span[0] + context
    seen, what = (
        (trained["train"][1], "trained")
        if name == "val"
        else (trained["val"][1], "trained or selected its checkpoint")
    )
    if first_target < seen:
        raise ConfigError(
            f"the {name} split scores rows from {first_target} on, but the model's run "
            f"{what} on rows up to {seen} of this same file (its splits: train "
            f"{tuple(trained['train'])}, validation {tuple(trained['val'])}); its score would "
            "flatter it. Leave --splits out to use the run's splits, or choose splits whose "
            f"{name} rows start at {seen} or later"
        )


def _published_protocol(
    columns: tuple[str, ...], model: LoadedModel, split: EvaluateConfig, config: EvaluateConfig
) -> bool:
    """The published ETTh1 figures' protocol: the 7 columns, the standard test rows, every
    channel, context 512 and horizon 96. Any other model is not comparable to them."""
    from ..hf.loading import ETTH1_COLUMNS

    return (
        split.splits == "etth1"
        and config.split == "test"
        and not config.target_columns
        and columns == ETTH1_COLUMNS
        and (model.context_length, model.prediction_length) == (512, 96)
    )


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
