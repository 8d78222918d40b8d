"""Write a model repository that OpenVINO Model Server and KServe serve unchanged.

    DIR/config.json                 OVMS config listing every model in DIR
    DIR/<name>/1/model.xml, .bin    version 1 of <name>
    DIR/<name>/1/ovcast.json        the manifest, for humans and for ovcast

Serve it with ``ovms --config_path DIR/config.json --rest_port 8000``, or with
``ovcast serve --repository DIR`` (which reads it back with ``read_config``); the KServe v2
requests that work against one work against the other.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ModelPackageError
from ..package import BIN_FILE, MANIFEST_FILE, XML_FILE, ModelPackage

CONFIG_FILE = "config.json"


def read_config(root: str | Path) -> dict[str, dict[str, Any]]:
    """Model name -> its OVMS ``config`` entry (``base_path`` made absolute); {} without config.json.

    Runtime-safe (no torch): ``ovcast serve --repository`` calls it on every index and load.
    """
    root = Path(root)
    path = root / CONFIG_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
        entries = [e["config"] for e in data.get("model_config_list", [])]
        models = {str(c["name"]): dict(c) for c in entries}
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ModelPackageError(
            f"{path} is not an OVMS config: expected "
            '{"model_config_list": [{"config": {"name": ..., "base_path": ...}}]}'
            f" ({exc!r})"
        ) from exc
    for config in models.values():
        config["base_path"] = root / str(config.get("base_path", config["name"]))
    return models


def write_repository(package: ModelPackage, repository: str | Path, version: int = 1) -> Path:
    """Copy the package into ``repository/<name>/<version>/`` and (re)write OVMS config.json."""
    root = Path(repository)
    name = package.manifest.name
    if Path(name).name != name or name in ("", ".", ".."):  # names are names, not paths
        raise ConfigError(f"model name {name!r} would leave the repository {root}")
    target = root / name / str(version)
    target.mkdir(parents=True, exist_ok=True)
    for file in (XML_FILE, BIN_FILE, MANIFEST_FILE):
        shutil.copy2(package.path / file, target / file)
    config_path = root / CONFIG_FILE
    config: dict[str, Any] = {"model_config_list": []}
    if config_path.is_file():
        config = json.loads(config_path.read_text())
    entries = [e for e in config.get("model_config_list", []) if e["config"]["name"] != name]
    entries.append(
        {
            "config": {
                "name": name,
                "base_path": name,  # relative to config.json
                "target_device": "CPU",
                "plugin_config": {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"},
            }
        }
    )
    config["model_config_list"] = sorted(entries, key=lambda e: e["config"]["name"])
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    return target
