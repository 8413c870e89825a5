"""A model file's configuration (<name>.json beside <name>.safetensors), read without torch:
what a node running an exported graph needs (point count, sampler settings, the weights'
sha256 that names its graphs) comes from here, the network itself from posenet.py."""

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..categories import NAMES
from .settings import SamplerSettings

RANDOM = "random"  # a model path naming no file: a freshly initialised network
FORMAT_VERSION = 1


@dataclass
class PoseNetConfig:
    format_version: int = FORMAT_VERSION
    categories: list[str] = field(default_factory=lambda: list(NAMES))
    encoder: str = "pointnet"
    num_points: int = 256
    feat_dim: int = 512
    emb_dim: int = 64
    hidden: int = 256
    normalisation: str = "centroid_rms"
    sigma_min: float = 0.01
    sigma_max: float = 50.0
    sampler: SamplerSettings = field(default_factory=SamplerSettings)  # tuned defaults
    training: dict = field(default_factory=dict)  # command, data seeds, steps, metrics
    notes: dict = field(default_factory=dict)  # e.g. how the sampler defaults were chosen

    @classmethod
    def from_dict(cls, d: dict) -> "PoseNetConfig":
        d = dict(d)
        d.pop("weights", None)
        d.pop("weights_sha256", None)
        d["sampler"] = SamplerSettings(**d.get("sampler", {}))
        return cls(**d)


class ModelFileError(RuntimeError):
    """A model file is missing, unreadable, of another format version or does not fit."""


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_config(json_path: str | Path) -> tuple[PoseNetConfig, dict]:
    json_path = Path(json_path)
    if not json_path.is_file():
        raise ModelFileError(f"model config {json_path} does not exist")
    try:
        raw = json.loads(json_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelFileError(f"model config {json_path} is not valid JSON ({e})") from None
    version = raw.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelFileError(f"model config {json_path} has format_version {version!r}; "
                             f"this code reads version {FORMAT_VERSION}")
    try:
        return PoseNetConfig.from_dict(raw), raw
    except TypeError as e:
        raise ModelFileError(f"model config {json_path} has unexpected fields ({e})") from None


def checked_weights(json_path: str | Path, raw: dict) -> tuple[Path, str] | None:
    """The safetensors file a model config names and its sha256, checked against the one the
    config records (a truncated or replaced file fails here, with or without torch); None for
    a config without weights (a freshly initialised network)."""
    if not raw.get("weights"):
        return None
    json_path = Path(json_path)
    weights = json_path.parent / raw["weights"]
    if not weights.is_file():
        raise ModelFileError(f"weights file {weights} (named by {json_path}) does not exist")
    digest = file_sha256(weights)
    want = raw.get("weights_sha256")
    if want and digest != want:
        raise ModelFileError(f"weights file {weights} does not match the sha256 in "
                             f"{json_path} (truncated or replaced?)")
    return weights, digest
