"""Parity: does the IR forecast what PyTorch forecasts on the same windows?

Windows are fixed (seeded) unit-scale random walks with a daily cycle, at batch 1 and
batch 8, so every conversion is checked the same way and figures are comparable.
An fp32 IR must satisfy ``max_abs_error <= FP32_ABS_TOLERANCE * max(1, max|reference|)``;
fp16/int8 only report their error (they are approximations by design).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

FP32_ABS_TOLERANCE = 1e-4
PARITY_BATCHES = (1, 8)
PARITY_SEED = 20240117


def parity_windows(
    context_length: int, num_channels: int, batch: int, seed: int = PARITY_SEED
) -> np.ndarray:
    """(batch, context, channels) float32 windows of unit scale: random walk + a 24-step cycle."""
    rng = np.random.default_rng(seed + batch)
    steps = rng.standard_normal((batch, context_length, num_channels)) / np.sqrt(context_length)
    t = np.arange(context_length)[None, :, None]
    phase = rng.uniform(0, 2 * np.pi, (batch, 1, num_channels))
    return (np.cumsum(steps, axis=1) + 0.5 * np.sin(2 * np.pi * t / 24 + phase)).astype(np.float32)


def compare(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """Max absolute and relative (to the reference's largest magnitude) error."""
    diff = np.abs(candidate.astype(np.float64) - reference)
    peak = float(np.max(np.abs(reference)))
    return {
        "max_abs_error": float(diff.max()),
        "max_rel_error": float(diff.max() / max(peak, 1e-12)),
        "mean_abs_error": float(diff.mean()),
        "reference_peak": peak,
    }


def within_tolerance(figures: dict[str, Any], tolerance: float = FP32_ABS_TOLERANCE) -> bool:
    return figures["max_abs_error"] <= tolerance * max(1.0, figures["reference_peak"])


def reference(
    run_reference: Callable[[np.ndarray], np.ndarray], context_length: int, num_channels: int
) -> dict[int, np.ndarray]:
    """The reference's forecasts on the parity windows, by batch size."""
    return {
        batch: run_reference(parity_windows(context_length, num_channels, batch))
        for batch in PARITY_BATCHES
    }


def check(
    expected: Mapping[int, np.ndarray],
    run_candidate: Callable[[np.ndarray], np.ndarray],
    context_length: int,
    num_channels: int,
) -> dict[str, Any]:
    """Run the candidate on the parity windows; figures per batch size and the worst case."""
    per_batch = {}
    for batch, forecasts in expected.items():
        x = parity_windows(context_length, num_channels, batch)
        per_batch[f"batch_{batch}"] = compare(forecasts, run_candidate(x))
    worst = max(per_batch.values(), key=lambda f: f["max_abs_error"])
    return {**worst, "per_batch": per_batch}
