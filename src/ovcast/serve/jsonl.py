"""The JSON-lines front end: one request per stdin line, one response per stdout line, in order.

    ovcast serve --mode jsonl --model models/default [--ready-line] [--raw] [--channels 0]

Lifecycle: install the signal handlers; load and warm up the models; announce readiness
(always a log line on stderr "ready ..."; with --ready-line also a first stdout line
{"event": "ready", ...}); then answer each line in order until EOF or SIGTERM. On SIGTERM
the server stops reading, answers every complete line it has already received, and exits 0;
during start-up, it exits 0 once the model being compiled is done. stdout carries protocol
lines only; logs go to stderr. Clients may pipeline: lines wait in the pipe until answered.
The process never exits while a reload compiles: ``ForecastService.close`` waits for it.

With dynamic batching (--max-batch-size > 1) the server reads ahead the lines that are
already there (at most --max-queue-size) and submits them together, so a pipelining client
gets batches; answers still leave in request order. Without it, a line that arrives while
others are in flight runs on an engine thread, so reading and decoding the next lines and
writing finished answers overlap inference; a lone line runs inline (no thread hop).
Windows and forecasts may travel as base64 float32 (``jsonl_codec``): half the bytes. Hot
swap: SIGHUP reloads every model in the background (requests go on meanwhile; SIGHUPs that
arrive during a reload make one more; during start-up, one reload after it); the "reload"
command reloads in order, so later lines use the new model. The line cap follows the models
served (a model loaded later raises it). Everything else is the core's
(``core.ForecastService``).
"""

from __future__ import annotations

import logging
import os
import select
import signal
import sys
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO

from ..errors import PayloadTooLargeError, ServingError
from . import jsonl_codec as codec
from .core import ForecastService, Pending, as_serving_error

log = logging.getLogger(__name__)

# Reads of a pipe-buffer quarter: the writer refills while we read on, as with readline(),
# instead of sleeping until we have drained the whole pipe.
READ_BYTES = 16 * 1024
_TOO_LONG = object()  # a line over the cap (already skipped)
_NOTHING_YET = object()  # no complete line available without waiting


