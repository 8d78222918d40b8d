"""The serving core: models behind hot-swap slots, one validation, batching, metrics. No transport.

    service = ForecastService(Repository([parse_model_option("models/default")]), ServiceConfig())
    service.start()                                   # compile and warm up every model; ready
    result = service.infer(InferRequest({"past_values": window}))
    result.outputs["prediction_outputs"]              # (horizon, channels) for one window

Front ends (JSON lines, HTTP; Ray Serve deployments later) decode their wire format into an
``InferRequest``, hand it to ``infer`` (or ``submit`` now and ``result`` later, to pipeline),
and encode the ``InferResult``. Every failure is an ``ovcast.errors.ServingError`` that carries
its protocol code and HTTP status, so a front end has one ``except``. Nothing here imports a
web framework or reads a socket, as in KServe's data plane.

What the core owns: the models (``Repository`` sources, each version an ``EngineSlot`` for hot
swap), validation of every request against its model (once, listing every problem), raw
scaling and channel selection, micro-batching, the bound on requests in flight, the batching
timeout, readiness, metrics, and load / unload / reload.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import (
    InvalidRequestError,
    ModelOutputError,
    ModelPackageError,
    OvcastError,
    ReloadError,
    ServerStartError,
    ServingError,
    UnavailableError,
    UnknownModelError,
)
from ..package import FREQ_TOKEN, MANIFEST_FILE, OBSERVED_MASK, Manifest, ModelPackage
from ..runtime.engine import Engine
from ..runtime.inputs import model_feeds
from ..runtime.raw import scale_inputs, unscale_forecast
from ..runtime.slot import EngineSlot, load_checked
from ..scaling import Scaler
from . import tensors
from .batching import Inputs, MicroBatcher, Outputs
from .config import ServiceConfig
from .metrics import UNKNOWN_MODEL, ServiceMetrics
from .repository import ModelSource, Repository, check_name, served_versions
from .tensors import Problem

log = logging.getLogger(__name__)

SCALED_INPUT = "past_values"  # the input that "raw" scales, and whose forecast it inverse-scales
JSON_BYTES_PER_NUMBER = 24  # "-0.12345678901234568," : the widest a float64 prints
HEADROOM_BYTES = 64 * 1024
SHUTDOWN_WAIT_S = 60.0  # at exit, the longest wait for a compile or forecast in progress


@dataclass
class InferRequest:
    """One forecast request, as a front end decoded it."""

    inputs: dict[str, np.ndarray | None]  # name -> array; None: given, but undecodable
    model: str | None = None  # None: the only model served
    version: str | None = None  # None: the model's highest served version
    channels: list[int] | None = None  # output channels; None: the server's default (all)
    raw: bool | None = None  # inputs in raw units; None: the server's default
    series_id: Any = None  # raw: whose scaler, for packages with one per series (one per window)
    request_id: Any = None
    problems: list[Problem] = field(default_factory=list)  # found while decoding


@dataclass
class InferResult:
    model: str
    version: str
    outputs: dict[str, np.ndarray]  # (batch, horizon, channels), or without batch for one window
    inference_ms: float
    request_id: Any = None


class ServedModel:
    """One version of a served model: its hot-swap slot and, when batching, its batcher."""

    def __init__(
        self,
        name: str,
        version: str,
        path: Path,
        service: ForecastService,
        *,
        engine: Engine | None = None,
    ) -> None:
        self.name, self.version = name, version
        self.slot = EngineSlot(path, service._load_engine, engine=engine)
        self.metrics = service.metrics.model(name)
        config = service.config
        self.batcher = (
            MicroBatcher(
                _run_engine,
                self.metrics,
                max_batch_size=config.max_batch_size,
                max_queue_delay_us=config.max_queue_delay_us,
                max_queue_size=config.max_queue_size,
            )
            if config.max_batch_size > 1
            else None
        )

    @property
    def engine(self) -> Engine:
        return self.slot.engine

    @property
    def manifest(self) -> Manifest:
        return self.slot.engine.package.manifest

    @property
    def path(self) -> Path:
        return Path(self.slot.model_dir)

    def close(self) -> None:
        """Finish what the batcher holds, then stop it (again: nothing)."""
        if self.batcher is not None:
            self.batcher.close()


@dataclass(frozen=True)
class _Model:
    name: str
    source: ModelSource
    versions: dict[str, ServedModel]  # never mutated: a reload builds a new _Model
    versioned: bool  # a folder of version folders (else one package, version "1")
    default: ServedModel = field(init=False)  # the highest version: what requests get

    def __post_init__(self) -> None:
        object.__setattr__(self, "default", self.versions[max(self.versions, key=int)])


@dataclass
class _Prepared:
    engine: Engine
    inputs: Inputs  # batched, validated, scaled if raw
    rows: int
    single: bool
    channels: list[int] | None
    raw: bool
    scalers: list[Scaler] | None = None  # raw: each window's


class Pending:
    """A submitted request; ``ForecastService.result`` waits for it (once)."""

    __slots__ = ("request", "started", "model", "version", "prepared", "future", "outputs", "error")

    def __init__(self, request: InferRequest) -> None:
        self.request = request
        self.started = time.perf_counter()
        self.model = UNKNOWN_MODEL
        self.version = ""
        self.prepared: _Prepared | None = None
        self.future: Future | None = None  # batched: (outputs, engine seconds)
        self.outputs: tuple[Outputs, float] | None = None  # direct
        self.error: ServingError | None = None

    def done(self) -> bool:
        return self.future is None or self.future.done()


class _Admission:
    """A place among ``max_queue_size`` (a class, not a generator: it is on every request)."""

    __slots__ = ("service",)

    def __init__(self, service: ForecastService) -> None:
        self.service = service

    def __enter__(self) -> None:
        service = self.service
        with service._admit_lock:
            if service._admitted >= service.config.max_queue_size:
                raise UnavailableError(
                    f"server overloaded: {service._admitted} requests in flight; retry later",
                    code="overloaded",
                )
            service._admitted += 1

    def __exit__(self, *exc_info: object) -> None:
        with self.service._admit_lock:
            self.service._admitted -= 1


class ForecastService:
    def __init__(
        self,
        repository: Repository,
        config: ServiceConfig | None = None,
        *,
        engine_options: dict[str, Any] | None = None,
    ) -> None:
        self.repository = repository
        self.config = config or ServiceConfig()
        self.metrics = ServiceMetrics()
        self.ready = threading.Event()  # every model loaded and warmed up
        self.draining = threading.Event()  # shutting down: not ready, finishing in-flight work
        self._load_engine = partial(
            _load_warm,
            batches=self.config.max_batch_size > 1,  # batching: warm the dynamic model too
            mode=self.config.engine_mode,
            threads=self.config.threads,
            cache_dir=self.config.cache_dir,
            **(engine_options or {}),
        )
        self._models: dict[str, _Model] = {}  # replaced whole, never mutated: lock-free reads
        self._named: dict[str, ModelSource] = {}  # --model DIR sources, by their manifest's name
        self._request_bytes: dict[str, int] = {}  # largest valid request of every model opened
        self._control = threading.Lock()  # one load / unload / reload at a time
        self._admitted = 0
        self._admit_lock = threading.Lock()
        self._busy = 0  # threads of this service inside OpenVINO outside _control (see close)
        self._idle = threading.Condition()
        self._reload_fds: tuple[int, int] | None = None  # the reloader's pipe (read, write)
        self._reloader: threading.Thread | None = None
        self._reload_after_start = False  # a reload asked for during start-up
        self.max_request_bytes = self.config.max_request_bytes or HEADROOM_BYTES

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> bool:
        """Load, compile and warm up every model the repository lists; then report ready.

        False: ``close()`` was called meanwhile (SIGTERM during start-up); the model being
        compiled then finished first, and nothing is served.
        """
        if self.ready.is_set():
            return True
        self._enter()
        try:
            opened = self._open_all()
        finally:
            self._leave()
        if opened is None:
            return False
        with self._control:
            if self.draining.is_set():
                _close_models(opened.values())
                return False
            self._publish(opened)
            self.ready.set()
        self._start_reloader()
        if self._reload_after_start:  # SIGHUP during start-up: its reload runs now
            self._reload_after_start = False
            log.info("a reload was asked for during start-up: reloading now")
            self.request_reload()
        return True

    def _open_all(self) -> dict[str, _Model] | None:
        """Every start-up model opened, or None when stopped meanwhile (nothing left open)."""
        models: dict[str, _Model] = {}
        try:
            for source in self.repository.startup_sources():
                model = self._open(source)
                if model.name in models:
                    _close_models([model])
                    raise UnknownModelError(
                        f"two models are named {model.name!r} ({models[model.name].source.path} "
                        f"and {source.path}); name them apart with --model NAME=DIR"
                    )
                models[model.name] = model
        except _Stopping:
            _close_models(models.values())
            log.info("stopped during start-up, after the model being compiled")
            return None
        except BaseException:
            _close_models(models.values())
            raise
        if not models:
            raise UnknownModelError("no models to serve: give --model DIR or --repository DIR")
        return models

    def check(self) -> None:
        """Fail fast, before binding or compiling, on a model that cannot be served."""
        sources = self.repository.startup_sources()
        if not sources:
            raise UnknownModelError("no models to serve: give --model DIR or --repository DIR")
        cap = self.config.max_request_bytes
        for source in sources:
            for path in served_versions(source).values():
                package = ModelPackage.load(path)
                if self.config.raw and package.scaler is None and package.series_scalers is None:
                    raise ModelPackageError(
                        f"--raw needs packages with a scaler; {path} carries none"
                    )
                smallest = _smallest_request(package.manifest)
                if cap is not None and cap < smallest:
                    raise ServerStartError(
                        f"--max-request-bytes {cap} cannot hold one window of {path} (at least "
                        f"{smallest} bytes as JSON); raise it or leave it out (the default fits "
                        "the models)"
                    )

    def close(self, timeout_s: float = SHUTDOWN_WAIT_S) -> bool:
        """Stop: no more loads, wait for the loads, reloads and forecasts in progress, finish
        what the batchers hold, then stop them.

        Returns False when something is still inside OpenVINO after ``timeout_s``: a process
        that exits then can abort ("terminate called without an active exception"), so the
        CLI leaves with ``os._exit`` instead. Safe to call more than once.
        """
        self.draining.set()
        deadline = time.monotonic() + timeout_s
        clean = self._stop_reloader(deadline)
        locked = self._control.acquire(timeout=_left(deadline))
        try:  # a load or reload in progress holds _control: it finishes (or gives up) first
            _close_models(self._models.values())
        finally:
            if locked:
                self._control.release()
        with self._idle:
            idle = self._idle.wait_for(lambda: self._busy == 0, timeout=_left(deadline))
        clean = clean and locked and idle
        if not clean:
            log.error(
                "a model load or forecast was still running %g s after the stop was asked for",
                timeout_s,
            )
        return clean

    @property
    def is_ready(self) -> bool:
        """Loaded and warmed up, not stopping, and serving at least one model."""
        return self.ready.is_set() and not self.draining.is_set() and bool(self._models)

    # -- reloads asked for by signals ------------------------------------------------------
    def request_reload(self) -> None:
        """Reload every model in the background (SIGHUP). Safe in a signal handler: it only
        writes a byte to a pipe. Coalesced: one reload runs, and requests made meanwhile
        become one more reload after it. During start-up, the reload runs once started."""
        if not self.ready.is_set() or self._reload_fds is None:
            self._reload_after_start = True  # start() looks at it once ready
            if not self.ready.is_set() or self._reload_fds is None:
                return
            self._reload_after_start = False  # it became ready meanwhile: ask directly
        fds = self._reload_fds
        if fds is None:
            return  # closed meanwhile
        try:
            os.write(fds[1], b"r")
        except OSError:  # the pipe is full: a reload is pending already (or it closed)
            pass

    def _start_reloader(self) -> None:
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        self._reload_fds = (read_fd, write_fd)
        self._reloader = threading.Thread(
            target=self._reload_loop, args=(read_fd,), name="ovcast-reload", daemon=True
        )
        self._reloader.start()

    def _reload_loop(self, read_fd: int) -> None:
        while True:
            try:
                asked = os.read(read_fd, 65536)  # every request so far: one reload for them all
            except OSError:
                return
            if not asked or b"q" in asked or self.draining.is_set():
                return
            log.info("reloading every model (asked %d time%s)", len(asked), "s"[: len(asked) > 1])
            try:
                self.reload()
            except ServingError as exc:
                log.error("reload: %s", exc)
            except Exception:  # a bug: logged, and the next SIGHUP is still heard
                log.exception("reload failed unexpectedly")

    def _stop_reloader(self, deadline: float) -> bool:
        fds, thread = self._reload_fds, self._reloader
        if fds is None or thread is None:
            return True
        self._reload_fds = None
        try:
            os.write(fds[1], b"q")
        except OSError:
            pass  # full: the reader sees the end of the pipe instead
        os.close(fds[1])
        thread.join(_left(deadline))
        if thread.is_alive():
            return False
        os.close(fds[0])
        return True

    def _enter(self) -> None:
        """A thread enters OpenVINO outside ``_control`` (start-up, a direct forecast)."""
        with self._idle:
            self._busy += 1

    def _leave(self) -> None:
        with self._idle:
            self._busy -= 1
            if self._busy == 0:
                self._idle.notify_all()

    # -- looking models up -----------------------------------------------------------------
    def models(self) -> dict[str, list[str]]:
        """Served model name -> its versions, lowest first."""
        return {n: sorted(m.versions, key=int) for n, m in sorted(self._models.items())}

    def model(self, name: str | None = None, version: str | None = None) -> ServedModel:
        """The served model ``name`` (None: the only one) at ``version`` (None: the highest)."""
        if not self.ready.is_set():
            raise UnavailableError("not ready: models are loading and warming up", code="not_ready")
        models = self._models
        if name is None:
            if not models:
                raise UnknownModelError(
                    "no model is loaded (every model was unloaded); load one by name first"
                )
            if len(models) != 1:
                raise InvalidRequestError(
                    f"this server serves {len(models)} models ({', '.join(sorted(models))}); "
                    "name the one to use with 'model'"
                )
            (model,) = models.values()
        else:
            model = models.get(name)  # type: ignore[assignment]
            if model is None:
                raise UnknownModelError(
                    f"unknown model {name[:64]!r}; served: {', '.join(sorted(models)) or 'none'}"
                )
        if version is None:
            return model.default
        served = model.versions.get(version)
        if served is None:
            raise UnknownModelError(
                f"unknown version {version[:32]!r} of {model.name!r}; served: "
                f"{', '.join(sorted(model.versions, key=int))}"
            )
        return served

    # -- inference -------------------------------------------------------------------------
    def admit(self) -> _Admission:
        """``with service.admit():`` holds one of ``max_queue_size`` places while a request is
        read and answered; entering raises UnavailableError (503) when none is free."""
        return _Admission(self)

    def in_flight(self) -> int:
        """Requests admitted and not yet answered."""
        return self._admitted

    def infer(self, request: InferRequest) -> InferResult:
        return self.result(self.submit(request))

    def submit(self, request: InferRequest) -> Pending:
        """Validate and start a request; never raises (``result`` reports its outcome)."""
        pending = Pending(request)
        self.metrics.in_flight.inc()
        try:
            served = self.model(request.model, request.version)
            pending.model, pending.version = served.name, served.version
            engine = served.engine  # once: a hot swap during this request does not affect it
            prepared = pending.prepared = self._prepare(request, engine)
            if served.batcher is not None:
                pending.future = served.batcher.submit(engine, prepared.inputs, prepared.rows)
            else:
                start = time.perf_counter()
                self._enter()
                try:
                    outputs = _run_engine(engine, prepared.inputs)
                finally:
                    self._leave()
                seconds = time.perf_counter() - start
                served.metrics.inference_s.observe(seconds)
                served.metrics.batch_size.observe(prepared.rows)
                pending.outputs = (outputs, seconds)
        except Exception as exc:  # noqa: BLE001 - every failure is answered, by result()
            pending.error = as_serving_error(exc)
        return pending

    def result(self, pending: Pending) -> InferResult:
        """Wait for a submitted request (batching: at most ``request_timeout_s``) and finish it."""
        request, outcome = pending.request, "internal_error"
        try:
            if pending.error is not None:
                raise pending.error
            if pending.future is not None:
                outputs, seconds = self._wait(pending.future)
            else:
                assert pending.outputs is not None
                outputs, seconds = pending.outputs
            assert pending.prepared is not None
            result = InferResult(
                pending.model,
                pending.version,
                _finish(pending.prepared, outputs),
                round(seconds * 1e3, 3),
                request.request_id,
            )
            outcome = "success"
            return result
        except Exception as exc:
            error = as_serving_error(exc)
            outcome = error.code
            if error.request_id is None:
                error.request_id = request.request_id
            if error is exc:
                raise
            raise error from exc
        finally:
            self.metrics.in_flight.dec()
            self.metrics.count(pending.model, outcome, time.perf_counter() - pending.started)

    def rejected(self, error: ServingError) -> None:
        """Count a request a front end refused before it became an ``InferRequest``."""
        self.metrics.count(UNKNOWN_MODEL, error.code)

    def _wait(self, future: Future) -> tuple[Outputs, float]:
        timeout = self.config.request_timeout_s
        try:
            return future.result(timeout=timeout)
        except FutureTimeout:
            if future.cancel():  # still queued: it will be skipped, not computed
                raise UnavailableError(
                    f"no result within {timeout:g} s (batching queue); retry later",
                    code="timeout",
                ) from None
            return future.result()  # running now: its answer is moments away

    def _prepare(self, request: InferRequest, engine: Engine) -> _Prepared:
        """Check the request against the model, listing every problem; scale raw inputs."""
        m = engine.package.manifest
        problems = list(request.problems)
        specs = {spec.name: spec for spec in m.inputs}
        for name in request.inputs:
            if name not in specs:
                problems.append(
                    (
                        "invalid_request",
                        f"unknown input {name[:64]!r}; {m.name} takes {list(specs)}",
                    )
                )
        inputs: Inputs = {}
        shapes: set[tuple[int, bool]] = set()  # (batch, single) of every input
        optional = optional_inputs(m)
        for spec in m.inputs:
            if spec.name not in request.inputs:
                if spec.name not in optional:
                    problems.append(
                        (
                            "invalid_request",
                            f"missing input {spec.name!r} ({_expected(spec.shape)}): "
                            f"{spec.description or 'see the model metadata'}",
                        )
                    )
                continue
            array = request.inputs[spec.name]
            if array is None:
                continue  # undecodable: the codec has said why
            if array.dtype != tensors.DTYPES.get(spec.datatype):
                try:  # JSON lines sends every input as FP32: the model's datatype decides
                    array = tensors.cast(array, name=spec.name, datatype=spec.datatype)
                except InvalidRequestError as exc:
                    problems.append((exc.code, str(exc)))
                    continue
            missing_values = spec.name == SCALED_INPUT and OBSERVED_MASK in specs
            problem = self._check_tensor(spec.name, array, spec.shape, allow_nan=missing_values)
            if problem:
                problems.append(("invalid_input", problem))
                continue
            single = array.ndim == len(spec.shape) - 1
            batched = array[None] if single else array
            inputs[spec.name] = np.ascontiguousarray(batched)
            shapes.add((len(batched), single))
        if len(shapes) > 1:
            problems.append(
                ("invalid_input", f"inputs disagree on the batch size: {sorted(shapes)}")
            )
        channels = request.channels if request.channels is not None else self.config.channels
        width = m.outputs[0].shape[-1] if m.outputs[0].shape[-1] > 0 else m.num_input_channels
        if channels is not None:
            problem = _check_channels(channels, width)
            if problem:
                problems.append(("invalid_input", problem))
        raw = request.raw if request.raw is not None else self.config.raw
        scalers = None
        if raw and engine.scaler is None and engine.package.series_scalers is None:
            problems.append(
                ("invalid_input", f"raw: model {m.name!r} carries no scaler, so raw values cannot "
                 "be scaled; send model-space (scaled) values or pick a model with a scaler")
            )  # fmt: skip
        elif raw and len(shapes) == 1:
            ((rows, single),) = shapes
            try:
                scalers = engine.scalers_for(request.series_id, rows, single)
            except OvcastError as exc:
                problems.append(("invalid_input", str(exc)))
        elif not raw and request.series_id is not None:
            problems.append(("invalid_request", "'series_id' applies to raw requests only"))
        if problems:
            codes = {code for code, _ in problems}
            code = "invalid_request" if "invalid_request" in codes else problems[0][0]
            raise InvalidRequestError(
                "; ".join(message for _, message in problems),
                code=code,
                request_id=request.request_id,
            )
        if scalers is not None and SCALED_INPUT in inputs:
            with np.errstate(all="ignore"):
                scaled = scale_inputs(m, scalers, inputs)
            for name, values in scaled.items():
                if not (np.isfinite(values) | np.isnan(inputs[name])).all():
                    raise InvalidRequestError(
                        f"'{name}' in raw units is not finite after the package's scaling "
                        "(log-scaled channels need values > -1; others must stay within float32)",
                        code="invalid_input",
                    )
            inputs = {name: np.ascontiguousarray(v, np.float32) for name, v in scaled.items()}
        if m.extra_inputs:  # every input, defaults filled in (frequency token, observed mask)
            others = {k: v for k, v in inputs.items() if k != SCALED_INPUT}
            feeds, _ = model_feeds(m, inputs[SCALED_INPUT], others)
            inputs = {spec.name: feed for spec, feed in zip(m.inputs, feeds, strict=True)}
        ((rows, single),) = shapes
        return _Prepared(engine, inputs, rows, single, channels, raw, scalers)

    def _check_tensor(
        self, name: str, array: np.ndarray, expected: list[int], *, allow_nan: bool = False
    ) -> str | None:
        single = array.ndim == len(expected) - 1
        shape = (1, *array.shape) if single else array.shape
        fits = len(shape) == len(expected) and all(
            e in (-1, d) for e, d in zip(expected, shape, strict=True)
        )
        if not fits or shape[0] == 0:
            return f"'{name}' has shape {list(array.shape)}; expected {_expected(expected)}"
        if shape[0] > self.config.max_request_batch:
            return (
                f"'{name}' holds {shape[0]} windows; at most {self.config.max_request_batch} per "
                "request (--max-request-batch)"
            )
        bad = np.isinf(array) if allow_nan else ~np.isfinite(array)
        if array.dtype.kind == "f" and bad.any():
            where = np.argwhere(bad)[0].tolist()
            what = "inf" if allow_nan else "NaN or inf"
            hint = " (NaN marks a missing value)" if allow_nan else ""
            return f"'{name}' has {what} (first at index {where}); expected finite numbers{hint}"
        return None

    # -- model control ---------------------------------------------------------------------
    def index(self, *, ready_only: bool = False) -> list[dict[str, Any]]:
        """Triton's repository index: every model the server could serve, and its state."""
        entries = [
            {"name": name, "version": version, "state": "READY"}
            for name, versions in self.models().items()
            for version in versions
        ]
        if not ready_only:
            served = set(self._models)
            try:
                known = set(self.repository.names()) | set(self._named)
            except OvcastError as exc:  # config.json broken while serving
                raise _repository_error(exc) from exc
            entries += [
                {"name": name, "state": "UNAVAILABLE", "reason": "unloaded"}
                for name in sorted(known - served)
            ]
        return sorted(entries, key=lambda e: (e["name"], int(e.get("version", 0))))

    def load(self, name: str) -> list[dict[str, Any]]:
        """Load the repository's model ``name``, or hot-swap it in again if it is served."""
        check_name(name)
        self._require_ready()
        with self._control:
            self._require_ready()
            model = self._models.get(name)
            if model is not None:
                return self._refresh([model])
            try:
                source = self._source(name)
                model = self._open(source, expect_name=name)
            except UnknownModelError:
                raise
            except _Stopping:
                raise UnavailableError("the server is stopping", code="stopping") from None
            except Exception as exc:  # noqa: BLE001 - a failed load is an answer, never a crash
                self.metrics.model_loads.labels(name, "reload_failed").inc()
                raise _reload_error(name, exc) from exc
            self._publish({**self._models, name: model})
            self.metrics.model_loads.labels(name, "success").inc()
            log.info("loaded %s versions %s", name, sorted(model.versions, key=int))
            return _describe(model)

    def unload(self, name: str) -> dict[str, Any]:
        check_name(name)
        self._require_ready()
        with self._control:
            model = self._models.get(name)
            if model is None:
                raise UnknownModelError(f"model {name!r} is not loaded")
            self._publish({n: m for n, m in self._models.items() if n != name})
        _close_models([model])  # in-flight requests hold their engine
        self.metrics.model_loads.labels(name, "unloaded").inc()
        log.info("unloaded %s", name)
        return {"name": name, "state": "UNAVAILABLE", "reason": "unloaded"}

    def reload(
        self, name: str | None = None, *, model_dir: str | Path | None = None
    ) -> list[dict[str, Any]]:
        """Re-read and hot-swap ``name`` (None: every model); ``model_dir`` swaps in another
        package for it (local callers only: the HTTP front end never passes a path)."""
        self._require_ready()
        with self._control:
            self._require_ready()
            if name is None and model_dir is None:
                targets = list(self._models.values())
            else:
                targets = [self._models_or_raise(name)]
            return self._refresh(targets, model_dir=model_dir)

    def _require_ready(self) -> None:
        if self.draining.is_set():
            raise UnavailableError("the server is stopping", code="stopping")
        if not self.ready.is_set():
            raise UnavailableError(
                "not ready: models are still loading; try again once ready", code="not_ready"
            )

    def _models_or_raise(self, name: str | None) -> _Model:
        served = self.model(name)
        return self._models[served.name]

    def _source(self, name: str) -> ModelSource:
        """Where the model ``name`` comes from: the repository, or a ``--model DIR`` that was
        named by its manifest (so that it can be loaded again after an unload)."""
        try:
            return self.repository.source(name)
        except UnknownModelError:
            if name in self._named:
                return self._named[name]
            raise

    def _refresh(
        self, models: list[_Model], *, model_dir: str | Path | None = None
    ) -> list[dict[str, Any]]:
        """Re-read each model's versions and switch to them, model by model, all or nothing:
        a model whose new versions are not all accepted keeps serving exactly what it served
        (its versions and their batchers untouched). Lock held."""
        current = dict(self._models)
        failures: list[str] = []
        retired: list[ServedModel] = []
        for model in models:
            if self.draining.is_set():
                failures.append(f"{model.name}: not reloaded, the server is stopping")
                continue
            try:
                current[model.name], gone = self._reread(model, model_dir)
            except ReloadError as exc:
                failures.append(str(exc))
                self.metrics.model_loads.labels(model.name, "reload_failed").inc()
                continue
            retired += gone
            self.metrics.model_loads.labels(model.name, "success").inc()
        self._publish(current)
        _close_versions(retired)
        if failures:
            raise ReloadError("; ".join(failures))
        described = [d for model in models for d in _describe(current[model.name])]
        log.info("reloaded %s", ", ".join(f"{d['name']}/{d['version']}" for d in described))
        return described

    def _reread(
        self, model: _Model, model_dir: str | Path | None
    ) -> tuple[_Model, list[ServedModel]]:
        """The model with its versions re-read and checked, and the versions it retires; a
        ReloadError (nothing switched) when any of them is refused."""
        try:
            if model_dir is not None:
                wanted = {model.default.version: Path(model_dir)}
            elif model.versioned:
                wanted = served_versions(model.source)
            else:
                wanted = {"1": model.default.path}  # the folder it serves (after swaps)
        except Exception as exc:  # noqa: BLE001 - config.json or the folder: still an answer
            raise _reload_error(model.name, exc) from exc
        candidates: dict[str, tuple[Path, Engine]] = {}
        refused: list[str] = []
        for version, path in wanted.items():
            served = model.versions.get(version)
            try:
                if served is not None:
                    candidates[version] = (path, served.slot.prepare(path))
                else:  # a new version folder: the checks of a reload, against what serves now
                    default = model.default
                    engine = load_checked(
                        self._load_engine, path, default.engine, str(default.path)
                    )
                    candidates[version] = (path, engine)
            except Exception as exc:  # noqa: BLE001
                refused.append(str(_reload_error(f"{model.name} version {version}", exc)))
        if refused:
            raise ReloadError("; ".join(refused))
        versions = dict(model.versions) if model_dir is not None else {}
        for version, (path, engine) in candidates.items():
            served = model.versions.get(version)
            if served is not None:
                served.slot.swap(engine, path)
            else:
                served = ServedModel(model.name, version, path, self, engine=engine)
            versions[version] = served
        gone = [v for k, v in model.versions.items() if k not in versions]
        return _Model(model.name, model.source, versions, model.versioned), gone

    def _open(self, source: ModelSource, *, expect_name: str | None = None) -> _Model:
        versions: dict[str, ServedModel] = {}
        try:
            for version, path in served_versions(source).items():
                if self.draining.is_set():
                    raise _Stopping
                name = source.name or expect_name or _manifest_name(path)
                log.info("loading %s version %s", name, version)
                served = versions[version] = ServedModel(name, version, path, self)
                width = served.manifest.num_input_channels
                if self.config.channels is not None and max(self.config.channels) >= width:
                    raise ModelPackageError(
                        f"--channels {self.config.channels} out of range for {name!r}, which "
                        f"forecasts {width} channels"
                    )
        except BaseException:
            _close_versions(versions.values())
            raise
        name = next(iter(versions.values())).name
        versioned = not (source.path / MANIFEST_FILE).is_file()
        if source.name is None:
            self._named[name] = ModelSource(name, source.path, source.version_policy)
        source = ModelSource(name, source.path, source.version_policy)
        return _Model(name, source, versions, versioned)

    def _publish(self, models: dict[str, _Model]) -> None:
        """Make ``models`` the served set, with the body cap that fits them (and every model
        served before: an unloaded model's requests get 404, not 413)."""
        for model in models.values():
            self._request_bytes[model.name] = max(
                self._largest_request(v.manifest) for v in model.versions.values()
            )
        self._models = models
        if self.config.max_request_bytes is None:
            self.max_request_bytes = HEADROOM_BYTES + max(self._request_bytes.values(), default=0)

    def _largest_request(self, m: Manifest) -> int:
        batch = self.config.max_request_batch
        values = sum(math.prod([batch if d < 0 else d for d in t.shape]) for t in m.inputs)
        return values * JSON_BYTES_PER_NUMBER


