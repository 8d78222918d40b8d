"""The issue's performance targets, judged on one run, and what stands in the way of each
missed one, worded from the same run's measurements (op profile, limits, serving times).

Targets (batch 1, side by side in one run): OpenVINO p50 <= 0.8x ONNX Runtime and <= 0.5x
PyTorch eager; >= 60% of the f32 GEMM limit in f32 (bf16 reported against its own limit);
predict_many with the throughput configuration >= 70% of the limit; JSON lines <= 1.10x and
HTTP binary <= 1.15x the bare engine; a new process to its first forecast < 300 ms with the
compiled-model cache.
"""

from __future__ import annotations

from typing import Any

# name, goal, measured, met: True/False, None (only reported), or a str: the figure is
# impossible (a server faster than the engine inside it, more than 100% of the machine's
# limit), so the run was too noisy to judge it; the str says so.
Target = tuple[str, str, str, "bool | None | str"]
NOISY = "INVALID (noisy run)"

VS_ORT, VS_TORCH, SHARE_F32, THROUGHPUT_SHARE = 0.8, 0.5, 60.0, 70.0
SERVING = {"jsonl pipe": 1.10, "jsonl pipe base64": 1.10, "http binary": 1.15, "http json": 1.5}
COLDSTART_MS = 300.0


def _name(backend: str) -> str:
    return "OpenVINO bf16" if backend.endswith("-bf16") else "OpenVINO f32"


def _judged(met: bool, impossible: bool) -> bool | str:
    """The verdict, unless the figure cannot be true (then the run was too noisy to judge)."""
    return NOISY if impossible else met


def _share(name: str, percent: float, goal: float | None) -> Target:
    """A share-of-the-limit row: judged against ``goal``, or only reported (None); over 100%
    it cannot be true."""
    if goal is None:
        return (name, "reported", f"{percent:.0f}%", NOISY if percent > 100 else None)
    return (name, f">= {goal:.0f}%", f"{percent:.0f}%", _judged(percent >= goal, percent > 100))


def targets(results: dict[str, Any]) -> list[Target]:
    """(target, goal, measured, met?) from one run's figures."""
    rows: list[Target] = []
    one = results["latency"].get("1", {})
    for backend in ("openvino", "openvino-bf16"):
        ov = one.get(backend)
        if not ov:
            continue
        for other, label, goal in (
            ("onnxruntime", "ONNX Runtime", VS_ORT),
            ("torch", "PyTorch eager", VS_TORCH),
        ):
            if other in one:
                r = ov["p50_ms"] / one[other]["p50_ms"]
                rows.append(
                    (
                        f"{_name(backend)} batch-1 p50 / {label} p50",
                        f"<= {goal}x",
                        f"{r:.2f}x",
                        r <= goal,
                    )
                )
        rows.append(
            _share(
                f"{_name(backend)} batch-1 share of the {'f32' if backend == 'openvino' else 'bf16'} "
                "GEMM limit",
                ov["percent_of_gemm_limit"],
                SHARE_F32 if backend == "openvino" else None,
            )
        )
    for precision, t in results.get("throughput_mode", {}).items():
        f32 = precision == "f32"
        rows.append(
            _share(
                "predict_many, throughput configuration, "
                + ("share of the f32 limit" if f32 else f"{precision}, share of its limit"),
                t["percent_of_gemm_limit"],
                THROUGHPUT_SHARE if f32 else None,
            )
        )
    tput = results.get("http_load", {}).get("throughput", {})
    if tput and "f32" in results.get("throughput_mode", {}):
        best = max(c["forecasts_per_s"] for c in tput.values())
        beside = results["throughput_mode"]["f32"].get("gemm_gflops_beside")
        limit = beside or results["limit"]["gemm_gflops"]
        p = 100 * best * results["limit"]["flops_per_forecast"] / 1e9 / limit
        rows.append(
            (
                "HTTP server, throughput configuration, best of 1-8 clients, share of the f32 limit",
                f">= {THROUGHPUT_SHARE:.0f}%",
                f"{p:.0f}%",
                _judged(p >= THROUGHPUT_SHARE, p > 100),
            )
        )
    for name, goal in SERVING.items():
        if name in results.get("serving", {}):
            r = results["serving"][name]["p50_ratio_to_engine"]
            rows.append(
                (
                    f"{name} p50 / bare engine p50",
                    f"<= {goal:.2f}x",
                    f"{r:.2f}x",
                    _judged(r <= goal, r < 1.0),
                )
            )
    cached = results.get("coldstart", {}).get("openvino+cache", {})
    if "process_to_first_forecast_ms" in cached:
        ms = cached["process_to_first_forecast_ms"]
        rows.append(
            (
                "cold start with cache: new process to first forecast",
                f"< {COLDSTART_MS:.0f} ms",
                f"{ms:.0f} ms",
                ms < COLDSTART_MS,
            )
        )
    return rows


