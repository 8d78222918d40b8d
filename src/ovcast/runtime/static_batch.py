"""The static batch-1 fast path: the model compiled a second time for exactly one window.

For a static shape OpenVINO's CPU plugin plans memory and picks kernels once, at compile
time; for single windows, the main use (one forecast per bar close), that measured faster
than the dynamic-batch model run at batch 1 (docs/PERFORMANCE.md). The Engine compiles both
and sends single windows to this one; ``ovcast tune`` measures the two side by side and
records the winner (``runtime_config[mode]["static_batch1"]``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import openvino as ov


def batch1_model(model: ov.Model) -> ov.Model | None:
    """A copy of ``model`` with every input's dynamic batch dimension set to 1; None when no
    input has one (the model is already static)."""
    shapes = {}
    for index, port in enumerate(model.inputs):
        shape = port.get_partial_shape()
        if shape.rank.is_static and shape.rank.get_length() > 0 and shape[0].is_dynamic:
            shapes[index] = ov.PartialShape([ov.Dimension(1), *list(shape)[1:]])
    if not shapes:
        return None
    clone = model.clone()
    clone.reshape(shapes)
    return clone


def use_static_batch1(requested: bool | None, tuned: Mapping[str, Any]) -> bool:
    """The caller's choice, else what ``ovcast tune`` measured for this mode, else on."""
    if requested is not None:
        return requested
    return bool(tuned.get("static_batch1", True))
