"""Settings of the serving core and its front ends, each field also its ``ovcast serve`` option.

``ovcast serve --help`` is generated from these fields (``cli/_options.py``), so a default
lives in exactly one place. Settings only: runtime state lives in ``ForecastService`` and
the servers, as uvicorn keeps ``Config`` apart from ``Server``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..cli._options import option
from ..errors import ServerStartError

MAX_CONNECTIONS = 1000


def parse_hosts(text: str) -> list[str]:
    """'a.example,b.example:8000' -> host names (argparse type of --allowed-host)."""
    hosts = [h.strip() for h in text.split(",")]
    if not all(hosts):
        raise ValueError(f"{text!r}: expected comma-separated host names such as api.example")
    return hosts


def _below(*checks: tuple[str, float | None, float]) -> list[str]:
    """A problem for each (name, value, lowest allowed) whose value is set and below it."""
    return [
        f"{name} must be >= {low:g}, got {value}"
        for name, value, low in checks
        if value is not None and value < low
    ]


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
        problems = _below(
            ("max_request_batch", self.max_request_batch, 1),
            ("max_batch_size", self.max_batch_size, 1),
            ("max_queue_delay_us", self.max_queue_delay_us, 0),
            ("max_queue_size", self.max_queue_size, 1),
            ("request_timeout_s", self.request_timeout_s, 0),
            ("max_request_bytes", self.max_request_bytes, 1),
        )
        if self.channels is not None and (not self.channels or min(self.channels) < 0):
            problems.append(f"channels must be indices >= 0, got {self.channels}")
        elif self.channels is not None and len(set(self.channels)) != len(self.channels):
            problems.append(f"channels must be distinct indices, got {self.channels}")
        delay_s = self.max_queue_delay_us / 1e6
        if self.max_batch_size > 1 and self.request_timeout_s <= delay_s:
            problems.append(
                f"request_timeout_s ({self.request_timeout_s:g} s) must exceed "
                f"max_queue_delay_us ({self.max_queue_delay_us} us = {delay_s:g} s): every "
                "batched request would time out before its batch runs"
            )
        if problems:
            raise ServerStartError("invalid server settings: " + "; ".join(problems))


@dataclass
class HttpConfig:
    """KServe v2 over HTTP: where to listen, who may do what, and the bounds on connections."""

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
        "other users cannot read in the process list; an empty key is refused",
    )
    allowed_hosts: list[str] | None = option(
        None,
        flag="--allowed-host",
        parse=parse_hosts,
        metavar="NAME[,NAME]",
        help="Host header values accepted besides localhost, 127.0.0.1 and [::1] (on a loopback "
        "address every other Host is refused, against DNS rebinding; elsewhere only these "
        "are checked when given)",
    )
    drain_timeout_s: float = option(
        10.0, help="on SIGTERM, longest wait for in-flight requests before closing them"
    )
    body_timeout_s: float = option(
        30.0, help="longest time a client may take to send a request body (then 408)"
    )
    header_timeout_s: float = option(
        10.0,
        help="longest time a client may take to send a request's headers, from its first byte "
        "or the connection's opening (then 408 and the connection closes)",
    )
    max_connections: int | None = option(
        None,
        help="open connections at most; more are answered 503 and closed at once (default: "
        f"{MAX_CONNECTIONS}, or fewer to stay within the open-file limit)",
    )

    def __post_init__(self) -> None:
        problems = _below(
            ("body_timeout_s", self.body_timeout_s, 1e-3),
            ("header_timeout_s", self.header_timeout_s, 1e-3),
            ("max_connections", self.max_connections, 1),
            ("drain_timeout_s", self.drain_timeout_s, 0),
            ("port", self.port, 0),
        )
        if self.port > 65535:
            problems.append(f"port must be 0..65535, got {self.port}")
        key = self.api_key
        if key is not None and (not key.strip() or key != key.strip() or not key.isprintable()):
            problems.append(
                "the API key (--api-key or OVCAST_API_KEY) is empty, or has spaces at its ends "
                "or control characters, so no client could send it (an empty key would turn the "
                "check off); give a key of printable characters, or none to serve without one"
            )
        if problems:
            raise ServerStartError("invalid server settings: " + "; ".join(problems))


@dataclass
class JsonLinesConfig:
    ready_line: bool = option(
        False, help='write {"event": "ready", ...} as the first stdout line once warmed up'
    )
