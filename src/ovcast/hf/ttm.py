"""IBM's TinyTimeMixer (TTM): where its code comes from, its published shapes and hub branches.

TTM is not part of transformers: its classes live in granite-tsfm (``tsfm_public``), which
pins an older torch than ovcast installs, so it is installed without its dependencies (see
the README, "Install"). ``require_tsfm`` says exactly that when it is missing.

The hub keeps one branch per context/horizon pair (granite-tsfm's
``resources/model_paths_config/ttm.yaml``): ``ttm_revision(1024, 192)`` is ``'1024-192-r2'``
of ``ibm-granite/granite-timeseries-ttm-r2``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError, MissingDependencyError

FAMILY = "ttm"
MODEL_TYPE = "tinytimemixer"
ARCHITECTURE = "TinyTimeMixerForPrediction"
TSFM_VERSION = "0.3.11"
INSTALL_HINT = (
    f"pip install 'ovcast[ttm]' && pip install --no-deps granite-tsfm=={TSFM_VERSION} "
    "(granite-tsfm pins torch<2.12; --no-deps keeps the installed CPU torch; `make install` "
    "does both)"
)

R2_HUB_ID = "ibm-granite/granite-timeseries-ttm-r2"
R1_HUB_ID = "ibm-granite/granite-timeseries-ttm-r1"
R2_CONTEXTS = (512, 1024, 1536)
R2_HORIZONS = (96, 192, 336, 720)
R1_REVISIONS = {(512, 96): "main", (1024, 96): "1024_96_v1"}

# TTM-r2 512-96 as published (d_model 192, patch 64 -> 8 patches, 2 layers, 3 adaptive
# patching levels, decoder d_model 128; see shared notes, serving-anchors.md). Other contexts
# keep its 8 patches (patch_length = context / 8): a shape for training and tests, not a
# copy of those hub configs (a hub checkpoint brings its own config.json).
TTM_R2: dict[str, Any] = dict(
    context_length=512,
    prediction_length=96,
    num_input_channels=1,
    patch_length=64,
    patch_stride=64,
    d_model=192,
    num_layers=2,
    expansion_factor=2,
    adaptive_patching_levels=3,
    mode="common_channel",
    gated_attn=True,
    norm_mlp="LayerNorm",
    scaling="std",
    use_positional_encoding=False,
    dropout=0.2,
    head_dropout=0.2,
    decoder_d_model=128,
    decoder_num_layers=2,
    decoder_mode="common_channel",
    decoder_adaptive_patching_levels=0,
    use_decoder=True,
    resolution_prefix_tuning=False,
    loss="mse",
)


def require_tsfm(purpose: str) -> Any:
    """granite-tsfm's ``tsfm_public``, or an error that says how to install it here."""
    import importlib

    try:
        return importlib.import_module("tsfm_public")
    except ImportError as exc:
        raise MissingDependencyError(
            f"{purpose} needs granite-tsfm (tsfm_public), which is not installed. "
            f"Install it with: {INSTALL_HINT}"
        ) from exc


def ttm_config(**overrides: Any) -> Any:
    """A ``TinyTimeMixerConfig``: the r2 shape for the given context, with ``overrides``."""
    tsfm = require_tsfm("Building a TTM config")
    values = {**TTM_R2, **overrides}
    if "patch_length" not in overrides:
        if values["context_length"] % 8:
            raise ConfigError(
                f"context {values['context_length']}: give patch_length in --model-config "
                "(the default keeps 8 patches, so the context must divide by 8)"
            )
        values["patch_length"] = values["context_length"] // 8
    if "patch_stride" not in overrides:
        values["patch_stride"] = values["patch_length"]
    return tsfm.TinyTimeMixerConfig(**values)


def ttm_revision(context_length: int, prediction_length: int, release: str = "r2") -> str:
    """The hub branch of a published TTM of this context and horizon."""
    if release == "r1":
        revision = R1_REVISIONS.get((context_length, prediction_length))
    elif context_length in R2_CONTEXTS and prediction_length in R2_HORIZONS:
        revision = (
            "main"
            if (context_length, prediction_length) == (512, 96)
            else f"{context_length}-{prediction_length}-r2"
        )
    else:
        revision = None
    if revision is None:
        published = (
            sorted(R1_REVISIONS)
            if release == "r1"
            else [(c, h) for c in R2_CONTEXTS for h in R2_HORIZONS]
        )
        raise ConfigError(
            f"TTM-{release} has no {context_length}-{prediction_length} model; published "
            f"(context, horizon): {published}. Use --prediction-filter-length for a shorter "
            "horizon from a longer model"
        )
    return revision


def pipeline_frequency_token(freq: str, mapping: Mapping[str, int]) -> int | None:
    """The token granite-tsfm's own pipeline feeds for a preprocessor's ``freq``: its
    ``TimeSeriesPreprocessor.get_frequency_token``, run by the installed granite-tsfm (a
    model fine-tuned with granite-tsfm saw exactly this token). Its reading depends on its
    pandas: daily data stored as '1 days 00:00:00' maps to 'oov' with pandas 3. None when
    granite-tsfm cannot read ``freq`` at all.
    """
    tsfm = require_tsfm("Reading a preprocessor's frequency")
    preprocessor = tsfm.TimeSeriesPreprocessor(frequency_mapping=dict(mapping))
    try:
        return int(preprocessor.get_frequency_token(freq))
    except (ValueError, TypeError):
        return None
