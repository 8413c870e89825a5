"""posediff-train: train the pose network on a training cache (one file, read top to bottom).

Modes (the paper's two phases and the GenPose-style baseline):
  joint       phase 1 (steps < phase1_steps): regression loss only (encoder + regression head);
              phase 2: regression loss + denoising score matching (several noise draws per
              encoder pass), everything trained together.
  scratch     denoising score matching only, end to end (GenPose-style); the regression head
              is not trained.
  regression  phase 1 for the whole run.

usage:
  posediff-train [--config config/train_default.yaml] [--key value ...] [--replace-bundled-model]
  torchrun --nproc_per_node N -m posediff_ros.cli.train ...   (DDP; rank 0 logs and checkpoints)

Everything is seeded. A run writes only into its out_dir: ckpt.safetensors + ckpt.json (model,
EMA and optimizer tensors, step, RNG state; no pickle), log.jsonl (one JSON line per log/eval)
and, at the end, model.json + model.safetensors (the EMA weights; the JSON's "training" is the
model card: data, steps, validation metrics). Re-running the same command resumes from the
last checkpoint. --replace-bundled-model then installs that model as the bundled one
(models/posediff_default.json, what the node loads by default); nothing else touches it.

The run reads top to bottom in train(): init_or_resume, then per step train_step, update_ema,
log, evaluate_and_log (every eval_every steps) and checkpoint; at the end write_model.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
import yaml

from ..categories import BY_NAME
from ..data.cache import FIELDS, TrainingCache, load_cache, shard_path
from ..metrics import accuracy_table, object_errors
from ..model.posenet import (
    PoseNet,
    PoseNetConfig,
    load_model,
    pose_target,
    pose_to_camera,
    read_config,
    save_model,
)
from ..model.rotation import canonical_symmetric
from ..model.sampler import SamplerSettings
from ..runtime import DEFAULT_MODEL


@dataclass
class TrainConfig:
    # data
    train_cache: str = "data/cache_train"  # several: "a,b" (max_train applies to each)
    val_cache: str = "data/cache_val"
    val_shards: str = ""  # "a:b": validate on shards a..b-1 of val_cache (held-out seeds)
    max_train: int = 0  # use only the first N training objects (0 = all)
    num_points: int = 256  # 256 points + 512-d PointNet: ~2-3x the steps/minute of 512 + 1024
    oversample_asymmetric: float = 2.0  # draw camera, laptop, mug this many times as often
    class_weights: str = ""  # per-class draw weights overriding the above: "camera=4,mug=2"
    # model
    encoder: str = "pointnet"  # pointnet | pointnet2
    feat_dim: int = 512
    emb_dim: int = 64
    hidden: int = 256
    # phases and optimisation
    mode: str = "joint"  # joint | scratch | regression
    phase1_steps: int = 2000
    max_steps: int = 10000  # length of the LR schedule
    stop_step: int = 0  # stop (and checkpoint) at this step although the schedule goes on
    max_minutes: float = 0.0  # stop (and checkpoint) after this wall time; 0 = no limit
    batch_size: int = 32
    lr: float = 1e-3
    min_lr: float = 2e-5
    warmup_steps: int = 200
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    noise_draws: int = 4  # DSM draws per encoder pass
    dsm_weight: float = 1.0
    t_max_train: float = 0.6  # DSM times ~ U(eps, t_max); sampling starts at t <= 0.55
    # augmentation (sensor and segmentation errors; the cache already has mask-edge errors)
    aug_roll_deg: float = 10.0  # camera roll about the optical axis (pose rotates with it)
    aug_jitter_m: float = 0.001
    aug_depth_noise_m: float = 0.002  # noise along each point's viewing ray
    aug_dropout: float = 0.2  # up to this fraction of random points removed
    aug_occlusion_p: float = 0.3  # probability of cutting a slab off one side
    aug_occlusion_max: float = 0.35  # at most this fraction cut
    # evaluation
    eval_every: int = 1000
    eval_objects: int = 600
    eval_steps: int = 4  # the model's sampler during training (Euler, from noise)
    eval_w_schedule: str = "exponential"
    eval_w_max: float = 4.0
    # run
    out_dir: str = "runs/default"  # everything the run writes goes here
    init: str = ""  # start from this model's weights (model JSON; fine-tuning); not on resume
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    threads: int = 0  # torch CPU threads (0 = torch's default)
    log_every: int = 50
    ckpt_minutes: float = 3.0
    progress: bool = True


# --- config: dataclass defaults <- YAML file <- CLI -----------------------------------------


def _parse_value(text: str, like):
    if isinstance(like, bool):
        if text.lower() not in ("1", "0", "true", "false", "yes", "no"):
            raise ValueError(f"expected a boolean, got {text!r}")
        return text.lower() in ("1", "true", "yes")
    return type(like)(text)


def parse_args(argv: list[str] | None = None) -> tuple[TrainConfig, bool]:
    """(config, replace the bundled model at the end)."""
    parser = argparse.ArgumentParser(prog="posediff-train", description=__doc__.split("\n")[0])
    parser.add_argument("--config", help="YAML file of TrainConfig fields")
    parser.add_argument("--replace-bundled-model", action="store_true",
                        help=f"at the end, install the run's model as {DEFAULT_MODEL} (what "
                             "the node loads by default)")
    defaults = TrainConfig()
    for f in fields(TrainConfig):
        parser.add_argument(f"--{f.name}", type=str, default=None,
                            help=f"(default {getattr(defaults, f.name)!r})")
    args = parser.parse_args(argv)
    values = asdict(defaults)
    if args.config:
        with open(args.config) as fh:
            file_values = yaml.safe_load(fh) or {}
        if "export" in file_values:
            raise SystemExit(f"{args.config}: 'export' is gone: the model is written to "
                             "<out_dir>/model.json; --replace-bundled-model installs it as the "
                             "bundled model")
        unknown = set(file_values) - set(values)
        if unknown:
            raise SystemExit(f"{args.config}: unknown keys {sorted(unknown)}")
        values.update(file_values)
    for f in fields(TrainConfig):
        text = getattr(args, f.name)
        if text is not None:
            values[f.name] = _parse_value(text, getattr(defaults, f.name))
    return TrainConfig(**values), args.replace_bundled_model


def load_config(argv: list[str] | None = None) -> TrainConfig:
    return parse_args(argv)[0]


# --- learning rate: linear warm-up then cosine to min_lr -------------------------------------


def get_lr(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
    return cfg.min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (cfg.lr - cfg.min_lr)


# --- data ---------------------------------------------------------------------------------


@dataclass
class Split:
    points: torch.Tensor  # (N, P0, 3) float16
    class_ids: torch.Tensor  # (N,)
    rotations: torch.Tensor  # (N, 3, 3)
    translations: torch.Tensor  # (N, 3)
    sizes: torch.Tensor  # (N, 3)
    handle_visible: torch.Tensor  # (N,) bool
    seeds: list

    def __len__(self) -> int:
        return len(self.class_ids)


def load_split(path: str, limit: int = 0, shards: str = "") -> Split:
    """Objects of a cache directory; "a,b" joins several (limit applies to each)."""
    if "," in path:
        parts = [load_split(p.strip(), limit, shards) for p in path.split(",")]
        return Split(*(torch.cat([getattr(q, f) for q in parts]) for f in FIELDS),
                     seeds=[q.seeds for q in parts])
    if shards:
        a, b = (int(v) for v in shards.split(":"))
        parts = [dict(np.load(shard_path(path, k))) for k in range(a, b)]
    elif limit:  # only the shards the first `limit` objects come from (seeds recorded right)
        parts, n_seen = [], 0
        for p in sorted(Path(path).glob("shard_*.npz")):
            if n_seen >= limit:
                break
            parts.append(dict(np.load(p)))
            n_seen += len(parts[-1]["class_ids"])
    else:
        parts = []
    if parts:
        c = TrainingCache(**{f: np.concatenate([p[f] for p in parts]) for f in FIELDS},
                          meta={"seed_range": [int(parts[0]["seed"]), int(parts[-1]["seed"])]})
    else:
        c = load_cache(path)
    n = min(limit or len(c), len(c))
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a[:n]))  # noqa: E731
    seeds = c.meta.get("seed_range", [])
    return Split(t(c.points), t(c.class_ids), t(c.rotations).float(), t(c.translations).float(),
                 t(c.sizes).float(), t(c.handle_visible), seeds)


def _rotation_z(angle: torch.Tensor) -> torch.Tensor:
    c, s = angle.cos(), angle.sin()
    z, o = torch.zeros_like(c), torch.ones_like(c)
    return torch.stack([c, -s, z, s, c, z, z, z, o], -1).view(-1, 3, 3)


def make_batch(split: Split, idx: torch.Tensor, cfg: TrainConfig, train: bool):
    """Points (B, P, 3) float32 and ground truth; train=True adds the augmentations."""
    pts = split.points[idx].float()
    rot, trans = split.rotations[idx], split.translations[idx]
    b, n0, _ = pts.shape
    if not train:
        return pts[:, : cfg.num_points], split.class_ids[idx], rot, trans, split.sizes[idx]
    # camera roll: a rotated camera sees the same object, so points and pose rotate together
    rz = _rotation_z((torch.rand(b) * 2 - 1) * math.radians(cfg.aug_roll_deg))
    pts = pts @ rz.transpose(1, 2)
    rot, trans = rz @ rot, (rz @ trans[:, :, None])[:, :, 0]
    # which points survive: random dropout + an occluding slab cut off one side
    keep = torch.rand(b, n0) >= torch.rand(b, 1) * cfg.aug_dropout
    centred = pts - pts.mean(1, keepdim=True)
    direction = F.normalize(torch.randn(b, 1, 3) * torch.tensor([1.0, 1.0, 0.3]), dim=-1)
    proj = (centred * direction).sum(-1)
    frac = torch.rand(b, 1) * cfg.aug_occlusion_max
    cut = proj > _row_quantile(proj, 1 - frac)
    occlude = torch.rand(b, 1) < cfg.aug_occlusion_p
    keep &= ~(cut & occlude)
    # P points, kept ones first (dropped ones only if too few survive)
    weights = keep.float() + 1e-6
    sel = torch.multinomial(weights, cfg.num_points, replacement=False)
    pts = torch.gather(pts, 1, sel[:, :, None].expand(-1, -1, 3))
    # depth noise along each viewing ray, then isotropic jitter
    ray = F.normalize(pts, dim=-1)
    pts = pts + ray * torch.randn(b, cfg.num_points, 1) * cfg.aug_depth_noise_m
    pts = pts + torch.randn_like(pts) * cfg.aug_jitter_m
    return pts, split.class_ids[idx], rot, trans, split.sizes[idx]


def _row_quantile(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Per-row quantile q (B, 1) of x (B, N), by sorting (torch.quantile takes one q)."""
    s = x.sort(dim=1).values
    k = (q * (x.shape[1] - 1)).round().long().clamp(0, x.shape[1] - 1)
    return s.gather(1, k)


