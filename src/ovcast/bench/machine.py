"""What machine and software a figure was measured on (stated with every result).

``describe()`` goes into every benchmark's JSON; ``microarchitecture`` names the CPU
generation from its family/model numbers (the model name of a VM often says only 'AMD
EPYC'), and ``machine_slug`` turns that into a file name (``docs/bench-<slug>.json``).
"""

from __future__ import annotations

import os
import platform
import re
from typing import Any

from .._version import __version__
from ..runtime.cpu import affinity_cores, cgroup_quota_cores, cpu_info, isa_summary, usable_cores

# AMD family 0x19: Zen 3 and Zen 4 by model ranges (AMD's revision guides); 0x1A: Zen 5.
_ZEN3_MODELS = (range(0x00, 0x10), range(0x20, 0x30), range(0x40, 0x60))
_ZEN4_MODELS = (range(0x10, 0x20), range(0x60, 0x80), range(0xA0, 0xB0))
# Intel family 6 server parts seen or likely under ovcast
_INTEL_MODELS = {
    0x55: "Skylake/Cascade Lake",
    0x6A: "Ice Lake",
    0x8F: "Sapphire Rapids",
    0xCF: "Emerald Rapids",
    0xAD: "Granite Rapids",
    0xAF: "Sierra Forest",
}


def microarchitecture(cpu: dict[str, Any]) -> str:
    """'AMD Zen 4', 'Intel Sapphire Rapids', ... from /proc/cpuinfo's vendor, family, model."""
    vendor, family, model = cpu.get("vendor", ""), cpu.get("family"), cpu.get("model_number")
    if vendor == "AuthenticAMD" and model is not None:
        if family == 0x19:
            if any(model in r for r in _ZEN3_MODELS):
                return "AMD Zen 3"
            if any(model in r for r in _ZEN4_MODELS):
                return "AMD Zen 4"
        if family == 0x1A:
            return "AMD Zen 5"
        if family == 0x17:
            return "AMD Zen/Zen 2"
    if vendor == "GenuineIntel" and family == 6 and model in _INTEL_MODELS:
        return f"Intel {_INTEL_MODELS[model]}"
    name = {"AuthenticAMD": "AMD", "GenuineIntel": "Intel"}.get(vendor, vendor or "unknown")
    return f"{name} family {family} model {model}"


def machine_slug(machine: dict[str, Any]) -> str:
    """A file-name form of the machine: 'amd-zen-5-2cores'."""
    words = re.sub(r"[^a-z0-9]+", "-", machine["microarchitecture"].lower()).strip("-")
    return f"{words}-{machine['usable_cores']}cores"


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
        "microarchitecture": microarchitecture(cpu),
        "cpu_family_model": f"{cpu.get('family', '?')}/{cpu.get('model_number', '?')}",
        "isa": isa_summary(cpu["flags"]),
        "cpu_count": os.cpu_count(),
        "affinity_cores": affinity_cores(),
        "cgroup_quota_cores": cgroup_quota_cores(),
        "usable_cores": usable_cores(),
        "kernel": platform.release(),
        "versions": versions,
    }
