"""Where exported graphs live and how they are named, without torch: a node whose graph is in
the cache (or shipped beside the model) starts with onnxruntime and numpy alone; torch is
imported only to export a graph that is not there yet (onnx_export.py).

A graph is named by the weights (sha256 over the tensors' names, dtypes, shapes and bytes,
read from the safetensors file as it lies on disk, or from a network in memory: the same
digest either way), the sampler settings it bakes in, the part and the export format version.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..cache_dir import PACKAGE, default_cache_dir, source_digest
from ..model.config import RANDOM, ModelFileError, checked_weights, read_config
from ..model.settings import SamplerSettings

EXPORT_VERSION = 2  # bump when the graph (its inputs, outputs or their computation) changes
OPSET = 17
PARTS = ("full", "encoder", "sampler")  # the whole graph, or its two stages (bench timing)

# safetensors dtype codes -> the names torch gives them (the digest spells dtypes as torch
# does, so a network's state dict and its file give the same digest)
TORCH_DTYPE = {"F64": "torch.float64", "F32": "torch.float32", "F16": "torch.float16",
               "BF16": "torch.bfloat16", "I64": "torch.int64", "I32": "torch.int32",
               "I16": "torch.int16", "I8": "torch.int8", "U8": "torch.uint8",
               "BOOL": "torch.bool"}


def tensors_digest(tensors: Iterable[tuple[str, str, tuple[int, ...], bytes]]) -> str:
    """sha256 over (name, torch dtype name, shape, raw little-endian bytes), in name order."""
    h = hashlib.sha256()
    for name, dtype, shape, data in sorted(tensors, key=lambda item: item[0]):
        h.update(f"{name}:{dtype}:{tuple(shape)}".encode())
        h.update(data)
    return h.hexdigest()


def weights_hash(network) -> str:
    """tensors_digest of a network's state dict (torch is loaded wherever a network is): the
    digest its saved safetensors file gives too, so graphs are found either way; identifies
    seeded initialisations as well."""
    import torch

    items = []
    for k, v in network.state_dict().items():
        t = v.detach().cpu().contiguous()
        items.append((k, str(t.dtype), tuple(t.shape),
                      t.view(torch.uint8).numpy().tobytes() if t.numel() else b""))
    return tensors_digest(items)


def safetensors_digest(path: str | os.PathLike) -> str:
    """tensors_digest of a safetensors file, read directly (8-byte header length, JSON
    header of dtype, shape and byte range per tensor, then the data)."""
    raw = Path(path).read_bytes()
    try:
        (n,) = struct.unpack("<Q", raw[:8])
        header = json.loads(raw[8:8 + n])
        data = memoryview(raw)[8 + n:]
        items = [(name, TORCH_DTYPE[h["dtype"]], tuple(h["shape"]),
                  bytes(data[h["data_offsets"][0]:h["data_offsets"][1]]))
                 for name, h in header.items() if name != "__metadata__"]
    except (struct.error, ValueError, KeyError, TypeError) as e:
        raise ModelFileError(f"weights file {path} cannot be read as safetensors "
                             f"({type(e).__name__}: {e})") from None
    return tensors_digest(items)


@dataclass
class ModelSource:
    """What a graph backend needs of a model: its point count, stored sampler settings and
    weights digest (from the model's files, no torch), and the network itself only to export
    a graph (loaded on first use)."""

    path: str | None  # model JSON, RANDOM, or None for a network given in memory
    num_points: int
    sampler: SamplerSettings
    weights_sha256: str
    _network: object | None = field(default=None, repr=False)

    @classmethod
    def of_file(cls, model_path: str | os.PathLike) -> ModelSource:
        """A model JSON (its safetensors checked against the sha256 it records), or RANDOM
        (a seeded network: torch builds it to know its weights)."""
        if str(model_path) == RANDOM:
            source = cls.of_file(random_model_file())
            source.path = RANDOM  # graphs and logs name it "random"; network() re-seeds it
            return source
        cfg, raw = read_config(model_path)
        checked = checked_weights(model_path, raw)
        if checked is None:  # a config without weights: initialised by the network's code
            from ..model.posenet import load_model

            return cls.of_network(load_model(model_path), str(model_path))
        return cls(str(model_path), cfg.num_points, cfg.sampler, safetensors_digest(checked[0]))

    @classmethod
    def of_network(cls, network, model_path: str | os.PathLike | None = None) -> ModelSource:
        network = network.cpu().eval()
        return cls(None if model_path is None else str(model_path), network.cfg.num_points,
                   network.cfg.sampler, weights_hash(network), network)

    def network(self):
        """The PoseNet (torch), loaded from `path` the first time it is needed."""
        if self._network is None:
            from ..model.posenet import load_any

            self._network = load_any(self.path).cpu().eval()
        return self._network

    @property
    def stem(self) -> str:
        return Path(self.path).stem if self.path and self.path != RANDOM else RANDOM


def random_model_file() -> Path:
    """The seeded network "random" (model.posenet.load_any), saved once into the cache dir as a
    model file, so that its weights are known without torch next time. Named by what decides
    them: the network's code (posediff_ros/model/, categories.py) and the torch version."""
    from importlib.metadata import version

    digest = source_digest([*(PACKAGE / "model").glob("*.py"), PACKAGE / "categories.py"],
                           version("torch"))
    path = default_cache_dir() / "random" / f"random-{digest}.json"
    if not path.is_file():
        from ..model.posenet import load_any, save_model

        tmp = path.parent / f".{os.getpid()}.tmp"  # another process may race: same content
        written = save_model(load_any(RANDOM), tmp / path.name)
        os.replace(written.with_suffix(".safetensors"), path.with_suffix(".safetensors"))
        os.replace(written, path)  # the JSON last: it names a complete weights file
        tmp.rmdir()
    return path


def cache_key(whash: str, settings: SamplerSettings, part: str = "full") -> str:
    """Names a graph: weights, settings, part, and the export format version."""
    body = json.dumps([whash, asdict(settings.graph_key()), part, EXPORT_VERSION, OPSET],
                      sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def model_graph_dir(model_path: str | os.PathLike | None) -> Path | None:
    """models/onnx/ beside a model JSON: where posediff-export puts graphs to ship."""
    if model_path is None or str(model_path) == RANDOM:
        return None
    return Path(model_path).resolve().parent / "onnx"


def graph_dir() -> Path:
    """Where graphs exported on the fly go: the cache dir (never the source tree)."""
    return default_cache_dir() / "onnx"


def graph_path(directory: Path, stem: str, whash: str, settings: SamplerSettings,
               part: str = "full") -> Path:
    suffix = "" if part == "full" else f".{part}"
    return directory / f"{stem}.{settings.tag()}.{cache_key(whash, settings, part)}{suffix}.onnx"


def sidecar(onnx_path: str | os.PathLike) -> Path:
    return Path(onnx_path).with_suffix(".json")


def matches(path: Path, whash: str) -> bool:
    """A complete graph whose sidecar names these weights and this export version."""
    if not (path.is_file() and sidecar(path).is_file()):
        return False
    try:
        meta = json.loads(sidecar(path).read_text())
    except (json.JSONDecodeError, OSError):
        return False
    return meta.get("weights_sha256") == whash and meta.get("export_version") == EXPORT_VERSION


def find_graph(stem: str, model_path, whash: str, settings: SamplerSettings, part: str = "full",
               directory: Path | None = None) -> tuple[Path, bool]:
    """(path, found): a matching graph shipped beside the model (posediff-export) or in
    `directory` (default: the cache dir); else (where to export it, False)."""
    directory = Path(directory) if directory else graph_dir()
    shipped = model_graph_dir(model_path)
    for d in ([shipped] if shipped else []) + [directory]:
        path = graph_path(d, stem, whash, settings, part)
        if matches(path, whash):
            return path, True
    return graph_path(directory, stem, whash, settings, part), False
