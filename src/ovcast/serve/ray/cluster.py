"""``ovcast serve --mode ray``: join (or start) a Ray cluster, deploy, hot-swap on SIGHUP.

    ovcast serve --mode ray --model models/default                       # a local cluster
    ovcast serve --mode ray --address 10.0.0.5:6379 --model /shared/m    # an existing one

The process is the application's driver, as ``serve run`` is: it deploys, logs ``ready
model=... on http://HOST:PORT`` once every replica is up, and stays in the foreground.
SIGHUP redeploys with the next ``user_config`` generation, which every replica answers by
re-reading its models (the hot swap of ``ovcast serve``, on all replicas at once, without
restarting any). SIGTERM or SIGINT deletes the application and exits 0; a cluster this
process started goes with it.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any

from ...errors import ServerStartError
from ..config import HttpConfig, ServiceConfig
from ..repository import ModelSource, Repository
from .config import RayConfig

log = logging.getLogger(__name__)

# Ray's own defaults that do not suit a forecasting box: no usage reporting, no dashboard.
QUIET_RAY = {"RAY_USAGE_STATS_ENABLED": "0"}


def connect(address: str | None, *, object_store_bytes: int | None = None) -> bool:
    """``ray.init`` to join ``address`` (None: start a local cluster); True when started here."""
    for key, value in QUIET_RAY.items():
        os.environ.setdefault(key, value)
    import ray

    if ray.is_initialized():
        return False
    options: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
    try:
        if address is None:
            ray.init(
                include_dashboard=False,
                object_store_memory=object_store_bytes,
                **options,
            )
            return True
        ray.init(address=address, **options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ServerStartError(f"cannot join the Ray cluster at {address}: {exc}") from exc
    return False


def run_ray_server(
    models: list[ModelSource],
    repository: str | None,
    service: ServiceConfig,
    http: HttpConfig,
    cluster: RayConfig,
) -> int:
    """Deploy on the cluster and serve until SIGTERM/SIGINT; the exit code."""
    from ray import serve

    from .deployment import _absolute, application

    if http.port == 0:
        raise ServerStartError(
            "--mode ray needs a port number (--port): Ray's HTTP proxy takes it as given, on "
            "every proxy node, and cannot say which port 0 picked"
        )
    Repository(models, repository)  # a missing --repository fails before the cluster starts
    models = [_absolute(m) for m in models]
    started = connect(cluster.address)
    stop = threading.Event()
    hangups: list[int] = []

    def hangup(*_: object) -> None:
        hangups.append(1)
        stop.set()

    previous = {
        signal.SIGTERM: signal.signal(signal.SIGTERM, lambda *_: stop.set()),
        signal.SIGINT: signal.signal(signal.SIGINT, lambda *_: stop.set()),
        signal.SIGHUP: signal.signal(signal.SIGHUP, hangup),
    }
    try:
        serve.start(
            proxy_location=cluster.proxy_location,
            http_options={"host": http.host, "port": http.port},
        )

        def deploy(generation: int) -> None:
            app = application(models, repository, service, http, cluster, generation=generation)
            serve.run(app, name=cluster.app_name, route_prefix="/", blocking=False)

        generation = 0
        deploy(generation)
        names = ",".join(_model_names(models, repository))
        log.info("ready model=%s on http://%s:%d", names, http.host, http.port)
        while True:
            stop.wait()
            stop.clear()
            if not hangups:
                break
            hangups.clear()
            generation += 1
            log.info("SIGHUP: hot-swapping every replica (generation %d)", generation)
            deploy(generation)
            log.info("reloaded generation %d", generation)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _tear_down(cluster.app_name, started)
    log.info("stopped")
    return 0


def _model_names(models: list[ModelSource], repository: str | None) -> list[str]:
    """The served names, as ``ovcast serve`` logs them (a --model's manifest name if unnamed)."""
    from ...package import ModelPackage
    from ..repository import served_versions

    names = {
        m.name or ModelPackage.load(next(iter(served_versions(m).values()))).manifest.name
        for m in models
    }
    return sorted(names | set(Repository([], repository).names()))


def _tear_down(app_name: str, started: bool) -> None:
    import ray
    from ray import serve

    try:
        if started:
            serve.shutdown()
        else:
            serve.delete(app_name)
    except Exception as exc:  # noqa: BLE001 - the cluster may be gone already
        log.warning("could not remove the application %s: %s", app_name, exc)
    ray.shutdown()
