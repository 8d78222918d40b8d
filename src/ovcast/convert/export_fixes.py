"""What tracing needs from a HuggingFace forecaster: patchify without ``unfold``, one output.

OpenVINO's PyTorch frontend fails on PatchTST / PatchTSMixer with ``Conversion is failed
for: aten::unfold``. The patchify step is a fixed sliding window over the context, so
it can be written with ops every exporter handles:

- stride == patch length: the windows tile the context; a reshape does it;
- stride <  patch length: the windows overlap; an index gather with a constant index does it.

``exportable_patchify(model)`` swaps the forward of the model's own patchify modules
(instance attributes only) and restores them on exit: nothing global changes, and the
model is untouched after the export.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator
from typing import Any

import torch


def _patchify_forward(self: Any, past_values: torch.Tensor) -> torch.Tensor:
    """(batch, context, channels) -> (batch, channels, num_patches, patch_length)."""
    channels = past_values.shape[-1]
    x = past_values[:, self.sequence_start :, :]  # (batch, new_sequence_length, channels)
    if self.patch_stride == self.patch_length:
        x = x.reshape(-1, self.num_patches, self.patch_length, channels)
    else:
        x = torch.index_select(x, 1, self._ovcast_patch_index)  # (batch, patches * length, ch)
        x = x.reshape(-1, self.num_patches, self.patch_length, channels)
    return x.permute(0, 3, 1, 2).contiguous()  # (batch, channels, num_patches, patch_length)


# TinyTimeMixer's (granite-tsfm) has PatchTST's attributes and output layout.
PATCHIFY_MODULES = ("PatchTSTPatchify", "PatchTSMixerPatchify", "TinyTimeMixerPatchify")


def _is_patchify(module: torch.nn.Module) -> bool:
    return type(module).__name__ in PATCHIFY_MODULES and all(
        hasattr(module, a)
        for a in ("sequence_start", "patch_length", "patch_stride", "num_patches")
    )


@contextlib.contextmanager
def exportable_patchify(model: torch.nn.Module) -> Iterator[int]:
    """Within the block, the model's patchify modules avoid ``unfold``; yields how many."""
    patched = [m for m in model.modules() if _is_patchify(m)]
    try:
        for m in patched:
            start = torch.arange(m.num_patches) * m.patch_stride
            m._ovcast_patch_index = (
                start[:, None] + torch.arange(m.patch_length)[None, :]
            ).reshape(-1)
            m.forward = types.MethodType(_patchify_forward, m)
        yield len(patched)
    finally:
        for m in patched:
            m.__dict__.pop("forward", None)
            m.__dict__.pop("_ovcast_patch_index", None)


class ForecastOnly(torch.nn.Module):
    """Wraps a ``*ForPrediction`` model so tracing sees one tensor in and one tensor out."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, past_values: torch.Tensor) -> torch.Tensor:
        # (batch, context, channels) -> (batch, horizon, channels)
        return self.inner(past_values=past_values).prediction_outputs
