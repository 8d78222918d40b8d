"""What each part of the batch-1 fast path is worth on this machine, measured step by step.

    as traced    the export without the speed rewrites, dynamic batch, f32
    + rewrites   the package as converted (``convert/rewrites.py``)
    + static     the static batch-1 model (``runtime/compiled.py``)
    + bf16       computing in bf16 (where the CPU has bf16 units); single windows then go
                 through the dynamic model too (``Engine``: in bf16 the two models round
                 apart), so this step is measured against the static f32 one before it

All steps run in one alternation at batch 1, so their ratios are fair on a noisy machine.
The first step needs the source checkpoint and PyTorch (it re-exports without rewrites); it
is left out, and said so, when either is missing or the package has no rewrites.
"""

from __future__ import annotations

import logging
import tempfile
from functools import partial
from pathlib import Path

from ..errors import OvcastError
from ..package import ModelPackage
from ..parity import parity_windows
from ..runtime.engine import Engine
from ..runtime.precision import native_bf16
from .timing import alternate

log = logging.getLogger(__name__)


def fast_path_steps(package: ModelPackage, duration_s: float, block: int, settle: int) -> dict:
    """p50 of each step at batch 1 and its ratio to the first step measured."""
    m = package.manifest
    window = parity_windows(m.context_length, m.num_input_channels, 1)
    engines: dict[str, Engine] = {}
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        plain = _without_rewrites(package, Path(tmp), notes)
        if plain is not None:
            engines["as traced (no rewrites), dynamic batch, f32"] = Engine(
                plain, precision_hint="f32", static_batch1=False
            )
        rewrites = ", ".join(m.parity.get("export_rewrites", [])) or "no rewrites"
        engines[f"+ {rewrites}"] = Engine(package, precision_hint="f32", static_batch1=False)
        engines["+ static batch-1 model"] = Engine(package, precision_hint="f32")
        if native_bf16():
            engines["+ bf16 (the dynamic model: one model for every batch size)"] = Engine(
                package, precision_hint="bf16"
            )
        else:
            notes.append("bf16 left out: this CPU has no bf16 units")
        others = {n: v[0] for n, v in next(iter(engines.values())).example_inputs(1).items()}
        stats = alternate(
            {name: partial(e.predict, window[0], **others) for name, e in engines.items()},
            duration_s=duration_s,
            block=block,
            settle=settle,
        )
    first = next(iter(stats.values())).p50
    return {
        "steps": {
            name: {**s.to_dict(), "p50_ratio_to_first": s.p50 / first} for name, s in stats.items()
        },
        "notes": notes,
    }


def _without_rewrites(package: ModelPackage, folder: Path, notes: list[str]) -> Path | None:
    """The package re-exported without the speed rewrites, or None (with a note) if it can't."""
    if not package.manifest.parity.get("export_rewrites"):
        notes.append("the package was exported without rewrites: nothing to compare")
        return None
    try:
        from ..convert import convert
        from ..convert.signature import source_name  # imports torch

        name = source_name(package)
        convert(
            name, folder / "plain", revision=package.manifest.source.get("revision"), rewrites=False
        )
    except (OvcastError, ImportError) as exc:
        notes.append(f"'as traced' left out: re-exporting the source failed ({exc})")
        log.warning("fast path: %s", notes[-1])
        return None
    return folder / "plain"
