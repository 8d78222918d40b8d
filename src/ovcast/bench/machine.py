"""What machine and software a figure was measured on (stated with every result)."""

from __future__ import annotations

import os
import platform
from typing import Any

from .._version import __version__
from ..runtime.cpu import affinity_cores, cgroup_quota_cores, cpu_info, isa_summary, usable_cores


def describe() -> dict[str, Any]:
    import numpy
    import openvino

    cpu = cpu_info()
    versions = {
        "ovcast": __version__,
        "openvino": openvino.get_version(),
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }
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
