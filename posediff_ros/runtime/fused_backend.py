"""The fused torch backend: graph.InferenceGraph (the very module the ONNX graph is traced
from) run in torch, with two CUDA options for fixed shapes:

- cuda_graphs: the object count is padded up to a bucket (1, 2, 4, 8, 16, 32, 64) and each bucket
  is captured once as a CUDA graph, so a frame is one graph replay instead of ~100 kernel
  launches from Python;
- amp: "fp16" or "bf16" autocast (the poses come back as float32).

On the CPU neither applies (amp="bf16" still works there); it then equals the torch backend.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ..model.posenet import load_any
from .base import PoseBatch, SamplerSettings
from .graph import OUTPUTS, InferenceGraph
from .postprocess import empty_batch, make_noise, to_pose_batch

BUCKETS = (1, 2, 4, 8, 16, 32, 64)
AMP = {"fp16": torch.float16, "bf16": torch.bfloat16, None: None, "none": None}


def bucket_of(n: int, buckets=BUCKETS) -> int | None:
    return next((b for b in buckets if b >= n), None)


class FusedTorchBackend:
    name = "torch-fused"
    warm_start = False  # fixed graphs without a start-pose input: tracking starts cold

    def __init__(self, model, device: str = "cpu", settings: SamplerSettings | None = None,
                 cuda_graphs: bool = False, amp: str | None = None, buckets=BUCKETS):
        if amp not in AMP:
            raise ValueError(f"unknown amp {amp!r}; known: fp16, bf16, none")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.num_points = model.cfg.num_points
        self.amp = AMP[amp]
        self.cuda_graphs = bool(cuda_graphs) and self.device.type == "cuda"
        self.buckets = tuple(buckets)
        self.configure(settings or model.cfg.sampler)  # none given: the model's stored ones

    def configure(self, settings: SamplerSettings) -> None:
        settings.validate()
        self.settings = settings
        self.graph = InferenceGraph(self.model, settings.graph_key()).to(self.device).eval()
        self._captured: dict[int, tuple] = {}  # bucket -> (cuda graph, inputs, outputs)

    def _forward(self, points, class_ids, noise):
        with torch.no_grad(), torch.autocast(self.device.type, dtype=self.amp or torch.float32,
                                             enabled=self.amp is not None):
            return self.graph(points, class_ids, noise)

    def _capture(self, b: int):
        p = torch.zeros(b, self.num_points, 3, device=self.device)
        p[..., 2] = 1.0  # a valid (non-degenerate) cloud for the warm-up runs
        c = torch.ones(b, dtype=torch.int64, device=self.device)
        z = torch.zeros(b, self.settings.num_samples, 9, device=self.device)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(2):  # warm-up outside the graph (allocator, cuBLAS handles)
                self._forward(p, c, z)
        torch.cuda.current_stream(self.device).wait_stream(side)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            out = self._forward(p, c, z)
        return g, (p, c, z), out

    def _run(self, points, class_ids, noise):
        b = len(points)
        bucket = bucket_of(b, self.buckets) if self.cuda_graphs else None
        if bucket is None:
            return self._forward(points, class_ids, noise)
        if bucket not in self._captured:
            self._captured[bucket] = self._capture(bucket)
        g, (p, c, z), out = self._captured[bucket]
        p[:b].copy_(points)
        c[:b].copy_(class_ids)
        z[:b].copy_(noise)
        if bucket > b:  # padding rows: copies of the first object (results dropped)
            p[b:].copy_(points[:1].expand(bucket - b, -1, -1))
            c[b:].copy_(class_ids[:1].expand(bucket - b))
        g.replay()
        return tuple(o[:b] for o in out)

    def predict(self, points: np.ndarray, class_ids: np.ndarray, warm=None) -> PoseBatch:
        if warm is not None:
            raise ValueError(f"the {self.name} backend has no warm start (torch has)")
        s = self.settings
        if len(points) == 0:
            return empty_batch(s.num_samples)
        t0 = time.perf_counter()
        dev = self.device
        pts = torch.as_tensor(np.asarray(points, np.float32), device=dev)
        cls = torch.as_tensor(np.asarray(class_ids, np.int64), device=dev)
        noise = torch.from_numpy(make_noise(s, len(points))).to(dev)
        outs = self._run(pts, cls, noise)
        out = {k: v.float().cpu().numpy() for k, v in zip(OUTPUTS, outs, strict=True)}
        timings = {"inference": (time.perf_counter() - t0) * 1e3}
        return to_pose_batch(out, s.num_samples, timings)


def factory(model_path, device: str = "cpu", settings: SamplerSettings | None = None,
            **options) -> FusedTorchBackend:
    """load_backend("torch-fused", ...): options cuda_graphs, amp, buckets."""
    keep = {k: options[k] for k in ("cuda_graphs", "amp", "buckets") if k in options}
    return FusedTorchBackend(load_any(model_path), device, settings, **keep)
