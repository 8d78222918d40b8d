"""Binding a server's socket, with the one error a user can act on: the address."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ..errors import ServerStartError


def listen(
    host: str, port: int, handler: type[BaseHTTPRequestHandler], *, what: str
) -> ThreadingHTTPServer:
    """A ThreadingHTTPServer on ``host:port``; a busy or bad address is a ServerStartError."""
    try:
        return ThreadingHTTPServer((host, port), handler)
    except OSError as exc:  # EADDRINUSE, EADDRNOTAVAIL, a host that does not resolve
        raise ServerStartError(f"{what} cannot listen on {host}:{port}: {exc}") from exc
