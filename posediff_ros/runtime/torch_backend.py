"""The torch backend: PoseNet + few-step score-scaled sampler, CPU or CUDA."""

import time

import numpy as np
import torch

from ..model.posenet import PoseNet, load_any, pose_target, pose_to_camera
from ..model.rotation import rot6d_to_matrix
from .base import PoseBatch, SamplerSettings, WarmStart
from .postprocess import empty_batch, make_noise, summarise


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class TorchBackend:
    name = "torch"
    warm_start = True  # predict(..., warm=WarmStart) starts from given poses

    def __init__(self, model: PoseNet, device: str | torch.device = "cpu",
                 settings: SamplerSettings | None = None):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.num_points = model.cfg.num_points
        self.configure(settings or model.cfg.sampler)  # none given: the model's stored ones

    def configure(self, settings: SamplerSettings) -> None:
        settings.validate()
        self.settings = settings

    @torch.no_grad()
    def predict(self, points: np.ndarray, class_ids: np.ndarray,
                warm: WarmStart | None = None) -> PoseBatch:
        s = self.settings if warm is None else warm.settings(self.settings)
        if len(points) == 0:
            return empty_batch(s.num_samples)
        timings = {}
        t0 = time.perf_counter()
        pts = torch.as_tensor(np.asarray(points, np.float32), device=self.device)
        cls = torch.as_tensor(np.asarray(class_ids, np.int64), device=self.device)
        cond, centroid, scale = self.model.condition(pts, cls)
        reg = self.model.regress(cond)
        _sync(self.device)
        t1 = time.perf_counter()
        timings["encoder"] = (t1 - t0) * 1e3
        noise = torch.from_numpy(make_noise(s, len(points))).to(self.device)
        start = None
        if warm is not None:  # the given camera-frame poses in the network's normalised frame
            start = pose_target(*(torch.as_tensor(np.asarray(a, np.float32), device=self.device)
                                  for a in (warm.rotation, warm.translation)), centroid, scale)
        x = self.model.sample_poses(cond, noise, s, reg, start_pose=start)
        rot, trans = pose_to_camera(x, centroid, scale)
        r_reg = rot6d_to_matrix(reg["rot6d"])
        t_reg = centroid + scale[:, None] * reg["offset"]
        size = (scale[:, None] * reg["size"]).clamp_min(1e-4)
        poses = summarise(*(a.float().cpu().numpy() for a in (rot, trans, r_reg, t_reg, scale,
                                                               size)), timings)
        timings["sampler"] = (time.perf_counter() - t1) * 1e3
        return poses


def factory(model_path, device: str = "cpu", settings: SamplerSettings | None = None
            ) -> TorchBackend:
    """load_backend("torch", ...): a model JSON or "random"."""
    return TorchBackend(load_any(model_path, device), device, settings)
