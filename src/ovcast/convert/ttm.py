"""TinyTimeMixer export: every input the model takes, named, described and traced.

The IR's inputs, in this order (``package.py`` names them):

- ``past_values``          [batch, context, channels]  always;
- ``past_observed_mask``   [batch, context, channels]  on request (``observed_mask=True``):
                           1 observed, 0 missing; the Engine derives it from NaNs;
- ``freq_token``           [batch] int64               with resolution prefix tuning, unless
                           a token is fixed at conversion (then it is a constant in the IR);
- ``future_exogenous``     [batch, horizon, exogenous] with forecast channel mixing over
                           exogenous channels: their known future values (the other future
                           values the model is handed are zeros, as granite-tsfm's pipeline
                           does).

The output is ``prediction_outputs`` [batch, horizon, forecast channels]: the horizon is
``prediction_filter_length`` when set, the channels ``prediction_channel_indices`` (sorted,
as TTM orders them) when set. Patchify is made exportable by ``export_fixes`` (TTM's
patchify module has PatchTST's attributes).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..errors import ConversionError
from ..package import FREQ_TOKEN, FUTURE_EXOGENOUS, OBSERVED_MASK, TensorSpec
from .signature import Signature, output_spec, past_values_spec

log = logging.getLogger(__name__)

POINT_LOSSES = ("mse", "mae", "huber", "pinball")


class TTMForecast(torch.nn.Module):
    """TinyTimeMixerForPrediction with positional inputs named by ``names``."""

    def __init__(
        self,
        inner: torch.nn.Module,
        names: Sequence[str],
        *,
        fixed_token: int | None,
        exogenous: Sequence[int],
    ) -> None:
        super().__init__()
        self.inner = inner
        self.names = list(names)
        self.fixed_token = fixed_token
        self.exogenous = list(exogenous)
        self.channels = int(inner.config.num_input_channels)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        given = dict(zip(self.names, inputs, strict=True))
        past = given["past_values"]
        kwargs: dict[str, Any] = {"past_values": past, "return_loss": False}
        if OBSERVED_MASK in given:
            kwargs["past_observed_mask"] = given[OBSERVED_MASK]
        if FREQ_TOKEN in given:
            kwargs["freq_token"] = given[FREQ_TOKEN]
        elif self.fixed_token is not None:  # a constant of the graph, per window of the batch
            kwargs["freq_token"] = torch.zeros_like(past[:, 0, 0]).long() + self.fixed_token
        if FUTURE_EXOGENOUS in given:
            kwargs["future_values"] = self._future_values(given[FUTURE_EXOGENOUS])
        return self.inner(**kwargs).prediction_outputs

    def _future_values(self, exogenous: torch.Tensor) -> torch.Tensor:
        """(batch, horizon, exogenous) -> (batch, horizon, channels), zeros elsewhere."""
        zeros = torch.zeros_like(exogenous[..., :1])
        columns = {c: exogenous[..., i : i + 1] for i, c in enumerate(self.exogenous)}
        return torch.cat([columns.get(c, zeros) for c in range(self.channels)], dim=-1)


def ttm_signature(
    model: Any,
    *,
    observed_mask: bool = False,
    fixed_freq_token: int | None = None,
    default_freq_token: int | None = None,
    frequency_mapping: Mapping[str, int] | None = None,
) -> Signature:
    """The inputs and output of a TTM's export (see the module docstring)."""
    c = model.config
    _refuse_unsupported(c)
    context, channels = c.context_length, c.num_input_channels
    horizon = c.prediction_filter_length or c.prediction_length
    forecast = sorted(c.prediction_channel_indices) if c.prediction_channel_indices else None
    mixes_exogenous = bool(c.enable_forecast_channel_mixing and c.exogenous_channel_indices)
    exogenous = list(c.exogenous_channel_indices) if mixes_exogenous else []
    inputs = [past_values_spec(context, channels)]
    if observed_mask:
        inputs.append(
            TensorSpec(
                OBSERVED_MASK,
                [-1, context, channels],
                "FP32",
                "1 where past_values is observed, 0 where it is missing (default: 0 where "
                "past_values is NaN); TTM's scaling ignores missing values",
            )
        )
    frequency = None
    if c.resolution_prefix_tuning:
        vocab = int(c.frequency_token_vocab_size)
        token = fixed_freq_token
        if token is not None and not 0 <= token < vocab:
            raise ConversionError(f"frequency token {token} is outside [0, {vocab})")
        if default_freq_token is not None and not 0 <= default_freq_token < vocab:
            log.warning(
                "the preprocessor's frequency token %d is outside the model's [0, %d): "
                "requests must give freq_token",
                default_freq_token,
                vocab,
            )
            default_freq_token = None
        frequency = {
            "vocab_size": vocab,
            "default": token if token is not None else default_freq_token,
            "mapping": {k: v for k, v in (frequency_mapping or {}).items() if 0 <= v < vocab},
            "fixed": token,
        }
        if token is None:
            inputs.append(
                TensorSpec(
                    FREQ_TOKEN,
                    [-1],
                    "INT64",
                    f"the data's resolution as TTM's frequency token, one per window (0..{vocab - 1}; "
                    "granite-tsfm's mapping: 'min' 1, 'h' 7, 'D' 8, ...)",
                )
            )
    elif fixed_freq_token is not None:
        raise ConversionError(
            "a frequency token was given, but this TTM has no resolution prefix tuning"
        )
    if exogenous:
        inputs.append(
            TensorSpec(
                FUTURE_EXOGENOUS,
                [-1, horizon, len(exogenous)],
                "FP32",
                f"the known future values of the exogenous channels {exogenous} over the "
                "forecast horizon, in model space",
            )
        )
    module = TTMForecast(
        model,
        [spec.name for spec in inputs],
        fixed_token=fixed_freq_token,
        exogenous=exogenous,
    ).eval()
    return Signature(
        module,
        inputs,
        output_spec(horizon, len(forecast) if forecast else channels),
        output_channels=forecast,
        exogenous_channels=exogenous or None,
        frequency=frequency,
    )


