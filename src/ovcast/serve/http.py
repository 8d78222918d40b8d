"""The HTTP front end: KServe v2 REST on Starlette + uvicorn, a thin layer over the core.

    ovcast serve --mode http --model models/default --host 127.0.0.1 --port 8000

Routes (KServe v2 and Triton's extensions, as OVMS and Triton serve them):
    GET  /v2/health/live, /v2/health/ready            no API key needed
    GET  /v2, /metrics (Prometheus)
    GET  /v2/models/{name}[/versions/{v}][/ready]
    POST /v2/models/{name}[/versions/{v}]/infer       JSON tensors or the binary extension
    POST /v2/repository/index
    POST /v2/repository/models/{name}/load | /unload  by name, from the repository root only

Lifecycle: bind and answer ``/v2/health/live`` at once; load and warm up the models in the
background; only then ``/v2/health/ready`` says 200. SIGHUP reloads every model (hot swap,
nothing fails). SIGTERM or SIGINT: readiness says 503, no new connections, idle ones close,
in-flight requests finish (at most --drain-timeout-s), the batchers drain, exit 0.

Safe by default: loopback bind; load/unload only by name and only on loopback unless
--allow-model-control; an optional API key on every route but health; POSTs from web pages
(an Origin header) and non-JSON content types are refused, so no cross-site form can reach
the API; a body is refused from its Content-Length when over the cap, before it is read;
overload answers 503 before reading the body; no filesystem path appears in an answer.
Inference runs in a worker thread (one hop per request): the event loop only moves bytes.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import re
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import (
    AccessDeniedError,
    InvalidRequestError,
    PayloadTooLargeError,
    ServingError,
    UnavailableError,
)
from . import kserve
from .asgi import AsgiServer, is_loopback, listen
from .config import HttpConfig
from .core import ForecastService
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE

log = logging.getLogger(__name__)

_PATH = re.compile(r"(?<![\w.:/])(?:~|\.{1,2})?/(?:[^\s'\"/:,;()]+/)*[^\s'\",;:()]*")
_JSON_TYPES = ("application/json",)


def public_message(message: str) -> str:
    """An error message fit for a remote client: filesystem paths replaced by '<path>'."""
    return _PATH.sub("<path>", message)


class HttpFrontEnd:
    """The Starlette app over a ``ForecastService``; ``serve`` runs it on uvicorn."""

    def __init__(self, service: ForecastService, config: HttpConfig | None = None) -> None:
        self.service = service
        self.config = config or HttpConfig()
        self.model_control = self.config.allow_model_control or is_loopback(self.config.host)
        self._key = self.config.api_key.encode() if self.config.api_key else None
        self._limiter: anyio.CapacityLimiter | None = None
        self.server: AsgiServer | None = None  # set by start()
        model = "/v2/models/{name}"
        version = model + "/versions/{version}"
        routes = [
            Route("/v2/health/live", self.live, methods=["GET"]),
            Route("/v2/health/ready", self.ready, methods=["GET"]),
            Route("/v2", self._guard(self.server_metadata), methods=["GET"]),
            Route("/metrics", self._guard(self.metrics), methods=["GET"]),
            Route(model, self._guard(self.model_metadata), methods=["GET"]),
            Route(version, self._guard(self.model_metadata), methods=["GET"]),
            Route(model + "/ready", self._guard(self.model_ready), methods=["GET"]),
            Route(version + "/ready", self._guard(self.model_ready), methods=["GET"]),
            Route(model + "/infer", self._guard(self.infer), methods=["POST"]),
            Route(version + "/infer", self._guard(self.infer), methods=["POST"]),
            Route("/v2/repository/index", self._guard(self.index), methods=["POST"]),
            Route(
                "/v2/repository/models/{name}/{action:str}",
                self._guard(self.control),
                methods=["POST"],
            ),
        ]
        self.app = Starlette(
            routes=routes, exception_handlers={HTTPException: self._http_exception}
        )

    # -- running ---------------------------------------------------------------------------
    def serve(self) -> int:
        """Bind, load the models in the background, serve until SIGTERM; the exit code."""
        c = self.config
        sock = listen(c.host, c.port, what="the HTTP server")
        server = AsgiServer(
            self.app,
            sock,
            drain_timeout_s=c.drain_timeout_s,
            on_exit=self.service.draining.set,
            on_hangup=self._reload_in_background,
        )
        failed: list[BaseException] = []

        def load() -> None:
            try:
                self.service.start()
            except BaseException as exc:  # noqa: BLE001 - reported by serve()
                failed.append(exc)
                server.server.handle_exit_request()
                return
            names = ",".join(self.service.models())
            log.info("ready model=%s on http://%s:%d", names, c.host, server.port)

        log.info("live on http://%s:%d (loading models)", c.host, server.port)
        if not self.model_control:
            log.info("model control (load/unload) is off on %s; --allow-model-control", c.host)
        threading.Thread(target=load, name="ovcast-load", daemon=True).start()
        try:
            server.run()
        finally:
            self.service.close()
        if failed:
            raise failed[0]
        log.info("stopped")
        return 0

    def start(self) -> AsgiServer:
        """Load the models, then serve in a background thread (embedding, tests); ``stop()`` it."""
        sock = listen(self.config.host, self.config.port, what="the HTTP server")
        self.service.start()
        server = AsgiServer(
            self.app,
            sock,
            drain_timeout_s=self.config.drain_timeout_s,
            on_exit=self.service.draining.set,
        )
        server.start()
        self.server = server
        return server

    def _reload_in_background(self) -> None:
        def reload() -> None:
            try:
                self.service.reload()
            except ServingError as exc:
                log.error("SIGHUP reload: %s", exc)

        log.info("SIGHUP: reloading every model")
        threading.Thread(target=reload, name="ovcast-reload", daemon=True).start()

    # -- routes ----------------------------------------------------------------------------
    async def live(self, request: Request) -> Response:
        return _json(200, {"live": True})

    async def ready(self, request: Request) -> Response:
        ready = self.service.is_ready
        return _json(200 if ready else 503, {"ready": ready})

    async def server_metadata(self, request: Request) -> Response:
        return _json(200, kserve.server_metadata())

    async def metrics(self, request: Request) -> Response:
        return Response(self.service.metrics.render(), media_type=METRICS_CONTENT_TYPE)

    async def model_metadata(self, request: Request) -> Response:
        served = self.service.model(request.path_params["name"], request.path_params.get("version"))
        versions = self.service.models()[served.name]
        return _json(200, kserve.model_metadata(served, versions))

    async def model_ready(self, request: Request) -> Response:
        served = self.service.model(request.path_params["name"], request.path_params.get("version"))
        return _json(200, {"name": served.name, "version": served.version, "ready": True})

    async def infer(self, request: Request) -> Response:
        name, version = request.path_params["name"], request.path_params.get("version")
        header_length = request.headers.get(kserve.HEADER_LENGTH)
        with contextlib.ExitStack() as admitted:
            with self._counting():
                self.service.model(name, version)  # 404 / 503 before the body is read
                admitted.enter_context(self.service.admit())  # 503 before the body is read
                body = await self._body(request)
            payload, headers = await self._in_thread(
                self._infer, name, version, body, header_length
            )
        return Response(payload, headers=headers)

    def _infer(
        self, name: str, version: str | None, body: bytes, header_length: str | None
    ) -> tuple[bytes, dict[str, str]]:
        with self._counting():
            served = self.service.model(name, version)
            request, outputs = kserve.decode_infer(
                served.manifest, body, header_length, name=served.name, version=version
            )
        result = self.service.infer(request)  # counts itself in the metrics
        return kserve.encode_infer(result, outputs)

    async def index(self, request: Request) -> Response:
        options = await self._options(request)
        ready = options.get("ready", False)
        if not isinstance(ready, bool):
            raise InvalidRequestError("'ready' must be true or false")
        return _json(200, self.service.index(ready_only=ready))

    async def control(self, request: Request) -> Response:
        name, action = request.path_params["name"], request.path_params["action"]
        if action not in ("load", "unload"):
            raise HTTPException(404)
        if not self.model_control:
            raise AccessDeniedError(
                f"model control is off: the server listens on {self.config.host}, not loopback; "
                "start it with --allow-model-control to allow load and unload",
                code="model_control_disabled",
                http_status=403,
            )
        options = await self._options(request)
        unsupported = sorted(set(options.get("parameters") or {}) - {"unload_dependents"})
        if unsupported:
            raise InvalidRequestError(
                f"parameters {unsupported[:5]} are not supported: ovcast loads a model by name, "
                "from the repository root only; put the package there instead"
            )
        if action == "unload":
            return _json(200, self.service.unload(name))
        models = await self._in_thread(self.service.load, name)
        return _json(
            200, {"name": name, "loaded": True, "versions": [m["version"] for m in models]}
        )

    # -- the guard around every route but health -------------------------------------------
    def _guard(self, route: Callable[[Request], Awaitable[Response]]):
        """Length, key, origin and content type first; any ServingError becomes its answer."""
        counts = route.__name__ == "infer"  # every infer request shows in the metrics

        async def guarded(request: Request) -> Response:
            try:
                with self._counting() if counts else contextlib.nullcontext():
                    self._check_length(request)
                    self._authorize(request)
                    if request.method == "POST":
                        self._check_origin_and_type(request)
                return await route(request)
            except ServingError as exc:
                return _error(
                    exc, close=isinstance(exc, PayloadTooLargeError) or exc.http_status == 411
                )

        return guarded

    @contextlib.contextmanager
    def _counting(self) -> Iterator[None]:
        """Count a request that fails before the core sees it (the core counts the rest)."""
        try:
            yield
        except ServingError as exc:
            self.service.rejected(exc)
            raise

    def _check_length(self, request: Request) -> None:
        length = request.headers.get("content-length")
        if (
            request.method == "POST"
            and length is None
            and "transfer-encoding" not in request.headers
        ):
            # Without a length, what follows the headers would be read as the next request.
            raise InvalidRequestError(
                "a POST needs a Content-Length header (or chunked transfer encoding)",
                code="length_required",
                http_status=411,
            )
        cap = self.service.max_request_bytes
        if length is not None and length.isdigit() and int(length) > cap:
            raise PayloadTooLargeError(
                f"body of {length} bytes exceeds the cap of {cap} bytes (--max-request-bytes; "
                f"at most --max-request-batch windows per request)"
            )

    def _authorize(self, request: Request) -> None:
        if self._key is None:
            return
        given = request.headers.get("x-api-key")
        if given is None:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            given = token if scheme.lower() == "bearer" else None
        if given is None or not hmac.compare_digest(given.encode(), self._key):
            raise AccessDeniedError(
                "missing or wrong API key: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'"
            )

    def _check_origin_and_type(self, request: Request) -> None:
        if "origin" in request.headers:
            raise AccessDeniedError(
                "requests from web pages (with an Origin header) are refused: the API takes no "
                "cross-origin calls",
                code="cross_origin_refused",
                http_status=403,
            )
        content_type = request.headers.get("content-type")
        if content_type is None:
            return  # KServe clients (tritonclient) send none; browsers' simple POSTs always do
        media = content_type.split(";", 1)[0].strip().lower()
        binary = kserve.HEADER_LENGTH.lower() in request.headers
        if media in _JSON_TYPES or media.endswith("+json"):
            return
        if binary and media == "application/octet-stream":
            return
        raise InvalidRequestError(
            f"content type {media[:64]!r} is not accepted; expected application/json (or "
            f"application/octet-stream with {kserve.HEADER_LENGTH})",
            code="unsupported_media_type",
            http_status=415,
        )

    async def _body(self, request: Request) -> bytes:
        """The body, at most ``max_request_bytes`` (chunked bodies too), within the timeout."""
        cap, chunks, size = self.service.max_request_bytes, [], 0
        try:
            with anyio.fail_after(self.config.body_timeout_s):
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > cap:
                        raise PayloadTooLargeError(f"body exceeds the cap of {cap} bytes")
                    chunks.append(chunk)
        except TimeoutError:
            raise InvalidRequestError(
                f"the body did not arrive within {self.config.body_timeout_s:g} s",
                code="request_timeout",
                http_status=408,
            ) from None
        return b"".join(chunks)

    async def _options(self, request: Request) -> dict[str, Any]:
        body = await self._body(request)
        if not body.strip():
            return {}
        try:
            options = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise InvalidRequestError(
                f"body is not valid JSON: {exc}", code="invalid_json"
            ) from exc
        if not isinstance(options, dict):
            raise InvalidRequestError("expected a JSON object (or no body)")
        if not isinstance(options.get("parameters", {}), dict):
            raise InvalidRequestError("'parameters' must be an object")
        return options

    async def _in_thread(self, function: Callable, *args: Any) -> Any:
        if self._limiter is None:  # sized to the queue: every admitted request gets a thread
            self._limiter = anyio.CapacityLimiter(self.service.config.max_queue_size)
        return await anyio.to_thread.run_sync(function, *args, limiter=self._limiter)

    async def _http_exception(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path[:200]}"
        else:
            message = f"no route {request.method} {request.url.path[:200]}"
        code = "method_not_allowed" if exc.status_code == 405 else "not_found"
        return _json(exc.status_code, {"error": message, "code": code})


def _json(status: int, data: Any) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def _error(exc: ServingError, *, close: bool = False) -> Response:
    response = _json(exc.http_status, {"error": public_message(str(exc)), "code": exc.code})
    if isinstance(exc, AccessDeniedError) and exc.http_status == 401:
        response.headers["www-authenticate"] = "Bearer"
    if isinstance(exc, UnavailableError):
        response.headers["retry-after"] = "1"
    if close:  # the rest of the body is not wanted: do not read it to find the next request
        response.headers["connection"] = "close"
    return response


def run_http_server(service: ForecastService, config: HttpConfig) -> int:
    return HttpFrontEnd(service, config).serve()
