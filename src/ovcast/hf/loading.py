"""Resolve a MODEL argument to a HuggingFace checkpoint and load it.

MODEL is one of:
- ``default``: the checkpoint embedded in ovcast (``ovcast/models/default``), offline;
- a local folder written by ``save_pretrained`` (``config.json`` + weights);
- a hub id such as ``ibm-granite/granite-timeseries-patchtst`` (needs network once).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, ModelSourceError, require
from ..scaling import Scaler
from . import ttm

log = logging.getLogger(__name__)

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "default"
# family -> the class ovcast loads; TinyTimeMixer's comes from granite-tsfm (hf/ttm.py).
SUPPORTED_ARCHITECTURES = {
    "patchtst": "PatchTSTForPrediction",
    "patchtsmixer": "PatchTSMixerForPrediction",
    ttm.FAMILY: ttm.ARCHITECTURE,
}
FAMILY_OF_MODEL_TYPE = {
    "patchtst": "patchtst",
    "patchtsmixer": "patchtsmixer",
    ttm.MODEL_TYPE: ttm.FAMILY,
}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
SCALER_FILE = "scaler.json"
SHOWN_KEYS = 4  # weight names a loading error shows

# ETTh1 train-split standard scaler (population std), published in granite-tsfm's
# patch_tst_getting_started notebook; Granite's hub checkpoints carry no preprocessor file.
ETTH1_COLUMNS = ("HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT")
ETTH1_MEAN = (
    7.937742245659508,
    2.0210386567335163,
    5.079770601157927,
    0.7461858799957015,
    2.781762386375555,
    0.7884531235540096,
    17.1282616982271,
)
ETTH1_STD = (
    5.812749409143771,
    2.0901046504076,
    5.518793579036245,
    1.9263792741329822,
    1.0235226594952194,
    0.6302366362251923,
    9.176491024944335,
)
PUBLISHED_SCALERS = {
    "ibm-granite/granite-timeseries-patchtst": "etth1",
    "ibm-granite/granite-timeseries-patchtsmixer": "etth1",
}


def etth1_scaler() -> Scaler:
    return Scaler(("standard",) * 7, np.array(ETTH1_MEAN), np.array(ETTH1_STD), ETTH1_COLUMNS)


@dataclass(frozen=True)
class ModelSource:
    """Where a checkpoint came from: enough to reproduce and to verify it."""

    path: Path  # local folder holding config.json and the weights
    name: str  # what the user typed: 'default', a path or a hub id
    hub_id: str | None = None
    revision: str | None = None  # the commit the hub served (reloads exactly these weights)
    requested_revision: str | None = None  # as asked for: a branch such as '1024-96-r2', a tag
    weights_file: str = ""
    weights_sha256: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path) if self.hub_id is None else None,
            "hub_id": self.hub_id,
            "revision": self.revision,
            "requested_revision": self.requested_revision,
            "weights_file": self.weights_file,
            "weights_sha256": self.weights_sha256,
        }


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_source(model: str | Path, *, revision: str | None = None) -> ModelSource:
    """Find the checkpoint folder for MODEL, downloading from the hub when MODEL is a hub id."""
    name = str(model)
    hub_id = requested = None
    if name == "default":
        path = DEFAULT_MODEL_DIR
        if not (path / "config.json").is_file():
            raise ModelSourceError(
                f"the embedded default model is missing from {path}; reinstall ovcast"
            )
    elif Path(name).expanduser().exists():
        path = Path(name).expanduser().resolve()
        if not path.is_dir():
            raise ModelSourceError(f"{path} is a file; expected a checkpoint folder (config.json)")
    elif _looks_like_hub_id(name):
        requested = revision
        path, revision = _download(name, revision)
        hub_id = name
    else:
        raise ModelSourceError(
            f"no checkpoint at {Path(name).expanduser().resolve()}; expected 'default', a folder "
            "written by save_pretrained, or a hub id like ibm-granite/granite-timeseries-patchtst"
        )
    if revision is not None and hub_id is None:
        raise ConfigError(
            f"--revision {revision} picks a version of a hub model; {name} is a local "
            "checkpoint, which has one version: leave --revision out"
        )
    if not (path / "config.json").is_file():
        raise ModelSourceError(f"{path} has no config.json; expected a save_pretrained folder")
    weights = next((path / w for w in WEIGHT_FILES if (path / w).is_file()), None)
    if weights is None:
        raise ModelSourceError(f"{path} has no weights; expected one of {list(WEIGHT_FILES)}")
    return ModelSource(
        path=path,
        name=name,
        hub_id=hub_id,
        revision=revision,
        requested_revision=requested,
        weights_file=weights.name,
        weights_sha256=sha256_file(weights),
    )


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "/", "~"))


def _download(hub_id: str, revision: str | None) -> tuple[Path, str]:
    """The snapshot folder of ``hub_id`` at ``revision`` and its commit hash."""
    hub = require("huggingface_hub", extra="convert", purpose="Loading a hub model")
    try:
        folder = hub.snapshot_download(
            hub_id, revision=revision, allow_patterns=["*.json", *WEIGHT_FILES]
        )
    except Exception as exc:  # network, auth, unknown repo: all one user-facing failure
        raise ModelSourceError(
            f"could not download {hub_id!r} from the HuggingFace Hub ({exc.__class__.__name__}: "
            f"{exc}). Offline? Use a local folder or 'default' instead."
        ) from exc
    path = Path(folder)
    return path, path.name  # snapshot folders are named by commit hash


def read_family(path: Path) -> str:
    """The model family ('patchtst', 'patchtsmixer' or 'ttm') of a checkpoint folder."""
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise ModelSourceError(f"cannot read {path / 'config.json'}: {exc}") from exc
    model_type = config.get("model_type")
    if model_type not in FAMILY_OF_MODEL_TYPE:
        raise ModelSourceError(
            f"{path} holds a {model_type!r} model; ovcast supports "
            f"{', '.join(SUPPORTED_ARCHITECTURES.values())}"
        )
    return FAMILY_OF_MODEL_TYPE[model_type]


def load_model(
    source: ModelSource, *, new_layers: Sequence[str] = (), **config_changes: Any
) -> Any:
    """Load the ``*ForPrediction`` model of a resolved source, in eval mode, float32.

    ``config_changes`` override config.json at load time (TTM: prediction_filter_length,
    num_input_channels for a channel-independent model, as granite-tsfm's get_model does).
    Every weight of the model must come from the checkpoint, and every weight of the
    checkpoint must be used (``check_weights``): otherwise transformers would start the
    rest at random and the "converted" model would be a random one. ``new_layers``: patterns
    (fnmatch) of the weights a config change adds on purpose (fine-tuning's channel mixing),
    which start random and are then trained.
    """
    family = read_family(source.path)
    if family == ttm.FAMILY:
        module = ttm.require_tsfm("Loading a TinyTimeMixer checkpoint")
    else:
        module = require("transformers", extra="convert", purpose="Loading a checkpoint")
    cls = getattr(module, SUPPORTED_ARCHITECTURES[family])
    try:
        model, info = cls.from_pretrained(
            source.path,
            output_loading_info=True,
            ignore_mismatched_sizes=True,  # reported by check_weights, with the cause
            **config_changes,
        )
    except Exception as exc:
        raise ModelSourceError(f"cannot load {source.path} as {cls.__name__}: {exc}") from exc
    check_weights(info, f"{source.path} as {cls.__name__}", family, new_layers)
    return model.float().eval()


def check_weights(
    info: Mapping[str, Any], what: str, family: str, new_layers: Sequence[str] = ()
) -> None:
    """Refuse a load that left weights random or unused (transformers' loading info).

    Missing weights are started at random by transformers, unexpected ones dropped and ones
    of another shape re-initialised: any of them means the model is not the checkpoint's.
    """
    missing = sorted(
        k for k in info.get("missing_keys", ()) if not any(fnmatch(k, p) for p in new_layers)
    )
    problems = [
        (missing, "missing from the checkpoint (they would start random)"),
        (sorted(info.get("unexpected_keys", ())), "in the checkpoint but not in the model"),
        (
            [
                f"{k} ({list(saved)} saved, {list(built)} built)"
                for k, saved, built in info.get("mismatched_keys", ())
            ],
            "of another shape than the model's",
        ),
        (list(info.get("error_msgs", ())), "errors"),
    ]
    found = [
        f"{len(keys)} weight(s) {why}: {', '.join(keys[:SHOWN_KEYS])}"
        + (f" and {len(keys) - SHOWN_KEYS} more" if len(keys) > SHOWN_KEYS else "")
        for keys, why in problems
        if keys
    ]
    if found:
        raise ModelSourceError(
            f"cannot load {what}: its weights do not fit the model this installation builds "
            f"from its config.json; {'; '.join(found)}. Likely cause: the checkpoint was saved "
            f"by another version of {_library_versions(family)}, or its config.json does not "
            "match its weights. Convert it with the version that saved it, or re-save it "
            "with this one"
        )


def _library_versions(family: str) -> str:
    """'transformers than the one installed here (transformers 5.x)'; TTM: granite-tsfm too."""
    from importlib.metadata import PackageNotFoundError, version

    names = ["transformers", "granite-tsfm"] if family == ttm.FAMILY else ["transformers"]
    installed = []
    for name in names:
        try:
            installed.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            installed.append(f"{name} (not installed)")
    ones = "the ones" if len(names) > 1 else "the one"
    return f"{' or '.join(names)} than {ones} installed here ({', '.join(installed)})"


def predictor(model: Any, *, freq_token: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """A ``*ForPrediction`` model as a function of windows: (batch, context, channels) float32
    -> (batch, horizon, forecast channels), in eval mode without gradients. The one place
    ovcast runs a PyTorch forecast (evaluation, training's validation, benchmarks).

    ``freq_token``: the resolution token a TTM with resolution prefix tuning needs (one for
    every window). A TTM that takes future exogenous values cannot forecast from windows alone.
    """
    torch = require("torch", extra="convert", purpose="Forecasting with a PyTorch checkpoint")
    config = model.config
    if getattr(config, "enable_forecast_channel_mixing", False) and getattr(
        config, "exogenous_channel_indices", None
    ):
        raise ModelSourceError(
            "this TTM forecasts from future exogenous values too; it cannot be scored on "
            "windows alone (convert it and give future_exogenous to the Engine)"
        )
    needs_token = bool(getattr(config, "resolution_prefix_tuning", False))
    if needs_token and freq_token is None:
        raise ModelSourceError(
            "this TTM was trained with resolution prefix tuning and needs a frequency token"
        )
    model.eval()

    def predict(windows: np.ndarray) -> np.ndarray:
        inputs = {"past_values": torch.from_numpy(windows)}
        if needs_token:
            inputs["freq_token"] = torch.full((len(windows),), int(freq_token or 0))
        with torch.no_grad():
            return model(**inputs).prediction_outputs.numpy()

    return predict


def load_scaler(source: ModelSource) -> Scaler | None:
    """The scaler that belongs to a checkpoint: its scaler.json, or a published one for Granite."""
    file = source.path / SCALER_FILE
    if file.is_file():
        try:
            return Scaler.from_dict(json.loads(file.read_text()))
        except ValueError as exc:
            raise ModelSourceError(f"cannot read {file}: {exc}") from exc
    if PUBLISHED_SCALERS.get(source.hub_id or "") == "etth1":
        return etth1_scaler()
    return None
