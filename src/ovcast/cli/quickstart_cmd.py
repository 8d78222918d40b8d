"""ovcast quickstart: the embedded model end to end, offline, in about a minute.

Converts the embedded default (cached after the first run), shows the parity figures,
benchmarks OpenVINO against PyTorch side by side, and prints a sample forecast.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

DESCRIPTION = """\
Run ovcast end to end on the embedded default model (Granite PatchTST architecture trained
on ETTh1), offline:
  1. convert it to an OpenVINO package (cached in --cache-dir; reused while the weights match),
  2. show the parity figures against PyTorch,
  3. benchmark OpenVINO and PyTorch side by side (batch 1, alternating calls),
  4. print a forecast for a sample window.

example:
  ovcast quickstart
  ovcast quickstart --duration 10 --cache-dir /tmp/ovcast
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "quickstart",
        help="convert, check, benchmark and run the embedded model (offline)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="where the converted package is kept (default: $OVCAST_HOME or ~/.cache/ovcast)",
    )
    p.add_argument(
        "--duration", type=float, default=5.0, help="seconds of side-by-side benchmark (default 5)"
    )
    p.add_argument("--force", action="store_true", help="convert again even if cached")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..default_model import default_package
    from ..hf.loading import resolve_source
    from ..runtime.engine import Engine

    package, converted = default_package(args.cache_dir, force=args.force)
    print(f"[1/4] model package  {package.path}")
    if converted:
        print("      converted the embedded default (Granite PatchTST, trained on ETTh1)")
    else:
        print("      cached (same weights sha256); --force converts again")
    m = package.manifest

    parity = m.parity["fp32_vs_torch"]
    print("[2/4] parity, OpenVINO fp32 vs PyTorch on fixed windows")
    for batch, figures in parity["per_batch"].items():
        print(
            f"      {batch:<8} max abs error {figures['max_abs_error']:.2e}   "
            f"max rel error {figures['max_rel_error']:.2e}"
        )
    print(f"      tolerance {m.parity['tolerance_abs']:g} x max(1, |forecast|): ok")

    engine = Engine(package)
    _benchmark(engine, resolve_source("default"), args.duration)
    _sample_forecast(engine)
    sample = _write_sample_input(engine, package.path)
    ovcast = _command_name()
    print(f"\n      a sample input (raw units, with timestamps) is in {sample}")
    print("next:")
    print(f"  {ovcast} info {package.path}")
    print(f"  {ovcast} predict {package.path} --input {sample} --raw --output forecast.csv")
    print(f"  {ovcast} replay --demo --dashboard 127.0.0.1:8050   (the live dashboard, offline)")
    return 0


def _benchmark(engine, source, duration_s: float) -> None:
    from ..bench.run import BLOCK, SETTLE
    from ..bench.timing import alternate, ratio_per_round
    from ..parity import parity_windows

    window = parity_windows(engine.context_length, engine.num_channels, 1)
    runners = {"OpenVINO": lambda: engine.predict(window)}
    try:
        import torch

        from ..hf.loading import load_model
        from ..runtime.cpu import usable_cores

        torch.set_num_threads(usable_cores())
        model = load_model(source)
        x = torch.from_numpy(window)

        def torch_predict():
            with torch.no_grad():
                return model(past_values=x).prediction_outputs

        runners["PyTorch eager"] = torch_predict
    except ImportError:
        print("      (PyTorch not installed: benchmarking OpenVINO alone)")
    from ..runtime.cpu import cpu_info

    print(
        f"[3/4] time per forecast, batch 1, {duration_s:g} s in alternating blocks "
        f"({engine.config['INFERENCE_NUM_THREADS']} threads of a {cpu_info()['model']})"
    )
    stats = alternate(runners, duration_s=duration_s, block=BLOCK, settle=SETTLE)
    for s in stats.values():
        print(
            f"      {s.name:<14} p50 {s.p50:6.2f} ms   p95 {s.p95:6.2f} ms   "
            f"({s.forecasts_per_s:4.0f} forecasts/s one at a time)"
        )
    base = stats.get("PyTorch eager")
    if base is not None:
        ratios = ratio_per_round(stats["OpenVINO"], base)
        low, mid, high = np.percentile(ratios, [25, 50, 75])
        print(
            f"      OpenVINO takes {mid:.2f}x PyTorch's time per forecast ({1 / mid:.1f}x as fast); "
            f"over {len(ratios)} rounds the middle half lay in {low:.2f}x-{high:.2f}x "
            "(a busy machine widens it)"
        )


def sample_window(engine, seed: int = 7) -> np.ndarray:
    """A synthetic raw window in the model's units: daily cycle + drift + noise per channel."""
    rng = np.random.default_rng(seed)
    scaler = engine.scaler
    t = np.arange(engine.context_length)[:, None]
    shape = (
        0.8 * np.sin(2 * np.pi * (t / 24 + rng.uniform(size=engine.num_channels)))
        + 0.3 * np.cumsum(rng.standard_normal((len(t), engine.num_channels)), 0) / np.sqrt(len(t))
        + 0.1 * rng.standard_normal((len(t), engine.num_channels))
    )
    if scaler is None:
        return shape.astype(np.float32)
    return scaler.inverse_transform(shape.astype(np.float32))


def _write_sample_input(engine, folder: Path) -> Path:
    """The sample window as a CSV a user can pass to ``ovcast predict --raw``."""
    import csv

    path = Path(folder) / "sample-input.csv"
    window = sample_window(engine)
    start = np.datetime64("2024-01-01T00:00")
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["date", *engine.channel_names])
        for hour, row in enumerate(window):
            stamp = str(start + np.timedelta64(hour, "h")).replace("T", " ")
            writer.writerow([stamp, *(f"{v:.6g}" for v in row)])
    return path


def _command_name() -> str:
    """How the user can run ovcast again: bare ``ovcast`` only when it is on PATH."""
    import shutil
    import sys

    script = Path(sys.executable).parent / "ovcast"
    found = shutil.which("ovcast")
    if found and Path(found).resolve() == script.resolve():
        return "ovcast"
    if script.exists():
        try:
            return str(script.relative_to(Path.cwd()))
        except ValueError:
            return str(script)
    return f"{sys.executable} -m ovcast"


def _sample_forecast(engine) -> None:
    window = sample_window(engine)
    forecast = engine.forecast(window) if engine.scaler else engine.predict(window)
    names = engine.channel_names
    print(
        f"[4/4] forecast for a synthetic {engine.context_length}-step window "
        f"({engine.prediction_length} steps x {engine.num_channels} channels; every 12th step)"
    )
    print("      step " + "".join(f"{n:>9}" for n in names))
    print("      last " + "".join(f"{v:9.3f}" for v in window[-1]))
    for step in range(11, engine.prediction_length, 12):
        print(f"      +{step + 1:<3} " + "".join(f"{v:9.3f}" for v in forecast[step]))
