"""Conversion: every supported config converts, matches PyTorch, and leaves the model alone."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="conversion needs the ovcast[convert] extra")

from conftest import SMALL_PATCHTST, make_checkpoint, random_windows, torch_forecast  # noqa: E402

from ovcast import ConversionError, Engine, ModelPackage, ModelSourceError, ParityError  # noqa: E402
from ovcast.convert import convert  # noqa: E402

CONFIGS = {
    # The Granite configs exactly (context 512, horizon 96, 7 channels).
    "granite-patchtst-cls": ("patchtst", {}),
    "granite-patchtst-nocls": ("patchtst", {"use_cls_token": False}),
    "granite-patchtsmixer": ("patchtsmixer", {}),
    # Overlapping patches (stride < patch length) take the gather path of the fix.
    "patchtst-overlap": ("patchtst", {**SMALL_PATCHTST, "patch_length": 16, "patch_stride": 8}),
    "patchtsmixer-overlap-mixchannel": (
        "patchtsmixer",
        {
            "context_length": 96,
            "prediction_length": 24,
            "num_input_channels": 4,
            "patch_length": 12,
            "patch_stride": 6,
            "mode": "mix_channel",
        },
    ),
    # Odd sizes: context not a multiple of the stride (sequence_start > 0), 1 channel.
    "patchtst-odd-sizes": (
        "patchtst",
        {
            **SMALL_PATCHTST,
            "context_length": 100,
            "prediction_length": 7,
            "num_input_channels": 1,
            "patch_length": 10,
            "patch_stride": 7,
            "use_cls_token": False,
        },
    ),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_conversion_matches_pytorch(tmp_path, name):
    family, overrides = CONFIGS[name]
    checkpoint = make_checkpoint(tmp_path / "ckpt", family, **overrides)
    package = convert(checkpoint, tmp_path / "pkg")
    m = package.manifest
    config = json.loads((checkpoint / "config.json").read_text())
    assert (m.context_length, m.prediction_length, m.num_input_channels) == (
        config["context_length"],
        config["prediction_length"],
        config["num_input_channels"],
    )
    assert m.inputs[0].shape == [-1, m.context_length, m.num_input_channels]
    assert m.parity["fp32_vs_torch"]["max_abs_error"] < 1e-4
    assert set(m.parity["fp32_vs_torch"]["per_batch"]) == {"batch_1", "batch_8"}

    engine = Engine(tmp_path / "pkg")
    for batch in (1, 3):  # a batch size the parity check did not use: the batch is dynamic
        windows = random_windows(batch, m.context_length, m.num_input_channels, seed=batch)
        np.testing.assert_allclose(
            engine.predict(windows), torch_forecast(checkpoint, windows), atol=1e-4, rtol=1e-4
        )


def test_manifest_records_source_and_versions(small_checkpoint, small_package):
    m = ModelPackage.load(small_package).manifest
    assert m.family == "patchtst" and m.architecture == "PatchTSTForPrediction"
    assert m.source["path"] == str(small_checkpoint)
    import hashlib

    digest = hashlib.sha256((small_checkpoint / "model.safetensors").read_bytes()).hexdigest()
    assert m.source["weights_sha256"] == digest
    assert set(m.versions) >= {"ovcast", "openvino", "torch", "transformers"}
    assert m.channel_names == ["close", "volume", "rsi"]  # from the checkpoint's scaler
    assert m.scaler["channels"][1]["kind"] == "log_standard"
    assert m.precision == "fp32"


def test_export_leaves_model_and_torch_untouched(tmp_path):
    from ovcast.convert.export_fixes import exportable_patchify
    from ovcast.hf.configs import new_model

    model = new_model("patchtst", **SMALL_PATCHTST).eval()
    x = torch.from_numpy(random_windows(2, 64, 3))
    with torch.no_grad():
        before = model(past_values=x).prediction_outputs
    unfold = torch.Tensor.unfold
    with exportable_patchify(model) as patched:
        assert patched == 1
        with torch.no_grad():  # the fix itself is exact
            torch.testing.assert_close(model(past_values=x).prediction_outputs, before)
    assert torch.Tensor.unfold is unfold
    assert not any(
        "forward" in vars(m) or "_ovcast_patch_index" in vars(m) for m in model.modules()
    )
    with torch.no_grad():
        torch.testing.assert_close(model(past_values=x).prediction_outputs, before)


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_reduced_precisions_report_error_against_fp32(
    tmp_path, small_checkpoint, small_package, precision
):
    package = convert(small_checkpoint, tmp_path / precision, precision=precision)
    m = package.manifest
    assert m.precision == precision
    report = m.parity[f"{precision}_vs_torch"]
    assert 0 < report["max_abs_error"] < 1.0  # approximate, but still a forecast of the same model
    engine = Engine(package.path)
    assert engine.predict(random_windows(1, 64, 3)[0]).shape == (16, 3)
    if precision == "fp16":  # f16 storage: the weights take about half the bytes
        ratio = package.bin_path.stat().st_size / (small_package / "model.bin").stat().st_size
        assert 0.4 < ratio < 0.7


def test_int8_uses_given_calibration_series(tmp_path, small_checkpoint):
    series = np.cumsum(np.random.default_rng(3).standard_normal((400, 3)), axis=0).astype(
        np.float32
    )
    package = convert(
        small_checkpoint, tmp_path / "int8", precision="int8", calibration_data=series
    )
    assert package.manifest.parity["int8_vs_torch"]["max_abs_error"] < 1.0


def test_parity_failure_raises_and_writes_nothing(tmp_path, small_checkpoint):
    with pytest.raises(ParityError, match="tolerance"):
        convert(small_checkpoint, tmp_path / "out", tolerance=0.0)
    assert not (tmp_path / "out").exists()


def test_distribution_head_is_refused_clearly(tmp_path):
    checkpoint = make_checkpoint(
        tmp_path / "nll", **SMALL_PATCHTST, loss="nll", distribution_output="student_t"
    )
    with pytest.raises(ConversionError, match="distribution head"):
        convert(checkpoint, tmp_path / "out")


def test_unsupported_and_missing_sources(tmp_path):
    with pytest.raises(ModelSourceError, match="no checkpoint at"):
        convert(tmp_path / "nothing-here", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelSourceError, match="no config.json"):
        convert(tmp_path / "empty", tmp_path / "out")
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text('{"model_type": "bert"}')
    (tmp_path / "bert" / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelSourceError, match="supports PatchTSTForPrediction"):
        convert(tmp_path / "bert", tmp_path / "out")
    with pytest.raises(ConversionError, match="precision"):
        convert(tmp_path / "bert", tmp_path / "out", precision="int4")


def test_hub_id_offline_says_so(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from ovcast.hf.loading import resolve_source

    with pytest.raises(ModelSourceError, match="Offline"):
        resolve_source("ibm-granite/granite-timeseries-patchtst")


def test_hub_id_records_revision_and_published_scaler(tmp_path, monkeypatch, small_checkpoint):
    """A hub download (stood in for by a local snapshot folder) keeps id, commit and scaler."""
    import shutil

    import huggingface_hub

    from ovcast.hf.loading import ETTH1_MEAN, load_scaler, resolve_source

    snapshot = tmp_path / "snapshots" / "f3409aaf2f6093b5dc10a4b5faf0f2925ae1721f"
    shutil.copytree(small_checkpoint, snapshot)
    (snapshot / "scaler.json").unlink()
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: str(snapshot))
    source = resolve_source("ibm-granite/granite-timeseries-patchtst")
    assert source.hub_id == "ibm-granite/granite-timeseries-patchtst"
    assert source.revision == snapshot.name
    assert source.to_dict()["path"] is None
    assert tuple(load_scaler(source).offset) == ETTH1_MEAN


def test_repository_layout_for_ovms(tmp_path, small_checkpoint):
    convert(small_checkpoint, tmp_path / "pkg", name="granite", repository=tmp_path / "repo")
    version = tmp_path / "repo" / "granite" / "1"
    assert {p.name for p in version.iterdir()} == {"model.xml", "model.bin", "ovcast.json"}
    config = json.loads((tmp_path / "repo" / "config.json").read_text())
    assert config["model_config_list"][0]["config"]["name"] == "granite"
    assert config["model_config_list"][0]["config"]["base_path"] == "granite"
    Engine(version)  # the repository copy is itself a valid package


def test_a_checkpoint_whose_own_forward_fails_is_not_blamed_on_openvino(tmp_path):
    """transformers 5.x breaks PatchTST with share_projection=False in its own forward: the
    error names the checkpoint/transformers side and the version, and nothing is written."""
    import transformers

    checkpoint = make_checkpoint(tmp_path / "ckpt", **SMALL_PATCHTST, share_projection=False)
    try:
        torch_forecast(checkpoint, random_windows(1, 64, 3))
    except Exception:
        with pytest.raises(ModelSourceError) as caught:
            convert(checkpoint, tmp_path / "out")
        message = str(caught.value)
        assert "own PyTorch forward fails" in message and "not of OpenVINO" in message
        assert f"transformers {transformers.__version__}" in message
        assert not (tmp_path / "out").exists()
    else:  # a transformers version whose forward works: the conversion must work too
        assert convert(checkpoint, tmp_path / "out").manifest.parity["fp32_vs_torch"]


def test_forward_failure_injected(tmp_path, small_checkpoint, monkeypatch):
    import transformers

    def broken(self, *args, **kwargs):
        raise RuntimeError("shape mismatch in the head")

    monkeypatch.setattr(transformers.PatchTSTForPrediction, "forward", broken)
    with pytest.raises(ModelSourceError, match="RuntimeError: shape mismatch in the head"):
        convert(small_checkpoint, tmp_path / "out")


TELEMETRY_PROBE = """
import sys
from openvino_telemetry.utils.sender import TelemetrySender
sent = []
TelemetrySender.send = lambda self, backend, message: sent.append(message)  # never the network
import ovcast
if sys.argv[1:]:
    from ovcast.convert import convert
    convert(sys.argv[1], sys.argv[2])
