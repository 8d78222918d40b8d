"""The benchmark tools run and report (speed itself is measured, never asserted)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from ovcast.bench.limit import flops_per_forecast
from ovcast.bench.timing import alternate
from ovcast.package import ModelPackage


def test_alternate_interleaves_and_counts():
    calls: list[str] = []
    stats = alternate(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
        duration_s=0.0,
        warmup=1,
        min_rounds=4,
    )
    assert calls[2:] == ["a", "b"] * 4  # after one warm-up each, strict alternation
    assert len(stats["a"].samples_ms) == 4 and stats["a"].p50 >= 0


def test_flops_match_a_hand_count(small_package):
    # SMALL_PATCHTST: 8 patches of 8 (+cls: 9 tokens) x 3 channels, d_model 32, ffn 64, 2 layers,
    # 4 heads; the head maps 9 * 32 -> 16. Count the matrix products by hand:
    tokens, d, ffn, layers, rows = 9, 32, 64, 2, 3
    embed = 2 * rows * 8 * 8 * d  # patch embedding over the 8 real patches
    per_layer = (
        2 * rows * tokens * d * d * 4  # q, k, v, out projections
        + 2 * rows * tokens * tokens * d * 2  # scores and weighted sum
        + 2 * rows * tokens * d * ffn * 2  # feed-forward in and out
    )
    head = 2 * rows * (tokens * d) * 16
    expected = embed + layers * per_layer + head
    counted = flops_per_forecast(ModelPackage.load(small_package))
    assert counted == pytest.approx(expected, rel=0.15)


def test_bench_cli_writes_table_json_plot_and_report(tmp_path, small_package, capsys):
    pytest.importorskip("onnxruntime", reason="needs ovcast[bench]")
    pytest.importorskip("torch", reason="needs ovcast[convert]")
    from ovcast.bench.run import default_backends
    from ovcast.bench.serving import SECTION_END, SECTION_START
    from ovcast.cli import main

    page_path = tmp_path / "PERFORMANCE.md"
    json_path = tmp_path / "bench-here.json"
    code = main(
        [
            "-q",
            "bench",
            str(small_package),
            "--batch",
            "1,2",
            "--duration",
            "0.3",
            "--json",
            str(json_path),
            "--plot",
            str(tmp_path / "b.png"),
            "--report",
            str(page_path),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "vs torch" in out and "end to end" in out and "cold start" in out
    assert "the fast path step by step" in out and "concurrent clients" in out
    results = json.loads(json_path.read_text())
    assert set(results["latency"]["1"]) == set(default_backends())
    assert results["latency"]["2"]["openvino"]["batch"] == 2
    assert results["limit"]["gemm_gflops"] > 0 and results["limit"]["flops_per_forecast"] > 0
    assert set(results["serving"]) == {
        "engine.predict",
        "jsonl pipe",
        "jsonl pipe base64",
        "http binary",
        "http json",
    }
    for setup in ("latency", "throughput", "latency, batching (max 8, 500 us)"):
        assert [c["requests"] > 0 for c in results["http_load"][setup].values()] == [True] * 4
    assert results["op_profile"]["f32"][0]["ms_per_forecast"] > 0
    assert all(c.get("peak_rss_mb", 0) > 0 for c in results["coldstart"].values())
    steps = list(results["fast_path"]["steps"])
    assert steps[:3] == [
        "as traced (no rewrites), dynamic batch, f32",
        "+ batchnorm-affine",
        "+ static batch-1 model",
    ]
    for mode in ("latency", "throughput"):
        per_clients = results["concurrency"][mode]
        assert list(per_clients) == ["1", "2", "4", "8"]
        assert all(c["forecasts_per_s"] > 0 for c in per_clients.values())
    assert results["throughput_mode"]["f32"]["percent_of_gemm_limit"] > 0
    assert results["machine"]["microarchitecture"] and results["load_average_before"]
    assert (tmp_path / "b.png").stat().st_size > 10_000
    page = page_path.read_text()
    where = f"{results['machine']['microarchitecture']}, {results['machine']['usable_cores']} cores"
    assert "## Machine and versions" in page and "| 1 | openvino |" in page and "b.png" in page
    assert f"## Results ({where})" in page and f"## Throughput ({where})" in page
    assert "## Targets" in page and "OpenVINO f32 batch-1 p50 / PyTorch eager p50" in page
    assert "what stands in the way (measured)" in page
    assert f"ovcast bench {small_package} --batch 1,2 --duration 0.3" in page
    assert "## Machines" in page and "[bench-here.json](bench-here.json)" in page

    # A second machine's run beside the first: regenerated without measuring, both listed.
    other = json.loads(json_path.read_text())
    other["machine"] = {**other["machine"], "microarchitecture": "Intel Sapphire Rapids"}
    (tmp_path / "bench-xeon.json").write_text(json.dumps(other))
    edited = page_path.read_text().replace(
        "(no analysis written yet)", "GEMMs are small; see the op table."
    )
    serving = f"{SECTION_START}\n## Before and after\n| a | b |\n{SECTION_END}"
    page_path.write_text(edited.replace("## Targets", serving + "\n\n## Targets"))
    assert main(["-q", "bench", "--from-json", str(json_path), "--report", str(page_path)]) == 0
    page = page_path.read_text()
    assert "[bench-xeon.json](bench-xeon.json)" in page and "| Intel Sapphire Rapids, " in page
    assert page.index("bench-here.json)") < page.index("bench-xeon.json)")  # this run first
    assert f"ovcast bench {small_package} --batch 1,2" in page  # the measuring command stays
    assert "GEMMs are small; see the op table." in page  # the hand-written analysis survives
    assert serving in page  # and so does python -m ovcast.bench.serving's section
    assert main(["-q", "bench", "--from-json", str(json_path)]) == 1  # nothing to render


def test_a_measured_page_keeps_its_analysis(tmp_path, small_package):
    from ovcast.cli import main

    page_path = tmp_path / "PERFORMANCE.md"
    page_path.write_text(
        "# old\n<!-- analysis: kept when the page is regenerated -->\nWritten by hand."
        "\n<!-- /analysis -->\n"
    )
    command = ["-q", "bench", str(small_package), "--backends", "openvino", "--batch", "1"]
    fast = ["--duration", "0.1", "--no-serving", "--no-coldstart"]
    assert main([*command, *fast, "--report", str(page_path)]) == 0
    page = page_path.read_text()
    assert "Written by hand." in page and "# old" not in page and "## Machines" not in page


def test_onnx_export_matches_the_engine(tmp_path, small_package, small_engine):
    ort = pytest.importorskip("onnxruntime", reason="needs ovcast[bench]")
    from ovcast.bench.backends import export_onnx

    path = export_onnx(ModelPackage.load(small_package), tmp_path / "m.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((5, 64, 3)).astype(np.float32)
    np.testing.assert_allclose(
        session.run(None, {"past_values": x})[0], small_engine.predict(x), atol=1e-4
    )


@pytest.mark.parametrize("objective", ["latency", "throughput"])
def test_tune_stores_the_best_and_engine_uses_it(tmp_path, small_package, objective):
    import shutil

    from ovcast import Engine
    from ovcast.bench.tune import tune

    copy = tmp_path / "pkg"
    shutil.copytree(small_package, copy)
    report = tune(copy, objective=objective, duration_s=0.2, measure_env=False)
    assert len(report.candidates) >= 2 and report.best in report.candidates
    stored = ModelPackage.load(copy).manifest.runtime_config[objective]
    assert stored["INFERENCE_NUM_THREADS"] == report.best["config"]["INFERENCE_NUM_THREADS"]
    mode = "latency" if objective == "latency" else "throughput"
    engine = Engine(copy, mode=mode, warmup=False)
    assert engine.config["NUM_STREAMS"] == report.best["config"]["NUM_STREAMS"]


def test_guide_environment_variables_are_measured_one_by_one(small_package):
    from ovcast.bench.tune import GUIDE_ENV, measure_environment

    results = measure_environment(small_package, seconds=0.2, rounds=1)
    assert [r["variable"].split("=")[0] for r in results] == list(GUIDE_ENV)
    assert all(r["p50_ms"] > 0 and r["baseline_p50_ms"] > 0 and r["verdict"] for r in results)


def test_bench_without_torch_times_openvino_alone_and_says_what_it_skipped(small_package):
    """A runtime-only install has no torch/onnxruntime: the benchmark still runs."""
    import subprocess
    import sys

    hide = (
        "import sys; sys.modules['torch'] = None; sys.modules['onnxruntime'] = None; "
        "from ovcast.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    base = [sys.executable, "-c", hide, "bench", str(small_package), "--batch", "1"]
    fast = ["--duration", "0.2", "--no-serving", "--no-coldstart"]
    done = subprocess.run([*base, *fast], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "benchmarking on " in done.stderr and " for about " in done.stderr
    assert "'as traced' left out" in done.stderr  # the re-export needs torch
    assert "skipping the torch backend" in done.stderr
    assert re.search(r"torch +skipped:", done.stdout) and "openvino" in done.stdout
    # a backend asked for by name must be there
    named = subprocess.run(
        [*base, *fast, "--backends", "openvino,torch"], capture_output=True, text=True, timeout=120
    )
    assert named.returncode == 1 and "needs the 'torch' package" in named.stderr


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (["--json", "/proc/no-such-folder/x.json"], "--json"),
        (["--json", "."], "is a folder"),
        (["--report", "/proc/nope.md"], "--report"),
        (["--plot", "x.txt"], "--plot"),
        (["--duration", "0"], "seconds > 0"),
        (["--duration", "nan"], "seconds > 0"),
        (["--duration", "inf"], "seconds > 0"),
        (["--duration", "-3"], "seconds > 0"),
        (["--batch", "-1"], ">= 1"),
        (["--batch", "0"], ">= 1"),
        (["--batch", "1,x"], "whole numbers"),
        (["--batch", "100000000"], "available memory"),
        (["--backends", ""], "--backends is empty"),
        (["--backends", " , "], "--backends is empty"),
        (["--backends", "openvino,tensorflow"], "tensorflow"),
    ],
)
def test_bench_refuses_bad_options_before_measuring(
    small_package, monkeypatch, capsys, options, says
):
    from ovcast.bench import run as bench_run
    from ovcast.cli import main

    def measured(*args, **kwargs):
        raise AssertionError("measured before checking the options")

    monkeypatch.setattr(bench_run, "run_benchmark", measured)
    try:
        code = main(["-q", "bench", str(small_package), *options])
    except SystemExit as exit:  # argparse refuses a malformed value itself
        code = exit.code
    assert code not in (0, None)
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if "error:" in line]) == 1


@pytest.mark.parametrize("duration", ["0", "-1", "nan", "inf"])
def test_tune_refuses_a_duration_that_is_not_positive(small_package, capsys, duration):
    from ovcast.cli import main

    before = (small_package / "ovcast.json").read_text()
    with pytest.raises(SystemExit):
        main(["-q", "tune", str(small_package), "--duration", duration])
    assert "seconds > 0" in capsys.readouterr().err
    assert (small_package / "ovcast.json").read_text() == before


def test_impossible_figures_mark_the_run_noisy_not_met():
    """A server faster than the engine inside it, or more than 100% of the machine's limit,
    cannot be true: the run was too noisy to judge, so the target is not 'met'."""
    from ovcast.bench.targets import NOISY, targets

    def run(ratio: float, share: float) -> dict:
        return {
            "latency": {"1": {"openvino": {"p50_ms": 1.0, "percent_of_gemm_limit": share}}},
            "throughput_mode": {"f32": {"percent_of_gemm_limit": share}},
            "serving": {"jsonl pipe": {"p50_ratio_to_engine": ratio}},
            "limit": {"gemm_gflops": 1.0, "flops_per_forecast": 1.0},
        }

    impossible = {name: met for name, _, _, met in targets(run(0.67, 118))}
    assert set(impossible.values()) == {NOISY}
    honest = {name: met for name, _, _, met in targets(run(1.05, 80))}
    assert all(met is True for met in honest.values())
    assert all(met is False for _, _, _, met in targets(run(1.3, 30)))


@pytest.mark.parametrize(("pinned", "kept"), [(0.97, True), (0.80, False)])
def test_tune_keeps_the_default_unless_a_setting_clearly_wins(
    small_package, monkeypatch, pinned, kept
):
    """Within the noise (here 3%) the default settings stay; a clear win (20%) is stored."""
    from types import SimpleNamespace

    from ovcast.bench import tune as tune_mod

    def timed(runners, duration_s, **options):
        def p50(key: str) -> float:
            return pinned if '"ENABLE_CPU_PINNING": true' in key else 1.0

        return {k: SimpleNamespace(p50=p50(k), forecasts_per_s=1.0) for k in runners}

    monkeypatch.setattr(tune_mod, "alternate", timed)
    report = tune_mod.tune(
        small_package, duration_s=0.1, measure_env=False, save=False, check_precision=False
    )
    assert report.best["config"]["ENABLE_CPU_PINNING"] is (not kept)
    assert report.static_batch1  # a tie keeps the static model
