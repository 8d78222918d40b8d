"""The Ray Serve application: the serving core in every replica, KServe v2 on Ray's HTTP proxy.

    client ──HTTP──> Ray proxy ──> KServeIngress ──handle──> Forecaster replicas (any node)
                     (head node)    (head node, no CPU)       ForecastService + HttpFrontEnd

``Forecaster`` replicas each run the same ``ForecastService`` and the same KServe v2 front end
(``HttpFrontEnd``) as ``ovcast serve --mode http``: a request is answered by exactly the code
that answers it there (validation, raw scaling, channels, multi-model, micro-batching, error
codes, API key). The front end is called in-process with the request's method, path,
headers and body; no socket is opened in a replica.

``KServeIngress`` is the HTTP ingress on the head node. It forwards each request to a
replica through a ``DeploymentHandle`` and, when that replica dies with the request in flight
(its node lost), sends it to another one: Ray Serve itself only re-routes requests that no
replica accepted yet, and a forecast is a pure function of its input, so sending it again is
safe. Load and unload over HTTP are refused here (one replica would change, the others not);
hot swap goes to every replica at once through ``reconfigure`` (see ``user_config``).

``build_app`` is the application builder of ``serve run`` / ``serve deploy``; ``ovcast serve
--mode ray`` calls it too (``cluster.py``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import orjson
import ray
from ray import serve
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError
from ray.serve.exceptions import BackPressureError
from starlette.types import Message

from ...errors import ServerStartError
from ..config import HttpConfig, ServiceConfig
from ..core import ForecastService
from ..http import HttpFrontEnd
from ..repository import ModelSource, Repository, parse_model_option
from .config import RayConfig

# Ray Serve writes its "ray.serve" logger to each replica's log file (logs/serve/ of the
# session); another logger would only reach the worker's stderr file.
log = logging.getLogger("ray.serve")

REPLICA_HEADER = "ovcast-replica"  # which replica answered: "<node id>/<replica id>"
_CONTROL = re.compile(r"/v2/repository/models/[^/]+/(load|unload)")
_REPLICA_DIED = (ActorDiedError, ActorUnavailableError, RayActorError)


@serve.deployment(name="Forecaster")
class Forecaster:
    """One replica: a ``ForecastService`` loaded and warmed up, behind ``HttpFrontEnd``."""

    def __init__(
        self,
        models: list[ModelSource],
        repository: str | None,
        service: ServiceConfig,
        http: HttpConfig,
        threads: int,
    ) -> None:
        if service.threads is None:
            service.threads = threads  # the cores Ray reserved, not the whole node's
        # Replicas share their node with other Ray workers: pinning every replica's threads
        # to the same first cores would stack them up.
        self.service = ForecastService(
            Repository(models, repository), service, engine_options={"pinning": False}
        )
        self.service.start()
        self.front = HttpFrontEnd(self.service, http)
        context = serve.get_replica_context()
        node = ray.get_runtime_context().get_node_id()
        self.name = f"{node}/{context.replica_id.unique_id}"
        self.generation: int | None = None
        log.info("replica %s ready: %s", self.name, self.service.models())

    async def handle(
        self, method: str, path: str, query: bytes, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Answer one HTTP request with the front end; (status, headers, body)."""
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": query,
            "headers": headers,
            "client": ("127.0.0.1", 0),
            "server": ("127.0.0.1", 0),
        }
        sent = False

        async def receive() -> Message:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        status, out_headers, chunks = 500, [], []

        async def send(message: Message) -> None:
            nonlocal status, out_headers
            if message["type"] == "http.response.start":
                status, out_headers = message["status"], list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.front(scope, receive, send)
        out_headers.append((REPLICA_HEADER.encode(), self.name.encode()))
        return status, out_headers, b"".join(chunks)

    def limits(self) -> dict[str, int]:
        """What the ingress checks before it reads a body."""
        return {"max_request_bytes": self.service.max_request_bytes}

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Hot swap on every replica: a new ``generation`` re-reads every model (as SIGHUP)."""
        generation = int((user_config or {}).get("generation", 0))
        if self.generation is not None and generation != self.generation:
            log.info("replica %s: generation %d, reloading every model", self.name, generation)
            try:
                await asyncio.to_thread(self.service.reload)
            except Exception as exc:  # noqa: BLE001 - the old models serve on, as after SIGHUP
                log.error("replica %s: reload refused: %s", self.name, exc)
        self.generation = generation

    def check_health(self) -> None:
        if not self.service.is_ready:
            raise RuntimeError("the serving core is not ready")

    def __del__(self) -> None:
        service = getattr(self, "service", None)
        if service is not None:
            service.close()


@serve.deployment(name="KServeIngress")
@serve.ingress()
class KServeIngress:
    """The HTTP ingress: forwards to a ``Forecaster`` replica, again on another if it dies."""

    def __init__(self, forecaster: Any, retries: int) -> None:
        self.forecaster = forecaster
        self.retries = retries
        self.max_request_bytes: int | None = None

    def __serve_build_asgi_app__(self):
        return _Asgi(self)

    async def asgi(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].rsplit(".", 1)[-1]  # startup | shutdown
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if method == "POST" and _CONTROL.fullmatch(path):
            await _answer(send, 403, _MODEL_CONTROL_REFUSED, code="model_control_disabled")
            return
        headers = list(scope["headers"])
        limit = await self._max_request_bytes()
        length = dict(headers).get(b"content-length", b"")
        too_large = f"body exceeds the cap of {limit} bytes"
        if length.isdigit() and int(length) > limit:  # before a byte of the body is read
            await _answer(send, 413, too_large, code="payload_too_large")
            return
        try:
            body = await _read_body(receive, limit)
        except _ClientGone:  # mid-body: nothing to answer, nothing to forward
            return
        if body is None:
            await _answer(send, 413, too_large, code="payload_too_large")
            return
        args = (method, path, scope.get("query_string", b""), headers, body)
        try:
            status, out_headers, payload = await self._forward(args)
        except BackPressureError:
            await _answer(send, 503, "server overloaded: every replica's queue is full; retry later", code="overloaded")  # fmt: skip
            return
        except _REPLICA_DIED as exc:
            log.error("no replica answered after %d retries: %s", self.retries, exc)
            await _answer(send, 503, "the replicas serving this request died; retry later", code="unavailable")  # fmt: skip
            return
        if method == "GET" and path.rstrip("/") == "/v2" and status == 200:
            payload, out_headers = _without_model_control(payload, out_headers)
        await send({"type": "http.response.start", "status": status, "headers": out_headers})
        await send({"type": "http.response.body", "body": payload})

    async def _forward(self, args: tuple) -> tuple[int, list, bytes]:
        for attempt in range(self.retries + 1):
            try:
                return await self.forecaster.handle.remote(*args)
            except _REPLICA_DIED as exc:
                if attempt == self.retries:
                    raise
                log.warning("replica died with a request in flight (%s); sending it again", exc)
        raise AssertionError("unreachable")

    async def _max_request_bytes(self) -> int:
        if self.max_request_bytes is None:
            limits = await self.forecaster.limits.remote()
            self.max_request_bytes = int(limits["max_request_bytes"])
        return self.max_request_bytes


class _Asgi:
    """The ingress as an ASGI 3 app object (uvicorn's lifespan runner takes a bound method
    for an ASGI 2 app)."""

    def __init__(self, ingress: KServeIngress) -> None:
        self.ingress = ingress

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self.ingress.asgi(scope, receive, send)


_MODEL_CONTROL_REFUSED = (
    "load and unload are off on a Ray cluster: one replica would change and the others not. "
    "Change --model/--repository and redeploy, or hot-swap every replica at once (SIGHUP to "
    "'ovcast serve --mode ray', or a new user_config generation with 'serve deploy')"
)


def _without_model_control(payload: bytes, headers: list) -> tuple[bytes, list]:
    """Server metadata without the model_repository extension: its load and unload are off
    here (the index still answers), and clients read the list to know what they may call."""
    metadata = orjson.loads(payload)
    metadata["extensions"] = [e for e in metadata.get("extensions", []) if e != "model_repository"]
    body = orjson.dumps(metadata)
    kept = [(k, v) for k, v in headers if k.lower() != b"content-length"]
    return body, [*kept, (b"content-length", str(len(body)).encode())]


async def _answer(send: Any, status: int, message: str, *, code: str) -> None:
    body = orjson.dumps({"error": message, "code": code})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 503:
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _ClientGone(Exception):
    """The client disconnected before its body was complete."""


async def _read_body(receive: Any, limit: int) -> bytes | None:
    """The whole body, or None when it is over ``limit``."""
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


# -- building the application -------------------------------------------------------------


def build_app(args: dict[str, Any]) -> Any:
    """The application builder of ``serve run`` and ``serve deploy`` (``import_path:
    ovcast.serve.ray.deployment:build_app``); ``args`` holds the options of ``ovcast serve``
    by their field names: ``model`` (a list of ``[NAME=]DIR``), ``repository``, and any of
    ``ServiceConfig``, ``HttpConfig`` and ``RayConfig``'s (``max_batch_size: 8``, ...)."""
    args = dict(args)
    models = [_absolute(parse_model_option(m)) for m in _as_list(args.pop("model", None))]
    repository = args.pop("repository", None)
    generation = int(args.pop("generation", 0))
    service, http, cluster = (_config(cls, args) for cls in (ServiceConfig, HttpConfig, RayConfig))
    if args:
        raise ServerStartError(f"unknown settings {sorted(args)}; see 'ovcast serve --help'")
    repository = str(Path(repository).resolve()) if repository else None
    # A missing or broken package fails the build (the application DEPLOY_FAILED with this
    # message) instead of replicas that Ray would retry for minutes.
    ForecastService(Repository(models, repository), service).check()
    return application(
        models,
        repository,
        service,
        http,
        cluster,
        generation=generation,
    )


