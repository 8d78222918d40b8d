"""The compiled models an Engine runs, each with a pool of infer requests.

Single windows, the main use (one forecast per bar close), go to the package compiled a
second time with the batch fixed to 1: for a static shape OpenVINO's CPU plugin plans memory
and picks kernels once, at compile time, and that measured faster than the dynamic-batch
model at batch 1 (docs/PERFORMANCE.md). Batches go to the dynamic-batch model, compiled on
first use when the static one exists (50-100 ms here, once), so a start or a restart that
only needs single windows (a pipeline, a cold start) compiles one model, not two. ``ovcast tune`` measures static against dynamic
and records the winner (``runtime_config[mode]["static_batch1"]``).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np
import openvino as ov

from ..errors import ModelPackageError


def batch1_model(model: ov.Model) -> ov.Model | None:
    """A copy of ``model`` with every input's dynamic batch dimension set to 1; None when no
    input has one (the model is already static)."""
    shapes = {}
    for index, port in enumerate(model.inputs):
        shape = port.get_partial_shape()
        if shape.rank.is_static and shape.rank.get_length() > 0 and shape[0].is_dynamic:
            shapes[index] = ov.PartialShape([ov.Dimension(1), *list(shape)[1:]])
    if not shapes:
        return None
    clone = model.clone()
    clone.reshape(shapes)
    return clone


def use_static_batch1(requested: bool | None, tuned: Mapping[str, Any]) -> bool:
    """The caller's choice, else what ``ovcast tune`` measured for this mode, else on."""
    if requested is not None:
        return requested
    return bool(tuned.get("static_batch1", True))


class RequestPool:
    """A compiled model and a pool of its infer requests, one per concurrent caller (as many
    as it runs at once)."""

    def __init__(self, compiled: ov.CompiledModel) -> None:
        self.compiled: ov.CompiledModel | None = compiled
        self.size = max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        self._pool: queue.SimpleQueue = queue.SimpleQueue()
        for _ in range(self.size):
            self._pool.put(compiled.create_infer_request())

    def infer(self, inputs: dict[int, np.ndarray]) -> np.ndarray:
        """The first output for ``inputs``, copied (the request reuses its buffer)."""
        request = self._pool.get()
        try:
            request.infer(inputs, share_inputs=True)
            return request.get_output_tensor(0).data.copy()
        finally:
            self._pool.put(request)

    def close(self) -> None:
        """Drop the idle infer requests and the compiled model."""
        while not self._pool.empty():
            self._pool.get_nowait()
        self.compiled = None


class CompiledModels:
    """The static batch-1 model (if wanted and the package has a dynamic batch) and the
    dynamic-batch model, compiled with the same ``properties``."""

    def __init__(
        self, core: ov.Core, xml: str, properties: dict[str, Any], *, static_batch1: bool
    ) -> None:
        self._core, self._xml, self._properties = core, xml, properties
        self._lock = threading.Lock()
        self._dynamic: RequestPool | None = None
        self.batch1: RequestPool | None = None
        single = batch1_model(self._read()) if static_batch1 else None
        if single is not None:
            self.batch1 = RequestPool(self._compile(single))
        else:
            self._dynamic = RequestPool(self._compile(xml))  # from the path: a cache hit reads less
        first = self.batch1 or self._dynamic
        assert first is not None and first.compiled is not None
        self.first: ov.CompiledModel = first.compiled  # its properties describe both

    @property
    def dynamic(self) -> RequestPool:
        """The dynamic-batch model, compiled now if this is its first use."""
        if self._dynamic is None:
            with self._lock:
                if self._dynamic is None:
                    self._dynamic = RequestPool(self._compile(self._xml))
        return self._dynamic

    def for_batch(self, size: int) -> RequestPool:
        return self.batch1 if size == 1 and self.batch1 is not None else self.dynamic

    def close(self) -> None:
        for pool in (self.batch1, self._dynamic):
            if pool is not None:
                pool.close()

    def _read(self) -> ov.Model:
        try:
            return self._core.read_model(self._xml)
        except RuntimeError as exc:
            raise ModelPackageError(f"OpenVINO could not read {self._xml}: {exc}") from exc

    def _compile(self, model: ov.Model | str) -> ov.CompiledModel:
        try:
            return self._core.compile_model(model, "CPU", self._properties)
        except RuntimeError as exc:
            raise ModelPackageError(
                f"OpenVINO could not compile {self._xml} with {self._properties}: {exc}"
            ) from exc