def obstacles(results: dict[str, Any]) -> dict[str, str]:
    """For each target, what the same run measured standing in its way."""
    why: dict[str, str] = {}
    one = results["latency"].get("1", {})
    limit = results["limit"]
    profiles = results.get("op_profile", {})
    if isinstance(profiles, list):
        profiles = {"f32": profiles}
    for backend in ("openvino", "openvino-bf16"):
        if backend not in one:
            continue
        precision = "bf16" if backend.endswith("-bf16") else "f32"
        gemm = limit["bf16_gemm_gflops"] if precision == "bf16" else limit["gemm_gflops"]
        where = _time_by_op(
            profiles.get(precision, []), one[backend]["p50_ms"], limit["flops_per_forecast"], gemm
        )
        for other, label in (("onnxruntime", "ONNX Runtime"), ("torch", "PyTorch eager")):
            if other in one:
                why[f"{_name(backend)} batch-1 p50 / {label} p50"] = (
                    f"{one[backend]['p50_ms']:.2f} ms against {one[other]['p50_ms']:.2f} ms; {where}"
                )
        if precision == "f32":
            why["OpenVINO f32 batch-1 share of the f32 GEMM limit"] = (
                f"the limit is {limit['flops_per_forecast'] / gemm / 1e6:.2f} ms at the GEMM "
                f"rate ({gemm:.0f} GFLOP/s); {where}"
            )
    t = results.get("throughput_mode", {}).get("f32")
    if t:
        per_stream_ms = 1e3 * t["streams"] / t["forecasts_per_s"]
        per_core = limit["gemm_gflops_per_core"]
        why["predict_many, throughput configuration, share of the f32 limit"] = (
            f"{t['streams']} single-threaded streams, {per_stream_ms:.2f} ms per forecast each "
            f"({limit['flops_per_forecast'] / per_stream_ms / 1e6:.0f} GFLOP/s per core, against a "
            f"one-core GEMM rate of {per_core:.0f}); the limit assumes the all-core GEMM rate "
            f"({t.get('gemm_gflops_beside', limit['gemm_gflops']):.0f})"
        )
    serving = results.get("serving", {})
    base = serving.get("engine.predict", {}).get("p50_ms")
    for name in SERVING:
        if name in serving and base:
            extra = serving[name]["p50_ms"] - base
            why[f"{name} p50 / bare engine p50"] = (
                f"{extra:.2f} ms per forecast over the bare engine's {base:.2f} ms: decoding, "
                "encoding and the pipe or socket, on the same cores as the model"
            )
    cached = results.get("coldstart", {}).get("openvino+cache", {})
    if "process_to_first_forecast_ms" in cached:
        total = cached["process_to_first_forecast_ms"]
        rest = total - cached["load_ms"] - cached["first_inference_ms"]
        why["cold start with cache: new process to first forecast"] = (
            f"Python start and imports {rest:.0f} ms, loading the cached model(s) "
            f"{cached['load_ms']:.0f} ms, first forecast {cached['first_inference_ms']:.0f} ms"
        )
    return why


def _time_by_op(profile: list[dict[str, Any]], p50_ms: float, flops: float, gemm: float) -> str:
    """'FullyConnected 0.61 ms (52%, ~290 GFLOP/s), Subgraph 0.41 ms (35%), ...'."""
    if not profile:
        return "no op profile in this run"
    by_op: dict[str, float] = {}
    for row in profile:
        by_op[row["op"]] = by_op.get(row["op"], 0.0) + row["ms_per_forecast"]
    counted = sum(by_op.values())
    parts = []
    for op, ms in sorted(by_op.items(), key=lambda kv: -kv[1])[:3]:
        text = f"{op} {ms:.2f} ms ({100 * ms / counted:.0f}%"
        if op == "FullyConnected":
            text += f", at most {flops / ms / 1e6:.0f} GFLOP/s = {100 * flops / ms / 1e6 / gemm:.0f}% of the GEMM rate"
        parts.append(text + ")")
    named = {"Subgraph": "Subgraph holds the fused attention and element-wise ops"}
    notes = [named[op] for op in by_op if op in named]
    return (
        "time by op: "
        + ", ".join(parts)
        + (f" ({'; '.join(notes)})" if notes else "")
        + f"; the counters sum to {counted:.2f} ms of the {p50_ms:.2f} ms p50"
    )
