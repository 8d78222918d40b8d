"""The JSON-lines server: one request per stdin line, one response per stdout line, in order.

    ovcast serve --mode jsonl --model models/default [--ready-line] [--raw] [--channels 0]

Lifecycle: load and warm up the model; announce readiness (always a log line on stderr
"ready ..."; with --ready-line also a first stdout line {"event": "ready", ...}); then
answer each line in order until EOF or SIGTERM. On SIGTERM the server stops reading, answers
every complete line it has already received, and exits 0. stdout carries protocol lines
only; logs go to stderr. Clients may pipeline: lines wait in the pipe until answered.
Hot swap: SIGHUP reloads the package in the background (requests go on meanwhile); the
line {"command": "reload", "model": DIR} reloads in order, so later lines use the new model.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import sys
from typing import BinaryIO

from . import protocol
from .protocol import Forecaster, ProtocolError

log = logging.getLogger(__name__)

DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024  # a 512 x 7 window is ~70 KB of JSON
_TOO_LONG = object()  # marks a line that exceeded the limit (already consumed)


class JsonLinesServer:
    """Answers JSON-lines requests from ``source`` onto ``sink`` with a Forecaster."""

    def __init__(
        self,
        forecaster: Forecaster,
        *,
        source: BinaryIO | None = None,
        sink: BinaryIO | None = None,
        default_raw: bool = False,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    ) -> None:
        self.forecaster = forecaster
        self.source = source or sys.stdin.buffer
        self.sink = sink or sys.stdout.buffer
        self.default_raw = default_raw
        self.max_line_bytes = max_line_bytes
        self.answered = 0
        self._stopping = False

    def announce_ready(self, *, ready_line: bool) -> None:
        engine = self.forecaster.engine
        info = {
            "event": "ready",
            "model": engine.name,
            "context_length": engine.context_length,
            "prediction_length": engine.prediction_length,
            "num_channels": engine.num_channels,
            "channel_names": engine.channel_names,
        }
        if ready_line:
            self._write(protocol.encode(info))
        log.info(
            "ready model=%s context=%d horizon=%d channels=%d",
            engine.name,
            engine.context_length,
            engine.prediction_length,
            engine.num_channels,
        )

    def handle_line(self, line: bytes) -> bytes:
        """The response line for one request line (never raises for bad input)."""
        request_id = None
        try:
            request = protocol.decode(line, default_raw=self.default_raw)
            request_id = request.request_id
            if isinstance(request, protocol.Command):
                return protocol.encode(self.forecaster.execute(request))
            return protocol.encode(self.forecaster.run(request))
        except ProtocolError as error:
            return protocol.encode(protocol.error_response(error))
        except Exception as exc:  # a bug must not kill the pipeline: answer and log it
            log.exception("internal error")
            internal = ProtocolError(protocol.INTERNAL, repr(exc), request_id)
            return protocol.encode(protocol.error_response(internal))

    def serve(self) -> int:
        """Answer lines until EOF or SIGTERM; returns the process exit code."""
        previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        previous_hup = signal.signal(signal.SIGHUP, self._on_sighup)
        try:
            while True:
                line = self._read_line()
                if line is None:
                    break
                if line is _TOO_LONG:
                    too_long = ProtocolError(
                        protocol.LINE_TOO_LONG, f"line longer than {self.max_line_bytes} bytes"
                    )
                    self._write(protocol.encode(protocol.error_response(too_long)))
                else:
                    self._write(self.handle_line(line))
                self.answered += 1
        except BrokenPipeError:
            log.warning("stdout closed by the client; stopping")
            return 0
        finally:
            signal.signal(signal.SIGTERM, previous)
            signal.signal(signal.SIGHUP, previous_hup)
        log.info("stopped after %d responses", self.answered)
        return 0

    def _read_line(self) -> bytes | object | None:
        """The next complete line; an over-long line is consumed and answered as an error."""
        try:
            line = self.source.readline(self.max_line_bytes + 1)
        except BlockingIOError:  # after SIGTERM: nothing more already received
            return None
        if not line:
            return None
        if self._stopping and not line.endswith(b"\n"):
            return None  # a partial line cut by the stop is not a request
        if len(line) > self.max_line_bytes and not line.endswith(b"\n"):
            self._discard_rest_of_line()
            return _TOO_LONG
        return line

    def _discard_rest_of_line(self) -> None:
        while True:
            chunk = self.source.readline(1 << 20)
            if not chunk or chunk.endswith(b"\n"):
                return

    def _write(self, data: bytes) -> None:
        self.sink.write(data)
        self.sink.flush()

    def _on_sighup(self, signum, frame) -> None:
        """Reload the package in the background; requests go on with the current model."""
        log.info("SIGHUP: reloading %s", self.forecaster.slot.model_dir)
        self.forecaster.slot.reload_in_background()

    def _on_sigterm(self, signum, frame) -> None:
        """Stop reading new input: make stdin non-blocking so reads end at what is buffered."""
        self._stopping = True
        log.info("SIGTERM: answering what was received, then exiting")
        try:
            fd = self.source.fileno()
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
        except (OSError, ValueError, AttributeError):
            pass