# --- losses -------------------------------------------------------------------------------

SYMMETRIC_IDS = torch.tensor([c.id for c in BY_NAME.values() if c.y_symmetric])


def draw_weights(class_ids: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    """Per-object draw weight: oversample_asymmetric for camera, laptop, mug, 1 for the
    symmetric classes, then the class_weights overrides ("camera=4,mug=2")."""
    weights = torch.where(~torch.isin(class_ids, SYMMETRIC_IDS), cfg.oversample_asymmetric, 1.0)
    for item in filter(None, cfg.class_weights.split(",")):
        name, weight = item.split("=")
        weights[class_ids == BY_NAME[name.strip()].id] = float(weight)
    return weights


def pose_targets(rot, trans, sizes, class_ids, centroid, scale):
    """9-D pose target in the normalised frame; y-symmetric classes get the one rotation about
    y that faces the camera, so their target is a function of the view."""
    sym = torch.isin(class_ids, SYMMETRIC_IDS.to(class_ids.device))
    rot_c = canonical_symmetric(rot, trans, sym)
    return pose_target(rot_c, trans, centroid, scale), sizes / scale[:, None]


def regression_loss(reg: dict, x0: torch.Tensor, size_n: torch.Tensor) -> torch.Tensor:
    return (F.l1_loss(reg["rot6d"], x0[:, :6]) + F.l1_loss(reg["offset"], x0[:, 6:])
            + F.l1_loss(reg["size"], size_n))


def dsm_loss(model: PoseNet, cond: torch.Tensor, x0: torch.Tensor, draws: int, t_max: float):
    """Denoising score matching, lambda(t) = sigma^2: || sigma * s(x_t, t) + z ||^2."""
    b = x0.shape[0]
    t = torch.rand(b, draws, device=x0.device) * (t_max - model.sde.eps) + model.sde.eps
    z = torch.randn(b, draws, x0.shape[-1], device=x0.device)
    sigma = model.sde.sigma(t).to(x0)
    xt = x0[:, None] + sigma[..., None] * z
    cond_h = model.score_head.project(cond)[:, None].expand(-1, draws, -1)
    score = model.score_head(xt, t, cond_h)
    return (sigma[..., None] * score + z).square().mean()


# --- validation on the held-out split -----------------------------------------------------


@torch.no_grad()
def validate(model: PoseNet, split: Split, cfg: TrainConfig, device) -> dict:
    """Regression head and one score-scaled sample on the first eval_objects objects: NOCS
    per-object accuracies (posediff_ros.metrics), class means."""
    model.eval()
    n = min(cfg.eval_objects, len(split))
    out = {"regression": [], "sample": []}
    gen = torch.Generator().manual_seed(1234)
    for s in range(0, n, 200):
        idx = torch.arange(s, min(n, s + 200))
        pts, cls, _, _, _ = make_batch(split, idx, cfg, train=False)
        cond, centroid, scale = model.condition(pts.to(device), cls.to(device))
        reg = model.regress(cond)
        x_reg = torch.cat([reg["rot6d"], reg["offset"]], -1)[:, None]
        noise = torch.randn(len(idx), 1, 9, generator=gen).to(device)
        x = model.sample_poses(cond, noise)  # the model's own sampler settings
        size = (scale[:, None] * reg["size"]).cpu()
        for key, xx in (("regression", x_reg), ("sample", x)):
            r, t = pose_to_camera(xx, centroid, scale)
            out[key].append((r[:, 0].cpu(), t[:, 0].cpu(), size))
    result = {}
    sl = slice(0, n)
    for key, parts in out.items():
        r, t, size = (torch.cat(p) for p in zip(*parts, strict=True))
        err = object_errors(r.double().numpy(), t.double().numpy(),
                            split.rotations[sl].double().numpy(),
                            split.translations[sl].double().numpy(),
                            split.class_ids[sl].numpy(), split.handle_visible[sl].numpy(),
                            size.double().numpy(), split.sizes[sl].double().numpy())
        result[key] = accuracy_table(err)
    model.train()
    return result


# --- checkpoints: safetensors tensors + JSON state, no pickle ------------------------------


def save_checkpoint(path: Path, model, ema: dict, opt, step: int, cfg: TrainConfig,
                    extra: dict) -> None:
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors.update({f"ema.{k}": v.cpu().contiguous() for k, v in ema.items()})
    osd = opt.state_dict()
    for pid, st in osd["state"].items():
        for k, v in st.items():
            tensors[f"opt.{pid}.{k}"] = torch.as_tensor(v).cpu().contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, path.with_suffix(".safetensors"))
    state = {"step": step, "config": asdict(cfg), "param_groups": osd["param_groups"], **extra}
    tmp_json = path.with_suffix(".json.tmp")
    tmp_json.write_text(json.dumps(state, indent=1))
    os.replace(tmp_json, path.with_suffix(".json"))


