"""The runtime path never imports torch or transformers (they are an install extra)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap


def test_import_and_predict_without_torch(small_package):
    code = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        import ovcast
        from ovcast.cli import build_parser
        import ovcast.serve.http, ovcast.serve.jsonl, ovcast.runtime.doctor
        import ovcast.market.aggregator, ovcast.market.features, ovcast.market.bars
        import ovcast.market.feed, ovcast.market.rest, ovcast.market.recording
        import ovcast.pipeline.live, ovcast.pipeline.replay, ovcast.market.synthetic
        import ovcast.dashboard, ovcast.dashboard.server, ovcast.default_model
        build_parser()
        engine = ovcast.Engine({str(small_package)!r})
        engine.predict(np.zeros((64, 3), np.float32))
        engine.forecast(np.ones((64, 3), np.float32))
        engine.predict_many(np.zeros((4, 64, 3), np.float32))
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers"))
        print(",".join(loaded))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"runtime imported: {result.stdout.strip()}"


def test_predict_cli_without_torch(small_package, tmp_path):
    """`ovcast predict` works even when torch cannot be imported at all."""
    import numpy as np

    np.save(tmp_path / "w.npy", np.zeros((64, 3), np.float32))
    blocker = tmp_path / "block"
    blocker.mkdir()
    for name in ("torch", "transformers"):
        (blocker / f"{name}.py").write_text("raise ImportError('blocked by test')\n")
    env = {"PYTHONPATH": str(blocker), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ovcast",
            "-q",
            "predict",
            str(small_package),
            "--input",
            str(tmp_path / "w.npy"),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert np.asarray(out["predictions"]).shape == (16, 3) and out["channels"]


def test_a_missing_extra_names_a_pip_command_that_works_from_here(tmp_path):
    """Without torch, convert says how to add it: this interpreter's pip, this checkout
    (editable) or the published package, and the CPU build of torch."""
    hide = (
        "import sys; sys.modules['torch'] = None; "
        "from ovcast.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", hide, "convert", "default", str(tmp_path / "pkg")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert f"{sys.executable} -m pip install " in done.stderr
    assert "[convert]" in done.stderr
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in done.stderr
    assert "Traceback" not in done.stderr
