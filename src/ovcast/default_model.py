"""The embedded default model as a ready OpenVINO package: converted once, then cached.

    package, converted = default_package()      # ~/.cache/ovcast/default-<sha12>

The cache key is the embedded weights' sha256, so an upgrade that changes the weights
converts again. Converting needs the ``convert`` extra (PyTorch); loading the cache does not.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import ConfigError
from .hf.loading import resolve_source
from .package import ModelPackage


def default_cache_dir() -> Path:
    """$OVCAST_HOME, else $XDG_CACHE_HOME/ovcast, else ~/.cache/ovcast."""
    base = os.environ.get("OVCAST_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "ovcast"
    )
    return Path(base)


def default_package(
    cache_dir: str | Path | None = None, *, force: bool = False
) -> tuple[ModelPackage, bool]:
    """(the default model's package, whether it was converted just now)."""
    source = resolve_source("default")
    package_dir = Path(cache_dir or default_cache_dir()) / f"default-{source.weights_sha256[:12]}"
    if force or not (package_dir / "ovcast.json").is_file():
        from .convert import convert

        try:  # a cache that cannot be written is one line, not a traceback from deep inside
            package_dir.parent.mkdir(parents=True, exist_ok=True)
            probe = tempfile.TemporaryFile(dir=package_dir.parent)
        except OSError as exc:
            raise ConfigError(
                f"cannot keep the default model in {package_dir.parent}: {exc.strerror or exc}; "
                "set OVCAST_HOME (or --cache-dir where offered) to a writable folder"
            ) from exc
        probe.close()

        return convert("default", package_dir, name="default"), True
    return ModelPackage.load(package_dir), False
