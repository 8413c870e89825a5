"""Backend fallback: a missing package or device is one log line and the next backend in the
chain (tensorrt -> onnxruntime -> torch; cuda -> cpu), never a crash. A broken model file
(ModelFileError) or a bad setting (ValueError) is not a missing package: it still raises."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable

log = logging.getLogger("posediff_ros.runtime")

FALLBACK = {"tensorrt": "onnxruntime", "onnxruntime-int8": "onnxruntime",
            "onnxruntime": "torch", "torch-fused": "torch"}


class BackendUnavailable(RuntimeError):
    """The backend's package, execution provider or device is absent on this machine."""


def cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return False


def resolve_device(device: str) -> tuple[str, str | None]:
    """(device to use, why it differs from the one asked for, or None)."""
    if str(device).startswith("cuda") and not cuda_available():
        return "cpu", f"no CUDA device ({device} asked for)"
    return str(device), None


def chain(name: str) -> list[str]:
    names = [name]
    while names[-1] in FALLBACK:
        names.append(FALLBACK[names[-1]])
    return names


def call_factory(factory: Callable, model_path, device, settings, options: dict):
    """Pass only the options a factory accepts (the torch factory takes none)."""
    params = inspect.signature(factory).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return factory(model_path, device, settings, **options)
    return factory(model_path, device, settings, **{k: v for k, v in options.items()
                                                     if k in params})


def load_with_fallback(backends: dict[str, Callable], name: str, model_path, device: str,
                       settings, **options):
    """The first backend of `chain(name)` that loads; logs one warning line when it is not
    the one asked for (or runs on another device)."""
    if name not in backends:
        raise ValueError(f"unknown backend {name!r}; known: {', '.join(backends)}")
    use_device, device_note = resolve_device(device)
    reasons = [device_note] if device_note else []
    for candidate in chain(name):
        if candidate not in backends:
            continue
        try:
            backend = call_factory(backends[candidate], model_path, use_device, settings, options)
        except BackendUnavailable as e:
            reasons.append(f"{candidate}: {e}")
            continue
        if reasons:
            log.warning("backend %r on %s asked for; using %r on %s (%s)", name, device,
                        candidate, use_device, "; ".join(reasons))
        return backend
    raise BackendUnavailable(f"no backend of {chain(name)} could load: {'; '.join(reasons)}")