def _load_warm(model_dir: str | Path, *, batches: bool, **options: Any) -> Engine:
    """An engine warmed up for what it will serve: single windows, and batches if asked."""
    engine = Engine(model_dir, warmup=False, **options)
    engine.warmup(batches=batches)
    return engine


class _Stopping(Exception):
    """close() was called while models were being opened."""


def _run_engine(engine: Engine, inputs: Inputs) -> Outputs:
    """The window and, for models that take them (TinyTimeMixer), the other named inputs."""
    m = engine.package.manifest
    others = {spec.name: inputs[spec.name] for spec in m.extra_inputs}
    return {m.outputs[0].name: engine.predict(inputs[m.inputs[0].name], **others)}


def optional_inputs(m: Manifest) -> set[str]:
    """Inputs a request may leave out: the engine fills them in (model_feeds)."""
    optional = {OBSERVED_MASK}  # from the NaNs of the window
    if (m.frequency or {}).get("default") is not None:
        optional.add(FREQ_TOKEN)  # the frequency the package was converted with
    return optional


def _finish(prepared: _Prepared, outputs: Outputs) -> dict[str, np.ndarray]:
    """Select channels and inverse-scale (raw) the forecast, refuse non-finite outputs, drop
    the batch axis of a single window."""
    scalers = prepared.scalers if prepared.raw else None
    manifest = prepared.engine.package.manifest
    channels = prepared.channels
    result: dict[str, np.ndarray] = {}
    for name, array in outputs.items():
        if not result:  # the first output is the forecast: channels and raw apply to it
            if channels is not None:
                array = array[..., channels]
            if scalers is not None:
                with np.errstate(all="ignore"):
                    array = unscale_forecast(manifest, scalers, array, channels)
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise ModelOutputError(
                f"the model's '{name}' for this input is not finite (NaN or inf): the input is "
                "likely far outside the range the model was trained on (check its scale, or "
                "'raw'); nothing is answered for it rather than nulls"
            )
        result[name] = np.ascontiguousarray(array[0] if prepared.single else array)
    return result


