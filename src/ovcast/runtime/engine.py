"""The torch-free inference engine: a model package compiled for this machine's CPU.

    from ovcast import Engine
    engine = Engine("models/default")              # latency mode, sized to usable cores
    forecast = engine.predict(window)              # (512, 7) -> (96, 7), model space
    prices = engine.forecast(raw_window)           # scale -> predict -> inverse-scale
    engine.forecast(raw, series_id="BTC-USD", future_exogenous=known)   # TTM's other inputs

``predict`` is thread-safe: each call borrows one of a pool of infer requests (as many as
the compiled model can run at once), so concurrent callers never share a request and, in
throughput mode, run in parallel streams. Single windows go to a static batch-1 compile of
the model (``compiled.py``), batches to the dynamic one. ``predict_many`` pipelines many
windows through OpenVINO's ``AsyncInferQueue``. The precision (f32, or bf16 where measured
harmless and the CPU has bf16 units) is chosen in ``precision.py``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from ..errors import InvalidInputError, ModelPackageError
from ..package import FUTURE_EXOGENOUS, OBSERVED_MASK, PAST_VALUES, ModelPackage, TensorSpec
from ..scaling import Scaler
from .compiled import CompiledModels, use_static_batch1
from .cpu import cpu_config
from .inputs import as_batch, example_inputs, model_feeds
from .precision import choose_precision, fallback_to_f32
from .raw import future_exogenous, scale_inputs, scalers_for, unscale_forecast
from .records import tuned_settings

log = logging.getLogger(__name__)


class Engine:
    """Compiled model package; ``predict`` maps windows to forecasts in model space."""

    def __init__(
        self,
        model_dir: str | Path | ModelPackage,
        *,
        mode: str = "latency",
        threads: int | None = None,
        streams: int | None = None,
        pinning: bool | None = None,
        precision_hint: str | None = None,
        static_batch1: bool | None = None,
        cache_dir: str | Path | None = None,
        config: Mapping[str, Any] | None = None,
        warmup: bool = True,
    ) -> None:
        """Load and compile a package.

        mode: 'latency' (one stream on all usable cores) or 'throughput' (a stream per core).
        threads, streams, pinning: override what the mode and the package's tuned config pick.
        precision_hint: 'f32' (the parity figures hold), 'bf16', or None/'auto' (default:
            $OVCAST_PRECISION if set, else bf16 where this CPU has bf16 units and the package
            records bf16 as within tolerance, else f32; see ``precision.py``).
        static_batch1: also compile a static batch-1 model for single windows (default: what
            ``ovcast tune`` measured, else on; see ``compiled.py``).
        cache_dir: OpenVINO compiled-model cache; makes later starts much faster.
        config: raw OpenVINO CPU properties, applied last.
        """
        self.package = (
            model_dir if isinstance(model_dir, ModelPackage) else ModelPackage.load(model_dir)
        )
        m = self.package.manifest
        self._scaler = self.package.scaler  # parsed once: forecast() is on every request's path
        self._series_scalers = self.package.series_scalers
        self.precision = choose_precision(m, precision_hint)
        properties = cpu_config(mode, threads=threads, streams=streams, pinning=pinning)
        measured = tuned_settings(m, mode)  # checked: ModelPackageError if malformed
        tuned = {k: v for k, v in measured.items() if k in properties}
        explicit = {
            "INFERENCE_NUM_THREADS": threads,
            "NUM_STREAMS": streams,
            "ENABLE_CPU_PINNING": pinning,
        }
        properties.update({k: v for k, v in tuned.items() if explicit.get(k) is None})
        properties["INFERENCE_PRECISION_HINT"] = self.precision.hint
        properties.update(config or {})
        self.mode = mode
        core = ov.Core()
        started = time.perf_counter()
        if cache_dir is not None:
            Path(cache_dir).mkdir(parents=True, exist_ok=True)
            core.set_property({"CACHE_DIR": str(cache_dir)})

        def compile_models() -> CompiledModels:
            # In bf16 the static batch-1 model and the dynamic one round differently (forecasts
            # moved ~1e-2 apart): single windows then go through the batch model too, so an
            # answer never depends on whether other requests were batched with it.
            static = use_static_batch1(static_batch1, measured) and self.precision.hint == "f32"
            return CompiledModels(
                core, str(self.package.xml_path), properties, static_batch1=static
            )

        try:
            self._models: CompiledModels | None = compile_models()
        except ModelPackageError as exc:
            self.precision = fallback_to_f32(self.precision, exc)  # re-raises if asked for
            properties["INFERENCE_PRECISION_HINT"] = self.precision.hint
            self._models = compile_models()
        self.compile_ms = (time.perf_counter() - started) * 1e3
        self.config = {
            key: _plain(self._models.first.get_property(key))
            for key in (
                "PERFORMANCE_HINT",
                "NUM_STREAMS",
                "INFERENCE_NUM_THREADS",
                "ENABLE_CPU_PINNING",
                "INFERENCE_PRECISION_HINT",
                "OPTIMAL_NUMBER_OF_INFER_REQUESTS",
            )
        }
        self.num_requests = max(1, int(self.config["OPTIMAL_NUMBER_OF_INFER_REQUESTS"]))
        self.static_batch1 = self._models.batch1 is not None
        log.debug(
            "compiled %s in %.0f ms: %s, static batch 1: %s; %s",
            self.package.path,
            self.compile_ms,
            self.config,
            self.static_batch1,
            self.precision.reason,
        )
        if warmup:
            self.warmup()

    # Shapes and names, from the manifest.
    @property
    def name(self) -> str:
        return self.package.manifest.name

    @property
    def context_length(self) -> int:
        return self.package.manifest.context_length

    @property
    def prediction_length(self) -> int:
        return self.package.manifest.prediction_length

    @property
    def num_channels(self) -> int:
        return self.package.manifest.num_input_channels

    @property
    def channel_names(self) -> list[str]:
        return list(self.package.manifest.channel_names)

    @property
    def scaler(self) -> Scaler | None:
        return self._scaler

    @property
    def inputs(self) -> list[TensorSpec]:
        """Every model input (past_values first) with its shape and meaning."""
        return list(self.package.manifest.inputs)

    @property
    def forecast_channels(self) -> list[int]:
        """Indices of the channels forecast, in output order (all of them for most models)."""
        return self.package.manifest.forecast_channels

    @property
    def forecast_channel_names(self) -> list[str]:
        """Names of the channels forecast, in output order."""
        names = self.channel_names
        return [names[i] for i in self.forecast_channels]

    def example_inputs(self, batch: int = 1) -> dict[str, np.ndarray]:
        """Plausible values of the inputs besides past_values (warm-up, benchmarks)."""
        frequency = self.package.manifest.frequency or {}
        return example_inputs(
            self.package.manifest.extra_inputs,
            batch,
            vocab_size=int(frequency.get("vocab_size", 1)),
        )

    def warmup(self, iterations: int = 2, *, batches: bool = False) -> None:
        """Run a few forecasts so the first real request does not pay for lazy set-up.

        Single windows only, by default: with the static batch-1 model that leaves the
        dynamic-batch model to be compiled by the first batch, so a (re)start is one compile.
        ``batches``: warm (compile) the dynamic model too.
        """
        window = np.zeros((self.context_length, self.num_channels), np.float32)
        window[:, :] = np.sin(np.arange(self.context_length) / 12.0)[:, None]
        others = {name: value[0] for name, value in self.example_inputs(1).items()}
        for _ in range(iterations):
            self.predict(window, **others)
        if batches and self.static_batch1:
            self.predict(np.stack([window, window]), **self.example_inputs(2))

    def predict(self, past_values: Any, **inputs: Any) -> np.ndarray:
        """Forecast in model space: (context, channels) -> (horizon, forecast channels), or
        batched.

        ``inputs``: the package's other inputs by name (``engine.inputs`` lists them; TTM:
        ``freq_token``, ``future_exogenous``, ``past_observed_mask``), per window or batched.
        Accepts numpy arrays or nested lists; raises ``InvalidInputError`` on wrong shape,
        non-numbers, NaN/inf (NaN is a missing value where the package has a mask input),
        empty input, or a missing or unknown input.
        """
        feeds, single = model_feeds(self.package.manifest, past_values, inputs)
        out = self._require_open().for_batch(len(feeds[0])).infer(dict(enumerate(feeds)))
        return out[0] if single else out

    def predict_many(self, windows: Any, *, batch_size: int = 1, **inputs: Any) -> np.ndarray:
        """Forecast many windows (n, context, channels) through the async infer queue.

        Keeps every stream busy: the throughput path. Results come back in input order.
        ``inputs``: the package's other inputs, batched like ``windows``.
        """
        feeds, _ = model_feeds(self.package.manifest, windows, inputs)
        if batch_size < 1:
            raise InvalidInputError(f"batch_size must be >= 1, got {batch_size}")
        n = len(feeds[0])
        channels = len(self.forecast_channels)
        results = np.empty((n, self.prediction_length, channels), np.float32)
        compiled = self._require_open().for_batch(batch_size).compiled
        # No Python callback on the queue: one made the process abort at exit now and then
        # (an OpenVINO thread still taking the GIL during teardown). Each finished request's
        # output is copied out when the request is next needed, and after wait_all.
        infer_queue = ov.AsyncInferQueue(compiled, self.num_requests)
        started_at: dict[int, int] = {}  # request id -> start row of its batch

        def collect(request_id: int) -> None:
            start = started_at.pop(request_id, None)
            if start is not None:
                out = infer_queue[request_id].get_output_tensor(0).data
                results[start : start + len(out)] = out

        for start in range(0, n, batch_size):
            request_id = infer_queue.get_idle_request_id()  # the one start_async takes next
            collect(request_id)
            chunk = {i: feed[start : start + batch_size] for i, feed in enumerate(feeds)}
            infer_queue.start_async(chunk, share_inputs=True)
            started_at[request_id] = start
        infer_queue.wait_all()
        for request_id in list(started_at):
            collect(request_id)
        return results

    def forecast(self, raw_window: Any, *, series_id: Any = None, **inputs: Any) -> np.ndarray:
        """Forecast in raw units with the package's scaler: scale, predict, inverse-scale.

        ``series_id``: which series the window is, for packages with one scaler per series
        (granite-tsfm's id_columns): a value, a tuple of values in id-column order or a
        mapping; for a batch, one for all windows or a list of one per window.
        ``future_exogenous`` is in raw units too.
        """
        m = self.package.manifest
        batch, single = as_batch(
            raw_window, self.context_length, self.num_channels, allow_nan=self._takes_mask
        )
        scalers = self.scalers_for(series_id, len(batch), single)
        given = {**inputs, PAST_VALUES: batch}
        if FUTURE_EXOGENOUS in inputs and m.exogenous_channels:
            given[FUTURE_EXOGENOUS] = future_exogenous(
                inputs[FUTURE_EXOGENOUS], single, len(m.exogenous_channels)
            )
        scaled = scale_inputs(m, scalers, given)
        predicted = self.predict(scaled.pop(PAST_VALUES), **scaled)  # batched: 3-D
        out = unscale_forecast(m, scalers, predicted)
        return out[0] if single else out

    def forecast_frame(
        self,
        frame: Any,
        *,
        timestamp_column: str | None = None,
        id_columns: str | Sequence[str] = (),
        raw: bool = True,
        **inputs: Any,
    ) -> Any:
        """Forecast a pandas DataFrame (named channels, a timestamp column, optional ids).

        Returns a DataFrame of ``prediction_length`` rows per series: the id columns, the
        future timestamps and one column per channel. ``inputs``: the package's other
        inputs (``freq_token``, ``future_exogenous``). See ``series.forecast_frame``.
        """
        from .series import forecast_frame

        return forecast_frame(
            self,
            frame,
            timestamp_column=timestamp_column,
            id_columns=id_columns,
            raw=raw,
            **inputs,
        )

    @property
    def _takes_mask(self) -> bool:
        return any(spec.name == OBSERVED_MASK for spec in self.package.manifest.extra_inputs)

    def scaler_for(self, series_id: Any = None) -> Scaler:
        """The scaler of one series: the package's, or its series' (per-series packages)."""
        return self.scalers_for(series_id, 1, True)[0]

    def scalers_for(self, series_id: Any, batch: int, single: bool = False) -> list[Scaler]:
        """One scaler per window of a batch (see ``runtime.raw.scalers_for``)."""
        return scalers_for(
            self._scaler, self._series_scalers, series_id, batch, single, where=self.name
        )

    def close(self) -> None:
        """Release the compiled model and its infer requests.

        Call it from the thread that owns the engine once no request uses it; a closed
        engine cannot forecast again.
        """
        if self._models is not None:
            self._models.close()
        self._models = None

    def _require_open(self) -> CompiledModels:
        if self._models is None:
            raise ModelPackageError(f"the engine of {self.package.path} is closed")
        return self._models

    def __repr__(self) -> str:
        return f"Engine({self.package!r}, mode={self.mode!r}, config={self.config})"


def _plain(value: Any) -> Any:
    """OpenVINO property values (enums, element types) as JSON-friendly Python values."""
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, ov.Type):
        return value.to_string()  # 'f32', 'bf16'
    return str(value)


# The name the guide uses for the same object.
PatchTSTOpenVINOInference = Engine