def load_checkpoint(path: Path, model, ema: dict, opt) -> dict:
    from safetensors.torch import load_file

    state = json.loads(path.with_suffix(".json").read_text())
    tensors = load_file(str(path.with_suffix(".safetensors")))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    for k in ema:
        ema[k].copy_(tensors[f"ema.{k}"])
    opt_state: dict = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, pid, name = k.split(".", 2)
            opt_state.setdefault(int(pid), {})[name] = v
    opt.load_state_dict({"state": opt_state, "param_groups": state["param_groups"]})
    torch.set_rng_state(tensors["rng.torch"])
    return state


# --- the run: init or resume, train step, EMA, evaluate and log, checkpoint, model card -----


def model_config(cfg: TrainConfig) -> PoseNetConfig:
    """The network, with the sampler settings the run evaluates with (stored in the model
    file until `posediff-results tune` chooses better ones on validation data)."""
    sampler = SamplerSettings(steps=cfg.eval_steps, w_schedule=cfg.eval_w_schedule,
                              w_max=cfg.eval_w_max)
    return PoseNetConfig(encoder=cfg.encoder, num_points=cfg.num_points, feat_dim=cfg.feat_dim,
                         emb_dim=cfg.emb_dim, hidden=cfg.hidden, sampler=sampler)


