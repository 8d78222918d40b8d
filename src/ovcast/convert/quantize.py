"""int8 post-training quantization with NNCF (``--precision int8``).

Not the default: on AVX2 CPUs without VNNI the int8 GEMMs measured slower than fp32 and
saturate (see docs/PERFORMANCE.md). Settings follow NNCF's transformer recipe; the
overflow fix is on for every layer because AVX2 u8*s8 products saturate without it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import ConversionError, require

log = logging.getLogger(__name__)
SUBSET_SIZE = 300


def quantize_int8(
    ov_model: Any,
    windows: np.ndarray,
    others: Sequence[Mapping[str, np.ndarray]] | None = None,
) -> Any:
    """Quantize an OpenVINO model, calibrated on model-space windows (n, context, channels).

    ``others``: the model's other inputs by name (TTM), one mapping per window."""
    nncf = require("nncf", extra="convert", purpose="int8 quantization")
    windows = np.ascontiguousarray(windows, dtype=np.float32)
    if windows.ndim != 3 or len(windows) == 0:
        raise ConversionError(
            f"calibration windows must be (n, context, channels), got {windows.shape}"
        )
    subset = min(SUBSET_SIZE, len(windows))
    log.info("int8: calibrating on %d windows", subset)
    if others:
        items = zip(windows[:subset], others, strict=False)
        dataset = nncf.Dataset([{"past_values": w[None], **o} for w, o in items])
    else:
        dataset = nncf.Dataset([w[None] for w in windows[:subset]])
    try:
        return nncf.quantize(
            ov_model,
            dataset,
            model_type=nncf.ModelType.TRANSFORMER,
            subset_size=subset,
            advanced_parameters=nncf.AdvancedQuantizationParameters(
                overflow_fix=nncf.OverflowFix.ENABLE
            ),
        )
    except Exception as exc:
        raise ConversionError(f"NNCF int8 quantization failed: {exc}") from exc
