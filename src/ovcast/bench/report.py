"""Benchmark results as a terminal table, a plot and the docs/PERFORMANCE.md page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

GUIDE_EXPECTED = {"mean_ms": "5-15", "p95_ms": "10-25", "forecasts_per_s": "50-150"}


def table(results: dict[str, Any]) -> str:
    lines = [_machine_line(results), ""]
    header = (
        f"{'batch':>5} {'backend':<12} {'mean':>7} {'p50':>7} {'p95':>7} {'p99':>7} {'max':>7} "
        f"{'fc/s':>7} {'vs torch':>8} {'% limit':>7}"
    )
    lines.append(header + "   (ms)")
    for batch, per_backend in results["latency"].items():
        base = per_backend.get("torch", {}).get("p50_ms")
        for name, s in per_backend.items():
            ratio = f"{s['p50_ms'] / base:.2f}x" if base else "-"
            lines.append(
                f"{batch:>5} {name:<12} {s['mean_ms']:7.2f} {s['p50_ms']:7.2f} {s['p95_ms']:7.2f} "
                f"{s['p99_ms']:7.2f} {s['max_ms']:7.2f} {s['forecasts_per_s']:7.0f} {ratio:>8} "
                f"{s['percent_of_gemm_limit']:6.0f}%"
            )
    for name, why in results.get("skipped", {}).items():
        lines.append(f"{'':>5} {name:<12} skipped: {why}")
    limit = results["limit"]
    lines.append(
        f"\nlimit: {limit['flops_per_forecast'] / 1e6:.0f} MFLOP per forecast; OpenVINO FP32 "
        f"GEMM {limit['gemm_gflops']:.0f} GFLOP/s on {limit['cores']} cores "
        f"({limit['gemm_gflops_per_core']:.0f} on 1)"
    )
    if "throughput_mode" in results:
        t = results["throughput_mode"]
        lines.append(
            f"throughput mode ({t['streams']} streams, async queue): "
            f"{t['forecasts_per_s']:.0f} forecasts/s, {t['percent_of_gemm_limit']:.0f}% of limit"
        )
    if "op_profile" in results:
        lines.append("\nOpenVINO time by op (batch 1, per-layer counters)")
        for r in results["op_profile"][:6]:
            lines.append(
                f"  {r['op']:<16} {r['kernel']:<24} {r['ms_per_forecast']:6.3f} ms  {100 * r['share']:4.1f}%"
            )
    if "serving" in results:
        lines.append("\nend to end, batch 1 (ms)")
        for name, s in results["serving"].items():
            lines.append(
                f"  {name:<16} p50 {s['p50_ms']:6.2f}  p95 {s['p95_ms']:6.2f}  "
                f"{s['p50_ratio_to_engine']:.2f}x engine"
            )
    if "http_batching" in results:
        lines.append("\nHTTP binary under 8 concurrent clients, dynamic batching")
        for name, b in results["http_batching"].items():
            lines.append(
                f"  {name:<20} {b['forecasts_per_s']:6.0f} forecasts/s  p50 {b['p50_ms']:6.2f} ms  "
                f"p99 {b['p99_ms']:6.2f} ms"
            )
    if "coldstart" in results:
        lines.append("\ncold start (fresh process)")
        for name, c in results["coldstart"].items():
            if "error" in c:
                lines.append(f"  {name:<16} failed: {c['error']}")
                continue
            lines.append(
                f"  {name:<16} load {c['load_ms']:7.0f} ms  first forecast "
                f"{c['first_inference_ms']:6.1f} ms  process->forecast "
                f"{c['process_to_first_forecast_ms']:6.0f} ms  peak RSS {c['peak_rss_mb']:5.0f} MB"
            )
    return "\n".join(lines)


def _machine_line(results: dict[str, Any]) -> str:
    m = results["machine"]
    v = m["versions"]
    return (
        f"{m['cpu']} (family/model {m['cpu_family_model']}; {m['isa']}), {m['usable_cores']} usable "
        f"cores; " + ", ".join(f"{k} {val}" for k, val in v.items())
    )


def plot(results: dict[str, Any], path: str | Path) -> None:
    """Latency distribution at the first batch size, and forecasts/s against batch size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    samples = results["samples_batch1"]
    left.boxplot(list(samples.values()), showfliers=False)
    left.set_xticks(range(1, len(samples) + 1), list(samples))
    first = next(iter(results["latency"]))
    left.set_title(f"latency per call, batch {first} (ms, whiskers 1.5 IQR)")
    left.set_ylabel("ms")
    left.grid(axis="y", alpha=0.3)
    batches = [int(b) for b in results["latency"]]
    for name in next(iter(results["latency"].values())):
        right.plot(
            batches,
            [results["latency"][str(b)][name]["forecasts_per_s"] for b in batches],
            marker="o",
            label=name,
        )
    right.set_xscale("log", base=2)
    right.set_xlabel("batch size")
    right.set_ylabel("forecasts / s")
    right.set_title("throughput against batch size")
    right.grid(alpha=0.3)
    right.legend()
    fig.suptitle(_machine_line(results)[:120], fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


ANALYSIS_START = "<!-- analysis: kept when the page is regenerated -->"
ANALYSIS_END = "<!-- /analysis -->"


def targets(results: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    """The issue's targets: (target, goal, measured, met?) from one run's figures."""
    rows: list[tuple[str, str, str, bool | None]] = []
    one = results["latency"].get("1", {})
    ov, pt, ort = one.get("openvino"), one.get("torch"), one.get("onnxruntime")
    if ov and pt:
        r = ov["p50_ms"] / pt["p50_ms"]
        rows.append(
            ("OpenVINO batch-1 p50 / PyTorch eager p50", "<= 0.35x", f"{r:.2f}x", r <= 0.35)
        )
    if ov and ort:
        r = ov["p50_ms"] / ort["p50_ms"]
        rows.append(("OpenVINO batch-1 p50 / ONNX Runtime p50", "<= 0.8x", f"{r:.2f}x", r <= 0.8))
    if ov:
        p = ov["percent_of_gemm_limit"]
        rows.append(("OpenVINO batch-1 share of the GEMM limit", ">= 60%", f"{p:.0f}%", p >= 60))
    if "throughput_mode" in results:
        p = results["throughput_mode"]["percent_of_gemm_limit"]
        rows.append(
            ("throughput configuration share of the GEMM limit", ">= 65%", f"{p:.0f}%", p >= 65)
        )
    goals = {"jsonl pipe": 1.10, "http binary": 1.25, "http json": 1.5}
    for name, goal in goals.items():
        if name in results.get("serving", {}):
            r = results["serving"][name]["p50_ratio_to_engine"]
            rows.append(
                (f"{name} p50 / bare engine p50", f"<= {goal:.2f}x", f"{r:.2f}x", r <= goal)
            )
    cached = results.get("coldstart", {}).get("openvino+cache", {})
    if "process_to_first_forecast_ms" in cached:
        ms = cached["process_to_first_forecast_ms"]
        rows.append(
            (
                "cold start with cache: new process to first forecast",
                "< 1000 ms",
                f"{ms:.0f} ms",
                ms < 1000,
            )
        )
    return rows


def keep_analysis(previous: str) -> str:
    """The hand-written analysis section of an earlier page, if it had one."""
    if ANALYSIS_START in previous and ANALYSIS_END in previous:
        return previous[
            previous.index(ANALYSIS_START) : previous.index(ANALYSIS_END) + len(ANALYSIS_END)
        ]
    return f"{ANALYSIS_START}\n(no analysis written yet)\n{ANALYSIS_END}"


def markdown(
    results: dict[str, Any], *, command: str, plot_name: str | None, analysis: str = ""
) -> str:
    m = results["machine"]
    lat = results["latency"]
    one = lat.get("1", next(iter(lat.values())))
    ov = one.get("openvino", {})
    rows = [
        "| batch | backend | mean ms | p50 ms | p95 ms | p99 ms | max ms | forecasts/s | p50 vs PyTorch | % of GEMM limit |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for batch, per_backend in lat.items():
        base = per_backend.get("torch", {}).get("p50_ms")
        for name, s in per_backend.items():
            ratio = f"{s['p50_ms'] / base:.2f}x" if base else "-"
            rows.append(
                f"| {batch} | {name} | {s['mean_ms']:.2f} | {s['p50_ms']:.2f} | {s['p95_ms']:.2f} | "
                f"{s['p99_ms']:.2f} | {s['max_ms']:.2f} | {s['forecasts_per_s']:.0f} | {ratio} | "
                f"{s['percent_of_gemm_limit']:.0f}% |"
            )
    limit = results["limit"]
    out = [
        "# Performance",
        "",
        f"Generated by `{command}`. Rerun it to refresh the figures; the Analysis section at the end is written by hand and kept.",
        "",
        "## Machine and versions",
        "",
        f"- CPU: {m['cpu']} (family/model {m['cpu_family_model']}), ISA: {m['isa']}",
        f"- cores: {m['cpu_count']} online, {m['affinity_cores']} in the affinity mask, cgroup quota "
        f"{m['cgroup_quota_cores'] or 'none'} -> {m['usable_cores']} usable",
        f"- kernel {m['kernel']}; " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
        f"- model: {results['model']['architecture']} ({results['model']['name']}), context "
        f"{results['model']['context_length']} x {results['model']['num_input_channels']}, horizon "
        f"{results['model']['prediction_length']}, {results['model']['precision']}",
        "",
        "## Method",
        "",
        "All backends are loaded in one process and called in alternation, in blocks of 10 calls "
        "with the first 2 after each switch untimed (another runtime's spinning threads would "
        "otherwise steal the cores), on the same fixed windows, so machine drift (a shared, noisy "
        "box) hits all alike. Quote "
        "medians (p50) and ratios, not single runs. PyTorch eager runs the HuggingFace model with "
        "`torch.set_num_threads(usable cores)`; ONNX Runtime runs an ONNX export with the same "
        "patchify fix (intra-op threads = usable cores, ORT_ENABLE_ALL); OpenVINO is `ovcast.Engine` "
        "in latency mode (f32). The limit is the FLOPs of the model's matrix products per forecast, "
        "divided by the sustained FP32 GEMM rate OpenVINO reaches on this machine (a 2048^3 MatMul on "
        "all usable cores). Cold start and peak RSS come from a fresh process per backend.",
        "",
        "## Results",
        "",
        *rows,
        "",
        f"Limit: {limit['flops_per_forecast'] / 1e6:.0f} MFLOP per forecast; OpenVINO FP32 GEMM "
        f"{limit['gemm_gflops']:.0f} GFLOP/s on {limit['cores']} cores ({limit['gemm_gflops_per_core']:.0f} "
        f"on one), so at best {limit['flops_per_forecast'] / limit['gemm_gflops'] / 1e6:.2f} ms per forecast.",
    ]
    if "throughput_mode" in results:
        t = results["throughput_mode"]
        out.append(
            f"Throughput mode ({t['streams']} streams, async infer queue, batch 1): "
            f"{t['forecasts_per_s']:.0f} forecasts/s = {t['percent_of_gemm_limit']:.0f}% of the limit."
        )
    if "serving" in results:
        out += [
            "",
            "## End to end through the servers (batch 1)",
            "",
            "| path | p50 ms | p95 ms | p99 ms | p50 / engine p50 |",
            "|---|---|---|---|---|",
        ]
        for name, s in results["serving"].items():
            out.append(
                f"| {name} | {s['p50_ms']:.2f} | {s['p95_ms']:.2f} | {s['p99_ms']:.2f} | "
                f"{s['p50_ratio_to_engine']:.2f}x |"
            )
    if "coldstart" in results:
        out += [
            "",
            "## Cold start (a fresh process per backend)",
            "",
            "| backend | load + compile ms | first forecast ms | process start to first forecast ms | peak RSS MB |",
            "|---|---|---|---|---|",
        ]
        for name, c in results["coldstart"].items():
            if "error" not in c:
                out.append(
                    f"| {name} | {c['load_ms']:.0f} | {c['first_inference_ms']:.1f} | "
                    f"{c['process_to_first_forecast_ms']:.0f} | {c['peak_rss_mb']:.0f} |"
                )
    if ov:
        out += [
            "",
            "## Against the guide's expectations (batch 1, OpenVINO)",
            "",
            "| metric | guide expects | measured |",
            "|---|---|---|",
            f"| mean latency | {GUIDE_EXPECTED['mean_ms']} ms | {ov['mean_ms']:.2f} ms |",
            f"| p95 latency | {GUIDE_EXPECTED['p95_ms']} ms | {ov['p95_ms']:.2f} ms |",
            f"| throughput | {GUIDE_EXPECTED['forecasts_per_s']} forecasts/s | {ov['forecasts_per_s']:.0f} forecasts/s (latency mode) |",
        ]
    out += [
        "",
        "## Targets (each measured side by side in this run)",
        "",
        "| target | goal | measured | met |",
        "|---|---|---|---|",
    ]
    for name, goal, measured, met in targets(results):
        out.append(f"| {name} | {goal} | {measured} | {'yes' if met else 'no'} |")
    if "tune" in results:
        out += [
            "",
            "## What tuning found (`ovcast tune`, same machine)",
            "",
            "```",
            results["tune"],
            "```",
        ]
    if plot_name:
        out += ["", f"![latency and throughput]({plot_name})"]
    out += ["", "## Analysis", "", analysis or keep_analysis("")]
    return "\n".join(out) + "\n"