class RunLog:
    """log.jsonl (+ TensorBoard when installed) in the run directory; rank 0 only."""

    def __init__(self, out: Path, enabled: bool):
        self.file = open(out / "log.jsonl", "a") if enabled else None  # noqa: SIM115
        self.writer = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(out / "tb"))
            except Exception:  # noqa: BLE001 - tensorboard not installed: JSONL only
                self.writer = None

    def write(self, record: dict) -> None:
        if self.file is None:
            return
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.writer is not None:
            for k, v in record.items():
                if isinstance(v, int | float) and k != "step":
                    self.writer.add_scalar(k, v, record["step"])

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


@dataclass
class Run:
    """Everything a training run carries from step to step."""

    cfg: TrainConfig
    device: torch.device
    rank: int
    ddp: bool
    model: PoseNet
    ema: dict[str, torch.Tensor]  # exponential moving average of the weights
    opt: torch.optim.Optimizer
    train_split: Split
    val_split: Split | None
    draw_weights: torch.Tensor  # per training object (oversampling of asymmetric classes)
    log: RunLog
    step: int = 0
    elapsed_before: float = 0.0  # wall time of the runs this one resumes
    history: list[dict] = field(default_factory=list)  # eval records
    started: float = field(default_factory=time.time)

    @property
    def master(self) -> bool:
        return self.rank == 0

    @property
    def ckpt(self) -> Path:
        return Path(self.cfg.out_dir) / "ckpt"

    def elapsed(self) -> float:
        return self.elapsed_before + time.time() - self.started


