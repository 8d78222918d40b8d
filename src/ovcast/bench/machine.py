"""What machine and software a figure was measured on (stated with every result)."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from .. import __version__
from ..runtime.cpu import affinity_cores, cgroup_quota_cores, usable_cores


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
        elif key == "cpu family":
            info["family"] = int(value)
        elif key == "model" and "model_number" not in info:
            info["model_number"] = int(value)
        elif key == "flags" and not info["flags"]:
            info["flags"] = value.split()
    return info


def isa_summary(flags: list[str]) -> str:
    wanted = ["avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16"]
    return ", ".join(f for f in wanted if f in flags) or "none of " + ", ".join(wanted)


def describe() -> dict[str, Any]:
    import numpy
    import openvino

    cpu = cpu_info()
    versions = {"ovcast": __version__, "openvino": openvino.get_version(), "numpy": numpy.__version__,
                "python": platform.python_version()}  # fmt: skip
    for name in ("torch", "onnxruntime", "transformers"):
        try:
            module = __import__(name)
            versions[name] = module.__version__
        except ImportError:
            pass
    return {
        "cpu": cpu["model"],
        "cpu_family_model": f"{cpu.get('family', '?')}/{cpu.get('model_number', '?')}",
        "isa": isa_summary(cpu["flags"]),
        "cpu_count": os.cpu_count(),
        "affinity_cores": affinity_cores(),
        "cgroup_quota_cores": cgroup_quota_cores(),
        "usable_cores": usable_cores(),
        "kernel": platform.release(),
        "versions": versions,
    }
