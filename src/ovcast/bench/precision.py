"""Measure what bf16 does to a package's forecasts, and record it for the Engine's choice.

    record = check_bf16(package)                         # the package's own windows
    record = check_bf16(package, PrecisionData(data="ETTh1.csv", splits="etth1"))

Both precisions run the same windows through the same package, f32 against bf16:

- the forecast change, on the parity windows (batches 1 and 8) and on seeded synthetic
  validation windows (random walks with a 24-step cycle, context + horizon long);
- the change of the error metrics (MSE and MAE) against what really came next: on a data
  set's split when one is given (the standard protocol of ``ovcast evaluate``), else on the
  synthetic validation windows' continuations.

``runtime/precision.py`` holds the tolerances and reads the record (``ovcast tune`` and
``ovcast convert --check-bf16`` store it under ``runtime_config["precision"]["bf16"]``).
Torch-free: the package runs on OpenVINO.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..cli._options import redefault
from ..package import ModelPackage
from ..parity import PARITY_BATCHES, parity_windows
from ..runtime.precision import FORECAST_TOLERANCE, METRIC_TOLERANCE
from ..runtime.records import this_machine
from ..train.config import EvaluateConfig, SplitConfig

VALIDATION_WINDOWS = 64
VALIDATION_SEED = 7


@dataclass(kw_only=True)
class PrecisionData(EvaluateConfig):
    """A data set to measure bf16's change of MSE/MAE on (``ovcast tune --data CSV``): the
    CSV's split, scaled and cut as ``ovcast evaluate`` does (a scaler fitted on its train
    rows), the validation split by default: a choice of precision should not look at test."""

    model: str = redefault(EvaluateConfig, "model", "")
    splits: str = redefault(SplitConfig, "splits", "0.7,0.1")
    split: str = redefault(EvaluateConfig, "split", "val")


def check_bf16(package: ModelPackage, data: PrecisionData | None = None) -> dict[str, Any]:
    """bf16 against f32 on this package: forecast and metric changes, and the verdict."""

    from ..runtime.engine import Engine

    f32, bf16 = (
        Engine(package, precision_hint=hint, static_batch1=False, warmup=False)
        for hint in ("f32", "bf16")
    )
    m = package.manifest
    context, horizon, channels = m.context_length, m.prediction_length, m.num_input_channels
    series = parity_windows(context + horizon, channels, VALIDATION_WINDOWS, seed=VALIDATION_SEED)
    windows = [parity_windows(context, channels, b) for b in PARITY_BATCHES] + [series[:, :context]]
    reference = np.concatenate([f32.predict(w).reshape(-1) for w in windows]).astype(np.float64)
    changed = np.concatenate([bf16.predict(w).reshape(-1) for w in windows]) - reference
    if data is None:
        metric = _synthetic_metric(f32, bf16, series, context)
    else:
        metric = _data_metric(f32, bf16, replace(data, model=data.model or str(package.path)))
    rms_change = float(np.sqrt(np.mean(changed**2) / max(np.mean(reference**2), 1e-30)))
    within = (
        abs(metric["mse_change"]) <= METRIC_TOLERANCE
        and abs(metric["mae_change"]) <= METRIC_TOLERANCE
        and rms_change <= FORECAST_TOLERANCE
    )
    return {
        "within_tolerance": bool(within),
        "forecast_max_abs_change": float(np.abs(changed).max()),
        "forecast_rms_change": rms_change,
        "metric": metric,
        "tolerance": {"metric_change": METRIC_TOLERANCE, "forecast_rms_change": FORECAST_TOLERANCE},
        "compiled_as": bf16.config["INFERENCE_PRECISION_HINT"],
        "measured_on": this_machine(),  # it counts only here (runtime/records.py)
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def record_bf16(package: ModelPackage, record: dict[str, Any]) -> None:
    """Put a ``check_bf16`` record in the package's manifest (``save_manifest`` writes it)."""
    package.manifest.runtime_config.setdefault("precision", {})["bf16"] = record


def _changes(f32: tuple[float, float], bf16: tuple[float, float]) -> dict[str, float]:
    (mse, mae), (mse16, mae16) = f32, bf16
    return {
        "mse_f32": mse,
        "mse_bf16": mse16,
        "mse_change": (mse16 - mse) / mse if mse else 0.0,
        "mae_f32": mae,
        "mae_bf16": mae16,
        "mae_change": (mae16 - mae) / mae if mae else 0.0,
    }


def _synthetic_metric(f32: Any, bf16: Any, series: np.ndarray, context: int) -> dict[str, Any]:
    contexts, futures = series[:, :context], series[:, context:].astype(np.float64)

    def errors(engine: Any) -> tuple[float, float]:
        diff = engine.predict(contexts) - futures
        return float(np.mean(diff**2)), float(np.mean(np.abs(diff)))

    return {
        "windows": f"{len(series)} synthetic validation windows",
        **_changes(errors(f32), errors(bf16)),
    }


def _data_metric(f32: Any, bf16: Any, data: PrecisionData) -> dict[str, Any]:
    from ..train.evaluate import evaluate, split_to_score

    windows, split, _ = split_to_score(
        data, f32.context_length, f32.prediction_length, f32.num_channels, f32.channel_names
    )
    report = evaluate(
        {"f32": f32.predict, "bf16": bf16.predict},
        windows,
        split.scaler,
        batch_size=data.batch_size,
    )

    def errors(name: str) -> tuple[float, float]:
        scored = report.scored[name].over(1, f32.prediction_length)
        return scored.mse, scored.mae

    return {
        "windows": f"{Path(data.data).name}, {data.split} split, {len(windows)} windows",
        **_changes(errors("f32"), errors("bf16")),
    }
