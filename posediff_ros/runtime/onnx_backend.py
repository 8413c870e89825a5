"""The onnxruntime backend: the exported whole-pipeline graph (onnx_export.py) on the CPU, CUDA or
TensorRT execution provider, whichever the installed onnxruntime offers.

A matching graph shipped beside the model (onnx/, written by posediff-export) is used as it
is; otherwise the graph is exported on the fly into the cache dir ($POSEDIFF_CACHE, default
~/.cache/posediff_ros/onnx), named by weight hash + sampler settings. configure() with new
settings loads (or exports once) the graph for them, so steps/solver/w/num_samples/init all
stay changeable at run time; the seed never needs a new graph (the noise is an input).

Torch is imported only to export a graph that is not there yet (graph_cache.ModelSource): a
node whose graphs are cached or shipped runs on onnxruntime and numpy alone.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np

from .base import PoseBatch, SamplerSettings
from .fallback import BackendUnavailable
from .graph_cache import ModelSource, default_cache_dir, find_graph, graph_dir
from .postprocess import empty_batch, make_noise, to_pose_batch

log = logging.getLogger("posediff_ros.runtime")


def providers_for(device: str, provider: str | None, trt_cache: Path | None) -> list:
    """onnxruntime providers for a device ("cpu", "cuda[:i]") or an explicit provider
    ("cpu" | "cuda" | "tensorrt"), keeping only those the installed build offers."""
    import onnxruntime as ort

    have = ort.get_available_providers()
    want = provider or ("cuda" if str(device).startswith("cuda") else "cpu")
    idx = int(str(device).split(":")[1]) if ":" in str(device) else 0
    chosen: list = []
    if want == "tensorrt":
        if "TensorrtExecutionProvider" in have:
            opts = {"device_id": idx, "trt_fp16_enable": False, "trt_engine_cache_enable": True}
            if trt_cache is not None:
                opts["trt_engine_cache_path"] = str(trt_cache)
            chosen.append(("TensorrtExecutionProvider", opts))
        want = "cuda"
    if want == "cuda" and "CUDAExecutionProvider" in have:
        chosen.append(("CUDAExecutionProvider", {"device_id": idx}))
    if len(chosen) == 0 and (provider or "cpu") != "cpu":
        log.warning("onnxruntime has no %s execution provider (available: %s); using CPU",
                    provider or device, ", ".join(have))
    chosen.append("CPUExecutionProvider")
    return chosen


def quantize_encoder(graph: Path, directory: Path) -> Path:
    """The graph with the point encoder's matrix products in int8 (onnxruntime's dynamic
    quantization: int8 weights, activations quantized per call), written into `directory`
    (the cache: a graph shipped beside the model may sit in a read-only install) and redone
    when the graph is newer. Only the encoder (the per-point MLP: over 90 % of the matmul
    FLOPs per object) is quantized; the regression and score heads stay float32, so the
    sampler's small steps keep full precision. Accuracy and speed: docs/BENCHMARKS.md."""
    out = directory / f"{graph.stem}.int8r7pc-encoder.onnx"
    if not out.exists() or out.stat().st_mtime < graph.stat().st_mtime:
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic

        nodes = [n.name for n in onnx.load(str(graph)).graph.node
                 if n.op_type in ("MatMul", "Gemm") and n.name.startswith("/encoder/encoder/")]
        directory.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f"{out.stem}.{os.getpid()}.tmp.onnx")  # another process may race
        # 7-bit weights (reduce_range): x86 CPUs without VNNI add int8 products in 16 bits,
        # which full-range weights can saturate, so the graph is right on every x86; a scale
        # per output channel wins back the bit (median change of the rotation against float32
        # on 300 held-out objects: 0.29 deg, as 8-bit per tensor 0.33, 7-bit per tensor 0.54)
        quantize_dynamic(graph, tmp, weight_type=QuantType.QInt8, nodes_to_quantize=nodes,
                         reduce_range=True, per_channel=True)
        os.replace(tmp, out)
    return out