def _check_channels(channels: list[int], width: int) -> str | None:
    """What is wrong with a request's output channels, if anything (distinct, in range)."""
    bad = [c for c in channels if not 0 <= c < width]
    if not channels:
        return f"channels [] selects nothing; expected indices 0..{width - 1}"
    if bad:
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        return f"channels {bad[:5]}{more} out of range; expected indices 0..{width - 1}"
    if len(set(channels)) != len(channels):
        repeated = next(c for k, c in enumerate(channels) if c in channels[:k])
        return (
            f"channels repeat index {repeated} ({len(channels)} given); expected distinct "
            f"indices 0..{width - 1}, at most {width} of them"
        )
    return None


def _smallest_request(m: Manifest) -> int:
    """Bytes of the smallest valid request, one window of one-digit numbers ("0,")."""
    return 2 * sum(math.prod(d for d in t.shape if d > 0) for t in m.inputs)


def _close_models(models: Iterable[_Model]) -> None:
    _close_versions(v for model in list(models) for v in model.versions.values())


def _close_versions(versions: Iterable[ServedModel]) -> None:
    for version in list(versions):
        version.close()


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


def _expected(shape: list[int]) -> str:
    dims = ["batch" if d < 0 else str(d) for d in shape]
    one = f"[{', '.join(dims[1:])}] or " if shape and shape[0] < 0 else ""
    return f"{one}[{', '.join(dims)}]"


