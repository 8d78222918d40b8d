"""Latency of several forecasters on the same input, measured in alternation.

Running backends one after another lets machine drift (other tenants, clock changes) hit
one more than another; alternating single calls spreads it evenly, so ratios are fair.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np


@dataclass
class LatencyStats:
    name: str
    samples_ms: np.ndarray
    batch: int = 1
    rounds: int = 0  # alternate() rounds the samples came from, in order (0: unknown)

    @property
    def p50(self) -> float:
        return float(np.percentile(self.samples_ms, 50))

    @property
    def p95(self) -> float:
        return float(np.percentile(self.samples_ms, 95))

    @property
    def p99(self) -> float:
        return float(np.percentile(self.samples_ms, 99))

    @property
    def mean(self) -> float:
        return float(self.samples_ms.mean())

    @property
    def max(self) -> float:
        return float(self.samples_ms.max())

    @property
    def forecasts_per_s(self) -> float:
        return 1e3 * self.batch / self.mean

    def to_dict(self) -> dict[str, float | str | int]:
        return {
            "name": self.name,
            "batch": self.batch,
            "n": len(self.samples_ms),
            "mean_ms": self.mean,
            "p50_ms": self.p50,
            "p95_ms": self.p95,
            "p99_ms": self.p99,
            "max_ms": self.max,
            "forecasts_per_s": self.forecasts_per_s,
        }


def alternate(
    runners: Mapping[str, Callable[[], object]],
    *,
    duration_s: float = 5.0,
    warmup: int = 3,
    batch: int = 1,
    min_rounds: int = 5,
    block: int = 1,
    settle: int = 0,
) -> dict[str, LatencyStats]:
    """Call each runner ``block`` times per round, round after round, for about ``duration_s``.

    The first ``settle`` calls of each block are not timed: after a switch, the previous
    runtime's worker threads may still be spinning (OpenMP, ONNX Runtime) and steal the cores.
    """
    for run in runners.values():
        for _ in range(warmup):
            run()
    samples: dict[str, list[float]] = {name: [] for name in runners}
    deadline = time.perf_counter() + duration_s
    rounds = 0
    while rounds < min_rounds or time.perf_counter() < deadline:
        for name, run in runners.items():
            for call in range(block):
                start = time.perf_counter_ns()
                run()
                if call >= settle:
                    samples[name].append((time.perf_counter_ns() - start) / 1e6)
        rounds += 1
    return {n: LatencyStats(n, np.array(s), batch, rounds) for n, s in samples.items()}


def ratio_per_round(numerator: LatencyStats, denominator: LatencyStats) -> np.ndarray:
    """The p50 ratio of two runners measured in the same ``alternate`` run, round by round.

    Its spread says how far the machine's noise moves the ratio: quote the median and the
    middle half, not one figure.
    """
    if not numerator.rounds or numerator.rounds != denominator.rounds:
        raise ValueError("ratio_per_round needs two runners of the same alternate() run")

    def per_round(stats: LatencyStats) -> np.ndarray:
        return np.median(stats.samples_ms.reshape(stats.rounds, -1), axis=1)

    return per_round(numerator) / per_round(denominator)