def start_device(cfg: TrainConfig) -> tuple[torch.device, int, bool]:
    """(device, rank, ddp): one process, or one of torchrun's (DDP, one device each)."""
    ddp = int(os.environ.get("WORLD_SIZE", "1")) > 1
    rank = int(os.environ.get("RANK", "0"))
    if cfg.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(cfg.device)
    if ddp:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    return device, rank, ddp


def init_or_resume(cfg: TrainConfig, device: torch.device, rank: int, ddp: bool) -> Run:
    """Data, model (same initial weights on every rank), EMA, optimiser; then the run's
    checkpoint, if there is one, on top."""
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train_split = load_split(cfg.train_cache, cfg.max_train)
    val_split = (load_split(cfg.val_cache, shards=cfg.val_shards)
                 if cfg.val_cache and cfg.eval_every > 0 else None)
    model = PoseNet(model_config(cfg)).to(device)
    torch.manual_seed(cfg.seed + 1000 * rank)  # different batches per rank
    if cfg.init and not (out / "ckpt.json").exists():
        model.load_state_dict(load_model(cfg.init).state_dict())  # same network, or it raises
        if rank == 0:
            print(f"initialised from {cfg.init}", file=sys.stderr)
    ema = {k: v.detach().clone() for k, v in model.state_dict().items()}
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "class_emb" in name else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    run = Run(cfg, device, rank, ddp, model, ema, opt, train_split, val_split,
              draw_weights(train_split.class_ids, cfg), RunLog(out, rank == 0))
    if run.ckpt.with_suffix(".json").exists():
        state = load_checkpoint(run.ckpt, model, ema, opt)
        run.step, run.elapsed_before = state["step"], state.get("elapsed_s", 0.0)
        run.history = state.get("history", [])
        if run.master:
            print(f"resumed from {run.ckpt}.json at step {run.step}", file=sys.stderr)
    return run