class OnnxBackend:
    name = "onnxruntime"
    warm_start = False  # fixed graphs without a start-pose input: tracking starts cold

    def __init__(self, source: ModelSource, device: str = "cpu",
                 settings: SamplerSettings | None = None, provider: str | None = None,
                 split: bool = False, threads: int | None = None,
                 cache_dir: str | os.PathLike | None = None, quantize: str | None = None):
        """source: the model (ModelSource.of_file(path), or .of_network(posenet) for one in
        memory); its network is loaded only to export graphs for new settings. split: run
        the encoder and sampler stages as two graphs and report each stage's time (for the
        benchmark; one fused graph otherwise). threads: onnxruntime intra-op threads.
        quantize: "int8" runs the encoder in int8 (`quantize_encoder`)."""
        if quantize not in (None, "int8"):
            raise ValueError(f"quantize {quantize!r}: only 'int8' (or None)")
        self.quantize = quantize
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise BackendUnavailable(f"onnxruntime is not installed ({e})") from None
        self._ort = ort
        self.source = source
        self.num_points = source.num_points
        self.device, self.split, self.threads = str(device), split, threads
        self.cache_dir = Path(cache_dir) if cache_dir else None
        trt_cache = (self.cache_dir or default_cache_dir()) / "ort-trt"
        self.providers = providers_for(self.device, provider, trt_cache)
        if self.quantize and self.providers[0] != "CPUExecutionProvider":
            log.warning("onnxruntime-int8 quantizes for the CPU; on %s the float32 graph runs",
                        self.providers[0][0])
            self.quantize = None
        self._sessions: dict[tuple, list] = {}
        self.configure(settings or source.sampler)  # none given: the model's stored ones

    @property
    def provider(self) -> str:
        """The execution provider actually running the graph."""
        return self._current[0].get_providers()[0]

    def _session(self, path: Path):
        so = self._ort.SessionOptions()
        so.graph_optimization_level = self._ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.threads:
            so.intra_op_num_threads = self.threads
        if (self.threads or 0) > 1:  # idle pool threads sleep instead of spinning on a core
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")  # DDS needs
        return self._ort.InferenceSession(str(path), so, providers=self.providers)

    def graph_paths(self, settings: SamplerSettings) -> list[Path]:
        gs = settings.graph_key()
        parts = ("encoder", "sampler") if self.split else ("full",)
        paths = [self._graph(gs, part) for part in parts]
        if not self.quantize:
            return paths
        return [quantize_encoder(p, self.cache_dir or graph_dir()) for p in paths]

    def _graph(self, settings: SamplerSettings, part: str) -> Path:
        """The graph of these settings: found in the cache or beside the model (no torch),
        else exported now (torch, the network loaded once)."""
        src = self.source
        path, found = find_graph(src.stem, src.path, src.weights_sha256, settings, part,
                                 self.cache_dir)
        if not found:
            from .onnx_export import export_graph

            export_graph(src.network(), settings, path, part, src.path)
        return path

    def configure(self, settings: SamplerSettings) -> None:
        settings.validate()
        key = settings.graph_key()
        if key not in self._sessions:  # export (once per weights + settings) and load
            self._sessions[key] = [self._session(p) for p in self.graph_paths(settings)]
        self._current = self._sessions[key]
        self.settings = settings

    def predict(self, points: np.ndarray, class_ids: np.ndarray, warm=None) -> PoseBatch:
        if warm is not None:
            raise ValueError(f"the {self.name} backend has no warm start (torch has)")
        s = self.settings
        if len(points) == 0:
            return empty_batch(s.num_samples)
        feed = {"points": np.ascontiguousarray(points, np.float32),
                "class_ids": np.ascontiguousarray(class_ids, np.int64)}
        noise = make_noise(s, len(points))
        t0 = time.perf_counter()
        if self.split:
            enc_sess, smp_sess = self._current
            enc = enc_sess.run(None, feed)
            t1 = time.perf_counter()
            names = [i.name for i in smp_sess.get_inputs()]
            outs = smp_sess.run(None, dict(zip(names, [*enc, noise], strict=True)))
            timings = {"encoder": (t1 - t0) * 1e3, "sampler": (time.perf_counter() - t1) * 1e3}
            sess = smp_sess
        else:
            sess = self._current[0]
            outs = sess.run(None, {**feed, "noise": noise})
            timings = {"inference": (time.perf_counter() - t0) * 1e3}
        out = {o.name: v for o, v in zip(sess.get_outputs(), outs, strict=True)}
        return to_pose_batch(out, s.num_samples, timings)


def factory(model_path, device: str = "cpu", settings: SamplerSettings | None = None,
            **options) -> OnnxBackend:
    """load_backend("onnxruntime", ...): options provider, split, threads, cache_dir,
    quantize."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError as e:
        raise BackendUnavailable(f"onnxruntime is not installed ({e})") from None
    keep = {k: options[k] for k in ("provider", "split", "threads", "cache_dir", "quantize")
            if k in options}
    return OnnxBackend(ModelSource.of_file(model_path), device, settings, **keep)


def int8_factory(model_path, device: str = "cpu", settings: SamplerSettings | None = None,
                 **options) -> OnnxBackend:
    """load_backend("onnxruntime-int8", ...): onnxruntime with the encoder in int8."""
    backend = factory(model_path, device, settings, **options, quantize="int8")
    backend.name = "onnxruntime-int8"
    return backend
