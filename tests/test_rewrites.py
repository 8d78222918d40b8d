"""Export-time speed rewrites: each keeps fp32 parity on the Granite configs, changes the graph
the way it says, and leaves the PyTorch model as it was. (Speed is measured by ovcast bench.)"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="conversion needs the ovcast[convert] extra")
ov = pytest.importorskip("openvino")

from conftest import SMALL_PATCHTST, random_windows, torch_forecast  # noqa: E402

from ovcast import Engine  # noqa: E402
from ovcast.convert import convert  # noqa: E402
from ovcast.convert.rewrites import REWRITES, affine_batchnorm, speed_rewrites  # noqa: E402
from ovcast.parity import FP32_ABS_TOLERANCE  # noqa: E402

SMALL_MIXER = dict(
    context_length=64,
    prediction_length=16,
    num_input_channels=3,
    patch_length=8,
    patch_stride=8,
    d_model=16,
)
# (family, overrides, the rewrites that must apply). Granite's own norms: PatchTST batchnorm,
# PatchTSMixer LayerNorm; the other settings exercise every sublayer a rewrite touches.
CONFIGS = {
    "granite-patchtst": ("patchtst", SMALL_PATCHTST, ["batchnorm-affine"]),
    "patchtst-channel-attention": (
        "patchtst",
        {**SMALL_PATCHTST, "channel_attention": True},
        ["batchnorm-affine"],
    ),
    "patchtst-post-norm": ("patchtst", {**SMALL_PATCHTST, "pre_norm": False}, ["batchnorm-affine"]),
    "patchtst-layernorm": ("patchtst", {**SMALL_PATCHTST, "norm_type": "layernorm"}, []),
    "granite-patchtsmixer": ("patchtsmixer", SMALL_MIXER, []),
    "patchtsmixer-batchnorm-attention": (
        "patchtsmixer",
        {**SMALL_MIXER, "norm_mlp": "BatchNorm", "self_attn": True, "self_attn_heads": 2},
        ["batchnorm-affine"],
    ),
}


def trained_looking_checkpoint(folder, family, overrides, seed=0):
    """A random checkpoint whose BatchNorm statistics and affine parameters are far from the
    identity (fresh ones are mean 0, var 1, weight 1, bias 0: a wrong scale would pass)."""
    from ovcast.hf.configs import new_model

    torch.manual_seed(seed)
    model = new_model(family, **overrides).eval()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n))
            module.running_var.copy_(torch.rand(n) * 3 + 0.2)
            module.weight.data.copy_(torch.randn(n))
            module.bias.data.copy_(torch.randn(n))
    model.save_pretrained(folder)
    return folder


def _count(xml, op_type):
    return sum(op.get_type_name() == op_type for op in ov.Core().read_model(xml).get_ordered_ops())


@pytest.mark.parametrize("name", list(CONFIGS))
def test_rewrites_keep_fp32_parity(tmp_path, name):
    family, overrides, expected = CONFIGS[name]
    checkpoint = trained_looking_checkpoint(tmp_path / "ckpt", family, overrides)
    package = convert(checkpoint, tmp_path / "pkg")
    parity = package.manifest.parity
    assert parity["export_rewrites"] == expected
    assert parity["fp32_vs_torch"]["max_abs_error"] <= FP32_ABS_TOLERANCE * max(
        1.0, parity["fp32_vs_torch"]["reference_peak"]
    )
    m = package.manifest
    windows = random_windows(3, m.context_length, m.num_input_channels, seed=5)
    reference = torch_forecast(checkpoint, windows)
    got = Engine(package, warmup=False).predict(windows)
    np.testing.assert_allclose(
        got, reference, atol=FP32_ABS_TOLERANCE * max(1.0, float(np.abs(reference).max()))
    )
    if expected:  # the rewrite did what it says: the IR lost transposes around the norms
        plain = convert(checkpoint, tmp_path / "plain", rewrites=False)
        assert plain.manifest.parity["export_rewrites"] == []
        assert _count(package.xml_path, "Transpose") < _count(plain.xml_path, "Transpose")


def test_rewrites_restore_the_model(tmp_path):
    from ovcast.hf.configs import new_model

    model = new_model("patchtst", **SMALL_PATCHTST).eval()
    norms = [m for m in model.modules() if type(m).__name__ == "PatchTSTBatchNorm"]
    x = torch.from_numpy(random_windows(2, 64, 3))
    with torch.no_grad():
        before = model(past_values=x).prediction_outputs
        with speed_rewrites(model) as applied:
            assert applied == list(REWRITES)
            assert all("forward" in m.__dict__ for m in norms)
            during = model(past_values=x).prediction_outputs
        after = model(past_values=x).prediction_outputs
    assert all("forward" not in m.__dict__ and not hasattr(m, "_ovcast_scale") for m in norms)
    torch.testing.assert_close(during, before, atol=1e-5, rtol=1e-5)
    assert torch.equal(after, before)
    with speed_rewrites(model, enabled=False) as applied:
        assert applied == []


def test_batchnorm_in_training_mode_is_left_alone():
    """Training-mode BatchNorm uses the batch's statistics: no affine map can stand for it."""
    from ovcast.hf.configs import new_model

    model = new_model("patchtst", **SMALL_PATCHTST).train()
    with affine_batchnorm(model) as count:
        assert count == 0
