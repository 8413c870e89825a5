"""Inference backends behind one protocol (base.Backend). `load_backend(name, model_path)`.

Add a backend by adding an entry to BACKENDS: name -> factory(model_path, device, settings).
Every backend module is imported on first use: the onnxruntime backends run without torch
when their graph is cached, so importing this package must not pull torch in.
"""

import os
import sys
from collections.abc import Callable
from importlib import import_module
from pathlib import Path

from .base import Backend, PoseBatch, SamplerSettings
from .fallback import call_factory, load_with_fallback

MODEL_NAME = "posediff_default.json"


def _default_model() -> Path:
    """models/posediff_default.json: in the source tree when running from it, else in the
    package's installed share dir (ament or pip data_files)."""
    repo = Path(__file__).resolve().parents[2] / "models" / MODEL_NAME
    if repo.is_file():
        return repo
    try:  # a colcon/ament install
        from ament_index_python.packages import get_package_share_directory

        share = Path(get_package_share_directory("posediff_ros")) / "models" / MODEL_NAME
        if share.is_file():
            return share
    except Exception:  # noqa: BLE001 - no ament index, or package not registered
        pass
    share = Path(sys.prefix) / "share" / "posediff_ros" / "models" / MODEL_NAME
    return share if share.is_file() else repo


DEFAULT_MODEL: Path = _default_model()


def _lazy(module: str, factory: str = "factory") -> Callable[..., Backend]:
    """`factory` of a backend module, imported on first use (keeps optional packages lazy)."""

    def make(model_path, device: str, settings: SamplerSettings | None, **options) -> Backend:
        make_backend = getattr(import_module(f".{module}", __name__), factory)
        return call_factory(make_backend, model_path, device, settings, options)

    return make


BACKENDS: dict[str, Callable[..., Backend]] = {
    "torch": _lazy("torch_backend"),
    "torch-fused": _lazy("fused_backend"),  # one module; CUDA graphs / autocast options
    "onnxruntime": _lazy("onnx_backend"),
    "onnxruntime-int8": _lazy("onnx_backend", "int8_factory"),  # the encoder in int8
    "tensorrt": _lazy("tensorrt_backend"),
}


def load_backend(name: str, model_path: str | os.PathLike = DEFAULT_MODEL, device: str = "cpu",
                 settings: SamplerSettings | None = None, **options) -> Backend:
    """A ready backend. model_path: a model JSON (its safetensors beside it), or "random" for a
    freshly initialised network (to test the plumbing before a trained model exists).
    A missing package or device logs one line and falls back (tensorrt -> onnxruntime ->
    torch; cuda -> cpu), see runtime/fallback.py; options go to backends that take them."""
    return load_with_fallback(BACKENDS, name, model_path, device, settings, **options)


__all__ = ["BACKENDS", "DEFAULT_MODEL", "Backend", "PoseBatch", "SamplerSettings",
           "load_backend"]
