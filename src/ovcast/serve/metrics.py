"""Prometheus metrics in the text exposition format, without a client library.

Counters and histograms are guarded by one lock; ``render()`` produces the body of
``GET /metrics``.
"""

from __future__ import annotations

import bisect
import threading

LATENCY_BUCKETS_S = (
    0.0005,
    0.001,
    0.002,
    0.004,
    0.006,
    0.008,
    0.01,
    0.015,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class Histogram:
    def __init__(self, name: str, help_text: str, buckets: tuple[float, ...]) -> None:
        self.name, self.help, self.buckets = name, help_text, buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        running = 0
        for bound, count in zip(self.buckets, self.counts, strict=False):
            running += count
            lines.append(f'{self.name}_bucket{{le="{bound:g}"}} {running}')
        lines.append(f'{self.name}_bucket{{le="+Inf"}} {self.count}')
        lines.append(f"{self.name}_sum {self.sum:.6f}")
        lines.append(f"{self.name}_count {self.count}")
        return lines


class ServerMetrics:
    """What an operator watches: outcomes, latencies split by stage, batch sizes, load."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[str, int] = {}
        self.in_flight = 0
        self.request_s = Histogram(
            "ovcast_request_duration_seconds",
            "Whole infer request, parse to response",
            LATENCY_BUCKETS_S,
        )
        self.queue_s = Histogram(
            "ovcast_queue_duration_seconds", "Time waiting for the batcher", LATENCY_BUCKETS_S
        )
        self.inference_s = Histogram(
            "ovcast_inference_duration_seconds", "Engine time per executed batch", LATENCY_BUCKETS_S
        )
        self.batch_size = Histogram(
            "ovcast_batch_size", "Windows per executed batch", BATCH_BUCKETS
        )

    def started(self) -> None:
        with self._lock:
            self.in_flight += 1

    def finished(self, outcome: str, seconds: float) -> None:
        with self._lock:
            self.in_flight -= 1
            self.requests[outcome] = self.requests.get(outcome, 0) + 1
            self.request_s.observe(seconds)

    def observe(self, histogram: Histogram, value: float) -> None:
        with self._lock:
            histogram.observe(value)

    def render(self) -> str:
        with self._lock:
            lines = [
                "# HELP ovcast_requests_total Infer requests by outcome",
                "# TYPE ovcast_requests_total counter",
            ]
            for outcome, count in sorted(self.requests.items()):
                lines.append(f'ovcast_requests_total{{outcome="{outcome}"}} {count}')
            lines += [
                "# HELP ovcast_requests_in_flight Infer requests being served",
                "# TYPE ovcast_requests_in_flight gauge",
                f"ovcast_requests_in_flight {self.in_flight}",
            ]
            for histogram in (self.request_s, self.queue_s, self.inference_s, self.batch_size):
                lines += histogram.render()
        return "\n".join(lines) + "\n"
