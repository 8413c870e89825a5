"""The pose network: encoder + regression head + score head, its config, save/load, and the
inference pipeline (condition -> regression -> few-step score-scaled sampling).

Frames: input points are camera-frame metres. The network sees them centred on their centroid
c and divided by their RMS radius s ("centroid_rms"); translation offsets and box extents are
predicted in those units (t = c + s * offset, size = s * size_n). The view direction c/|c| and
log s are appended to the condition vector (which side is visible, and absolute scale).
"""

import json
import math
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn as nn

from ..categories import NUM_CLASSES
from .config import (
    FORMAT_VERSION,
    RANDOM,
    ModelFileError,
    PoseNetConfig,
    checked_weights,
    file_sha256,
    read_config,
)
from .encoder import build_encoder
from .heads import POSE_DIM, RegressionHead, ScoreHead
from .rotation import geodesic_angle, matrix_to_rot6d, rot6d_to_matrix
from .sampler import SamplerSettings, make_schedule, sample
from .sde import VESDE


class PoseNet(nn.Module):
    def __init__(self, cfg: PoseNetConfig):
        super().__init__()
        self.cfg = cfg
        self.sde = VESDE(cfg.sigma_min, cfg.sigma_max)
        self.class_emb = nn.Embedding(NUM_CLASSES + 1, cfg.emb_dim)  # index = NOCS id
        self.encoder = build_encoder(cfg.encoder, cfg.feat_dim, cfg.emb_dim)
        cond_dim = cfg.feat_dim + cfg.emb_dim + 4
        self.regression = RegressionHead(cond_dim, cfg.hidden)
        self.score_head = ScoreHead(cond_dim, self.sde, cfg.hidden)

    # --- conditioning ------------------------------------------------------------------
    @staticmethod
    def normalise(points: torch.Tensor):
        centroid = points.mean(dim=1)
        rel = points - centroid[:, None]
        scale = rel.square().sum(-1).mean(-1).sqrt().clamp_min(1e-3)
        return rel / scale[:, None, None], centroid, scale

    def condition(self, points: torch.Tensor, class_ids: torch.Tensor):
        """points (B,P,3) camera metres, class_ids (B,) -> cond (B,D), centroid (B,3), scale (B,)"""
        pn, centroid, scale = self.normalise(points)
        emb = self.class_emb(class_ids)
        view = centroid / centroid.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        feat = self.encoder(pn, emb)
        cond = torch.cat([feat, emb, view, scale.log()[:, None]], dim=-1)
        return cond, centroid, scale

    # --- heads -------------------------------------------------------------------------
    def regress(self, cond: torch.Tensor) -> dict[str, torch.Tensor]:
        rot6d, offset, size = self.regression(cond)
        return {"rot6d": rot6d, "offset": offset, "size": size}

    def denoiser(self, cond: torch.Tensor):
        """D(x, sigma) for x (B, N, 9) (N hypotheses per object) sharing one cond per object."""
        cond_h = self.score_head.project(cond)[:, None]

        def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            t = self.sde.t_of_sigma(sigma).to(x)
            return x + sigma.to(x) ** 2 * self.score_head(x, t, cond_h)

        return denoise

    def forward(self, points: torch.Tensor, class_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        cond, centroid, scale = self.condition(points, class_ids)
        out = self.regress(cond)
        out.update(cond=cond, centroid=centroid, scale=scale)
        return out

    # --- inference -------------------------------------------------------------------
    @torch.no_grad()
    def sample_poses(self, cond: torch.Tensor, noise: torch.Tensor,
                     settings: SamplerSettings | None = None, reg: dict | None = None,
                     callback=None, start_pose: torch.Tensor | None = None,
                     **overrides) -> torch.Tensor:
        """noise (B, N, 9) standard normal -> sampled 9-D poses (B, N, 9), normalised frame.
        settings: default the model's stored ones; overrides (steps=..., None = keep) on top;
        start_pose (B, 9) normalised frame: the start of init=warm (pose_target() of it)."""
        s = (settings or self.cfg.sampler).override(**overrides)
        reg_pose = None
        if s.init == "regression":
            reg = self.regress(cond) if reg is None else reg
            reg_pose = torch.cat([reg["rot6d"], reg["offset"]], -1)
        return sample(self.denoiser(cond), noise, make_schedule(self.sde, s), s, reg_pose,
                      callback, start_pose)


def pose_to_camera(x: torch.Tensor, centroid: torch.Tensor, scale: torch.Tensor):
    """9-D normalised poses (B, N, 9) -> rotation (B,N,3,3), translation (B,N,3) metres."""
    rot = rot6d_to_matrix(x[..., :6])
    trans = centroid[:, None] + scale[:, None, None] * x[..., 6:9]
    return rot, trans


@torch.no_grad()
def camera_samples_in_batches(model: PoseNet, cond, cent, scale, reg, settings: SamplerSettings,
                              seed: int = 0, batch: int = 512):
    """Yields (rotations (b, N, 3, 3), translations (b, N, 3)), camera frame, for `batch`
    objects at a time: settings.num_samples samples each from one seeded noise stream; reg
    (B, 9) the regression poses (rot6d, offset) that init=regression starts from."""
    g = torch.Generator().manual_seed(seed)
    for s in range(0, len(cond), batch):
        sl = slice(s, s + batch)
        noise = torch.randn(len(cond[sl]), settings.num_samples, 9, generator=g)
        x = model.sample_poses(cond[sl], noise, settings,
                               {"rot6d": reg[sl, :6], "offset": reg[sl, 6:]})
        yield pose_to_camera(x, cent[sl], scale[sl])


def pose_target(rot: torch.Tensor, trans: torch.Tensor, centroid, scale) -> torch.Tensor:
    """Ground-truth 9-D pose in the normalised frame."""
    return torch.cat([matrix_to_rot6d(rot), (trans - centroid) / scale[:, None]], dim=-1)


# --- save / load ---------------------------------------------------------------------------


def save_model(model: PoseNet, json_path: str | Path, training: dict | None = None) -> Path:
    """Write <name>.safetensors + <name>.json; the JSON names the weights and their sha256."""
    from safetensors.torch import save_file

    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    weights = json_path.with_suffix(".safetensors")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(weights), metadata={"format_version": str(FORMAT_VERSION)})
    cfg = asdict(model.cfg)
    if training is not None:
        cfg["training"] = training
    cfg["weights"] = weights.name
    cfg["weights_sha256"] = file_sha256(weights)
    json_path.write_text(json.dumps(cfg, indent=2) + "\n")
    return json_path


