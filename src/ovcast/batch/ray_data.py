"""Batch forecasting on Ray Data: read lazily, group by series, forecast with one Engine per worker.

    ray.data.read_parquet(INPUT)                 lazy, in blocks, on the cluster
      .groupby(<id column>)                      a series' rows together (Ray's sort shuffle)
      .map_groups(forecast_group, concurrency=N)   N at a time; each worker compiles once
      .iter_batches()                            forecasts streamed back and written by the driver

Each ``forecast_group`` task runs ``forecast_series`` (the local path's function, on the
same chunks), so the forecasts equal the local ones. Ray Data may hand series back in
another order than the local path writes them; within a series the rows are in time order.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from ..errors import DataError, OvcastError, require
from .forecast import BatchSpec, BatchStats, Progress, TableWriter, forecast_series, no_windows
from .source import RECORDING_SUFFIXES, pyarrow, read_input, select_columns

log = logging.getLogger(__name__)


_ENGINES: dict[tuple[str, int], Any] = {}  # per Ray worker process: compiled once


def forecast_group(rows: Any, spec: BatchSpec, threads: int) -> Any:
    """One series' forecasts, on a Ray worker; its Engine is compiled on the first call.

    Plain tasks, not actors: actors would hold their CPUs from the start, and on a small
    cluster nothing would be left for the reading and the shuffle that feed them (a stall,
    seen on 2 CPUs). A worker process runs many tasks, so it compiles once all the same.
    """
    from ..runtime.engine import Engine

    engine = _ENGINES.get((spec.model_dir, threads))
    if engine is None:
        # Pinning off: the workers share nodes; each would pin its threads to the same cores.
        engine = Engine(spec.model_dir, threads=threads, pinning=False)
        _ENGINES[spec.model_dir, threads] = engine
    series_id = rows.column(spec.columns.id)[0].as_py()
    parts = list(forecast_series(engine, spec, series_id, rows))
    return pyarrow().concat_tables(parts) if parts else _empty(engine, spec, rows)


def forecast_on_ray(
    source: str | Path,
    out: str | Path,
    spec: BatchSpec,
    *,
    address: str | None,
    workers: int | None = None,
    worker_cpus: float = 1.0,
) -> BatchStats:
    """Forecast every window of ``source`` on a Ray cluster (``address``; None: a local one)."""
    require("ray.data", extra="ray", purpose="forecast-batch --ray")
    import ray

    from ..runtime.engine import Engine
    from ..serve.ray.cluster import connect

    if spec.columns.timestamp is None:
        raise DataError(
            "--ray needs a timestamp column (--timestamp-column): Ray's shuffle does not keep "
            "the rows of a series in file order, so they are put in time order"
        )
    _ray_data_console_quiet()
    probe = Engine(spec.model_dir, warmup=False)  # fail here, not in every worker
    horizon, context_length = probe.prediction_length, probe.context_length
    probe.close()
    started = connect(address)
    try:
        context = ray.data.DataContext.get_current()
        # The sort shuffle runs as tasks; the hash shuffle's aggregator actors would hold
        # CPUs a small cluster needs for the rest.
        context.shuffle_strategy = ray.data.context.ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
        dataset = _read(source, spec)
        workers = workers or max(1, int(ray.cluster_resources().get("CPU", 1) // worker_cpus))
        forecasts = dataset.groupby(spec.columns.id).map_groups(
            forecast_group,
            batch_format="pyarrow",
            fn_kwargs={"spec": spec, "threads": max(1, int(worker_cpus))},
            compute=ray.data.TaskPoolStrategy(size=workers),
            num_cpus=worker_cpus,
        )
        stats, progress = BatchStats(), Progress(f"forecast-batch on Ray ({workers} workers)")
        with TableWriter(out) as writer:
            try:
                for part in forecasts.iter_batches(batch_size=None, batch_format="pyarrow"):
                    if part.num_rows:
                        writer.write(part)
                    progress.add(part.num_rows // horizon)
            except ray.exceptions.RayTaskError as exc:
                cause = _cause(exc)
                if cause is None:
                    raise
                # The error a worker raised, in the local path's words (Ray appends notes).
                raise type(cause)(str(cause).splitlines()[0]) from None
            if progress.windows == 0:
                raise no_windows(stats, context_length)
            writer.commit()
        stats.windows, stats.seconds = progress.windows, progress.seconds
        return stats
    finally:
        if started:
            ray.shutdown()


def _ray_data_console_quiet() -> None:
    """Ray Data's own console lines (progress tables, a worker's traceback) off stderr: ovcast
    logs the progress and says a worker's error in one line. Ray Data's log file under the
    session's logs/ray-data keeps everything; ``ovcast -v`` shows it here too."""
    if log.isEnabledFor(logging.DEBUG):
        return
    for handler in logging.getLogger("ray.data").handlers:
        if getattr(handler, "stream", None) in (sys.stderr, sys.stdout):
            handler.setLevel(logging.CRITICAL)


def _cause(exc: BaseException) -> OvcastError | None:
    """The ovcast error (bad input) at the root of a Ray task failure, if that is what it is."""
    seen: BaseException | None = exc
    while seen is not None:
        cause = getattr(seen, "cause", None)
        if isinstance(cause, OvcastError):
            return cause
        if isinstance(seen, OvcastError):
            return seen
        seen = cause if isinstance(cause, BaseException) else seen.__cause__
    return None


def _read(source: str | Path, spec: BatchSpec) -> Any:
    """The input as a Ray dataset: read by Ray's workers, block by block (a recording is
    read here and handed over: SQLite is a local file)."""
    import ray

    path = Path(source)
    if not path.exists():
        raise DataError(f"input {path} does not exist")
    if path.suffix.lower() in RECORDING_SUFFIXES:
        return ray.data.from_arrow(read_input(path, spec.columns))
    path_text = str(path.resolve())
    if path.suffix.lower() == ".csv":
        dataset = ray.data.read_csv(path_text)
    elif path.suffix.lower() == ".parquet" or path.is_dir():
        dataset = ray.data.read_parquet(path_text)
    else:
        read_input(path, spec.columns)  # raises the local path's error for this file
        raise AssertionError("unreachable")
    wanted = [spec.columns.id, spec.columns.timestamp, *spec.columns.channels]
    schema = dataset.schema()
    names = list(schema.names) if schema is not None else []
    select_columns(_NamesOnly(names), spec.columns, where=str(path))  # the same error
    return dataset.select_columns([c for c in wanted if c])


class _NamesOnly:
    """Enough of an Arrow table for ``select_columns`` to check the column names."""

    def __init__(self, names: list[str]) -> None:
        self.column_names = names

    def select(self, names: list[str]) -> None:
        return None


def _empty(engine: Any, spec: BatchSpec, rows: Any) -> Any:
    """No forecasts (a series shorter than the context), in the schema of the others."""
    pa = pyarrow()
    columns, schema = spec.columns, rows.schema
    time_type = schema.field(columns.timestamp).type
    fields = [
        pa.field(columns.id, schema.field(columns.id).type),
        pa.field("origin", time_type),
        pa.field(columns.timestamp, time_type),
        pa.field("step", pa.int32()),
        *(pa.field(name, pa.float32()) for name in engine.channel_names),
    ]
    return pa.schema(fields).empty_table()
