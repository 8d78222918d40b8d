"""Settings of the serving core and its front ends, each field also its ``ovcast serve`` option.

``ovcast serve --help`` is generated from these fields (``cli/_options.py``), so a default
lives in exactly one place. Settings only: runtime state lives in ``ForecastService`` and
the servers, as uvicorn keeps ``Config`` apart from ``Server``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..cli._options import option
from ..errors import ServerStartError


def parse_channels(text: str) -> list[int]:
    """'0,2' -> [0, 2] (argparse type of --channels)."""
    try:
        return [int(c) for c in text.split(",")]
    except ValueError:
        import argparse

        raise argparse.ArgumentTypeError(
            f"{text!r}: expected comma-separated channel indices such as 0,2"
        ) from None


@dataclass
class ServiceConfig:
    """The transport-free core: models, validation defaults, batching, queues, timeouts."""

    raw: bool = option(
        False,
        help="requests are in raw units by default: scale in and inverse-scale out with "
        "the package's scaler (a request's own 'raw' wins)",
    )
    channels: list[int] | None = option(
        None,
        parse=parse_channels,
        metavar="I,J",
        help="default output channel indices (a request's own 'channels' wins; default: all)",
    )
    max_request_batch: int = option(
        64, help="most windows one request may carry; the body cap is derived from it"
    )
    max_request_bytes: int | None = option(
        None,
        help="largest request body (HTTP) or line (JSON lines) accepted; default: the largest "
        "valid request of the served models (--max-request-batch windows as JSON) plus 64 KiB",
    )
    max_batch_size: int = option(
        1,
        help="dynamic batching: windows per executed batch (1: off; helps throughput and tail "
        "latency under many concurrent clients, see docs/PERFORMANCE.md)",
    )
    max_queue_delay_us: int = option(
        500, help="dynamic batching: how long a batch waits for more requests"
    )
    max_queue_size: int = option(
        256,
        help="requests accepted and not yet answered; HTTP answers 503 beyond it, JSON lines "
        "stops reading ahead",
    )
    request_timeout_s: float = option(
        10.0, help="dynamic batching: longest wait for a batched result before 503"
    )
    engine_mode: str = option(
        "latency",
        choices=("latency", "throughput"),
        help="the engines' CPU configuration: latency (one stream on every core: the fastest "
        "single forecast) or throughput (one stream per core: the most forecasts per second "
        "under concurrent clients, each forecast slower; see docs/PERFORMANCE.md)",
    )
    threads: int | None = option(None, help="inference threads (default: usable cores)")
    cache_dir: str | None = option(
        None, metavar="DIR", help="OpenVINO compiled-model cache folder (faster restarts)"
    )

    def __post_init__(self) -> None:
        problems = [
            f"{name} must be >= {low}, got {value}"
            for name, value, low in (
                ("max_request_batch", self.max_request_batch, 1),
                ("max_batch_size", self.max_batch_size, 1),
                ("max_queue_delay_us", self.max_queue_delay_us, 0),
                ("max_queue_size", self.max_queue_size, 1),
                ("request_timeout_s", self.request_timeout_s, 0),
            )
            if value < low
        ]
        if self.channels is not None and (not self.channels or min(self.channels) < 0):
            problems.append(f"channels must be indices >= 0, got {self.channels}")
        if problems:
            raise ServerStartError("invalid server settings: " + "; ".join(problems))


@dataclass
class HttpConfig:
    """KServe v2 over HTTP: where to listen and who may do what."""

    host: str = option("127.0.0.1", help="address to listen on (loopback by default)")
    port: int = option(8000, help="port to listen on; 0 picks a free one")
    allow_model_control: bool = option(
        False,
        help="allow POST /v2/repository/models/NAME/load and /unload on a non-loopback "
        "address (on loopback they are always allowed)",
    )
    api_key: str | None = option(
        None,
        metavar="KEY",
        help="require this key (header 'Authorization: Bearer KEY' or 'X-API-Key: KEY') on "
        "every route but /v2/health/*; prefer the OVCAST_API_KEY environment variable, which "
        "other users cannot read in the process list",
    )
    drain_timeout_s: float = option(
        10.0, help="on SIGTERM, longest wait for in-flight requests before closing them"
    )
    body_timeout_s: float = option(
        30.0, help="longest time a client may take to send a request body (then 408)"
    )


@dataclass
class JsonLinesConfig:
    ready_line: bool = option(
        False, help='write {"event": "ready", ...} as the first stdout line once warmed up'
    )
