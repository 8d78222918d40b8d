"""Evaluate a model on a CSV split next to naive baselines, in the scaled space.

    ovcast evaluate default ../shared/data/etth1/ETTh1.csv --splits etth1
    ovcast evaluate models/default ETTh1.csv --splits etth1      # the converted IR, no torch

The standard protocol (ETTh1 and the Granite model card): a standard scaler fitted on the
train rows, every window of the split at stride 1, MSE and MAE over all windows, steps and
channels. A MODEL that is a model package runs on the OpenVINO engine; anything else
('default', a checkpoint folder, a hub id) runs in PyTorch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..package import MANIFEST_FILE
from ..scaling import Scaler
from .data import Splits, gather_windows, read_csv, window_starts
from .metrics import RunningErrors, last_value, seasonal_naive

log = logging.getLogger(__name__)

# Published ETTh1 test figures (horizon 96, context 512 unless noted), scaled space.
PUBLISHED_ETTH1 = [
    ("ibm-granite/granite-timeseries-patchtst (model card)", 0.3881, None),
    ("ibm-granite/granite-timeseries-patchtsmixer (model card)", 0.3699, None),
    ("PatchTST/64 paper (L=512, P=16, S=8)", 0.370, 0.400),
    ("PatchTST/42 paper (L=336)", 0.375, 0.399),
]


@dataclass
class Row:
    name: str
    mse: float
    mae: float | None


@dataclass
class EvaluationReport:
    model: str
    data: str
    split: str
    windows: int
    rows: list[Row] = field(default_factory=list)
    published: list[Row] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "data": self.data,
            "split": self.split,
            "windows": self.windows,
            "results": [vars(r) for r in self.rows],
            "published": [vars(r) for r in self.published],
        }

    def table(self) -> str:
        lines = [
            f"{self.split} split of {self.data}: {self.windows} windows, scaled space",
            f"{'forecaster':<58} {'MSE':>8} {'MAE':>8}",
        ]
        for row in self.rows:
            lines.append(f"{row.name:<58} {row.mse:>8.4f} {row.mae:>8.4f}")
        if self.published:
            lines.append("published (not run here):")
            for row in self.published:
                mae = f"{row.mae:>8.3f}" if row.mae is not None else f"{'-':>8}"
                lines.append(f"  {row.name:<56} {row.mse:>8.4f} {mae}")
        return "\n".join(lines)


def evaluate(
    model: str | Path,
    data: str | Path,
    *,
    splits: str = "etth1",
    split: str = "test",
    columns: Sequence[str] | None = None,
    season: int = 24,
    batch_size: int = 64,
    max_windows: int = 0,
) -> EvaluationReport:
    """MSE/MAE of MODEL and of the naive baselines on one split of a CSV."""
    predict, context, horizon, label = _forecaster(model)
    series = read_csv(data, columns=columns)
    spans = Splits.parse(splits, len(series.values), context)
    if split not in ("train", "val", "test"):
        raise DataError(f"split must be train, val or test, got {split!r}")
    if spans.test[1] > len(series.values):
        raise DataError(f"the splits end at row {spans.test[1]}; {data} has {len(series.values)}")
    scaler = Scaler.fit(series.values[slice(*spans.train)], "standard")
    scaled = scaler.transform(series.values)
    starts = window_starts(getattr(spans, split), context, horizon)
    if max_windows and len(starts) > max_windows:
        starts = starts[np.linspace(0, len(starts) - 1, max_windows).astype(int)]
    forecasters: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        label: predict,
        "last value (random walk)": lambda c: last_value(c, horizon),
        f"seasonal naive ({season} steps)": lambda c: seasonal_naive(c, horizon, season),
    }
    errors = {name: RunningErrors() for name in forecasters}
    for i in range(0, len(starts), batch_size):
        contexts, targets = gather_windows(scaled, starts[i : i + batch_size], context, horizon)
        for name, forecast in forecasters.items():
            errors[name].update(forecast(contexts), targets)
    report = EvaluationReport(
        str(model), str(data), split, len(starts), [Row(n, e.mse, e.mae) for n, e in errors.items()]
    )
    if _is_etth1(series.columns, len(series.values)) and splits == "etth1" and split == "test":
        report.published = [Row(*p) for p in PUBLISHED_ETTH1]
    return report


def _forecaster(model: str | Path):
    """(predict, context, horizon, label) for a package (OpenVINO) or a checkpoint (PyTorch)."""
    if (Path(model) / MANIFEST_FILE).is_file():
        from ..runtime.engine import Engine

        engine = Engine(model)
        return (
            engine.predict,
            engine.context_length,
            engine.prediction_length,
            f"{model} (OpenVINO)",
        )
    from ..errors import require
    from ..hf.loading import load_model, resolve_source

    torch = require("torch", extra="convert", purpose="Evaluating a PyTorch checkpoint")
    hf_model = load_model(resolve_source(model))

    def predict(contexts: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return hf_model(past_values=torch.from_numpy(contexts)).prediction_outputs.numpy()

    config = hf_model.config
    return predict, config.context_length, config.prediction_length, f"{model} (PyTorch)"


def _is_etth1(columns: Sequence[str], rows: int) -> bool:
    from ..hf.loading import ETTH1_COLUMNS

    return tuple(columns) == ETTH1_COLUMNS and rows >= 14400
