"""How many cores this process may really use, and the OpenVINO CPU config that follows.

``os.cpu_count()`` counts the host's CPUs. A container is limited by its affinity mask
(cpuset, taskset) and by its CFS quota; OpenVINO honours the first and not the second
(openvino#37838), so oversubscribed TBB threads stall under a quota. We take the minimum.
"""

from __future__ import annotations

import math
import os
import platform
from pathlib import Path
from typing import Any

from ..errors import ConfigError

CGROUP_ROOT = Path("/sys/fs/cgroup")
MODES = ("latency", "throughput")


def affinity_cores() -> int:
    """CPUs in this process's affinity mask (taskset / cpuset)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def cgroup_quota_cores(root: Path = CGROUP_ROOT) -> float | None:
    """CPU quota in cores from cgroup v2 ``cpu.max`` or v1 ``cfs_quota_us``; None if unlimited."""
    v2 = root / "cpu.max"
    try:
        if v2.is_file():
            quota, period = v2.read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        v1 = root / "cpu" / "cpu.cfs_quota_us"
        if v1.is_file():
            quota_us = int(v1.read_text())
            period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
            return None if quota_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None
    return None


def usable_cores(root: Path = CGROUP_ROOT) -> int:
    """Whole cores this process can keep busy: min(affinity mask, ceil(cgroup quota)), >= 1."""
    cores = affinity_cores()
    quota = cgroup_quota_cores(root)
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota)))
    return max(1, cores)


def cpu_config(
    mode: str = "latency",
    *,
    threads: int | None = None,
    streams: int | None = None,
    pinning: bool | None = None,
    cores: int | None = None,
) -> dict[str, Any]:
    """OpenVINO CPU properties for ``mode``, sized to the usable cores; arguments win.

    latency:    one stream using every core (the fastest single forecast);
    throughput: one single-threaded stream per core (most forecasts per second, each slower).

    Threads are not pinned to cores (OpenVINO pins by default on Linux): on a box shared with
    other work a pinned thread waits for its busy core while another core idles. Measured
    on a 2-core AMD Zen 5 under other load: batch-1 p50 7-10 ms unpinned against 9-12 ms
    pinned, p10 2.6 against 3.3-6 ms; on an idle Zen 3 the two were equal (research notes).
    ``ovcast tune`` measures both and stores the faster.
    """
    if mode not in MODES:
        raise ConfigError(f"unknown mode {mode!r}; expected one of {MODES}")
    cores = cores or usable_cores()
    if mode == "latency":
        config: dict[str, Any] = {
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
            "INFERENCE_NUM_THREADS": cores,
        }
    else:
        config = {
            "PERFORMANCE_HINT": "THROUGHPUT",
            "NUM_STREAMS": cores,
            "INFERENCE_NUM_THREADS": cores,
        }
    config["ENABLE_CPU_PINNING"] = False
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    if streams is not None:
        config["NUM_STREAMS"] = int(streams)
    if pinning is not None:
        config["ENABLE_CPU_PINNING"] = bool(pinning)
    return config


def cpu_info() -> dict[str, Any]:
    info: dict[str, Any] = {"model": platform.processor() or "unknown", "flags": []}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "model name" and info["model"] in ("unknown", "x86_64", ""):
            info["model"] = value
        elif key == "vendor_id" and "vendor" not in info:
            info["vendor"] = value
        elif key == "cpu family":
            info["family"] = int(value)
        elif key == "model" and "model_number" not in info:
            info["model_number"] = int(value)
        elif key == "flags" and not info["flags"]:
            info["flags"] = value.split()
    return info


def isa_summary(flags: list[str]) -> str:
    wanted = [
        "avx2",
        "fma",
        "avx512f",
        "avx512_bf16",
        "avx512_vnni",
        "avx512_fp16",
        "avx_vnni",
        "amx_bf16",
        "amx_fp16",
    ]
    return ", ".join(f for f in wanted if f in flags) or "none of " + ", ".join(wanted)
