"""Checking and reading model inputs: one place that says what a window must look like.

A window is (context_length, channels); a batch is (batch, context_length, channels).
Numbers only, finite, float32 after conversion. Every problem raises ``InvalidInputError``
naming the expected shape, so a server can answer it and go on.

Some packages (TTM) take more inputs than the window: a frequency token, future values of
exogenous channels, an observed mask. ``model_feeds`` checks them against the manifest and
returns every input in the IR's order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, InvalidInputError
from ..package import FREQ_TOKEN, FUTURE_EXOGENOUS, OBSERVED_MASK, Manifest, TensorSpec
from ..preprocessor import frequency_token

EXAMPLE_SEED = 20240117


def as_batch(
    past_values: Any, context_length: int, num_channels: int, *, allow_nan: bool = False
) -> tuple[np.ndarray, bool]:
    """Return a C-contiguous float32 (batch, context, channels) array and whether it was 2-D.

    ``allow_nan``: NaN marks a missing value (for packages with an observed-mask input);
    infinities are refused all the same.
    """
    expected = f"[{context_length}, {num_channels}] or [batch, {context_length}, {num_channels}]"
    if isinstance(past_values, np.ndarray):
        array = past_values
    else:
        try:
            array = np.asarray(past_values)
        except ValueError as exc:  # ragged nested lists
            raise InvalidInputError(f"past_values is ragged; expected a {expected} array") from exc
    if array.dtype == object:
        raise InvalidInputError(
            f"past_values is ragged or holds non-numbers; expected {expected} floats"
        )
    if array.dtype.kind not in "fiu":
        raise InvalidInputError(
            f"past_values must be numbers, got dtype {array.dtype}; expected {expected} floats"
        )
    if array.size == 0:
        raise InvalidInputError(f"past_values is empty; expected {expected}")
    single = array.ndim == 2
    if single:
        array = array[None]
    if array.ndim != 3 or array.shape[1:] != (context_length, num_channels):
        shape = list(array.shape[1:] if single else array.shape)
        raise InvalidInputError(f"past_values has shape {shape}; expected {expected}")
    with np.errstate(over="ignore"):  # beyond float32's range becomes inf: reported below
        array = np.ascontiguousarray(array, dtype=np.float32)
    bad_values = np.isinf(array) if allow_nan else ~np.isfinite(array)
    if bad_values.any():
        bad = np.argwhere(bad_values)[0].tolist()
        where = bad[1:] if single else bad
        what, allowed = ("inf", "; NaN marks a missing value") if allow_nan else ("NaN or inf", "")
        raise InvalidInputError(
            f"past_values has {what} (first at index {where}); expected finite numbers "
            f"(a value beyond float32's range, ±3.4e38, counts as inf){allowed}"
        )
    return array, single


def model_feeds(
    manifest: Manifest, past_values: Any, inputs: Mapping[str, Any]
) -> tuple[list[np.ndarray], bool]:
    """Every model input in the IR's order, checked, and whether the request was one window.

    ``inputs`` holds the inputs besides ``past_values`` by name. Missing ones take their
    default where the package has one (the frequency token it was converted for; an
    observed mask from the NaNs of ``past_values``); an unknown name is an error.
    """
    extras = {spec.name: spec for spec in manifest.extra_inputs}
    unknown = sorted(set(inputs) - set(extras))
    if unknown:
        accepted = ", ".join(extras) or "none"
        raise InvalidInputError(
            f"unknown input(s) {unknown}; {manifest.name} takes past_values and "
            f"{'these others: ' + accepted if extras else 'nothing else'}"
        )
    has_mask = OBSERVED_MASK in extras
    batch, single = as_batch(
        past_values, manifest.context_length, manifest.num_input_channels, allow_nan=has_mask
    )
    if not extras:
        return [batch], single
    feeds = [batch]
    for spec in manifest.extra_inputs:
        given = inputs.get(spec.name)
        if spec.name == OBSERVED_MASK:
            observed = ~np.isnan(batch)
            if given is None:
                mask = observed.astype(np.float32)
            else:
                mask = _extra(spec, given, len(batch), single)
                if np.any((mask != 0) & (mask != 1)):
                    raise InvalidInputError(f"{OBSERVED_MASK} must hold only 0 and 1")
                mask = np.where(observed, mask, 0).astype(np.float32)
            _require_observed(mask, manifest.channel_names)
            feeds[0] = np.nan_to_num(batch, nan=0.0)
            feeds.append(mask)
        elif spec.name == FREQ_TOKEN:
            feeds.append(_freq_token(manifest, spec, given, len(batch), single))
        elif given is None:
            raise InvalidInputError(
                f"{manifest.name} needs the input {spec.name!r} ({spec.description}), shape "
                f"{_shape_text(spec, single)}"
            )
        else:
            feeds.append(_extra(spec, given, len(batch), single))
    return feeds, single


def _require_observed(mask: np.ndarray, names: Sequence[str]) -> None:
    """Every channel of every window needs an observed value: with none, the model sees only
    its own fill and returns a confident-looking forecast of nothing (the training mean)."""
    empty = np.argwhere(~mask.any(axis=1))  # (window, channel) pairs with no observed value
    if len(empty):
        window, channel = (int(v) for v in empty[0])
        name = names[channel] if channel < len(names) else f"channel_{channel}"
        raise InvalidInputError(
            f"window {window} has no observed value in channel {channel} ({name!r}): every "
            f"value is missing (NaN) or masked out; a forecast needs at least one observed "
            f"value per channel ({len(empty)} such window channel(s) in the request)"
        )


def _freq_token(
    manifest: Manifest, spec: TensorSpec, given: Any, batch: int, single: bool
) -> np.ndarray:
    frequency = manifest.frequency or {}
    vocab, mapping = int(frequency.get("vocab_size", 0)), frequency.get("mapping") or {}
    if given is None:
        if frequency.get("default") is None:
            raise InvalidInputError(
                f"{manifest.name} needs the input {FREQ_TOKEN!r} ({spec.description}): an "
                f"integer below {vocab} or one of {sorted(mapping)}"
            )
        given = frequency["default"]
    if isinstance(given, str):
        given = named_frequency_token(manifest, given)
    tokens = np.asarray(given)
    if tokens.ndim == 0 or (single and tokens.shape == (1,)):
        tokens = np.full(batch, tokens.reshape(()).item() if tokens.size == 1 else 0)
    if tokens.dtype.kind not in "iuf" or tokens.shape != (batch,):
        raise InvalidInputError(
            f"{FREQ_TOKEN} must be one integer or {batch} (one per window), got shape "
            f"{list(tokens.shape)} of {tokens.dtype}"
        )
    if np.any(tokens != np.round(tokens)) or np.any(tokens < 0) or np.any(tokens >= vocab):
        raise InvalidInputError(f"{FREQ_TOKEN} must be integers in [0, {vocab})")
    return tokens.astype(np.int64)


def named_frequency_token(manifest: Manifest, name: str) -> int:
    """The token of a frequency given as text: a period ('h', '1h', '60min', 'D') or digits."""
    frequency = manifest.frequency or {}
    mapping, vocab = frequency.get("mapping") or {}, int(frequency.get("vocab_size", 0))
    text = name.strip()
    if text.isascii() and text.isdigit():
        if len(text) > 9 or int(text) >= vocab:  # never a number too large for int64
            raise InvalidInputError(f"{FREQ_TOKEN} must be integers in [0, {vocab})")
        return int(text)
    token = frequency_token(name, mapping)
    if token is None:
        raise InvalidInputError(
            f"unknown frequency {name[:40]!r}; expected one of {sorted(mapping)} (or the same "
            f"period spelt otherwise, such as '60min' for 'h') or a token below {vocab}"
        )
    return token


def _extra(spec: TensorSpec, given: Any, batch: int, single: bool) -> np.ndarray:
    """A float input whose shape is [batch, ...] (or without the batch for one window)."""
    expected = _shape_text(spec, single)
    try:
        array = np.asarray(given, dtype=np.float32)
    except (ValueError, TypeError) as exc:
        raise InvalidInputError(f"{spec.name} must be numbers of shape {expected}") from exc
    if single and array.ndim == len(spec.shape) - 1:
        array = array[None]
    if array.shape != (batch, *spec.shape[1:]):
        raise InvalidInputError(
            f"{spec.name} has shape {list(array.shape)}; expected {expected} ({spec.description})"
        )
    if not np.isfinite(array).all():
        raise InvalidInputError(f"{spec.name} has NaN or inf; expected finite numbers")
    return np.ascontiguousarray(array)


def _shape_text(spec: TensorSpec, single: bool) -> str:
    rest = list(spec.shape[1:])
    return str(rest) if single else str(["batch", *rest])


def example_inputs(
    specs: Sequence[TensorSpec], batch: int, *, vocab_size: int = 1, seed: int = EXAMPLE_SEED
) -> dict[str, np.ndarray]:
    """Plausible values for the inputs besides past_values (warm-up, parity, benchmarks):
    every frequency token below ``vocab_size`` in turn, unit-scale random walks of future
    exogenous values, a mask with a few missing values. Deterministic for a batch and seed."""
    rng = np.random.default_rng(seed + batch)
    values: dict[str, np.ndarray] = {}
    for spec in specs:
        if spec.name == FREQ_TOKEN:
            values[spec.name] = (np.arange(batch) % max(1, vocab_size)).astype(np.int64)
        elif spec.name == FUTURE_EXOGENOUS:
            shape = (batch, *spec.shape[1:])
            steps = rng.standard_normal(shape) / np.sqrt(shape[1])
            values[spec.name] = np.cumsum(steps, axis=1).astype(np.float32)
        elif spec.name == OBSERVED_MASK:
            shape = (batch, *spec.shape[1:])
            values[spec.name] = (rng.uniform(size=shape) > 0.1).astype(np.float32)
    return values


def read_array(path: str | Path) -> np.ndarray:
    """The values of a window or batch in a .npy, .json or .csv file (see ``series.read_series``)."""
    from .series import read_series

    return np.asarray(read_series(path).numbers(), dtype=np.float32)


def sliding_windows(series: np.ndarray, context_length: int, *, max_windows: int = 0) -> np.ndarray:
    """Windows (n, context, channels) cut from a long (time, channels) series, evenly spaced."""
    n = series.shape[0] - context_length + 1
    if n < 1:
        raise DataError(
            f"series of {series.shape[0]} rows is shorter than the context {context_length}"
        )
    starts = np.arange(n)
    if max_windows and n > max_windows:
        starts = np.linspace(0, n - 1, max_windows).astype(int)
    return series[starts[:, None] + np.arange(context_length)[None, :]]
