"""Heads on the conditioning vector c = [encoder feature, category embedding, view cues].

RegressionHead: direct pose (6-D rotation, translation offset from the centroid, box extents),
all in the normalised frame (units of the per-object point scale).
ScoreHead: GenPose-style score of p(pose | c) over the 9-D pose (rot 6-D + translation):
pose MLP 9-256-256, Gaussian Fourier time embedding, fused with c, separate rotation and
translation heads with zero-initialised last layers, output divided by sigma(t).
"""

import math

import torch
import torch.nn as nn

from .encoder import mlp
from .sde import VESDE

POSE_DIM = 9  # rot 6-D + translation 3-D


class RegressionHead(nn.Module):
    def __init__(self, cond_dim: int, hidden: int = 256):
        super().__init__()
        self.net = mlp([cond_dim, 2 * hidden, hidden, 12], last_act=False)

    def forward(self, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.net(cond)
        return out[:, :6], out[:, 6:9], out[:, 9:12]  # rot6d, offset, size (normalised)


class GaussianFourier(nn.Module):
    """Fixed random Fourier features of log-sigma-like time t in [0, 1]."""

    def __init__(self, dim: int = 128, scale: float = 16.0):
        super().__init__()
        self.register_buffer("w", torch.randn(dim // 2) * scale)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        p = t[..., None] * self.w * 2 * math.pi
        return torch.cat([torch.sin(p), torch.cos(p)], dim=-1)


class ScoreHead(nn.Module):
    def __init__(self, cond_dim: int, sde: VESDE, hidden: int = 256, t_dim: int = 128):
        super().__init__()
        self.sde = sde
        self.t_embed = GaussianFourier(t_dim)
        self.pose_mlp = mlp([POSE_DIM, 256, 256])
        # concat([c, pose, t]) @ W == c @ Wc + pose @ Wp + t @ Wt: the c part is computed once
        # per object and re-used by every noise draw / hypothesis / step.
        self.cond_proj = nn.Linear(cond_dim, hidden)
        self.pose_proj = nn.Linear(256, hidden, bias=False)
        self.t_proj = nn.Linear(t_dim, hidden, bias=False)
        self.rot_head = mlp([hidden, hidden, 6], last_act=False)
        self.trans_head = mlp([hidden, hidden, 3], last_act=False)
        for head in (self.rot_head, self.trans_head):
            nn.init.zeros_(head[-1].weight)
            nn.init.zeros_(head[-1].bias)

    def project(self, cond: torch.Tensor) -> torch.Tensor:
        return self.cond_proj(cond)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond_h: torch.Tensor) -> torch.Tensor:
        """x (..., 9), t (...) or scalar, cond_h (..., hidden) from project() -> score (..., 9)."""
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device).expand(x.shape[:-1])
        h = cond_h + self.pose_proj(self.pose_mlp(x)) + self.t_proj(self.t_embed(t))
        h = torch.relu(h)
        out = torch.cat([self.rot_head(h), self.trans_head(h)], dim=-1)
        return out / self.sde.sigma(t).to(x.dtype).unsqueeze(-1)