def phase_of(step: int, cfg: TrainConfig) -> int:
    """1: regression only; 2: regression + denoising score matching (see the module doc)."""
    if cfg.mode == "regression" or (cfg.mode == "joint" and step < cfg.phase1_steps):
        return 1
    return 2


def train_step(run: Run) -> dict:
    """One optimiser step on a fresh augmented batch; returns its log record."""
    cfg, model = run.cfg, run.model
    phase, lr = phase_of(run.step, cfg), get_lr(run.step, cfg)
    for g in run.opt.param_groups:
        g["lr"] = lr
    idx = torch.multinomial(run.draw_weights, cfg.batch_size, replacement=True)
    batch = make_batch(run.train_split, idx, cfg, train=True)
    pts, cls, rot, trans, sizes = (a.to(run.device) for a in batch)
    cond, centroid, scale = model.condition(pts, cls)
    x0, size_n = pose_targets(rot, trans, sizes, cls, centroid, scale)
    losses = {}
    if cfg.mode != "scratch":
        losses["reg"] = regression_loss(model.regress(cond), x0, size_n)
    if phase == 2:
        losses["dsm"] = cfg.dsm_weight * dsm_loss(model, cond, x0, cfg.noise_draws,
                                                  cfg.t_max_train)
    loss = sum(losses.values())
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    if run.ddp:  # average gradients over ranks (by hand: phase 1 leaves the score head unused)
        for p in model.parameters():
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad /= dist.get_world_size()
    gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    run.opt.step()
    return {"kind": "train", "phase": phase, "lr": lr, "loss": loss.item(),
            **{f"loss_{k}": v.item() for k, v in losses.items()}, "grad_norm": float(gnorm)}


@torch.no_grad()
def update_ema(run: Run) -> None:
    """EMA of the weights, with a decay that warms up over the first steps."""
    d = min(run.cfg.ema_decay, (1 + run.step) / (10 + run.step))
    for k, v in run.model.state_dict().items():
        if v.dtype.is_floating_point:
            run.ema[k].mul_(d).add_(v.detach(), alpha=1 - d)
        else:
            run.ema[k].copy_(v)


def evaluate_and_log(run: Run) -> dict:
    """The EMA weights on the validation split (the model's own sampler); logged and kept."""
    swap = {k: v.clone() for k, v in run.model.state_dict().items()}
    run.model.load_state_dict(run.ema)
    res = validate(run.model, run.val_split, run.cfg, run.device)
    run.model.load_state_dict(swap)
    rec = {"step": run.step, "kind": "eval", "elapsed_s": run.elapsed()}
    for key in ("regression", "sample"):
        m = res[key]["mean"]
        for col in ("IoU50", "5d2cm", "10d5cm"):
            rec[f"{key}/{col}"] = m[col]
        for name in ("camera", "laptop", "mug"):
            if name in res[key]:
                rec[f"{key}/{name}_10d5cm"] = res[key][name]["10d5cm"]
    run.log.write(rec)
    run.history.append(rec)
    return res


def checkpoint(run: Run, command: str) -> None:
    save_checkpoint(run.ckpt, run.model, run.ema, run.opt, run.step, run.cfg,
                    {"elapsed_s": run.elapsed(), "history": run.history, "command": command})


