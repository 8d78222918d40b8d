"""``ovcast doctor``: the guide's troubleshooting checks, done for the user.

Each check returns findings (level, what was found, what to do). Runtime-safe: no torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .cpu import affinity_cores, cgroup_quota_cores, cpu_info, isa_summary, usable_cores

OK, INFO, WARN = "ok", "info", "warn"

# Environment variables from the guide (and habit) that do nothing or harm with OpenVINO's
# TBB-threaded CPU plugin; reasons measured or read from source (docs/PERFORMANCE.md).
ENV_ADVICE = {
    "ONEDNN_MAX_CPU_ISA": "caps only oneDNN's kernels; a no-op on AVX2-only CPUs and, where OpenVINO's "
    "own kernels use a wider ISA, the caps disagree (openvino PR #38189: silently wrong results). Unset it.",
    "DNNL_MAX_CPU_ISA": "same as ONEDNN_MAX_CPU_ISA. Unset it.",
    "OMP_NUM_THREADS": "ignored by OpenVINO's TBB threading; threads come from INFERENCE_NUM_THREADS "
    "(ovcast sets it from the usable cores). Affects only other OpenMP libraries in the process.",
    "OMP_WAIT_POLICY": "ignored by OpenVINO; ACTIVE makes other OpenMP libraries (PyTorch, OpenBLAS) "
    "spin and steal a core from OpenVINO on a small box. Unset it.",
    "KMP_AFFINITY": "Intel OpenMP only; OpenVINO's TBB build ignores it. Pinning is ENABLE_CPU_PINNING.",
    "KMP_BLOCKTIME": "Intel OpenMP only; ignored by OpenVINO.",
    "GOMP_CPU_AFFINITY": "GNU OpenMP only; ignored by OpenVINO. Use taskset/cpuset, which it honours.",
}


@dataclass
class Finding:
    level: str
    topic: str
    found: str
    action: str = ""


def check_cpu() -> list[Finding]:
    cpu = cpu_info()
    flags = set(cpu["flags"])
    findings = [
        Finding(
            INFO,
            "cpu",
            f"{cpu['model']} (family/model {cpu.get('family', '?')}/"
            f"{cpu.get('model_number', '?')}); ISA: {isa_summary(cpu['flags'])}",
        )
    ]
    if "avx2" not in flags:
        findings.append(
            Finding(
                WARN,
                "cpu",
                "no AVX2: OpenVINO falls back to slower kernels",
                "run on an AVX2 (or newer) CPU",
            )
        )
    if "avx512_bf16" in flags or "amx_bf16" in flags:
        findings.append(
            Finding(
                INFO,
                "precision",
                "this CPU computes bf16, which OpenVINO would pick "
                "by itself (forecasts moved by ~5e-4 in our measurement)",
                "ovcast pins f32; pass precision_hint='bf16' to trade accuracy for speed",
            )
        )
    else:
        findings.append(
            Finding(
                OK,
                "precision",
                "no bf16/fp16 units: f32 compute; fp16 IRs only store f16 weights and run slower",
                "keep fp32 packages (the default)",
            )
        )
    if not flags & {"avx512_vnni", "avx_vnni"}:
        findings.append(
            Finding(
                INFO,
                "int8",
                "no VNNI: int8 GEMMs are slower than fp32 and saturate",
                "do not use --precision int8 on this CPU",
            )
        )
    return findings


def check_cores() -> list[Finding]:
    total, mask, quota, usable = (
        os.cpu_count() or 1,
        affinity_cores(),
        cgroup_quota_cores(),
        usable_cores(),
    )
    found = f"{total} CPUs online, {mask} in the affinity mask, cgroup quota {quota or 'none'}: {usable} usable"
    if quota is not None and quota < mask:
        return [
            Finding(
                WARN,
                "cores",
                found + "; OpenVINO alone would start one thread per CPU in the "
                "mask and stall under the quota (openvino#37838)",
                f"ovcast sizes to {usable}; for other OpenVINO programs set INFERENCE_NUM_THREADS "
                f"or use taskset/cpuset",
            )
        ]
    return [Finding(OK, "cores", found)]


def check_clock_and_load() -> list[Finding]:
    findings = []
    governor = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    if governor.is_file():
        value = governor.read_text().strip()
        findings.append(
            Finding(
                OK if value == "performance" else WARN,
                "clock",
                f"governor {value}",
                ""
                if value == "performance"
                else "set the 'performance' governor for stable latency",
            )
        )
    mhz = [
        float(line.split(":")[1])
        for line in _read("/proc/cpuinfo").splitlines()
        if line.startswith("cpu MHz")
    ]
    if mhz:
        findings.append(
            Finding(
                INFO,
                "clock",
                f"current clock {min(mhz):.0f}-{max(mhz):.0f} MHz"
                + ("" if governor.is_file() else " (no cpufreq: a VM; the host sets the clock)"),
            )
        )
    load1, _, _ = os.getloadavg()
    usable = usable_cores()
    if load1 > 0.5 * usable:
        findings.append(
            Finding(
                WARN,
                "load",
                f"load average {load1:.2f} on {usable} usable cores: other "
                "processes compete for the CPU",
                "stop them, or expect slower and noisier latency",
            )
        )
    else:
        findings.append(Finding(OK, "load", f"load average {load1:.2f} on {usable} usable cores"))
    return findings


def check_memory() -> list[Finding]:
    info = {
        line.split(":")[0]: line.split()[1]
        for line in _read("/proc/meminfo").splitlines()
        if ":" in line
    }
    if "MemAvailable" not in info:
        return []
    available_mb = int(info["MemAvailable"]) / 1024
    level = OK if available_mb > 1024 else WARN
    return [
        Finding(
            level,
            "memory",
            f"{available_mb:.0f} MB available (a Granite-size engine needs ~150 MB)",
            "" if level == OK else "free memory: the engine and the OS page cache need room",
        )
    ]


def check_environment() -> list[Finding]:
    findings = [
        Finding(WARN, "environment", f"{name}={os.environ[name]}", advice)
        for name, advice in ENV_ADVICE.items()
        if name in os.environ
    ]
    return findings or [
        Finding(OK, "environment", "none of the guide's threading/ISA variables are set")
    ]


def check_versions() -> list[Finding]:
    import openvino

    from .._version import __version__

    return [Finding(INFO, "versions", f"ovcast {__version__}, OpenVINO {openvino.get_version()}")]


def check_package(model_dir: str) -> list[Finding]:
    from ..errors import OvcastError
    from ..package import ModelPackage

    try:
        package = ModelPackage.load(model_dir)
    except OvcastError as exc:
        return [Finding(WARN, "package", str(exc))]
    m = package.manifest
    findings = [
        Finding(
            OK,
            "package",
            f"{package.path}: {m.architecture}, {m.precision}, parity max abs "
            f"{m.parity.get('fp32_vs_torch', {}).get('max_abs_error', float('nan')):.1e}",
        )
    ]
    if m.precision != "fp32":
        findings.append(
            Finding(
                WARN,
                "package",
                f"{m.precision} package: on CPUs without fp16/VNNI units it is slower than fp32",
                "convert with --precision fp32",
            )
        )
    if m.runtime_config:
        findings.append(Finding(OK, "tuning", f"tuned config: {m.runtime_config}"))
    else:
        findings.append(Finding(INFO, "tuning", "no tuned config", f"run: ovcast tune {model_dir}"))
    return findings


def run_checks(model_dir: str | None = None) -> list[Finding]:
    findings = (
        check_cpu()
        + check_cores()
        + check_clock_and_load()
        + check_memory()
        + check_environment()
        + check_versions()
    )
    if model_dir:
        findings += check_package(model_dir)
    return findings


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""
