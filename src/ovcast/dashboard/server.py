"""The dashboard's HTTP server: the page, its static files, and a server-sent event stream.

    server = DashboardServer(state, "127.0.0.1", 8050)
    server.start()                      # a background thread; the pipeline keeps the main one
    ...
    server.close()

Routes: ``/`` the page; ``/static/...`` its script, style and the vendored chart library
(nothing is loaded from elsewhere: the Content-Security-Policy forbids it, so the page
works offline); ``/events`` a text/event-stream (``snapshot`` first, then ``bar``,
``forecast`` and, every second, ``status``); ``/api/snapshot`` and ``/api/status`` the same
data as plain JSON for scripts. Served by Starlette on uvicorn, the stack of ``ovcast serve
--mode http`` (``serve/asgi.py``, with its bounds on connections and headers), in a thread
of its own; a page's stream waits for news in a worker thread, an open page borrows a worker
thread only while it waits. On loopback it answers only requests addressed to localhost,
127.0.0.1 or [::1] (DNS rebinding), as the serving API does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import anyio
import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from ..errors import ServerStartError
from ..serve.asgi import AsgiServer, HostAllowList, HostGuard, listen
from .state import DashboardState

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
CHART_LIBRARY = STATIC / "vendor" / "lightweight-charts.mjs"
STATUS_EVERY_S = 1.0
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".LICENSE": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml",
}
SECURITY_HEADERS = {
    # Everything comes from this server: a CDN reference would be refused, not fetched.
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:",
    "X-Content-Type-Options": "nosniff",
}


def parse_address(text: str) -> tuple[str, int]:
    """'HOST:PORT' (or ':PORT' for 127.0.0.1) -> (host, port); port 0 picks a free one."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"expected HOST:PORT such as 127.0.0.1:8050, got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def static_files() -> dict[str, Path]:
    """URL path -> file, for every file the page may load; anything else is a 404."""
    files = {
        f"/static/{p.relative_to(STATIC).as_posix()}": p for p in STATIC.rglob("*") if p.is_file()
    }
    files["/"] = STATIC / "index.html"
    return files


class DashboardServer:
    """Owns the listening socket and the server thread; the state is the pipeline's."""

    def __init__(
        self,
        state: DashboardState,
        host: str = "127.0.0.1",
        port: int = 8050,
        *,
        allowed_hosts: Iterable[str] = (),
    ) -> None:
        """``allowed_hosts``: Host header names answered besides the loopback ones (a page
        of another site that reaches a loopback dashboard by DNS rebinding gets 403)."""
        if not CHART_LIBRARY.is_file():
            raise ServerStartError(
                f"the dashboard's chart library is missing ({CHART_LIBRARY}): it is vendored from "
                "the npm registry when ovcast is built; reinstall ovcast with access to "
                "registry.npmjs.org (or $npm_config_registry), without OVCAST_SKIP_FRONTEND=1"
            )
        self.state = state
        self.files = static_files()
        read_only = ["POST", "PUT", "DELETE", "PATCH"]
        app = Starlette(
            routes=[
                Route("/events", self._events, methods=["GET"]),
                Route("/api/snapshot", self._snapshot, methods=["GET"]),
                Route("/api/status", self._status, methods=["GET"]),
                Route("/api/scorecard", self._scorecard, methods=["GET"]),
                Route("/{path:path}", self._file, methods=["GET"]),
                Route("/{path:path}", self._read_only, methods=read_only),
            ],
            exception_handlers={HTTPException: self._not_found},
        )
        guarded = HostGuard(app, HostAllowList(host, allowed_hosts))
        sock = listen(host, port, what="the dashboard")
        self.host, self.port = host, sock.getsockname()[1]
        self._server = AsgiServer(guarded, sock, drain_timeout_s=STATUS_EVERY_S + 1)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self) -> None:
        self._server.start()
        log.info("dashboard at %s", self.url)

    def close(self) -> None:
        """Stop accepting and end every open event stream."""
        self.state.close()
        self._server.stop()

    # -- routes ----------------------------------------------------------------------------
    async def _file(self, request: Request) -> Response:
        file = self.files.get(request.url.path)
        if file is None:
            raise HTTPException(404)
        suffix = ".LICENSE" if file.name.endswith(".LICENSE") else file.suffix
        content_type = CONTENT_TYPES.get(suffix, "application/octet-stream")
        return _response(200, file.read_bytes(), content_type)

    async def _snapshot(self, request: Request) -> Response:
        return _json(200, self.state.snapshot()[1])

    async def _status(self, request: Request) -> Response:
        return _json(200, self.state.status())

    async def _scorecard(self, request: Request) -> Response:
        return _json(200, self.state.scorecard())

    async def _read_only(self, request: Request) -> Response:
        return _json(405, {"error": "the dashboard is read-only: GET / for the page"})

    async def _not_found(self, request: Request, exc: Exception) -> Response:
        path = request.url.path[:200]
        return _json(404, {"error": f"no such page: {path} (the dashboard is at /)"})

    async def _events(self, request: Request) -> Response:
        headers = {"Cache-Control": "no-cache", **SECURITY_HEADERS}
        if request.method == "HEAD":  # what a GET would start with
            return Response(b"", media_type="text/event-stream", headers=headers)
        return StreamingResponse(self._stream(), media_type="text/event-stream", headers=headers)

    async def _stream(self) -> AsyncIterator[bytes]:
        state = self.state
        cursor, snapshot = state.snapshot()
        yield b"retry: 1000\n\n" + _event("snapshot", orjson.dumps(snapshot))  # reconnect after 1 s
        next_status = time.monotonic() + STATUS_EVERY_S
        while not state.closed:
            wait_s = max(0.0, next_status - time.monotonic())
            cursor, events = await anyio.to_thread.run_sync(state.wait, cursor, wait_s)
            chunks = []
            if events is None:  # fell behind: start over from a snapshot
                cursor, snapshot = state.snapshot()
                chunks.append(_event("snapshot", orjson.dumps(snapshot)))
            else:
                chunks += [_event(name, data) for _, name, data in events]
            if time.monotonic() >= next_status:
                chunks.append(_event("status", orjson.dumps(state.status())))
                next_status = time.monotonic() + STATUS_EVERY_S
            if chunks:
                yield b"".join(chunks)


def _event(name: str, data: bytes) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"


def _json(status: int, data: Any) -> Response:
    return _response(status, orjson.dumps(data), "application/json")


def _response(status: int, body: bytes, content_type: str) -> Response:
    headers = {"Cache-Control": "no-cache", **SECURITY_HEADERS}
    return Response(body, status_code=status, media_type=content_type, headers=headers)