def application(
    models: list[ModelSource],
    repository: str | None,
    service: ServiceConfig,
    http: HttpConfig,
    cluster: RayConfig,
    *,
    generation: int = 0,
    version: str | None = None,
) -> Any:
    """The bound application: ingress and forecasting replicas, sized for the cluster.

    ``version``: the deployments' code version; redeploying with the same one and a new
    ``generation`` reconfigures the running replicas instead of replacing them (the hot swap).
    Ray takes it through an internal option only (``serve deploy`` derives one itself)."""
    versioned: dict[str, Any] = {} if version is None else {"version": version, "_internal": True}
    replicas = cluster.replicas or default_replicas(cluster.replica_cpus)
    sizing: dict[str, Any] = (
        {
            "autoscaling_config": {
                "min_replicas": 1,
                "max_replicas": replicas,
                "target_ongoing_requests": cluster.target_ongoing_requests,
            }
        }
        if cluster.autoscale
        else {"num_replicas": replicas}
    )
    forecaster = Forecaster.options(  # type: ignore[attr-defined] # a Deployment
        ray_actor_options={"num_cpus": cluster.replica_cpus},
        # Enough requests in each replica to fill its batches; the rest wait in Ray's queue,
        # bounded as the core bounds its own (503 beyond).
        max_ongoing_requests=max(4, 2 * service.max_batch_size),
        max_queued_requests=service.max_queue_size,
        user_config={"generation": generation},
        health_check_period_s=5,
        **sizing,
        **versioned,
    ).bind(models, repository, service, http, cluster.replica_threads)
    ingress = KServeIngress.options(  # type: ignore[attr-defined]
        num_replicas=1,
        # On the head node, beside the proxy: the ingress lives as long as the cluster does.
        ray_actor_options={"num_cpus": 0, "resources": {"node:__internal_head__": 0.001}},
        max_ongoing_requests=max(service.max_queue_size, 64),
        **versioned,
    )
    return ingress.bind(forecaster, cluster.retries)


def default_replicas(replica_cpus: float) -> int:
    """One replica per ``replica_cpus`` of the cluster's CPUs (Ray counts them per node from
    the affinity mask and cgroup quota, as the Engine does)."""
    cpus = float(ray.cluster_resources().get("CPU", 1))
    return max(1, int(cpus // replica_cpus))


def _config(cls: type, args: dict[str, Any]) -> Any:
    names = {f.name for f in fields(cls)}
    return cls(**{k: args.pop(k) for k in list(args) if k in names})


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _absolute(source: ModelSource) -> ModelSource:
    """Replicas run elsewhere (another working directory, another node): absolute paths."""
    return ModelSource(source.name, Path(os.path.abspath(source.path)), source.version_policy)


def settings_of(service: ServiceConfig, http: HttpConfig, cluster: RayConfig) -> dict[str, Any]:
    """The settings as ``build_app`` args (for a ``serve deploy`` config file)."""
    return {**asdict(service), **asdict(http), **asdict(cluster)}
