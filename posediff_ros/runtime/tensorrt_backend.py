"""The TensorRT backend: an engine built from the exported whole-pipeline ONNX graph, with one
optimisation profile for 1..max_objects objects, cached on disk keyed by weight hash, sampler
settings, GPU name and TensorRT version, and reused on the next start.

Buffers are torch CUDA tensors (no pycuda needed); the engine runs on torch's current stream.
configure() with new sampler settings builds (or loads) the engine for them.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch

from ..model.posenet import load_any
from .base import PoseBatch, SamplerSettings
from .fallback import BackendUnavailable
from .onnx_export import default_cache_dir, ensure_graph, weights_hash
from .postprocess import empty_batch, make_noise, to_pose_batch

log = logging.getLogger("posediff_ros.runtime")


def engine_key(whash: str, settings: str, gpu: str, trt_version: str, max_objects: int,
               fp16: bool) -> str:
    body = "|".join([whash, settings, gpu, trt_version, str(max_objects), str(fp16)])
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def _torch_dtype(trt, dt):
    table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32,
             trt.int8: torch.int8, trt.bool: torch.bool}
    if hasattr(trt, "int64"):
        table[trt.int64] = torch.int64
    if hasattr(trt, "bfloat16"):
        table[trt.bfloat16] = torch.bfloat16
    return table[dt]


def build_engine(trt, onnx_path: Path, num_points: int, num_samples: int, max_objects: int,
                 fp16: bool, opt_objects: int = 6) -> bytes:
    """Serialised engine for the graph, one profile: objects in [1, max_objects]."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt, "NetworkDefinitionCreationFlag") and int(trt.__version__.split(".")[0]) < 10:
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 30)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    opt = max(1, min(opt_objects, max_objects))
    profile = builder.create_optimization_profile()
    per_object = {"points": (num_points, 3), "class_ids": (), "noise": (num_samples, 9)}
    for name, rest in per_object.items():
        profile.set_shape(name, (1, *rest), (opt, *rest), (max_objects, *rest))
    config.add_optimization_profile(profile)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path}")
    return bytes(engine)


class TensorRTBackend:
    name = "tensorrt"
    warm_start = False  # fixed graphs without a start-pose input: tracking starts cold

    def __init__(self, model, model_path=None, device: str = "cuda",
                 settings: SamplerSettings | None = None, max_objects: int = 32,
                 fp16: bool = False, cache_dir: str | os.PathLike | None = None):
        try:
            import tensorrt as trt
        except ImportError as e:
            raise BackendUnavailable(f"tensorrt is not installed ({e})") from None
        if not str(device).startswith("cuda") or not torch.cuda.is_available():
            raise BackendUnavailable(f"TensorRT needs a CUDA device (device={device}, "
                                     f"torch.cuda.is_available()={torch.cuda.is_available()})")
        self.trt = trt
        self.model = model.cpu().eval()
        self.model_path = model_path
        self.num_points = model.cfg.num_points
        self.device = torch.device(device)
        self.max_objects, self.fp16 = max_objects, fp16
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.whash = weights_hash(self.model)
        self.gpu = torch.cuda.get_device_name(self.device)
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._engines: dict = {}
        self.configure(settings or model.cfg.sampler)  # none given: the model's stored ones

    def engine_path(self, settings: SamplerSettings) -> Path:
        tag = settings.tag()
        key = engine_key(self.whash, repr(settings.graph_key()), self.gpu, self.trt.__version__,
                         self.max_objects, self.fp16)
        gpu = "".join(c if c.isalnum() else "-" for c in self.gpu)
        return self.cache_dir / "trt" / f"{tag}.{gpu}.trt{self.trt.__version__}.{key}.engine"

    def _load(self, settings: SamplerSettings):
        path = self.engine_path(settings)
        if not path.is_file():
            onnx_path = ensure_graph(self.model, settings.graph_key(), self.model_path,
                                     "full", None, self.whash)
            t0 = time.perf_counter()
            blob = build_engine(self.trt, onnx_path, self.num_points, settings.num_samples,
                                self.max_objects, self.fp16)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_bytes(blob)
            os.replace(tmp, path)
            log.info("built TensorRT engine %s in %.1f s", path, time.perf_counter() - t0)
        engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:  # stale or corrupt cache file: rebuild once
            path.unlink(missing_ok=True)
            return self._load(settings)
        return engine, engine.create_execution_context()

    def configure(self, settings: SamplerSettings) -> None:
        settings.validate()
        key = settings.graph_key()
        if key not in self._engines:
            self._engines[key] = self._load(settings)
        self.engine, self.context = self._engines[key]
        self.settings = settings

    def _run(self, feed: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        trt, eng, ctx = self.trt, self.engine, self.context
        names = [eng.get_tensor_name(i) for i in range(eng.num_io_tensors)]
        keep = []
        for n in names:
            if eng.get_tensor_mode(n) == trt.TensorIOMode.INPUT:
                t = feed[n].to(self.device, _torch_dtype(trt, eng.get_tensor_dtype(n)))
                t = t.contiguous()
                ctx.set_input_shape(n, tuple(t.shape))
                ctx.set_tensor_address(n, t.data_ptr())
                keep.append(t)
        outs = {}
        for n in names:
            if eng.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT:
                shape = tuple(ctx.get_tensor_shape(n))
                t = torch.empty(shape, dtype=_torch_dtype(trt, eng.get_tensor_dtype(n)),
                                device=self.device)
                ctx.set_tensor_address(n, t.data_ptr())
                outs[n] = t
        stream = torch.cuda.current_stream(self.device)
        if not ctx.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        stream.synchronize()
        return {n: t.float().cpu().numpy() for n, t in outs.items()}

    def predict(self, points: np.ndarray, class_ids: np.ndarray, warm=None) -> PoseBatch:
        if warm is not None:
            raise ValueError(f"the {self.name} backend has no warm start (torch has)")
        s = self.settings
        if len(points) == 0:
            return empty_batch(s.num_samples)
        noise = make_noise(s, len(points))
        t0 = time.perf_counter()
        out: dict[str, np.ndarray] = {}
        for i in range(0, len(points), self.max_objects):  # more objects than the profile
            sl = slice(i, i + self.max_objects)
            part = self._run({"points": torch.from_numpy(np.asarray(points[sl], np.float32)),
                              "class_ids": torch.from_numpy(np.asarray(class_ids[sl],
                                                                       np.int64)),
                              "noise": torch.from_numpy(noise[sl])})
            for k, v in part.items():
                out.setdefault(k, []).append(v)
        out = {k: np.concatenate(v) for k, v in out.items()}
        timings = {"inference": (time.perf_counter() - t0) * 1e3}
        return to_pose_batch(out, s.num_samples, timings)


def factory(model_path, device: str = "cuda", settings: SamplerSettings | None = None,
            **options) -> TensorRTBackend:
    """load_backend("tensorrt", ...): options max_objects, fp16, cache_dir. Checks the package
    and the device before loading the model, so a fallback costs nothing."""
    try:
        import tensorrt  # noqa: F401
    except ImportError as e:
        raise BackendUnavailable(f"tensorrt is not installed ({e})") from None
    if not str(device).startswith("cuda") or not torch.cuda.is_available():
        raise BackendUnavailable(f"TensorRT needs a CUDA device (device={device})")
    keep = {k: options[k] for k in ("max_objects", "fp16", "cache_dir") if k in options}
    return TensorRTBackend(load_any(model_path), model_path, device, settings, **keep)
