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
import secrets
import signal
import socket
import threading
from typing import Any

from ...errors import ServerStartError
from ..config import HttpConfig, ServiceConfig
from ..repository import ModelSource, Repository
from .config import RayConfig

log = logging.getLogger(__name__)

# Ray's own defaults that do not suit a forecasting box: no usage reporting, no dashboard.
QUIET_RAY = {"RAY_USAGE_STATS_ENABLED": "0"}
PROBE_TIMEOUT_S = 5.0  # is anything listening at --address? (ray.init retries for minutes)


def connect(address: str | None, *, object_store_bytes: int | None = None) -> bool:
    """``ray.init`` to join ``address`` (None: start a local cluster); True when started here."""
    for key, value in QUIET_RAY.items():
        os.environ.setdefault(key, value)
    import ray

    if ray.is_initialized():
        return False
    if address is not None:
        _probe(address)
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


def _probe(address: str) -> None:
    """Refuse at once a HOST:PORT where nothing listens: ``ray.init`` would retry the GCS
    for minutes. 'auto' and ray:// addresses are left to Ray (they fail fast, or in ~30 s)."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_TIMEOUT_S).close()
    except OSError as exc:
        raise ServerStartError(
            f"cannot join the Ray cluster at {address}: nothing answers there ({exc}); give "
            "the head node's GCS address (HOST:PORT of 'ray start --head'), or leave --address "
            "out to start a local cluster"
        ) from None


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
    # One code version for this process's deployments: a SIGHUP's redeploy then changes only
    # user_config, which Ray answers with reconfigure() on the running replicas (a hot swap
    # that keeps the old models where a package is refused). Without it Ray gives every
    # serve.run a new random version and replaces every replica, with the new package.
    version = secrets.token_hex(8)
    deployed = serve_started = False
    try:
        serve_started = _start_serve(cluster, http, joined=not started)

        def deploy(generation: int) -> None:
            app = application(
                models, repository, service, http, cluster, generation=generation, version=version
            )
            serve.run(app, name=cluster.app_name, route_prefix="/", blocking=False)

        generation = 0
        deployed = True  # from here on the application is this process's to delete
        try:
            deploy(generation)
        except Exception as exc:  # noqa: BLE001 - Ray's errors are RuntimeErrors and others
            raise ServerStartError(
                f"Ray Serve could not deploy on http://{http.host}:{http.port}: {_last_line(exc)}"
            ) from None
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
            try:
                deploy(generation)
            except Exception as exc:  # noqa: BLE001 - the running replicas serve on
                log.error("generation %d was not deployed: %s", generation, _last_line(exc))
                continue
            log.info(
                "generation %d deployed: every replica re-read its models (one that refuses a "
                "package serves the old one on and logs why in its replica log)",
                generation,
            )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _tear_down(cluster.app_name, started, deployed=deployed, serve_started=serve_started)
    log.info("stopped")
    return 0


def _start_serve(cluster: RayConfig, http: HttpConfig, *, joined: bool) -> bool:
    """Start Serve's controller and proxy on --host/--port; True when started here. On a
    cluster where Serve runs already, its proxy keeps the address it has: refused unless it
    is the one asked for (Ray would only warn, and serve elsewhere)."""
    from ray import serve
    from ray.serve.context import _get_global_client  # no public API tells the proxy's address

    if joined:
        running = _get_global_client(raise_if_no_controller_running=False)
        if running is not None:
            have = running.http_config
            if (have.host, have.port) != (http.host, http.port):
                raise ServerStartError(
                    f"Ray Serve already runs on this cluster with its HTTP proxy on "
                    f"{have.host}:{have.port}, and a running proxy keeps its address: serve there "
                    f"(--host {have.host} --port {have.port}), or stop Serve first "
                    f"('serve shutdown --address ...')"
                )
            return False
    try:
        serve.start(
            proxy_location=cluster.proxy_location,
            http_options={"host": http.host, "port": http.port},
        )
    except Exception as exc:  # noqa: BLE001 - Ray raises several kinds
        try:
            serve.shutdown()  # what it started of Serve, so that the next start is free
        except Exception:  # noqa: BLE001, S110 - the error below says what went wrong
            pass
        raise ServerStartError(
            f"Ray Serve could not start on {http.host}:{http.port}: {_last_line(exc)}"
        ) from None
    return True


def _last_line(exc: BaseException) -> str:
    """The telling line of a Ray error, whose text often carries a remote traceback."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def _model_names(models: list[ModelSource], repository: str | None) -> list[str]:
    """The served names, as ``ovcast serve`` logs them (a --model's manifest name if unnamed)."""
    from ...package import ModelPackage
    from ..repository import served_versions

    names = {
        m.name or ModelPackage.load(next(iter(served_versions(m).values()))).manifest.name
        for m in models
    }
    return sorted(names | set(Repository([], repository).names()))


def _tear_down(app_name: str, started: bool, *, deployed: bool, serve_started: bool) -> None:
    """Remove what this process added: its application; Serve too when it started it and
    nothing else runs on it (its proxy would keep the port); the cluster it started."""
    import ray
    from ray import serve

    try:
        if started:
            serve.shutdown()
        else:
            if deployed:  # never another driver's application of the same name
                serve.delete(app_name)
            if serve_started and not serve.status().applications:
                serve.shutdown()
    except Exception as exc:  # noqa: BLE001 - the cluster may be gone already
        log.warning("could not remove the application %s: %s", app_name, exc)
    ray.shutdown()