def _refuse_bad_channels(config: Any) -> None:
    """Channel indices granite-tsfm takes but that do not make a forecaster: a target twice
    (two identical output columns), a negative or out-of-range index (recorded as such in
    the manifest), an exogenous channel that is also a target (its known future would stand
    in for the forecast)."""
    channels = int(config.num_input_channels)
    targets = list(config.prediction_channel_indices or [])
    mixes = bool(config.enable_forecast_channel_mixing and config.exogenous_channel_indices)
    exogenous = list(config.exogenous_channel_indices or []) if mixes else []
    for name, indices in (
        ("prediction_channel_indices", targets),
        ("exogenous_channel_indices", exogenous),
    ):
        bad = [i for i in indices if not isinstance(i, int) or not 0 <= i < channels]
        if bad:
            raise ConversionError(
                f"{name} {indices} has {bad} outside the {channels} input channels "
                f"(expected indices 0..{channels - 1})"
            )
        if len(set(indices)) != len(indices):
            raise ConversionError(f"{name} {indices} names a channel more than once")
    both = sorted(set(targets) & set(exogenous))
    if both:
        raise ConversionError(
            f"channels {both} are both forecast (prediction_channel_indices {targets}) and "
            f"exogenous (exogenous_channel_indices {exogenous}); a channel is one or the other"
        )


def _refuse_unsupported(config: Any) -> None:
    _refuse_bad_channels(config)
    if getattr(config, "loss", "mse") not in POINT_LOSSES:
        raise ConversionError(
            f"the model has loss={config.loss!r}; ovcast converts point forecasters "
            f"(loss one of {POINT_LOSSES})"
        )
    if getattr(config, "categorical_vocab_size_list", None):
        raise ConversionError(
            "the model embeds static categorical values (categorical_vocab_size_list); ovcast "
            "does not export that input"
        )
