"""Benchmark results as a terminal table, a plot and the docs/PERFORMANCE.md page.

The page states its machine with every table. Several machines' runs sit side by side:
each run's JSON is kept as ``bench-<machine>.json`` beside the page (``ovcast bench ...
--json docs/bench-<machine>.json``), and every page lists all of them in one table, linking
each JSON. The hand-written Analysis section is kept when the page is regenerated.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .targets import obstacles, targets

GUIDE_EXPECTED = {"mean_ms": "5-15", "p95_ms": "10-25", "forecasts_per_s": "50-150"}
ANALYSIS_START = "<!-- analysis: kept when the page is regenerated -->"
ANALYSIS_END = "<!-- /analysis -->"


def machine_line(results: dict[str, Any]) -> str:
    m = results["machine"]
    v = m["versions"]
    return (
        f"{m.get('microarchitecture', m['cpu'])} ({m['cpu']}, family/model "
        f"{m['cpu_family_model']}; {m['isa']}), {m['usable_cores']} usable cores; "
        + ", ".join(f"{k} {val}" for k, val in v.items())
    )


def short_machine(results: dict[str, Any]) -> str:
    """'AMD Zen 5, 2 cores' for table cells and captions."""
    m = results["machine"]
    return f"{m.get('microarchitecture', m['cpu'])}, {m['usable_cores']} cores"


def table(results: dict[str, Any]) -> str:
    lines = [machine_line(results), ""]
    header = (
        f"{'batch':>5} {'backend':<14} {'mean':>7} {'p50':>7} {'p95':>7} {'p99':>7} {'max':>7} "
        f"{'fc/s':>7} {'vs torch':>8} {'% limit':>7}"
    )
    lines.append(header + "   (ms)")
    for batch, per_backend in results["latency"].items():
        base = per_backend.get("torch", {}).get("p50_ms")
        for name, s in per_backend.items():
            ratio = f"{s['p50_ms'] / base:.2f}x" if base else "-"
            lines.append(
                f"{batch:>5} {name:<14} {s['mean_ms']:7.2f} {s['p50_ms']:7.2f} {s['p95_ms']:7.2f} "
                f"{s['p99_ms']:7.2f} {s['max_ms']:7.2f} {s['forecasts_per_s']:7.0f} {ratio:>8} "
                f"{s['percent_of_gemm_limit']:6.0f}%"
            )
    for name, why in results.get("skipped", {}).items():
        lines.append(f"{'':>5} {name:<14} skipped: {why}")
    lines += ["", _limit_sentence(results["limit"])]
    if "fast_path" in results:
        lines.append("\nthe fast path step by step (batch 1, one alternation)")
        for name, s in results["fast_path"]["steps"].items():
            lines.append(f"  {name:<46} p50 {s['p50_ms']:6.2f} ms  {s['p50_ratio_to_first']:.2f}x")
        lines += [f"  ({note})" for note in results["fast_path"]["notes"]]
    for precision, t in results.get("throughput_mode", {}).items():
        lines.append(
            f"throughput mode, {precision} ({t['streams']} streams, predict_many): "
            f"{t['forecasts_per_s']:.0f} forecasts/s, {t['percent_of_gemm_limit']:.0f}% of the "
            f"{precision} limit"
        )
    if "concurrency" in results:
        lines.append("\nconcurrent clients calling Engine.predict (forecasts/s, p50 ms)")
        lines += _client_lines(results["concurrency"], 10)
    for precision, rows in _profiles(results).items():
        lines.append(f"\nOpenVINO time by op, {precision} (batch 1, per-layer counters)")
        for r in rows[:6]:
            lines.append(
                f"  {r['op']:<16} {r['kernel']:<26} {r['ms_per_forecast']:6.3f} ms  "
                f"{100 * r['share']:4.1f}%"
            )
    if "serving" in results:
        lines.append("\nend to end, batch 1 (ms)")
        for name, s in results["serving"].items():
            lines.append(
                f"  {name:<16} p50 {s['p50_ms']:6.2f}  p95 {s['p95_ms']:6.2f}  "
                f"{s['p50_ratio_to_engine']:.2f}x engine"
            )
    if "http_load" in results:
        lines.append("\nHTTP binary, concurrent clients (forecasts/s, p50 ms) per server setup")
        lines += _client_lines(results["http_load"], 34)
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
    lines.append("\ntargets")
    for name, goal, measured, met in targets(results):
        mark = met if isinstance(met, str) else "-" if met is None else "met" if met else "MISSED"
        lines.append(f"  {name:<58} {goal:>9} {measured:>9}  {mark}")
    return "\n".join(lines)


def _client_lines(per_setup: dict[str, dict[str, dict[str, Any]]], width: int) -> list[str]:
    """One line per setup: forecasts/s and p50 for each number of concurrent clients."""
    return [
        f"  {setup:<{width}} "
        + "  ".join(
            f"{n}: {c['forecasts_per_s']:5.0f}/s {c['p50_ms']:5.2f}" for n, c in per.items()
        )
        for setup, per in per_setup.items()
    ]


def _profiles(results: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Op profiles by precision (older JSON held one f32 list)."""
    profile = results.get("op_profile", {})
    return {"f32": profile} if isinstance(profile, list) else profile


