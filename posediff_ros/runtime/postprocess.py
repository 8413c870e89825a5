"""What every backend does around the network the same way: the start noise it draws, and the
samples -> pose, covariance and score it hands out (PoseBatch). One copy, so the same seed
gives the same poses from every backend."""

import numpy as np
import torch

from ..model.rotation import log_map, mean_rotation, y_axis_angle
from ..model.sampler import SamplerSettings
from .base import PoseBatch


def make_noise(settings: SamplerSettings, batch: int) -> np.ndarray:
    """The sampler's start noise (batch, num_samples, 9) from the settings' seed (None: new
    noise every call), drawn on the CPU so that every device gets the same numbers."""
    gen = torch.Generator(device="cpu")
    if settings.seed is not None:
        gen.manual_seed(settings.seed)
    else:
        gen.seed()
    return torch.randn(batch, settings.num_samples, 9, generator=gen).numpy()


def empty_batch(num_samples: int) -> PoseBatch:
    """The answer for a frame without objects."""
    z = np.zeros
    return PoseBatch(z((0, 3, 3), np.float32), z((0, 3), np.float32), z((0, 3), np.float32),
                     z((0,), np.float32), None if num_samples == 1 else z((0, 6, 6), np.float32))


def mean_pose(rot: torch.Tensor, trans: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Chordal mean rotation and mean translation of (B,N,3,3), (B,N,3) samples, in float64
    (the SVD of the mean of widely spread samples is ill-conditioned)."""
    return mean_rotation(rot.double(), dim=1), trans.double().mean(dim=1)


def pose_covariance(rot: torch.Tensor, trans: torch.Tensor, r_mean, t_mean) -> torch.Tensor:
    """(B,N,3,3), (B,N,3) samples -> (B,6,6) covariance over (x,y,z, rot x,y,z) (REP 103 /
    geometry_msgs order), rotations as rotation vectors of R_i R_mean^T (camera-frame axes),
    unbiased (N - 1). In float64: samples may spread to near pi, and the sums should add no
    rounding to what the float32 samples carry."""
    rot, trans, r_mean, t_mean = (a.double() for a in (rot, trans, r_mean, t_mean))
    dr = log_map(rot @ r_mean.transpose(-1, -2)[:, None])
    v = torch.cat([trans - t_mean[:, None], dr], dim=-1)  # (B, N, 6)
    return v.transpose(1, 2) @ v / max(v.shape[1] - 1, 1)


def agreement_score(r_a, t_a, r_b, t_b, scale) -> torch.Tensor:
    """Confidence in [0, 1] from how well the diffusion sample and the regression pose agree
    (up-axis angle; translation relative to the object's size): 1 = identical."""
    ang = y_axis_angle(r_a, r_b) * 180 / np.pi
    dt = (t_a - t_b).norm(dim=-1) / scale
    return torch.exp(-ang / 20.0) * torch.exp(-dt / 0.5)


def summarise(rot: torch.Tensor, trans: torch.Tensor, r_reg: torch.Tensor, t_reg: torch.Tensor,
              scale: torch.Tensor, size: torch.Tensor, timings: dict[str, float]) -> PoseBatch:
    """Samples (B, N, 3, 3), (B, N, 3) -> PoseBatch: the sample itself (N = 1) or the chordal
    mean pose, the covariance and every sample (for hypotheses.py); the score compares that
    pose with the regression pose (r_reg, t_reg)."""
    if rot.shape[1] > 1:
        r_mean, t_mean = mean_pose(rot, trans)
        cov = pose_covariance(rot, trans, r_mean, t_mean)
    else:
        r_mean, t_mean, cov = rot[:, 0], trans[:, 0], None
    score = agreement_score(r_mean, t_mean, r_reg, t_reg, scale)
    f = lambda a: a.float().cpu().numpy()  # noqa: E731
    many = cov is not None
    return PoseBatch(f(r_mean), f(t_mean), f(size), f(score), f(cov) if many else None,
                     timings, samples_rotation=f(rot) if many else None,
                     samples_translation=f(trans) if many else None)


def to_pose_batch(out: dict[str, np.ndarray], num_samples: int,
                  timings: dict[str, float]) -> PoseBatch:
    """Graph outputs (graph.OUTPUTS) -> PoseBatch. One sample: the graph's pose and score as
    they are. Several: summarise() in torch (SVD has no ONNX op), as the torch backend does."""
    if num_samples == 1:
        return PoseBatch(out["rotation"], out["translation"], out["size"], out["score"], None,
                         timings)
    t = lambda name: torch.from_numpy(np.asarray(out[name], np.float32))  # noqa: E731
    return summarise(t("samples_rotation"), t("samples_translation"), t("reg_rotation"),
                     t("reg_translation"), t("point_scale"), t("size"), timings)
