"""The model package on disk: broken or incomplete packages give one clear message."""

from __future__ import annotations

import json
import shutil

import pytest

from ovcast import ModelNotFoundError, ModelPackage, ModelPackageError


@pytest.fixture
def copy(tmp_path, small_package):
    target = tmp_path / "pkg"
    shutil.copytree(small_package, target)
    return target


@pytest.mark.parametrize("missing", ["model.xml", "model.bin", "ovcast.json"])
def test_missing_file_is_named(copy, missing):
    (copy / missing).unlink()
    with pytest.raises(ModelNotFoundError, match=rf"missing {missing}.*ovcast convert"):
        ModelPackage.load(copy)


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "cannot read"),
        ("[1, 2]", "not a JSON object"),
        ('{"format": "something-else"}', "not an ovcast manifest"),
        ('{"format": "ovcast-model-package"}', "lacks the field"),
    ],
)
def test_broken_manifest(copy, text, message):
    (copy / "ovcast.json").write_text(text)
    with pytest.raises(ModelPackageError, match=message):
        ModelPackage.load(copy)


def test_unknown_precision_is_refused(copy):
    data = json.loads((copy / "ovcast.json").read_text())
    data["precision"] = "int4"
    (copy / "ovcast.json").write_text(json.dumps(data))
    with pytest.raises(ModelPackageError, match="precision"):
        ModelPackage.load(copy)


def test_a_file_is_not_a_package(tmp_path):
    (tmp_path / "model.xml").write_text("<xml/>")
    with pytest.raises(ModelNotFoundError, match="is a file"):
        ModelPackage.load(tmp_path / "model.xml")


def test_manifest_round_trip(copy):
    package = ModelPackage.load(copy)
    package.manifest.runtime_config = {"latency": {"INFERENCE_NUM_THREADS": 2}}
    package.save_manifest()
    again = ModelPackage.load(copy)
    assert again.manifest == package.manifest