class JsonLinesServer:
    """Answers JSON-lines requests read from ``source_fd`` onto ``sink`` with a service."""

    def __init__(
        self,
        service: ForecastService,
        *,
        source_fd: int | None = None,
        sink: BinaryIO | None = None,
    ) -> None:
        self.service = service
        self.source_fd = sys.stdin.fileno() if source_fd is None else source_fd
        self.sink = sink or sys.stdout.buffer
        self.answered = 0
        # Without batching, a line that arrives while others are in flight (a pipelining
        # client) runs on this thread, so reading and decoding the next lines and writing
        # finished answers overlap the engine; a lone line runs inline (no thread hop).
        self._engine_thread = (
            ThreadPoolExecutor(1, thread_name_prefix="ovcast-jsonl-engine")
            if service.config.max_batch_size == 1
            else None
        )
        self.clean_exit = True  # False: close() timed out with a thread inside OpenVINO
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)

    def announce_ready(self, *, ready_line: bool) -> None:
        models = self.service.models()
        info: dict = {"event": "ready", "models": list(models)}
        if len(models) == 1:
            engine = self.service.model().engine
            info.update(
                model=engine.name,
                context_length=engine.context_length,
                prediction_length=engine.prediction_length,
                num_channels=engine.num_channels,
                channel_names=engine.channel_names,
            )
        if ready_line:
            self._write(codec.encode(info))
        log.info("ready model=%s", ",".join(models))

    def serve(self, *, ready_line: bool = False) -> int:
        """Load the models (unless started), answer lines until EOF or SIGTERM, then stop the
        service; returns the process exit code. Signals are handled from the start."""
        previous = {
            signal.SIGTERM: signal.signal(signal.SIGTERM, self._on_sigterm),
            signal.SIGHUP: signal.signal(signal.SIGHUP, self._on_sighup),
        }
        try:
            if not self.service.start():
                return 0  # SIGTERM during start-up
            self.announce_ready(ready_line=ready_line)
            return self._answer_lines()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if self._engine_thread is not None:
                self._engine_thread.shutdown(wait=True)
            self.clean_exit = self.service.close()

    def _answer_lines(self) -> int:
        reader = _LineReader(self.source_fd, lambda: self.service.max_request_bytes, self._wake_r)
        read_ahead = self.service.config.max_queue_size
        pending: deque[_Answer] = deque()
        try:
            while True:
                while pending and pending[0].done():
                    self._answer(pending.popleft())
                if len(pending) >= read_ahead:
                    self._answer(pending.popleft())
                    continue
                line = reader.next(wait=not pending)
                if line is None:
                    break
                if line is _NOTHING_YET:  # nothing more to batch with: wait for the oldest
                    self._answer(pending.popleft())
                    continue
                answer = self._handle(line, pending)
                pending.append(answer)
            while pending:
                self._answer(pending.popleft())
        except BrokenPipeError:
            log.warning("stdout closed by the client; stopping")
            return 0
        log.info("stopped after %d responses", self.answered)
        return 0

    def _handle(self, line: bytearray | bytes | object, pending: deque[_Answer]) -> _Answer:
        """Start answering one line; a command first lets every earlier line finish."""
        try:
            if line is _TOO_LONG:
                raise PayloadTooLargeError(
                    f"line longer than {self.service.max_request_bytes} bytes "
                    "(--max-request-bytes)",
                    code="line_too_long",
                )
            assert isinstance(line, (bytes, bytearray))
            decoded = codec.decode(line)
            if isinstance(decoded, codec.Command):
                while pending:
                    self._answer(pending.popleft())
                return _Answer(data=self._command(decoded))
            answer = _Answer(timestamp_ms=decoded.timestamp_ms, base64=decoded.base64_output)
            if pending and self._engine_thread is not None:
                answer.submitted = self._engine_thread.submit(self.service.submit, decoded.request)
            else:
                answer.pending = self.service.submit(decoded.request)
            return answer
        except ServingError as error:
            self.service.rejected(error)
            return _Answer(data=codec.encode_error(error))
        except Exception:  # a bug must not kill the pipeline: answer and log it
            log.exception("internal error")
            return _Answer(data=codec.encode_error(_internal(None)))

    def _command(self, command: codec.Command) -> bytes:
        rid, service = command.request_id, self.service
        try:
            if command.name == "reload":
                models = service.reload(command.model, model_dir=command.model_dir)
                fields = {"models": models}
                if len(models) == 1:
                    fields.update(model=models[0]["name"], model_dir=models[0]["model_dir"])
                return codec.encode_event(rid, "reloaded", **fields)
            if command.name in ("load", "unload"):
                assert command.model is not None  # the codec insists on it
                if command.name == "load":
                    return codec.encode_event(rid, "loaded", models=service.load(command.model))
                return codec.encode_event(rid, "unloaded", **service.unload(command.model))
            if command.name == "index":
                return codec.encode_event(rid, "index", models=service.index())
            return codec.encode_event(rid, "metrics", metrics=service.metrics.render().decode())
        except Exception as exc:  # noqa: BLE001 - every command is answered, with its id
            error = as_serving_error(exc)
            error.request_id = rid
            return codec.encode_error(error)

    def _answer(self, answer: _Answer) -> None:
        if answer.submitted is not None:
            answer.pending = answer.submitted.result()  # submit() never raises
        if answer.data is None:
            assert answer.pending is not None
            try:
                result = self.service.result(answer.pending)
                answer.data = codec.encode_result(result, answer.timestamp_ms, answer.base64)
            except ServingError as error:
                answer.data = codec.encode_error(error)
            except Exception:  # a bug must not kill the pipeline: answer and log it
                log.exception("internal error")
                answer.data = codec.encode_error(_internal(answer.pending.request.request_id))
        self._write(answer.data)
        self.answered += 1

    def _write(self, data: bytes) -> None:
        self.sink.write(data)
        self.sink.flush()

    def _on_sighup(self, signum, frame) -> None:
        """Reload every model in the background; requests go on with the current ones."""
        self.service.request_reload()  # a byte on a pipe: nothing here can deadlock

    def _on_sigterm(self, signum, frame) -> None:
        log.info("SIGTERM: answering what was received, then exiting")
        self.service.draining.set()  # during start-up: stop after the model being compiled
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:
            pass  # already woken