def write_model(run: Run, command: str) -> Path:
    """The run's model (EMA weights) and its card, in the run directory: <out_dir>/model.json
    + model.safetensors. The card (the JSON's "training") says which data, how many steps and
    which validation metrics made these weights. Also after a time-limit stop (marked
    incomplete); re-running resumes and rewrites it."""
    cfg, split, val = run.cfg, run.train_split, run.val_split
    run.model.load_state_dict(run.ema)
    card = {"command": command, "out_dir": cfg.out_dir, "mode": cfg.mode, "steps": run.step,
            "complete": run.step >= cfg.max_steps, "elapsed_s": round(run.elapsed(), 1),
            "train_cache": cfg.train_cache, "train_objects": len(split),
            "train_seeds": split.seeds, "val_cache": cfg.val_cache,
            "val_seeds": val.seeds if val is not None else None, "seed": cfg.seed,
            "config": asdict(cfg), "final_eval": run.history[-1] if run.history else {},
            "evals": run.history}
    if cfg.init:  # fine-tuned: the sampler tuned for the model it started from, not the
        # run's evaluation sampler (posediff-results tune may choose new ones)
        sampler = read_config(cfg.init)[0].sampler
        run.model.cfg = replace(run.model.cfg, sampler=sampler)
        card["sampler_from"] = cfg.init
    path = save_model(run.model, Path(cfg.out_dir) / "model.json", card)
    print(f"wrote {path}", file=sys.stderr)
    return path


def train(cfg: TrainConfig, command: str = "") -> dict:
    """Train to cfg.stop_step or cfg.max_steps (or the time limit), resuming the run in
    cfg.out_dir if it has a checkpoint. Everything is written into cfg.out_dir."""
    device, rank, ddp = start_device(cfg)
    run = init_or_resume(cfg, device, rank, ddp)
    stop = cfg.stop_step or cfg.max_steps
    last_ckpt = time.time()
    bar = None
    if run.master and cfg.progress:
        from tqdm import tqdm

        bar = tqdm(total=stop, initial=run.step, dynamic_ncols=True, desc=cfg.mode)
    run.model.train()
    while run.step < stop:
        record = train_step(run)
        update_ema(run)
        run.step += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.3f}", phase=record["phase"])
        if run.master and (run.step % cfg.log_every == 0 or run.step in (1, stop)):
            run.log.write({"step": run.step, **record, "elapsed_s": run.elapsed()})
        if run.master and run.val_split is not None and run.step % cfg.eval_every == 0:
            evaluate_and_log(run)
        out_of_time = cfg.max_minutes > 0 and (time.time() - run.started) / 60 > cfg.max_minutes
        if run.master and (time.time() - last_ckpt > cfg.ckpt_minutes * 60 or run.step == stop
                           or out_of_time):
            checkpoint(run, command)
            last_ckpt = time.time()
        if out_of_time:
            break
    if bar is not None:
        bar.close()
    if run.master and run.val_split is not None and (
            not run.history or run.history[-1]["step"] != run.step):
        evaluate_and_log(run)
        checkpoint(run, command)
    if run.master:
        write_model(run, command)
    run.log.close()
    if ddp:  # together: a rank tearing gloo down while rank 0 still exports aborted (SIGABRT)
        dist.barrier()
        dist.destroy_process_group()
    final = run.history[-1] if run.history else {}
    return {"step": run.step, "final_eval": final, "history": run.history}


def replace_bundled_model(model_json: Path, bundled: Path | None = None) -> Path:
    """Install a run's model as the bundled one (what the node loads by default). Only on
    request (--replace-bundled-model): a training run never writes outside its out_dir."""
    model = load_model(model_json)
    training = dict(model.cfg.training, installed_from=str(model_json))
    path = save_model(model, bundled or DEFAULT_MODEL, training)
    print(f"replaced the bundled model {path} with {model_json}", file=sys.stderr)
    return path


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    cfg, replace_bundled = parse_args(argv)
    train(cfg, command=shlex.join(["posediff-train", *argv]))
    if replace_bundled and int(os.environ.get("RANK", "0")) == 0:
        replace_bundled_model(Path(cfg.out_dir) / "model.json")


if __name__ == "__main__":
    main()
