"""The HTTP front end: KServe v2 REST on Starlette + uvicorn, a thin layer over the core.

    ovcast serve --mode http --model models/default --host 127.0.0.1 --port 8000

Routes (KServe v2 and Triton's extensions, as OVMS and Triton serve them):
    GET  /v2/health/live, /v2/health/ready            no API key needed
    GET  /v2, /metrics (Prometheus)
    GET  /v2/models/{name}[/versions/{v}][/ready]
    POST /v2/models/{name}[/versions/{v}]/infer       JSON tensors or the binary extension
    GET|POST /v2/repository/index                     {"ready": true}: only the ready ones
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
Inference runs in a worker thread, so the event loop keeps moving other requests' bytes; a
lone small request runs on the loop itself (see ``HttpFrontEnd._inline``).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import sys
import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ..errors import (
    AccessDeniedError,
    InvalidRequestError,
    PayloadTooLargeError,
    ServingError,
    UnavailableError,
)
from . import kserve, tensors
from .asgi import AsgiServer, ConnectionLimits, HostAllowList, connection_cap, is_loopback, listen
from .config import HttpConfig
from .core import ForecastService, as_serving_error
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE

log = logging.getLogger(__name__)

_PATH = re.compile(r"(?<![\w.:/])(?:~|\.{1,2})?/(?:[^\s'\"/:,;()]+/)*[^\s'\",;:()]*")
_JSON_TYPES = ("application/json",)
_INFER = re.compile(r"/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?/infer")


def public_message(message: str) -> str:
    """An error message fit for a remote client: filesystem paths replaced by '<path>'."""
    return _PATH.sub("<path>", message)


class HttpFrontEnd:
    """The ASGI app over a ``ForecastService`` (Starlette routes; infer direct); ``serve`` runs it."""

    def __init__(self, service: ForecastService, config: HttpConfig | None = None) -> None:
        self.service = service
        self.config = config or HttpConfig()
        self.model_control = self.config.allow_model_control or is_loopback(self.config.host)
        # Header bytes arrive as latin-1 text in ASGI: compared as the bytes sent, a UTF-8 key
        # matches what curl and requests send for it.
        self._key = self.config.api_key.encode("utf-8") if self.config.api_key else None
        self.hosts = HostAllowList(self.config.host, self.config.allowed_hosts)
        self.limits = ConnectionLimits(
            header_timeout_s=self.config.header_timeout_s,
            max_connections=connection_cap(self.config.max_connections),
            on_refused=self.service.metrics.refused,
        )
        self._limiter: anyio.CapacityLimiter | None = None
        self.server: AsgiServer | None = None  # set by serve() and start()
        self.clean_exit = True  # False: serve() stopped with a thread still inside OpenVINO
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
            Route(model + "/infer", self._wrong_method, methods=["GET"]),
            Route(version + "/infer", self._wrong_method, methods=["GET"]),
            Route(model + "/{extension:str}", self._guard(self.triton_extension), methods=["GET"]),
            Route(
                version + "/{extension:str}", self._guard(self.triton_extension), methods=["GET"]
            ),
            Route("/v2/repository/index", self._guard(self.index), methods=["GET", "POST"]),
            Route(
                "/v2/repository/models/{name}/{action:str}",
                self._guard(self.control),
                methods=["POST"],
            ),
        ]
        self.starlette = Starlette(
            routes=routes, exception_handlers={HTTPException: self._http_exception}
        )

    # -- running ---------------------------------------------------------------------------
    def serve(self) -> int:
        """Bind, load the models in the background, serve until SIGTERM; the exit code."""
        c = self.config
        sock = listen(c.host, c.port, what="the HTTP server")
        failed: list[BaseException] = []

        def load() -> None:
            try:
                started = self.service.start()
            except BaseException as exc:  # noqa: BLE001 - reported by serve()
                failed.append(exc)
                server.server.handle_exit_request()
                return
            if started:
                names = ",".join(self.service.models())
                log.info("ready model=%s on http://%s:%d", names, c.host, server.port)

        def started() -> None:
            # Live, and loading, once the signal handlers are in place: SIGTERM during
            # start-up then stops after the model being compiled; SIGHUP reloads once started.
            log.info("live on http://%s:%d (loading models)", c.host, server.port)
            if not self.model_control:
                log.info("model control (load/unload) is off on %s; --allow-model-control", c.host)
            loader.start()

        loader = threading.Thread(target=load, name="ovcast-load", daemon=True)
        server = AsgiServer(
            self,
            sock,
            drain_timeout_s=c.drain_timeout_s,
            limits=self.limits,
            on_exit=self.service.draining.set,
            on_hangup=self.service.request_reload,  # a byte on a pipe: safe in a handler
            on_started=started,
        )
        self.server = server
        try:
            server.run()
        finally:
            self.clean_exit = self.service.close()  # waits (bounded) for a load in progress
        if loader.is_alive():  # close() saw no load running: only its last lines are left
            loader.join(timeout=1.0)
        if failed:
            raise failed[0]
        log.info("stopped")
        return 0

    def start(self) -> AsgiServer:
        """Load the models, then serve in a background thread (embedding, tests); ``stop()`` it."""
        sock = listen(self.config.host, self.config.port, what="the HTTP server")
        try:
            self.service.start()
        except BaseException:
            sock.close()
            raise
        server = AsgiServer(
            self,
            sock,
            drain_timeout_s=self.config.drain_timeout_s,
            limits=self.limits,
            on_exit=self.service.draining.set,
        )
        server.start()
        self.server = server
        return server

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

    async def triton_extension(self, request: Request) -> Response:
        """Triton's per-model statistics and configuration routes: not served, said plainly."""
        extension = request.path_params["extension"]
        if extension not in _NOT_SERVED:
            raise HTTPException(404)
        raise _not_served(extension)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI app: infer requests go straight to the core, the rest through Starlette.

        Infer is the one hot path: skipping Starlette's middleware, routing and Request objects
        there saves about a fifth of a millisecond per request on a 2-core box (measured with
        ``python -m ovcast.bench.serving``); the checks are the same functions either way.
        """
        if scope["type"] != "http":
            await self.starlette(scope, receive, send)
            return
        refusal = self.hosts.refusal(scope["headers"])
        match = _INFER.fullmatch(scope["path"]) if scope["method"] == "POST" else None
        if refusal is not None:  # DNS rebinding: a page of another site reached us by name
            error = AccessDeniedError(refusal, code="host_not_allowed", http_status=403)
            self.service.metrics.refused("host_not_allowed")
            if match is not None:
                self.service.rejected(error)
            await _error(error)(scope, receive, send)
        elif match is not None:
            await self._infer_asgi(scope, receive, send, match["name"], match["version"])
        elif scope["path"] == "/v2/models/stats" and "stats" not in self.service.models():
            await _error(_not_served("stats"))(scope, receive, send)
        else:
            await self.starlette(scope, receive, send)

    async def _infer_asgi(
        self, scope: Scope, receive: Receive, send: Send, name: str, version: str | None
    ) -> None:
        # ASGI header names are lowercase; a plain dict is the cheapest lookup.
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            try:
                self._check("POST", headers, model=(name, version))  # 404 and 503 included
                admission = self.service.admit()
                admission.__enter__()  # 503 before the body is read
            except Exception as exc:
                raise self._rejected(exc) from exc
            try:
                try:
                    body = await self._body(receive)
                except Exception as exc:
                    raise self._rejected(exc) from exc
                args = (name, version, body, headers.get(kserve.HEADER_LENGTH.lower()))
                if self._inline(len(body)):
                    payload, content = self._infer(*args)
                else:
                    payload, content = await self._in_thread(self._infer, *args)
            finally:
                admission.__exit__(None, None, None)
        except ServingError as exc:
            await _error(exc)(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 200, "headers": content})
        await send({"type": "http.response.body", "body": payload})

    def _inline(self, body_bytes: int) -> bool:
        """Run this request on the event loop instead of a worker thread?

        Only when it is the one request in flight, batching is off and it is small (about a
        window): then nothing else waits on the loop, the engine is free, and the two thread
        switches it saves are about a tenth of a millisecond, half the serving overhead at
        batch 1 on a 2-core box (docs/PERFORMANCE.md). Otherwise the loop stays free to read
        other requests while this one computes.
        """
        config = self.service.config
        return (
            config.max_batch_size == 1
            and self.service.in_flight() == 1
            and body_bytes * config.max_request_batch <= self.service.max_request_bytes
        )

    def _infer(
        self, name: str, version: str | None, body: bytes, header_length: str | None
    ) -> tuple[bytes, list[tuple[bytes, bytes]]]:
        try:
            served = self.service.model(name, version)
            request, outputs = kserve.decode_infer(
                served.manifest, body, header_length, name=served.name, version=version
            )
        except Exception as exc:
            raise self._rejected(exc) from exc
        result = self.service.infer(request)  # counts itself in the metrics
        payload, content = kserve.encode_infer(result, outputs)
        headers = [(k.encode(), v.encode()) for k, v in content.items()]
        return payload, [*headers, (b"content-length", str(len(payload)).encode())]

    async def index(self, request: Request) -> Response:
        options = await self._options(request) if request.method == "POST" else {}
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
        """Key, origin, content type and length first; any failure becomes its JSON answer."""

        async def guarded(request: Request) -> Response:
            try:
                self._check(request.method, request.headers)
                return await route(request)
            except HTTPException:
                raise  # Starlette's 404 / 405, answered by _http_exception
            except Exception as exc:  # noqa: BLE001 - a bug is a JSON 500, logged
                return _error(as_serving_error(exc))

        return guarded

    async def _wrong_method(self, request: Request) -> Response:
        raise HTTPException(405)

    def _rejected(self, exc: Exception) -> ServingError:
        """Count an infer request that fails before the core sees it (the core counts the
        rest) as the ServingError it is answered with; anything else is a logged 500."""
        error = as_serving_error(exc)
        self.service.rejected(error)
        return error

    def _check(
        self,
        method: str,
        headers: Mapping[str, str],
        *,
        model: tuple[str, str | None] | None = None,
    ) -> None:
        """What every route but health checks before it reads a byte of the body: framing,
        the key, what the request says of itself, then (infer) the model, and last the size:
        an unloaded model's request gets 404, whatever its size."""
        length = headers.get("content-length")
        if method == "POST" and length is None and "transfer-encoding" not in headers:
            # Without a length, what follows the headers would be read as the next request:
            # first of all, and the connection closes (see _error).
            raise InvalidRequestError(
                "a POST needs a Content-Length header (or chunked transfer encoding)",
                code="length_required",
                http_status=411,
            )
        self._authorize(headers)
        if method == "POST":
            self._check_origin_and_type(headers)
        if model is not None:
            self.service.model(*model)
        cap = self.service.max_request_bytes
        if length is not None and _is_number(length) and int(length) > cap:
            raise PayloadTooLargeError(
                f"body of {length} bytes exceeds the cap of {cap} bytes (--max-request-bytes; "
                f"at most --max-request-batch windows per request)"
            )

    def _authorize(self, headers: Mapping[str, str]) -> None:
        if self._key is None:
            return
        given = headers.get("x-api-key")
        if given is None:
            scheme, _, token = headers.get("authorization", "").partition(" ")
            given = token if scheme.lower() == "bearer" else None
        if given is None or not hmac.compare_digest(given.encode("latin-1"), self._key):
            raise AccessDeniedError(
                "missing or wrong API key: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'"
            )

    def _check_origin_and_type(self, headers: Mapping[str, str]) -> None:
        encoding = headers.get("content-encoding", "identity").strip().lower()
        if encoding != "identity":
            raise InvalidRequestError(
                f"Content-Encoding {encoding[:40]!r} is not supported; send the body "
                "uncompressed (tritonclient: no request_compression_algorithm)",
                code="unsupported_media_type",
                http_status=415,
            )
        if "origin" in headers:
            raise AccessDeniedError(
                "requests from web pages (with an Origin header) are refused: the API takes no "
                "cross-origin calls",
                code="cross_origin_refused",
                http_status=403,
            )
        content_type = headers.get("content-type")
        if content_type is None:
            return  # KServe clients (tritonclient) send none; browsers' simple POSTs always do
        media = content_type.split(";", 1)[0].strip().lower()
        binary = kserve.HEADER_LENGTH.lower() in headers
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

    async def _body(self, receive: Receive) -> bytes:
        """The body, at most ``max_request_bytes`` (chunked bodies too), within the timeout."""
        cap, chunks, size, more = self.service.max_request_bytes, [], 0, True
        # A timer that cancels this task, not anyio.fail_after: a tenth of its cost, on the
        # path of every request.
        task = asyncio.current_task()
        assert task is not None
        expired: list[bool] = []

        def expire() -> None:
            expired.append(True)
            task.cancel()

        timer = asyncio.get_running_loop().call_later(self.config.body_timeout_s, expire)
        try:
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise InvalidRequestError("the client went away", code="client_closed")
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > cap:
                    raise PayloadTooLargeError(f"body exceeds the cap of {cap} bytes")
                chunks.append(chunk)
                more = message.get("more_body", False)
        except asyncio.CancelledError:
            if not expired:
                raise
            if sys.version_info >= (3, 11):
                task.uncancel()
            raise InvalidRequestError(
                f"the body did not arrive within {self.config.body_timeout_s:g} s",
                code="request_timeout",
                http_status=408,
            ) from None
        finally:
            timer.cancel()
        return b"".join(chunks)

    async def _options(self, request: Request) -> dict[str, Any]:
        body = await self._body(request.receive)
        if not body.strip():
            return {}
        options = tensors.json_object(body, what="the body", expected="a JSON object (or no body)")
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


_NOT_SERVED = {
    "stats": "Triton's statistics extension is not served by ovcast: GET /metrics has the "
    "request counts and latencies (Prometheus)",
    "config": "Triton's model configuration extension is not served by ovcast: GET "
    "/v2/models/NAME has the model's inputs and outputs",
}


def _not_served(extension: str) -> ServingError:
    return ServingError(_NOT_SERVED[extension], code="not_supported", http_status=501)


def _is_number(text: str) -> bool:
    """ASCII digits only: str.isdigit() also takes '²', which int() refuses."""
    return text.isascii() and text.isdigit()


def _json(status: int, data: Any) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def _error(exc: ServingError) -> Response:
    response = _json(exc.http_status, {"error": public_message(str(exc)), "code": exc.code})
    if isinstance(exc, AccessDeniedError) and exc.http_status == 401:
        response.headers["www-authenticate"] = "Bearer"
    if isinstance(exc, UnavailableError):
        response.headers["retry-after"] = "1"
    if exc.http_status in (408, 411, 413) or exc.code == "host_not_allowed":
        # The rest of the body is unwanted or unframed (never read it as the next request),
        # or the client is not talking to this server.
        response.headers["connection"] = "close"
    return response
