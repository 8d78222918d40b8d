"""The live dashboard: bars, the latest forecast, feed health and latency, in a browser.

    server = open_dashboard("127.0.0.1:8050", model=lambda: engine_summary(engine),
                            feed=pipeline.feed_summary, streams=lambda: pipeline.streams)
    pipeline = LivePipeline(config, sink=tee(write, server.state.add_forecast),
                            on_bar=server.state.add_bar)

Served by the pipeline's own process (``ovcast live --dashboard``, ``ovcast replay
--dashboard``): a small static page, the chart library vendored from npm at build time
(offline), and a server-sent event stream fed by ``DashboardState``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..pipeline.scorecard import summaries
from ..pipeline.stream import ProductStream
from ..runtime.engine import Engine
from .server import DashboardServer, parse_address
from .state import DashboardState

__all__ = [
    "DashboardServer",
    "DashboardState",
    "engine_summary",
    "open_dashboard",
    "tee",
]


def engine_summary(engine: Engine) -> dict[str, Any]:
    """The model panel: what is forecasting, and how it was compiled."""
    return {
        "name": engine.name,
        "path": str(engine.package.path),
        "context_length": engine.context_length,
        "prediction_length": engine.prediction_length,
        "precision": engine.config.get("INFERENCE_PRECISION_HINT"),
        "precision_reason": engine.precision.reason,
        "precision_evidence": engine.precision.evidence,
        "static_batch1": engine.static_batch1,
        "threads": engine.config.get("INFERENCE_NUM_THREADS"),
    }


def open_dashboard(
    address: str,
    *,
    model: Callable[[], dict[str, Any]],
    feed: Callable[[], dict[str, Any]],
    streams: Callable[[], Mapping[str, ProductStream]] | None = None,
) -> DashboardServer:
    """Listen on ``HOST:PORT`` and serve in a background thread; close() when done.
    ``streams`` gives the pipeline's product streams, whose scorecards the page shows."""
    host, port = parse_address(address)
    scorecards = (lambda: summaries(streams())) if streams is not None else None
    state = DashboardState(model=model, feed=feed, scorecards=scorecards)
    server = DashboardServer(state, host, port)
    server.start()
    return server


def tee(*sinks: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    """One forecast sink that hands every record to each of ``sinks`` in turn."""

    def sink(record: dict[str, Any]) -> None:
        for each in sinks:
            each(record)

    return sink
