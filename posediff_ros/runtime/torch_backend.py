"""The torch backend: PoseNet + few-step score-scaled sampler, CPU or CUDA."""

import time

import numpy as np
import torch

from ..model.posenet import PoseNet, pose_to_camera
from ..model.rotation import log_map, mean_rotation, rot6d_to_matrix, y_axis_angle
from .base import PoseBatch, SamplerSettings


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def pose_covariance(rot: torch.Tensor, trans: torch.Tensor, r_mean, t_mean) -> torch.Tensor:
    """(B,N,3,3), (B,N,3) samples -> (B,6,6) covariance over (x,y,z, rot x,y,z), rotations as
    rotation vectors of R_i R_mean^T (camera-frame axes, as geometry_msgs expects)."""
    dr = log_map(rot @ r_mean.transpose(-1, -2)[:, None])
    v = torch.cat([trans - t_mean[:, None], dr], dim=-1)  # (B, N, 6)
    return v.transpose(1, 2) @ v / max(v.shape[1] - 1, 1)


def agreement_score(r_a, t_a, r_b, t_b, scale) -> torch.Tensor:
    """Confidence in [0, 1] from how well the diffusion sample and the regression pose agree
    (up-axis angle; translation relative to the object's size): 1 = identical."""
    ang = y_axis_angle(r_a, r_b) * 180 / np.pi
    dt = (t_a - t_b).norm(dim=-1) / scale
    return torch.exp(-ang / 20.0) * torch.exp(-dt / 0.5)


class TorchBackend:
    name = "torch"

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
    def predict(self, points: np.ndarray, class_ids: np.ndarray) -> PoseBatch:
        s = self.settings
        b = len(points)
        if b == 0:
            z = np.zeros
            return PoseBatch(z((0, 3, 3), np.float32), z((0, 3), np.float32),
                             z((0, 3), np.float32), z((0,), np.float32),
                             None if s.num_samples == 1 else z((0, 6, 6), np.float32), {})
        timings = {}
        t0 = time.perf_counter()
        pts = torch.as_tensor(np.asarray(points, np.float32), device=self.device)
        cls = torch.as_tensor(np.asarray(class_ids, np.int64), device=self.device)
        cond, centroid, scale = self.model.condition(pts, cls)
        reg = self.model.regress(cond)
        _sync(self.device)
        t1 = time.perf_counter()
        timings["encoder"] = (t1 - t0) * 1e3
        gen = torch.Generator(device="cpu")
        if s.seed is not None:
            gen.manual_seed(s.seed)
        else:
            gen.seed()
        noise = torch.randn(b, s.num_samples, 9, generator=gen).to(self.device)
        x = self.model.sample_poses(cond, noise, s, reg)
        rot, trans = pose_to_camera(x, centroid, scale)
        if s.num_samples > 1:
            r_mean, t_mean = mean_rotation(rot, dim=1), trans.mean(dim=1)
            cov = pose_covariance(rot, trans, r_mean, t_mean)
        else:
            r_mean, t_mean, cov = rot[:, 0], trans[:, 0], None
        r_reg = rot6d_to_matrix(reg["rot6d"])
        t_reg = centroid + scale[:, None] * reg["offset"]
        score = agreement_score(r_mean, t_mean, r_reg, t_reg, scale)
        size = (scale[:, None] * reg["size"]).clamp_min(1e-4)
        _sync(self.device)
        timings["sampler"] = (time.perf_counter() - t1) * 1e3
        f = lambda a: a.float().cpu().numpy()  # noqa: E731
        return PoseBatch(f(r_mean), f(t_mean), f(size), f(score),
                         None if cov is None else f(cov), timings)
