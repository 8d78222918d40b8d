"""Prometheus metrics of the serving core, through ``prometheus_client``.

Each service has its own registry (several services in one process, as in the tests, do
not share counts), with the process and Python collectors that ``prometheus_client``
brings (CPU seconds, resident memory, open files, GC). ``render()`` is the body of
``GET /metrics`` and of the JSON-lines ``metrics`` command.

    ovcast_requests_total{model, outcome}         every infer request: "success" or the error code
    ovcast_requests_in_flight                     accepted and not yet answered
    ovcast_request_duration_seconds{model}        accepted to answered
    ovcast_queue_duration_seconds{model}          waiting for the batcher
    ovcast_inference_duration_seconds{model}      engine time per executed batch
    ovcast_batch_size{model}                      windows per executed batch
    ovcast_model_loads_total{model, outcome}      loads, reloads and unloads: "success" or the code
    ovcast_http_refused_total{reason}             HTTP connections and requests refused before
                                                  routing: too_many_connections, header_timeout,
                                                  headers_too_large, bad_http_request,
                                                  host_not_allowed
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    gc_collector,
    generate_latest,
    platform_collector,
    process_collector,
)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS_S = (
    0.0005, 0.001, 0.002, 0.004, 0.006, 0.008, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
UNKNOWN_MODEL = (
    ""  # label of requests that never reached a model: names from clients are not labels
)


@dataclass(frozen=True)
class ModelMetrics:
    """The histograms of one model, labels bound once (a label lookup per request costs)."""

    request_s: Histogram
    queue_s: Histogram
    inference_s: Histogram
    batch_size: Histogram


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        process_collector.ProcessCollector(registry=r)
        platform_collector.PlatformCollector(registry=r)
        gc_collector.GCCollector(registry=r)
        self.requests = Counter(
            "ovcast_requests", "Infer requests by outcome", ("model", "outcome"), registry=r
        )
        self.in_flight = Gauge(
            "ovcast_requests_in_flight", "Infer requests accepted and not yet answered", registry=r
        )

        def histogram(name: str, text: str, buckets: tuple[float, ...]) -> Histogram:
            return Histogram(name, text, ("model",), buckets=buckets, registry=r)

        self._request_s = histogram(
            "ovcast_request_duration_seconds", "Accepted to answered", LATENCY_BUCKETS_S
        )
        self._queue_s = histogram(
            "ovcast_queue_duration_seconds", "Waiting for the micro-batcher", LATENCY_BUCKETS_S
        )
        self._inference_s = histogram(
            "ovcast_inference_duration_seconds", "Engine time per executed batch", LATENCY_BUCKETS_S
        )
        self._batch_size = histogram(
            "ovcast_batch_size", "Windows per executed batch", BATCH_BUCKETS
        )
        self.model_loads = Counter(
            "ovcast_model_loads", "Model loads, reloads and unloads by outcome",
            ("model", "outcome"), registry=r,
        )  # fmt: skip
        self._refused = Counter(
            "ovcast_http_refused", "HTTP connections and requests refused before routing",
            ("reason",), registry=r,
        )  # fmt: skip
        self._models: dict[str, ModelMetrics] = {}
        self._counts: dict[tuple[str, str], Counter] = {}

    def model(self, name: str) -> ModelMetrics:
        metrics = self._models.get(name)
        if metrics is None:
            metrics = self._models[name] = ModelMetrics(
                self._request_s.labels(name),
                self._queue_s.labels(name),
                self._inference_s.labels(name),
                self._batch_size.labels(name),
            )
        return metrics

    def count(self, model: str, outcome: str, seconds: float | None = None) -> None:
        counter = self._counts.get((model, outcome))
        if counter is None:  # a label lookup takes a lock: once per (model, outcome)
            counter = self._counts[model, outcome] = self.requests.labels(model, outcome)
        counter.inc()
        if seconds is not None:
            self.model(model).request_s.observe(seconds)

    def refused(self, reason: str) -> None:
        self._refused.labels(reason).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