def _manifest_name(path: Path) -> str:
    return ModelPackage.load(path).manifest.name


def _describe(model: _Model) -> list[dict[str, Any]]:
    return [
        {"name": model.name, "version": v, "model_dir": str(s.path), "state": "READY"}
        for v, s in sorted(model.versions.items(), key=lambda kv: int(kv[0]))
    ]


def _reload_error(what: str, exc: BaseException) -> ReloadError:
    if isinstance(exc, OvcastError):
        return ReloadError(f"{what}: {exc}")
    log.error("loading %s failed unexpectedly", what, exc_info=exc)
    return ReloadError(f"{what}: unexpected {type(exc).__name__} while loading (see server log)")


def _repository_error(exc: OvcastError) -> ServingError:
    return ServingError(
        f"the model repository cannot be read: {exc}; the models loaded go on serving",
        code="repository_error",
    )


def as_serving_error(exc: BaseException) -> ServingError:
    """One boundary: every exception of a request becomes the ServingError it answers with."""
    if isinstance(exc, ServingError):
        return exc
    if isinstance(exc, ModelPackageError):  # the server's packages, not the request
        return _repository_error(exc)
    if isinstance(exc, OvcastError):  # the engine's own checks (InvalidInputError, ...)
        return InvalidRequestError(str(exc), code="invalid_input")
    log.error("internal error while serving a request", exc_info=exc)
    return ServingError(f"internal error ({type(exc).__name__}); the server logged the details")