def _limit_sentence(limit: dict[str, Any]) -> str:
    flops = limit["flops_per_forecast"]
    text = (
        f"Limit: {flops / 1e6:.0f} MFLOP of matrix products per forecast; OpenVINO's f32 GEMM "
        f"runs at {limit['gemm_gflops']:.0f} GFLOP/s on {limit['cores']} cores "
        f"({limit['gemm_gflops_per_core']:.0f} on one), so at best "
        f"{flops / limit['gemm_gflops'] / 1e6:.2f} ms per forecast in f32"
    )
    if limit.get("bf16_gemm_gflops"):
        text += (
            f"; bf16 GEMM {limit['bf16_gemm_gflops']:.0f} GFLOP/s, at best "
            f"{flops / limit['bf16_gemm_gflops'] / 1e6:.2f} ms in bf16"
        )
    return text + "."


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
    fig.suptitle(machine_line(results)[:150], fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def kept_block(previous: str, start: str, end: str) -> str | None:
    """The block from marker ``start`` to ``end`` of an earlier page, if it had one."""
    if start in previous and end in previous[previous.index(start) :]:
        first = previous.index(start)
        return previous[first : previous.index(end, first) + len(end)]
    return None


def keep_analysis(previous: str) -> str:
    """The hand-written analysis section of an earlier page, if it had one."""
    return kept_block(previous, ANALYSIS_START, ANALYSIS_END) or (
        f"{ANALYSIS_START}\n(no analysis written yet)\n{ANALYSIS_END}"
    )


def other_machines(
    page: Path, own_json: Path | None, results: dict[str, Any]
) -> list[tuple[Path, dict[str, Any]]]:
    """Every ``bench-*.json`` beside the page that measured the same model as ``results``
    (architecture and shapes; this run's first): one run per machine."""
    keys = ("architecture", "context_length", "prediction_length", "num_input_channels")
    model = [results["model"].get(k) for k in keys]
    runs = []
    for file in sorted(page.parent.glob("bench-*.json")):
        try:
            data = json.loads(file.read_text())
        except (OSError, ValueError):
            continue
        if not (isinstance(data, dict) and "machine" in data and "latency" in data):
            continue
        if [data.get("model", {}).get(k) for k in keys] == model:
            runs.append((file, data))
    if own_json is not None:
        runs.sort(key=lambda r: r[0].resolve() != own_json.resolve())
    return runs


def markdown(
    results: dict[str, Any],
    *,
    command: str,
    plot_name: str | None,
    analysis: str = "",
    machines: list[tuple[str, dict[str, Any]]] | None = None,
    kept: Sequence[str] = (),
) -> str:
    """The performance page. ``machines``: (link, results) of every machine's run, shown side
    by side (this run among them); ``kept``: blocks other tools wrote into the page (the
    serving comparison of ``python -m ovcast.bench.serving``), kept after the serving part."""
    m = results["machine"]
    lat = results["latency"]
    one = lat.get("1", next(iter(lat.values())))
    ov = one.get("openvino", {})
    where = short_machine(results)
    out = [
        "# Performance",
        "",
        f"Generated by `{command}`. Rerun it to refresh the figures; the Analysis section at the "
        "end is written by hand and kept. Every figure on this page was measured on the machine "
        f"below ({where}); other machines' runs are listed under Machines.",
        "",
        "## Machine and versions",
        "",
        f"- CPU: {m.get('microarchitecture', '?')}: {m['cpu']} (family/model "
        f"{m['cpu_family_model']}), ISA: {m['isa']}",
        f"- cores: {m['cpu_count']} online, {m['affinity_cores']} in the affinity mask, cgroup quota "
        f"{m['cgroup_quota_cores'] or 'none'} -> {m['usable_cores']} usable",
        f"- kernel {m['kernel']}; " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
        f"- model: {results['model']['architecture']} ({results['model']['name']}), context "
        f"{results['model']['context_length']} x {results['model']['num_input_channels']}, horizon "
        f"{results['model']['prediction_length']}, {results['model']['precision']} weights, export "
        f"rewrites: {', '.join(results['model'].get('export_rewrites') or []) or 'none'}",
        f"- noise: load average {_loads(results)} (1/5/15 min, before and after the run; "
        "other work on the machine shows here)",
        "",
        "## Method",
        "",
        "All backends are loaded in one process and called in alternation, in blocks of 10 calls "
        "with the first 2 after each switch untimed (another runtime's spinning threads would "
        "otherwise steal the cores), on the same fixed windows, so machine drift hits all alike. "
        "Quote medians (p50) and ratios, not single runs. `openvino` is `ovcast.Engine` in latency "
        "mode computing in f32, as the others do (single windows go to its static batch-1 model; "
        "in bf16 to the dynamic one, which answers them as it answers batches); "
        "`openvino-bf16` is the same engine computing in bf16 (only on CPUs with bf16 units; it "
        "is the Engine's default where `ovcast tune` measured bf16 within tolerance). PyTorch "
        "eager runs the HuggingFace model with `torch.set_num_threads(usable cores)`; ONNX "
        "Runtime runs an ONNX export of the same graph (intra-op threads = usable cores, "
        "ORT_ENABLE_ALL). The limit is the FLOPs of the model's matrix products per forecast "
        "divided by the GEMM rate OpenVINO reaches on this machine (a "
        f"{results['limit'].get('gemm_size', 2048)}^3 MatMul on all usable cores, timed in the "
        "batch-1 alternation beside the forecasters, so under the same conditions), in f32 and, "
        "for bf16, in bf16. Cold start and peak RSS come from a fresh process per backend.",
        "",
        f"## Results ({where})",
        "",
        "| batch | backend | mean ms | p50 ms | p95 ms | p99 ms | max ms | forecasts/s | p50 vs PyTorch | % of GEMM limit |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for batch, per_backend in lat.items():
        base = per_backend.get("torch", {}).get("p50_ms")
        for name, s in per_backend.items():
            ratio = f"{s['p50_ms'] / base:.2f}x" if base else "-"
            out.append(
                f"| {batch} | {name} | {s['mean_ms']:.2f} | {s['p50_ms']:.2f} | {s['p95_ms']:.2f} | "
                f"{s['p99_ms']:.2f} | {s['max_ms']:.2f} | {s['forecasts_per_s']:.0f} | {ratio} | "
                f"{s['percent_of_gemm_limit']:.0f}% |"
            )
    out += ["", _limit_sentence(results["limit"]) + " bf16 rows are judged against the bf16 limit."]
    if "fast_path" in results:
        out += [
            "",
            f"## The batch-1 fast path, step by step ({where})",
            "",
            "Each step adds one part of the fast path; all run in one alternation at batch 1.",
            "",
            "| step | p50 ms | p95 ms | p50 vs first step |",
            "|---|---|---|---|",
        ]
        for name, s in results["fast_path"]["steps"].items():
            out.append(
                f"| {name} | {s['p50_ms']:.2f} | {s['p95_ms']:.2f} | "
                f"{s['p50_ratio_to_first']:.2f}x |"
            )
        out += [f"\n{note}." for note in results["fast_path"]["notes"]]
    out += _load_section(results, where)
    for precision, rows in _profiles(results).items():
        out += [
            "",
            f"## Where OpenVINO's time goes, {precision}, batch 1 ({where})",
            "",
            "Per-layer counters of the static batch-1 model, each node's median over 50 forecasts.",
            "",
            "| op | kernel | nodes | ms per forecast | share |",
            "|---|---|---|---|---|",
        ]
        for r in rows[:8]:
            out.append(
                f"| {r['op']} | {r['kernel']} | {r.get('nodes', '')} | "
                f"{r['ms_per_forecast']:.3f} | {100 * r['share']:.1f}% |"
            )
    out += _serving_section(results, where)
    for block in kept:
        out += ["", block]
    if ov:
        out += [
            "",
            f"## Against the guide's expectations (batch 1, OpenVINO f32, {where})",
            "",
            "| metric | guide expects | measured |",
            "|---|---|---|",
            f"| mean latency | {GUIDE_EXPECTED['mean_ms']} ms | {ov['mean_ms']:.2f} ms |",
            f"| p95 latency | {GUIDE_EXPECTED['p95_ms']} ms | {ov['p95_ms']:.2f} ms |",
            f"| throughput | {GUIDE_EXPECTED['forecasts_per_s']} forecasts/s | {ov['forecasts_per_s']:.0f} forecasts/s (latency mode) |",
        ]
    out += [
        "",
        f"## Targets ({where}, each measured side by side in this run)",
        "",
        "| target | goal | measured | met | what stands in the way (measured) |",
        "|---|---|---|---|---|",
    ]
    why = obstacles(results)
    for name, goal, measured, met in targets(results):
        shown = met if isinstance(met, str) else "-" if met is None else "yes" if met else "no"
        out.append(
            f"| {name} | {goal} | {measured} | {shown} | {why.get(name, '') if met is False else ''} |"
        )
    if machines:
        out += _machines_section(machines)
    if "tune" in results:
        out += [
            "",
            f"## What tuning found (`ovcast tune`, {where})",
            "",
            "```",
            results["tune"],
            "```",
        ]
    if plot_name:
        out += ["", f"![latency and throughput, {where}]({plot_name})"]
    out += ["", "## Analysis", "", analysis or keep_analysis("")]
    return "\n".join(out) + "\n"


def _loads(results: dict[str, Any]) -> str:
    before, after = results.get("load_average_before"), results.get("load_average_after")
    if not before:
        return "not recorded"
    text = "/".join(f"{x:.2f}" for x in before)
    return text + (" -> " + "/".join(f"{x:.2f}" for x in after) if after else "")


def _load_section(results: dict[str, Any], where: str) -> list[str]:
    out: list[str] = []
    if "throughput_mode" in results:
        out += [
            "",
            f"## Throughput ({where})",
            "",
            "`predict_many` over 64 windows with the throughput configuration (one single-threaded "
            "stream per core, the async infer queue; in f32 the static batch-1 model), each call "
            "followed by GEMM calls that measure the limit beside it (medians of the rounds):",
            "",
            "| precision | streams | forecasts/s | GFLOP/s | GEMM GFLOP/s beside it | % of limit |",
            "|---|---|---|---|---|---|",
        ]
        for precision, t in results["throughput_mode"].items():
            beside = t.get("gemm_gflops_beside")
            out.append(
                f"| {precision} | {t['streams']} | {t['forecasts_per_s']:.0f} | {t['gflops']:.0f} | "
                f"{f'{beside:.0f}' if beside else '-'} | {t['percent_of_gemm_limit']:.0f}% |"
            )
    if "concurrency" in results:
        labels = {}
        for mode, per in results["concurrency"].items():
            streams = next(iter(per.values()))["streams"]
            labels[mode] = f"{mode} ({streams} stream{'s' * (streams != 1)})"
        out += _clients_table(
            "Concurrent clients, each a thread calling `Engine.predict` with one window and "
            "waiting for its forecast (f32): forecasts/s (p50 ms).",
            "engine mode",
            results["concurrency"],
            labels,
        )
    return out


def _clients_table(
    intro: str,
    column: str,
    per_setup: dict[str, dict[str, dict[str, Any]]],
    labels: dict[str, str],
) -> list[str]:
    """A table of forecasts/s (p50 ms) per setup and number of concurrent clients."""
    clients = list(next(iter(per_setup.values())))
    out = [
        "",
        intro,
        "",
        f"| {column} | " + " | ".join(f"{n} client{'s' * (n != '1')}" for n in clients) + " |",
        "|---|" + "---|" * len(clients),
    ]
    for setup, per in per_setup.items():
        cells = " | ".join(f"{c['forecasts_per_s']:.0f} ({c['p50_ms']:.2f})" for c in per.values())
        out.append(f"| {labels[setup]} | {cells} |")
    return out


def _serving_section(results: dict[str, Any], where: str) -> list[str]:
    out: list[str] = []
    if "serving" in results:
        out += [
            "",
            f"## End to end through the servers (batch 1, {where})",
            "",
            "| path | p50 ms | p95 ms | p99 ms | p50 / engine p50 |",
            "|---|---|---|---|---|",
        ]
        for name, s in results["serving"].items():
            out.append(
                f"| {name} | {s['p50_ms']:.2f} | {s['p95_ms']:.2f} | {s['p99_ms']:.2f} | "
                f"{s['p50_ratio_to_engine']:.2f}x |"
            )
    if "http_load" in results:
        out += _clients_table(
            "KServe v2 binary over HTTP from concurrent clients (threads of the benchmark "
            "process, one keep-alive connection each), per server setup (`ovcast serve --mode "
            "http` with `--engine-mode` and `--max-batch-size`): forecasts/s (p50 ms).",
            "server",
            results["http_load"],
            {name: name for name in results["http_load"]},
        )
    if "coldstart" in results:
        out += [
            "",
            f"## Cold start (a fresh process per backend, {where})",
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
    return out


def _machines_section(machines: list[tuple[str, dict[str, Any]]]) -> list[str]:
    out = [
        "",
        "## Machines",
        "",
        "Batch 1, p50 ms, each machine's own run (its JSON linked; add a machine by running the "
        "same command there with `--json docs/bench-<machine>.json` and regenerating this page "
        "with `ovcast bench --from-json`).",
        "",
        "| machine | run | OpenVINO f32 | OpenVINO bf16 | ONNX Runtime | PyTorch | OV f32 / ORT | "
        "OV f32 / PyTorch | % f32 limit | % bf16 limit | throughput f32 forecasts/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for link, run in machines:
        one = run["latency"].get("1", {})

        def p50(name: str, one: dict = one) -> str:
            return f"{one[name]['p50_ms']:.2f}" if name in one else "-"

        def ratio(a: str, b: str, one: dict = one) -> str:
            return f"{one[a]['p50_ms'] / one[b]['p50_ms']:.2f}x" if a in one and b in one else "-"

        def share(name: str, one: dict = one) -> str:
            return f"{one[name]['percent_of_gemm_limit']:.0f}%" if name in one else "-"

        tput = run.get("throughput_mode", {}).get("f32", {}).get("forecasts_per_s")
        out.append(
            f"| {short_machine(run)} | [{Path(link).name}]({link}) {run.get('started_at', '')[:10]} | "
            f"{p50('openvino')} | {p50('openvino-bf16')} | {p50('onnxruntime')} | {p50('torch')} | "
            f"{ratio('openvino', 'onnxruntime')} | {ratio('openvino', 'torch')} | "
            f"{share('openvino')} | {share('openvino-bf16')} | "
            f"{f'{tput:.0f}' if tput else '-'} |"
        )
    return out


def machine_links(page: Path, runs: list[tuple[Path, dict[str, Any]]]) -> list[tuple[str, dict]]:
    """(link relative to the page, results) for ``markdown(machines=...)``."""
    return [(os.path.relpath(file, page.parent), data) for file, data in runs]
