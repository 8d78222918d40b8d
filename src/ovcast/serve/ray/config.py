"""Settings of the Ray Serve deployment, each field also its ``ovcast serve --mode ray`` option.

Model, validation and batching settings are the serving core's (``ServiceConfig``) and the
HTTP ones (host, port, API key) ``HttpConfig``'s: the same options as ``ovcast serve``. What
is here is only what a cluster adds: where the cluster is, how many replicas of what size,
autoscaling, and how often a request whose replica died is sent to another one.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...cli._options import option
from ...errors import ServerStartError

PROXY_LOCATIONS = ("HeadOnly", "EveryNode")


@dataclass
class RayConfig:
    address: str | None = option(
        None,
        metavar="ADDR",
        help="the Ray cluster to join: HOST:PORT of its head (GCS), 'auto' (RAY_ADDRESS or "
        "the cluster started on this machine) or ray://HOST:PORT; default: start a local one",
    )
    replicas: int | None = option(
        None,
        help="forecasting replicas (with --autoscale, the most); default: one per "
        "--replica-cpus of the cluster's CPUs, as the Engine takes one core group",
    )
    replica_cpus: float = option(
        1.0,
        help="CPUs Ray reserves for each replica (num_cpus); its engine runs that many "
        "inference threads (whole cores, at least 1) unless --threads says otherwise",
    )
    autoscale: bool = option(
        False,
        help="autoscale between 1 and --replicas replicas on queue length "
        "(--target-ongoing-requests per replica)",
    )
    target_ongoing_requests: float = option(
        2.0, help="autoscaling: the requests queued or running per replica to aim for"
    )
    retries: int = option(
        2,
        help="times a request whose replica died (its node lost) is sent to another replica; "
        "forecasts are pure functions, so a retry is safe",
    )
    proxy_location: str = option(
        "HeadOnly",
        choices=PROXY_LOCATIONS,
        help="where Ray's HTTP proxy runs: the head node only, or every node (behind your "
        "load balancer; every node then needs --port free)",
    )
    app_name: str = option("ovcast", help="the Ray Serve application's name")

    def __post_init__(self) -> None:
        problems = [
            f"{name} must be >= {low}, got {value}"
            for name, value, low in (
                ("replicas", self.replicas if self.replicas is not None else 1, 1),
                ("replica_cpus", self.replica_cpus, 0.01),
                ("target_ongoing_requests", self.target_ongoing_requests, 0.1),
                ("retries", self.retries, 0),
            )
            if value < low
        ]
        if self.proxy_location not in PROXY_LOCATIONS:
            problems.append(f"proxy_location must be one of {PROXY_LOCATIONS}")
        if problems:
            raise ServerStartError("invalid Ray settings: " + "; ".join(problems))

    @property
    def replica_threads(self) -> int:
        """Inference threads of one replica's engine: the whole cores Ray reserved for it."""
        return max(1, int(self.replica_cpus))
