"""Train a Granite-architecture PatchTST / PatchTSMixer on a CSV, on CPU (`ovcast train`).

    ovcast train data.csv --out runs/etth1 --splits etth1 --epochs 10 --seed 42

CSV -> series -> splits and a scaler fitted on the train rows -> a new model (or
``init_from``'s) -> the training loop (``loop.fit``). OUT/best is a self-contained MODEL for
``ovcast convert`` and ``ovcast evaluate``: weights, scaler.json and training.json (this
config and the history). On 2 cores a full ETTh1 epoch takes minutes; ``windows_per_epoch``
trades epoch length for more validations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError, require
from .config import TrainConfig
from .data import fingerprint
from .loop import TrainResult, fit
from .splits import split_series


def train(config: TrainConfig, *, resume: bool = False, progress: bool = True) -> TrainResult:
    """Run training; returns where the best checkpoint is and the validation history."""
    torch = require("torch", extra="convert", purpose="Training")
    torch.manual_seed(config.seed)  # before the model's weights are drawn
    series = config.read()
    data = split_series(
        series,
        config,
        config.context_length,
        config.prediction_length,
        targets=config.target_columns,
    )
    model = _model(config, len(series.columns))
    return fit(
        model,
        data,
        config,
        Path(config.out),
        starts_trained=config.init_from is not None,
        resume=resume,
        progress=progress,
        data_source=fingerprint(config.data, series),
    )


# TTM settings whose forecasts need more than windows of the data's columns, which is what
# training feeds and scores: the option and what to do instead.
UNTRAINABLE_TTM = {
    "resolution_prefix_tuning": "it needs a frequency token per window, which training does "
    "not feed; leave it out (or fine-tune a published r2 model with `ovcast finetune`)",
    "prediction_channel_indices": "training forecasts and scores every column; choose the "
    "scored columns with --targets",
    "enable_forecast_channel_mixing": "with exogenous channels it needs their future values, "
    "which training does not feed; leave it out",
}


def _model(config: TrainConfig, num_channels: int) -> Any:
    """A new Granite-config model, or ``init_from``'s, checked against the run's shapes."""
    if config.init_from is None:
        from ..hf.configs import new_model

        model = new_model(
            config.family,
            context_length=config.context_length,
            prediction_length=config.prediction_length,
            num_input_channels=num_channels,
            **config.model_overrides,
        )
        _refuse_untrainable(model.config, "--model-config")
        return model
    from ..hf.loading import load_model, resolve_source

    model = load_model(resolve_source(config.init_from))
    c = model.config
    found = (c.context_length, c.prediction_length, c.num_input_channels)
    wanted = (config.context_length, config.prediction_length, num_channels)
    if found != wanted:
        raise DataError(
            f"--init-from {config.init_from} has context, horizon and channels {found}; "
            f"this run needs {wanted} (--context, --horizon, the data's columns)"
        )
    _refuse_untrainable(c, f"--init-from {config.init_from}")
    return model


def _refuse_untrainable(model_config: Any, where: str) -> None:
    """A TTM setting training cannot honour is a ConfigError naming it, not a crash mid-run."""
    exogenous = getattr(model_config, "exogenous_channel_indices", None)
    for name, why in UNTRAINABLE_TTM.items():
        value = getattr(model_config, name, None)
        if name == "enable_forecast_channel_mixing" and not exogenous:
            continue  # mixing the forecast channels alone needs nothing more
        if value:
            raise ConfigError(f"{where} has {name}={value!r}: `ovcast train` cannot use it; {why}")