def load_model(json_path: str | Path, device: str | torch.device = "cpu") -> PoseNet:
    """Load a model from its JSON config (+ the safetensors file it names). A config whose
    "weights" is null/absent gives a freshly initialised model (for testing without training).
    Raises ModelFileError naming the file and the problem."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    json_path = Path(json_path)
    cfg, raw = read_config(json_path)
    try:
        model = PoseNet(cfg)
    except ValueError as e:
        raise ModelFileError(f"model config {json_path}: {e}") from None
    checked = checked_weights(json_path, raw)
    if checked is not None:
        weights = checked[0]
        try:
            state = load_file(str(weights))
        except (SafetensorError, OSError, ValueError) as e:
            raise ModelFileError(f"weights file {weights} cannot be read ({e})") from None
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            msg = str(e).replace("\n", " ")[:600]
            raise ModelFileError(f"weights file {weights} does not fit the network described "
                                 f"by {json_path}: {msg}") from None
    return model.to(device).eval()


def load_any(model_path: str | Path, device: str | torch.device = "cpu") -> PoseNet:
    """A model JSON (load_model), or "random": a network initialised from a fixed seed, the
    same every time (to test the plumbing before a trained model exists)."""
    if str(model_path) == RANDOM:
        torch.manual_seed(0)
        return PoseNet(PoseNetConfig()).to(device).eval()
    return load_model(model_path, device)


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def rot_error_deg(r1: torch.Tensor, r2: torch.Tensor) -> torch.Tensor:
    return geodesic_angle(r1, r2) * 180 / math.pi


__all__ = ["POSE_DIM", "PoseNet", "PoseNetConfig", "SamplerSettings", "ModelFileError",
           "save_model", "load_model", "load_any", "read_config", "pose_to_camera", "pose_target"]
