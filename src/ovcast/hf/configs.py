"""The published Granite configurations, as functions that build HuggingFace configs.

Values are copied from the hub's ``config.json`` of ibm-granite/granite-timeseries-patchtst
and ibm-granite/granite-timeseries-patchtsmixer (see shared notes, serving-anchors.md);
TinyTimeMixer's are in ``ttm.py``.
Tests and ``ovcast train`` build models from these so the architecture matches Granite.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any

from ..errors import ConfigError, require

GRANITE_PATCHTST: dict[str, Any] = dict(
    context_length=512,
    prediction_length=96,
    num_input_channels=7,
    patch_length=12,
    patch_stride=12,
    d_model=128,
    num_attention_heads=16,
    num_hidden_layers=3,
    ffn_dim=512,
    dropout=0.2,
    head_dropout=0.2,
    attention_dropout=0.0,
    ff_dropout=0.0,
    path_dropout=0.0,
    positional_dropout=0.0,
    norm_type="batchnorm",
    pre_norm=True,
    scaling="std",
    positional_encoding_type="sincos",
    share_embedding=True,
    share_projection=True,
    use_cls_token=True,
    channel_attention=False,
    activation_function="gelu",
    loss="mse",
    do_mask_input=False,
)

GRANITE_PATCHTSMIXER: dict[str, Any] = dict(
    context_length=512,
    prediction_length=96,
    num_input_channels=7,
    patch_length=16,
    patch_stride=16,
    d_model=48,
    num_layers=2,
    expansion_factor=3,
    dropout=0.5,
    head_dropout=0.5,
    gated_attn=True,
    mode="common_channel",
    scaling="std",
    norm_mlp="LayerNorm",
    self_attn=False,
    use_positional_encoding=False,
    positional_encoding_type="sincos",
    head_aggregation="max_pool",
    loss="mse",
)

FAMILIES = ("patchtst", "patchtsmixer", "ttm")


def granite_config(family: str = "patchtst", **overrides: Any) -> Any:
    """The config of the Granite model of ``family``, with ``overrides`` applied (TTM: a
    granite-tsfm ``TinyTimeMixerConfig``, see ``hf/ttm.py``).

    An override the config does not know (a typo such as ``d_modle``) is refused: the
    config would keep it and the model ignore it without a word.
    """
    if family == "ttm":
        from .ttm import ttm_config

        return ttm_config(**overrides)
    transformers = require("transformers", extra="convert", purpose="Building a model config")
    if family not in FAMILIES:
        raise ConfigError(f"unknown model family {family!r}; expected one of {FAMILIES}")
    cls, granite = (
        (transformers.PatchTSTConfig, GRANITE_PATCHTST)
        if family == "patchtst"
        else (transformers.PatchTSMixerConfig, GRANITE_PATCHTSMIXER)
    )
    known = set(inspect.signature(cls.__init__).parameters) | set(granite)
    unknown = sorted(set(overrides) - known - {"self", "kwargs"})
    if unknown:
        hints = [
            f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key)
            for key in unknown
            for close in [difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.75)]
        ]
        raise ConfigError(f"the {family} config has no setting {', '.join(hints)}")
    try:
        return cls(**{**granite, **overrides})
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"the {family} config refuses {overrides}: {exc}") from exc


def new_model(family: str = "patchtst", **overrides: Any) -> Any:
    """A randomly initialised ``*ForPrediction`` model with the Granite config of ``family``.

    Settings that do not fit together (a d_model the heads do not divide, a context shorter
    than a patch) are a ``ConfigError`` naming them, not a traceback from inside the model.
    """
    config = granite_config(family, **overrides)
    if family == "ttm":
        from .ttm import require_tsfm

        return require_tsfm("Building a TTM").TinyTimeMixerForPrediction(config)
    transformers = require("transformers", extra="convert", purpose="Building a model")
    cls = (
        transformers.PatchTSTForPrediction
        if family == "patchtst"
        else transformers.PatchTSMixerForPrediction
    )
    if family == "patchtst":
        d_model, heads = config.d_model, config.num_attention_heads
        if d_model % heads:
            raise ConfigError(
                f"d_model {d_model} must be a multiple of num_attention_heads {heads}"
            )
        if config.positional_encoding_type == "sincos" and d_model % 2:
            raise ConfigError(f"d_model {d_model} must be even for the sincos positional encoding")
    try:
        return cls(config)
    except (ValueError, RuntimeError, TypeError) as exc:
        shape = {k: getattr(config, k) for k in ("context_length", "patch_length", "d_model")}
        raise ConfigError(
            f"cannot build a {family} model from these settings ({shape}, and the overrides "
            f"{overrides}): {exc}"
        ) from exc
