"""The GenPose-style baseline that RESULTS.md (posediff-results) and BENCHMARKS.md
(posediff-bench) compare the few-step sampler against. One definition, documented here:

- network: the same encoder and score head as ours (it is not GenPose's own model, and our
  score head was trained for few-step scaled sampling);
- hypotheses: 50 per object, each from its own start noise at t = 0.55 (GenPose's start,
  sigma ~1.1), around the prior mean 0 (init = noise);
- sampler: the unscaled PF-ODE (w = 1), 50 Heun steps (100 score evaluations) down to
  t = 1e-5, the same noise levels (make_schedule) as ours;
- selection, in place of GenPose's energy network (we train none): keep the 60 % of the
  hypotheses nearest their mean pose (Frobenius distance of the rotation matrices + distance
  of the translations in the object's normalised frame, i.e. relative to its point spread),
  then average those (chordal mean rotation, mean translation).
"""

import math
from dataclasses import dataclass

import numpy as np
import torch

from .posenet import PoseNet, pose_to_camera
from .rotation import mean_rotation
from .sampler import SamplerSettings


def select_and_average(rot: torch.Tensor, trans: torch.Tensor, keep: float = 0.6):
    """Keep the `keep` fraction of hypotheses closest to the hypotheses' mean pose (chordal
    rotation distance + translation distance), then average them (chordal rotation mean,
    translation mean). rot (B, N, 3, 3), trans (B, N, 3) -> (B, 3, 3), (B, 3)."""
    r_mean = mean_rotation(rot, dim=1)
    t_mean = trans.mean(dim=1)
    dist = (rot - r_mean[:, None]).flatten(2).norm(dim=-1) + (trans - t_mean[:, None]).norm(dim=-1)
    n_keep = max(1, math.ceil(keep * rot.shape[1]))
    idx = dist.topk(n_keep, dim=1, largest=False).indices
    b = torch.arange(rot.shape[0], device=rot.device)[:, None]
    return mean_rotation(rot[b, idx], dim=1), trans[b, idx].mean(dim=1)


@dataclass(frozen=True)
class GenPoseBaseline:
    hypotheses: int = 50
    steps: int = 50
    solver: str = "heun"
    keep: float = 0.6  # fraction of the hypotheses averaged

    def describe(self) -> str:
        """The method's name in the reports' tables."""
        return (f"GenPose-style: {self.hypotheses} hypotheses x {self.steps} "
                f"{self.solver.capitalize()} steps, keep {self.keep:.0%} near the mean, average")

    def settings(self, stored: SamplerSettings) -> SamplerSettings:
        """The model's stored sampler settings (noise levels) run the baseline's way."""
        return stored.override(steps=self.steps, solver=self.solver, w_schedule="none",
                               w_max=1.0, init="noise", num_samples=self.hypotheses)

    @torch.no_grad()
    def sample(self, model: PoseNet, cond: torch.Tensor, centroid: torch.Tensor,
               scale: torch.Tensor, generator: torch.Generator):
        """One pose per object: rotation (B, 3, 3), translation (B, 3) metres, camera frame.
        The start noise comes from `generator` (CPU)."""
        noise = torch.randn(len(cond), self.hypotheses, 9, generator=generator).to(cond.device)
        x = model.sample_poses(cond, noise, self.settings(model.cfg.sampler))
        rot, trans = pose_to_camera(x, centroid, scale)
        r, t = select_and_average(rot, (trans - centroid[:, None]) / scale[:, None, None],
                                  self.keep)
        return r, centroid + scale[:, None] * t

    @torch.no_grad()
    def predict(self, model: PoseNet, points: np.ndarray, class_ids: np.ndarray,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """points (B, P, 3), class ids (B,) -> rotation, translation, size (the regression
        head's, as ours), float32 numpy, with the start noise from `seed`."""
        device = next(model.parameters()).device
        cond, centroid, scale = model.condition(torch.as_tensor(points, device=device),
                                                torch.as_tensor(class_ids, device=device))
        size = (scale[:, None] * model.regress(cond)["size"]).clamp_min(1e-4)
        r, t = self.sample(model, cond, centroid, scale, torch.Generator().manual_seed(seed))
        return tuple(a.float().cpu().numpy() for a in (r, t, size))
