"""Which models a server may serve, and where their packages are on disk.

    ovcast serve --model models/default                  # one package; named by its manifest
    ovcast serve --model btc=models/btc --model eth=models/eth
    ovcast serve --repository ovms-models/               # the OVMS layout `ovcast convert --repository` writes

A model's folder is either a model package (served as version "1") or a folder of numeric
version folders, each a package (the OVMS and Triton layout). Which versions are served
follows OVMS's ``model_version_policy`` from the repository's ``config.json``: ``latest``
(default: the highest one), ``specific`` or ``all``. A repository without ``config.json``
holds one model per sub-folder, as Triton's does.

Names that arrive over the network only ever *select* among these models: a name is
checked against ``NAME`` and looked up, never joined into a path by itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..convert.repository import read_config
from ..errors import ModelNotFoundError, ModelPackageError, UnknownModelError
from ..package import MANIFEST_FILE

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")  # no separators, no "..", no leading "."
VERSION = re.compile(r"0|[1-9][0-9]{0,17}")  # ASCII digits, one spelling per number ("01" is not)
POLICIES = ("latest", "all", "specific")


@dataclass(frozen=True)
class ModelSource:
    """A model the server knows of: its name (None: the manifest's) and its folder."""

    name: str | None
    path: Path
    version_policy: Any = None  # OVMS model_version_policy as config.json has it; None: latest


def parse_model_option(text: str) -> ModelSource:
    """``NAME=DIR`` or ``DIR`` (named by its manifest), as ``--model`` takes it."""
    name, sep, path = text.partition("=")
    if sep and NAME.fullmatch(name) and path:
        return ModelSource(name, Path(path))
    if sep and not Path(text).exists():
        raise ModelPackageError(
            f"--model {text!r}: expected NAME=DIR with NAME made of letters, digits, '_', '.', '-'"
        )
    return ModelSource(None, Path(text))


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise UnknownModelError(
            f"{name[:64]!r} is not a model name (letters, digits, '_', '.', '-'; at most 128)"
        )
    return name


class Repository:
    """The models given on the command line plus those under a repository root."""

    def __init__(self, models: list[ModelSource], root: str | Path | None = None) -> None:
        self.models = list(models)
        self.root = Path(root) if root is not None else None
        if self.root is not None and not self.root.is_dir():
            raise ModelNotFoundError(f"--repository {self.root}: no such folder")

    def startup_sources(self) -> list[ModelSource]:
        """What to load at start: every --model, then every model of the repository."""
        return self.models + self._repository_sources()

    def source(self, name: str) -> ModelSource:
        """The model called ``name``: a --model given that name, else one in the repository."""
        check_name(name)
        for source in self.models:
            if source.name == name:
                return source
        for source in self._repository_sources():
            if source.name == name:
                return source
        raise UnknownModelError(f"no model {name!r} in the repository")

    def names(self) -> list[str]:
        return sorted({s.name for s in self.models if s.name} | self._repository_names())

    def _repository_names(self) -> set[str]:
        return {s.name for s in self._repository_sources() if s.name}

    def _repository_sources(self) -> list[ModelSource]:
        if self.root is None:
            return []
        config = read_config(self.root)
        if config:
            return [
                ModelSource(name, Path(c["base_path"]), c.get("model_version_policy"))
                for name, c in sorted(config.items())
                if NAME.fullmatch(name)
            ]
        return [
            ModelSource(p.name, p)
            for p in sorted(self.root.iterdir())
            if p.is_dir() and NAME.fullmatch(p.name)
        ]


def served_versions(source: ModelSource) -> dict[str, Path]:
    """Version -> package folder, as the source's version policy picks them."""
    path = source.path
    if (path / MANIFEST_FILE).is_file():
        return {"1": path}
    versions = (
        {int(p.name): p for p in path.iterdir() if VERSION.fullmatch(p.name) and p.is_dir()}
        if path.is_dir()
        else {}
    )
    if not versions:
        raise ModelNotFoundError(
            f"no model package at {path} (no {MANIFEST_FILE}) and no version folders "
            f"({path}/1/, ...); create one with: ovcast convert MODEL {path}"
        )
    chosen = _apply_policy(sorted(versions), source.version_policy, path)
    return {str(v): versions[v] for v in chosen}


def _apply_policy(versions: list[int], policy: Any, where: Path) -> list[int]:
    """OVMS's model_version_policy: exactly one of latest {num_versions: N >= 1}, all {},
    specific {versions: [N, ...]}; anything else is a ModelPackageError naming it."""
    if policy is None or policy == {}:
        policy = {"latest": {}}
    if not isinstance(policy, dict) or len(policy) != 1 or next(iter(policy)) not in POLICIES:
        raise ModelPackageError(
            f"{where}: model_version_policy {_short(policy)}; expected one of "
            '{"latest": {"num_versions": N}}, {"all": {}}, {"specific": {"versions": [N, ...]}}'
        )
    ((kind, settings),) = policy.items()
    settings = {} if settings is None else settings
    if not isinstance(settings, dict):
        raise ModelPackageError(
            f"{where}: model_version_policy {kind!r} takes an object, got {_short(settings)}"
        )
    if kind == "all":
        return versions
    if kind == "latest":
        count = settings.get("num_versions", 1)
        if not _is_int(count) or count < 1:
            raise ModelPackageError(
                f"{where}: model_version_policy latest.num_versions {_short(count)}; expected "
                "an integer >= 1"
            )
        return versions[-count:]
    wanted = settings.get("versions")
    if not isinstance(wanted, list) or not wanted or not all(_is_int(v) and v >= 0 for v in wanted):
        raise ModelPackageError(
            f"{where}: model_version_policy specific.versions {_short(wanted)}; expected a "
            "non-empty list of version numbers"
        )
    missing = sorted(set(wanted) - set(versions))
    if missing:
        raise ModelNotFoundError(
            f"{where}: version folders {missing} named by the policy are missing"
        )
    return sorted(set(wanted))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