print("SENT", len(sent))
"""


def run_telemetry_probe(home, *args):
    import os
    import subprocess
    import sys

    env = {**os.environ, "HOME": str(home)}
    env.pop("CI", None)  # OpenVINO's own CI switch would hide what ovcast does
    result = subprocess.run(
        [sys.executable, "-c", TELEMETRY_PROBE, *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return int(result.stdout.split("SENT")[-1])


def test_conversion_sends_no_openvino_telemetry(tmp_path, small_checkpoint):
    """No consent recorded: ovcast records OpenVINO's opt-out, and neither the import nor
    convert_model starts a send (each would fork from a thread in a torch process)."""
    home = tmp_path / "home"
    home.mkdir()
    assert run_telemetry_probe(home, small_checkpoint, tmp_path / "pkg") == 0
    assert (home / "intel" / "openvino_telemetry").read_text() == "0"
    assert (tmp_path / "pkg" / "model.xml").is_file()


def test_an_explicit_opt_in_is_respected(tmp_path):
    """The control: with a recorded opt-in OpenVINO does send (here: into a list), so the
    probe above would see sends if ovcast did not decline."""
    home = tmp_path / "home"
    (home / "intel").mkdir(parents=True)
    (home / "intel" / "openvino_telemetry").write_text("1")
    assert run_telemetry_probe(home) > 0
    assert (home / "intel" / "openvino_telemetry").read_text() == "1"


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(name="../../escape", repository="REPO"), "is not a model name"),
        (dict(name="a/b"), "is not a model name"),
        (dict(name=".."), "is not a model name"),
        (dict(channel_names=["a", "a", "a"]), "['a'] more than once"),
        (dict(channel_names=["", "", ""]), "blank names at positions [0, 1, 2]"),
        (
            dict(calibration_data=np.ones((2, 64, 3), np.float32)),
            "--precision fp32 does not use it",
        ),
        (
            dict(precision="int8", calibration_data=np.full((400, 3), np.nan, np.float32)),
            "holds NaN, infinite or non-numeric values",
        ),
        (dict(revision="main"), "--revision main picks a version of a hub model"),
    ],
)
def test_options_that_cannot_work_or_do_nothing_are_refused(
    tmp_path, small_checkpoint, options, message
):
    from ovcast.errors import ConfigError

    if options.get("repository") == "REPO":
        options["repository"] = tmp_path / "repo" / "a" / "b"
    with pytest.raises(ConfigError) as caught:
        convert(small_checkpoint, tmp_path / "out", **options)
    assert message in str(caught.value)
    assert not (tmp_path / "out").exists() and not (tmp_path / "repo").exists()


def test_repository_names_stay_inside_the_repository(tmp_path, small_package):
    from ovcast.convert.repository import write_repository
    from ovcast.errors import ConfigError

    package = ModelPackage.load(small_package)
    package.manifest.name = "../escape"
    with pytest.raises(ConfigError, match="would leave the repository"):
        write_repository(package, tmp_path / "repo")
    assert not (tmp_path / "escape").exists()


def test_a_scaler_of_another_model_is_refused(tmp_path):
    from conftest import small_scaler

    checkpoint = make_checkpoint(tmp_path / "ckpt", **SMALL_PATCHTST)  # 3 channels
    scaler = small_scaler(3).to_dict()
    scaler["channels"] += scaler["channels"][:2]  # 5 channels
    (checkpoint / "scaler.json").write_text(json.dumps(scaler))
    with pytest.raises(ConversionError, match="scales 5 channels; the model takes 3"):
        convert(checkpoint, tmp_path / "out")


def test_an_out_dir_that_is_a_file_is_one_line(tmp_path, small_checkpoint, capsys):
    from ovcast.cli import main

    (tmp_path / "e3.csv").write_text("date,a\n")
    assert main(["convert", str(small_checkpoint), str(tmp_path / "e3.csv")]) == 1
    assert "is a file; the package is a folder" in capsys.readouterr().err
