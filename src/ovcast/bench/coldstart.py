"""Cold start of one backend in a fresh process: load/compile, first forecast, peak RSS.

    python -m ovcast.bench.coldstart openvino models/default [--cache-dir DIR]

Prints one JSON object. Run as a subprocess so each backend's memory is its own; the
parent times the whole process, start to first forecast.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("backend")
    parser.add_argument("model_dir")
    parser.add_argument("--cache-dir")
    args = parser.parse_args()
    import orjson

    from ..package import ModelPackage
    from ..parity import parity_windows
    from .backends import load

    package = ModelPackage.load(args.model_dir)
    backend = load(args.backend, package, cache_dir=args.cache_dir)
    m = package.manifest
    window = parity_windows(m.context_length, m.num_input_channels, 1)
    start = time.perf_counter()
    backend.predict(window)
    first_s = time.perf_counter() - start
    sys.stdout.write(
        orjson.dumps(
            {
                "backend": args.backend,
                "load_ms": backend.load_s * 1e3,
                "first_inference_ms": first_s * 1e3,
                "peak_rss_mb": peak_rss_mb(),
            }
        ).decode()
        + "\n"
    )


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM); ru_maxrss can carry the parent's over fork+exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    main()
