"""The whole fixed-step inference pipeline as one torch module, what gets exported to ONNX
(runtime/onnx_export.py) and what the fused torch backend runs (and captures in CUDA graphs).

points (B, P, 3) camera metres, class_ids (B,) int64, noise (B, N, 9) standard normal ->
centring/normalisation -> encoder -> regression head -> the few-step score-scaled sampler
unrolled (SamplerSettings baked in as constants) -> pose, size, agreement score and the
per-sample poses. B (objects per frame) is a dynamic axis; the noise is an input so results are
reproducible and comparable with the torch model bit for bit.
"""

import math

import torch
import torch.nn as nn

from ..model.posenet import PoseNet, pose_to_camera
from ..model.rotation import rot6d_to_matrix, y_axis_angle
from ..model.sampler import SamplerSettings, get_solver, make_schedule, start_point

INPUTS = ("points", "class_ids", "noise")


def agreement_score(r_a, t_a, r_b, t_b, scale) -> torch.Tensor:
    """postprocess.agreement_score traced into the graph (torch ops); the backend parity
    tests compare the two."""
    ang = y_axis_angle(r_a, r_b) * 180 / math.pi
    dt = (t_a - t_b).norm(dim=-1) / scale
    return torch.exp(-ang / 20.0) * torch.exp(-dt / 0.5)


OUTPUTS = ("rotation", "translation", "size", "score", "samples_rotation",
           "samples_translation", "reg_rotation", "reg_translation", "point_scale")
# the split graphs (per-stage timing in the benchmark): encoder -> ENC_OUTPUTS -> sampler
ENC_OUTPUTS = ("cond", "centroid", "scale", "reg_rot6d", "reg_offset", "reg_size")


class EncoderPart(nn.Module):
    """points, class_ids -> conditioning + regression (the encoder stage)."""

    def __init__(self, model: PoseNet):
        super().__init__()
        self.model = model

    def forward(self, points: torch.Tensor, class_ids: torch.Tensor):
        cond, centroid, scale = self.model.condition(points, class_ids)
        reg = self.model.regress(cond)
        return cond, centroid, scale, reg["rot6d"], reg["offset"], reg["size"]


class SamplerPart(nn.Module):
    """Encoder outputs + noise -> poses (the sampler stage, the loop unrolled).

    Same maths as PoseNet.sample_poses (the backend parity tests hold it to that), but the
    noise levels and w_t are buffers made once here: the graph then has no host-to-device
    copies, which a CUDA graph capture forbids, and the ONNX graph stores them as constants."""

    def __init__(self, model: PoseNet, settings: SamplerSettings):
        super().__init__()
        self.model, self.settings = model, settings
        schedule = make_schedule(model.sde, settings)
        self.register_buffer("sigmas", schedule.sigmas, persistent=False)
        self.register_buffer("w", schedule.w, persistent=False)
        self.solver = get_solver(settings.solver)

    def forward(self, cond, centroid, scale, reg_rot6d, reg_offset, reg_size, noise):
        reg_pose = torch.cat([reg_rot6d, reg_offset], -1)
        x = start_point(self.settings.init, noise, self.sigmas[0], reg_pose)
        x = self.solver(self.model.denoiser(cond), x, self.sigmas, self.w)
        rot, trans = pose_to_camera(x, centroid, scale)
        r_reg = rot6d_to_matrix(reg_rot6d)
        t_reg = centroid + scale[:, None] * reg_offset
        score = agreement_score(rot[:, 0], trans[:, 0], r_reg, t_reg, scale)
        size = (scale[:, None] * reg_size).clamp_min(1e-4)
        return rot[:, 0], trans[:, 0], size, score, rot, trans, r_reg, t_reg, scale


class InferenceGraph(nn.Module):
    """The whole pipeline as one module: (points, class_ids, noise) -> OUTPUTS."""

    def __init__(self, model: PoseNet, settings: SamplerSettings):
        super().__init__()
        self.encoder = EncoderPart(model)
        self.sampler = SamplerPart(model, settings)

    def forward(self, points: torch.Tensor, class_ids: torch.Tensor, noise: torch.Tensor):
        return self.sampler(*self.encoder(points, class_ids), noise)


def example_inputs(num_points: int, num_samples: int, batch: int = 2, seed: int = 0):
    """Inputs of the graph's shapes (tracing, parity checks): B clouds near 0.8 m."""
    g = torch.Generator().manual_seed(seed)
    points = torch.randn(batch, num_points, 3, generator=g) * 0.05 + torch.tensor([0, 0, 0.8])
    class_ids = torch.arange(batch, dtype=torch.int64) % 6 + 1
    noise = torch.randn(batch, num_samples, 9, generator=g)
    return points, class_ids, noise
