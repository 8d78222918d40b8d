"""Export-time rewrites that make Granite forecasters cheaper for OpenVINO's CPU plugin.

Each rewrite swaps the ``forward`` of some module instances (instance attributes only, as
``exportable_patchify`` does) for the same function written in a form the CPU plugin runs
better, and restores them on exit. They hold in eval mode, which is how models are exported,
and every export is parity-checked against PyTorch as before.

- ``batchnorm-affine``: the BatchNorm sublayers of PatchTST (``norm_type='batchnorm'``, the
  Granite setting) and of PatchTSMixer (``norm_mlp='BatchNorm'``) normalise the d_model
  features as transpose -> BatchNorm1d -> transpose. With frozen running statistics that is
  a per-feature affine map on the last axis, ``x * scale + shift``. Traced as written,
  OpenVINO fuses the BatchNorm into the following projections and keeps a transpose in front
  of each of them (q, k, v and the feed-forward: 12 per forward for Granite PatchTST); as an
  affine map it folds into the residual Add and the transposes go.

What was measured and is not here (attention reformulations, a packed QKV projection), with
the figures: docs/PERFORMANCE.md, Analysis.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Callable, Iterator
from typing import Any

import torch

# Classes whose forward is exactly ``batchnorm(x.transpose(1, 2)).transpose(1, 2)`` over a
# ``batchnorm`` BatchNorm1d of d_model features (transformers marks them as copies of each other).
TRANSPOSED_BATCHNORMS = ("PatchTSTBatchNorm", "PatchTSMixerBatchNorm", "TinyTimeMixerBatchNorm")


def _affine_forward(self: Any, inputs: torch.Tensor) -> torch.Tensor:
    """(batch, sequence, d_model) -> the same, normalised per feature with frozen statistics."""
    return inputs * self._ovcast_scale + self._ovcast_shift


def _frozen_batchnorm(module: torch.nn.Module) -> torch.nn.BatchNorm1d | None:
    """The module's BatchNorm1d if it normalises with running statistics (eval mode)."""
    norm = getattr(module, "batchnorm", None)
    if type(module).__name__ not in TRANSPOSED_BATCHNORMS:
        return None
    if not isinstance(norm, torch.nn.BatchNorm1d) or norm.training:
        return None
    if norm.running_mean is None or norm.running_var is None:  # track_running_stats=False
        return None
    return norm


@contextlib.contextmanager
def affine_batchnorm(model: torch.nn.Module) -> Iterator[int]:
    """Within the block, transposed BatchNorm sublayers run as ``x * scale + shift``; yields
    how many were rewritten."""
    rewritten = []
    try:
        for module in model.modules():
            norm = _frozen_batchnorm(module)
            if norm is None:
                continue
            var = norm.running_var.detach().double()
            scale = torch.rsqrt(var + norm.eps)
            shift = -norm.running_mean.detach().double() * scale
            if norm.weight is not None:
                scale = scale * norm.weight.detach().double()
                shift = shift * norm.weight.detach().double()
            if norm.bias is not None:
                shift = shift + norm.bias.detach().double()
            module._ovcast_scale = scale.float()
            module._ovcast_shift = shift.float()
            module.forward = types.MethodType(_affine_forward, module)
            rewritten.append(module)
        yield len(rewritten)
    finally:
        for module in rewritten:
            for name in ("forward", "_ovcast_scale", "_ovcast_shift"):
                module.__dict__.pop(name, None)


# name -> rewrite (a context manager over a model that yields how many modules it changed)
REWRITES: dict[str, Callable[[torch.nn.Module], contextlib.AbstractContextManager[int]]] = {
    "batchnorm-affine": affine_batchnorm,
}


@contextlib.contextmanager
def speed_rewrites(model: torch.nn.Module, enabled: bool = True) -> Iterator[list[str]]:
    """Apply every rewrite in ``REWRITES`` (none when not ``enabled``); yields the names of
    those that found something to change, for the manifest."""
    applied: list[str] = []
    with contextlib.ExitStack() as stack:
        if enabled:
            for name, rewrite in REWRITES.items():
                if stack.enter_context(rewrite(model)):
                    applied.append(name)
        yield applied
