"""A checkpoint whose weights do not all load is refused, for every family.

transformers starts weights the checkpoint lacks at random, drops ones the model lacks and
re-initialises ones of another shape; a conversion of such a load would be a random model
with "passing" parity (the IR against the same random PyTorch model). The loader refuses it
and names the first weights and the likely cause.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")
from conftest import SMALL_PATCHTST, make_checkpoint  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from ovcast.errors import ModelSourceError  # noqa: E402

FAMILIES = {
    "patchtst": SMALL_PATCHTST,
    "patchtsmixer": dict(
        context_length=64,
        prediction_length=16,
        num_input_channels=3,
        patch_length=8,
        patch_stride=8,
        d_model=16,
        num_layers=1,
    ),
    "ttm": dict(
        num_input_channels=2,
        d_model=16,
        decoder_d_model=8,
        num_layers=1,
        decoder_num_layers=1,
        adaptive_patching_levels=1,
    ),
}


def _checkpoint(folder: Path, family: str) -> Path:
    if family == "ttm":
        pytest.importorskip("tsfm_public", reason="granite-tsfm is not installed")
    return make_checkpoint(folder, family, **FAMILIES[family])


def _edit_weights(folder: Path, edit) -> None:
    weights = load_file(folder / "model.safetensors")
    save_file(edit(weights), folder / "model.safetensors", metadata={"format": "pt"})


def _renamed_head(weights):  # as another library version might name the head's layers
    return {k.replace("head.", "head_v2.", 1): v for k, v in weights.items()}


def _no_head(weights):
    return {k: v for k, v in weights.items() if not k.startswith("head.")}


def _wider_head(weights):
    key = next(k for k in sorted(weights) if k.startswith("head.") and k.endswith("bias"))
    return {**weights, key: weights[key].new_zeros(weights[key].shape[0] + 1)}


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize(
    "edit, expected",
    [
        (_renamed_head, r"missing from the checkpoint.*head\..*in the checkpoint but not in"),
        (_no_head, r"missing from the checkpoint \(they would start random\): head\."),
        (_wider_head, r"of another shape than the model's: head\..*saved"),
    ],
    ids=["renamed", "missing", "mismatched"],
)
def test_weights_that_do_not_load_are_refused(tmp_path, family, edit, expected):
    from ovcast.convert import convert

    checkpoint = _checkpoint(tmp_path / "ckpt", family)
    _edit_weights(checkpoint, edit)
    with pytest.raises(ModelSourceError, match=expected) as refused:
        convert(checkpoint, tmp_path / "pkg")
    message = str(refused.value)
    assert "another version of transformers" in message and "installed here" in message
    assert not (tmp_path / "pkg").exists()


def test_cli_says_why_in_one_line(tmp_path, capsys):
    from ovcast.cli import main

    checkpoint = _checkpoint(tmp_path / "ckpt", "patchtst")
    _edit_weights(checkpoint, _no_head)
    assert main(["convert", str(checkpoint), str(tmp_path / "pkg")]) == 1
    err = capsys.readouterr().err
    assert "missing from the checkpoint" in err and "Traceback" not in err
