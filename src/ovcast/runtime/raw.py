"""Raw units in and out: which scaler each window uses, and scaling every input that is in
data units (the window, and TTM's known future values of exogenous channels) and the forecast.

``Engine.forecast`` and the serving core (``"raw": true`` requests) both go through here, so
a package with one scaler per series (granite-tsfm's id_columns) or with exogenous inputs is
scaled the same way everywhere. Pure numpy: on the runtime path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..errors import InvalidInputError, ModelPackageError
from ..package import FUTURE_EXOGENOUS, PAST_VALUES, Manifest
from ..scaling import Scaler
from ..series_scalers import SeriesScalers


def scalers_for(
    scaler: Scaler | None,
    series_scalers: SeriesScalers | None,
    series_id: Any,
    batch: int,
    single: bool,
    *,
    where: str = "the package",
) -> list[Scaler]:
    """One scaler per window: the package's, or the series' for per-series packages.

    ``series_id``: one id for every window (a value, a tuple of values in id-column order, a
    mapping); for a batch, a list holds one id per window.
    """
    if series_scalers is not None:
        if isinstance(series_id, list) and not single:
            if len(series_id) != batch:
                raise InvalidInputError(
                    f"{len(series_id)} series ids for {batch} windows; give one per window"
                )
            return [series_scalers.get(one) for one in series_id]
        return [series_scalers.get(series_id)] * batch
    if series_id is not None:
        raise InvalidInputError(
            f"{where} has one scaler for every series; leave out series_id (got {series_id!r})"
        )
    if scaler is None:
        raise ModelPackageError(
            f"{where} carries no scaler, so raw values cannot be scaled; use model-space "
            "(scaled) values"
        )
    return [scaler] * batch


def scale_inputs(
    manifest: Manifest, scalers: list[Scaler], inputs: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Batched inputs in data units -> model space: the window, and future exogenous values
    with the exogenous channels' scalers. Other inputs pass through."""
    out = dict(inputs)
    out[PAST_VALUES] = per_window(scalers, inputs[PAST_VALUES], lambda s, x: s.transform(x))
    exogenous = manifest.exogenous_channels or []
    if FUTURE_EXOGENOUS in inputs and exogenous:
        out[FUTURE_EXOGENOUS] = per_window(
            scalers, inputs[FUTURE_EXOGENOUS], lambda s, x: s.select(exogenous).transform(x)
        )
    return out


def unscale_forecast(
    manifest: Manifest,
    scalers: list[Scaler],
    forecast: np.ndarray,
    channels: list[int] | None = None,
) -> np.ndarray:
    """Batched forecasts -> data units. ``channels``: which of the output's channels the
    last axis holds (a request's selection); None: all of them."""
    forecast_channels = manifest.forecast_channels
    chosen = forecast_channels if channels is None else [forecast_channels[c] for c in channels]
    return per_window(scalers, forecast, lambda s, y: s.inverse_transform(y, chosen))


def future_exogenous(values: Any, single: bool, channels: int) -> np.ndarray:
    """Raw future exogenous values as (batch, horizon, exogenous channels) floats."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{FUTURE_EXOGENOUS} must be numbers") from exc
    array = array[None] if single and array.ndim == 2 else array
    if array.ndim != 3 or array.shape[-1] != channels:
        raise InvalidInputError(
            f"{FUTURE_EXOGENOUS} has shape {list(np.shape(values))}; expected [horizon, "
            f"{channels}] or [batch, horizon, {channels}] (the exogenous channels' known "
            "future values)"
        )
    return array


def per_window(
    scalers: list[Scaler], values: np.ndarray, apply: Callable[[Scaler, np.ndarray], np.ndarray]
) -> np.ndarray:
    """``apply`` each window's scaler to it; one call for the whole batch when they are one."""
    if all(s is scalers[0] for s in scalers):
        return apply(scalers[0], values)
    if len(values) != len(scalers):
        raise InvalidInputError(f"{len(values)} windows for {len(scalers)} series ids")
    return np.stack([apply(s, v) for s, v in zip(scalers, values, strict=True)])