def _internal(request_id: object) -> ServingError:
    return ServingError("internal error; the server logged the details", request_id=request_id)


class _Answer:
    """One line's answer: bytes already, or a submitted request still to finish."""

    __slots__ = ("base64", "data", "pending", "submitted", "timestamp_ms")

    def __init__(
        self,
        *,
        data: bytes | None = None,
        pending: Pending | None = None,
        timestamp_ms: int | None = None,
        base64: bool = False,
    ) -> None:
        self.data, self.pending, self.timestamp_ms = data, pending, timestamp_ms
        self.base64 = base64
        self.submitted: Future[Pending] | None = None  # running on the engine thread

    def done(self) -> bool:
        if self.submitted is not None:
            return self.submitted.done() and self.submitted.result().done()
        return self.data is not None or (self.pending is not None and self.pending.done())


class _LineReader:
    """Complete lines from a file descriptor, without blocking when asked not to.

    A line over ``max_bytes()`` (asked anew for each line: loading a model can raise it) is
    skipped to its end and reported once as ``_TOO_LONG``. A byte on ``wake_fd`` (SIGTERM)
    stops the reading: what is already in the pipe is still read and its complete lines
    returned; a partial last line is dropped.
    """

    def __init__(self, fd: int, max_bytes: Callable[[], int], wake_fd: int) -> None:
        self.fd, self.max_bytes, self.wake_fd = fd, max_bytes, wake_fd
        self.buffer = bytearray()
        self.scanned = 0  # the buffer holds no newline before this offset
        self.eof = self.stopped = self.skipping = False

    def next(self, *, wait: bool) -> bytearray | bytes | object | None:
        while True:
            # A long line arrives in many reads: look for its end in the new bytes only.
            end = self.buffer.find(b"\n", self.scanned)
            self.scanned = len(self.buffer) if end < 0 else 0
            if end >= 0:
                line = self.buffer[: end + 1]  # one copy; orjson reads a bytearray as it is
                del self.buffer[: end + 1]
                if self.skipping:
                    self.skipping = False
                    continue
                if len(line) > self.max_bytes() + 1:
                    return _TOO_LONG
                return line
            if len(self.buffer) > self.max_bytes():
                self.buffer.clear()
                self.scanned = 0
                if not self.skipping:
                    self.skipping = True
                    return _TOO_LONG
            if self.eof:
                rest, self.buffer = bytes(self.buffer), bytearray()
                if rest and not self.skipping and not self.stopped:
                    return rest  # a last line without its newline
                return None
            if not self._fill(wait):
                return _NOTHING_YET

    def _fill(self, wait: bool) -> bool:
        """Read what is there (waiting for it if ``wait``); False: nothing without waiting."""
        if self.stopped:
            ready = select.select([self.fd], [], [], 0)[0]
            if not ready:
                self.eof = True  # stopped, and nothing more was received
                return True
        else:
            ready = select.select([self.fd, self.wake_fd], [], [], None if wait else 0)[0]
            if self.wake_fd in ready:
                self.stopped = True
                return True
            if not ready:
                return False
        chunk = os.read(self.fd, READ_BYTES)
        if not chunk:
            self.eof = True
        self.buffer += chunk
        return True
