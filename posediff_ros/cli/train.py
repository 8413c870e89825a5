"""posediff-train: train the pose network on a training cache (one file, read top to bottom).

Modes (the paper's two phases and the GenPose-style baseline):
  joint       phase 1 (steps < phase1_steps): regression loss only (encoder + regression head);
              phase 2: regression loss + denoising score matching (several noise draws per
              encoder pass), everything trained together.
  scratch     denoising score matching only, end to end (GenPose-style); the regression head
              is not trained.
  regression  phase 1 for the whole run.

usage:
  posediff-train [--config config/train_default.yaml] [--key value ...]
  torchrun --nproc_per_node N -m posediff_ros.cli.train ...   (DDP; rank 0 logs and checkpoints)

Everything is seeded; a run directory holds ckpt.safetensors + ckpt.json (model, EMA and
optimizer tensors, step, RNG state; no pickle), log.jsonl (one JSON line per log/eval) and,
at the end, the exported model (EMA weights) when --export is given. Re-running the same
command resumes from the last checkpoint.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..categories import BY_NAME
from ..model.posenet import PoseNet, PoseNetConfig, pose_target, pose_to_camera, save_model
from ..model.rotation import canonical_symmetric
from ..model.sampler import SamplerSettings


@dataclass
class TrainConfig:
    # data
    train_cache: str = "data/cache_train"
    val_cache: str = "data/cache_val"
    val_shards: str = ""  # "a:b": validate on shards a..b-1 of val_cache (held-out seeds)
    max_train: int = 0  # use only the first N training objects (0 = all)
    num_points: int = 256  # 256 points + 512-d PointNet: ~2-3x the steps/minute of 512 + 1024
    oversample_asymmetric: float = 2.0  # draw camera, laptop, mug this many times as often
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
    out_dir: str = "runs/default"
    export: str = ""  # model JSON written from the EMA weights at the end
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


def load_config(argv: list[str] | None = None) -> TrainConfig:
    parser = argparse.ArgumentParser(prog="posediff-train", description=__doc__.split("\n")[0])
    parser.add_argument("--config", help="YAML file of TrainConfig fields")
    defaults = TrainConfig()
    for f in fields(TrainConfig):
        parser.add_argument(f"--{f.name}", type=str, default=None,
                            help=f"(default {getattr(defaults, f.name)!r})")
    args = parser.parse_args(argv)
    values = asdict(defaults)
    if args.config:
        import yaml

        with open(args.config) as fh:
            file_values = yaml.safe_load(fh) or {}
        unknown = set(file_values) - set(values)
        if unknown:
            raise SystemExit(f"{args.config}: unknown keys {sorted(unknown)}")
        values.update(file_values)
    for f in fields(TrainConfig):
        text = getattr(args, f.name)
        if text is not None:
            values[f.name] = _parse_value(text, getattr(defaults, f.name))
    return TrainConfig(**values)


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
    from ..data.cache import FIELDS, TrainingCache, load_cache, shard_path

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


def targets(model: PoseNet, rot, trans, sizes, class_ids, centroid, scale):
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


# --- evaluation on the held-out split -----------------------------------------------------


@torch.no_grad()
def evaluate(model: PoseNet, split: Split, cfg: TrainConfig, device) -> dict:
    """Regression head and one score-scaled sample on the first eval_objects objects: NOCS
    per-object accuracies (posediff_ros.metrics), class means."""
    from ..metrics import accuracy_table, object_errors

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


# --- the run ------------------------------------------------------------------------------


def model_config(cfg: TrainConfig) -> PoseNetConfig:
    """The network, with the sampler settings the run evaluates with (stored in the model
    file until `posediff-results tune` chooses better ones on validation data)."""
    sampler = SamplerSettings(steps=cfg.eval_steps, w_schedule=cfg.eval_w_schedule,
                              w_max=cfg.eval_w_max)
    return PoseNetConfig(encoder=cfg.encoder, num_points=cfg.num_points, feat_dim=cfg.feat_dim,
                         emb_dim=cfg.emb_dim, hidden=cfg.hidden, sampler=sampler)


def train(cfg: TrainConfig, command: str = "") -> dict:
    ddp = int(os.environ.get("WORLD_SIZE", "1")) > 1
    rank = int(os.environ.get("RANK", "0"))
    if cfg.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(cfg.device)
    if ddp:
        import torch.distributed as dist

        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
    master = rank == 0
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)

    train_split = load_split(cfg.train_cache, cfg.max_train)
    val_split = (load_split(cfg.val_cache, shards=cfg.val_shards)
                 if cfg.val_cache and cfg.eval_every > 0 else None)
    model = PoseNet(model_config(cfg)).to(device)
    torch.manual_seed(cfg.seed + 1000 * rank)  # different batches per rank
    ema = {k: v.detach().clone() for k, v in model.state_dict().items()}
    asym = ~torch.isin(train_split.class_ids, SYMMETRIC_IDS)
    draw_weights = torch.where(asym, cfg.oversample_asymmetric, 1.0)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "class_emb" in name else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    ckpt = out / "ckpt"
    step, elapsed_before, history = 0, 0.0, []
    if ckpt.with_suffix(".json").exists():
        state = load_checkpoint(ckpt, model, ema, opt)
        step, elapsed_before = state["step"], state.get("elapsed_s", 0.0)
        history = state.get("history", [])
        if master:
            print(f"resumed from {ckpt}.json at step {step}", file=sys.stderr)
    writer = None
    if master:
        try:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(out / "tb"))
        except Exception:  # noqa: BLE001 - tensorboard not installed: JSONL only
            writer = None
    log_file = open(out / "log.jsonl", "a") if master else None  # noqa: SIM115

    def log(record: dict) -> None:
        if not master:
            return
        log_file.write(json.dumps(record) + "\n")
        log_file.flush()
        if writer is not None:
            for k, v in record.items():
                if isinstance(v, int | float) and k != "step":
                    writer.add_scalar(k, v, record["step"])

    def do_eval() -> dict:
        swap = {k: v.clone() for k, v in model.state_dict().items()}
        model.load_state_dict(ema)
        res = evaluate(model, val_split, cfg, device)
        model.load_state_dict(swap)
        rec = {"step": step, "kind": "eval", "elapsed_s": elapsed()}
        for key in ("regression", "sample"):
            m = res[key]["mean"]
            for col in ("IoU50", "5d2cm", "10d5cm"):
                rec[f"{key}/{col}"] = m[col]
            for name in ("camera", "laptop", "mug"):
                if name in res[key]:
                    rec[f"{key}/{name}_10d5cm"] = res[key][name]["10d5cm"]
        log(rec)
        history.append(rec)
        return res

    stop = cfg.stop_step or cfg.max_steps
    t_start = time.time()
    elapsed = lambda: elapsed_before + time.time() - t_start  # noqa: E731
    last_ckpt = time.time()
    bar = None
    if master and cfg.progress:
        from tqdm import tqdm

        bar = tqdm(total=stop, initial=step, dynamic_ncols=True, desc=cfg.mode)
    model.train()
    while step < stop:
        phase = 1 if cfg.mode == "regression" or (cfg.mode == "joint" and
                                                   step < cfg.phase1_steps) else 2
        lr = get_lr(step, cfg)
        for g in opt.param_groups:
            g["lr"] = lr
        idx = torch.multinomial(draw_weights, cfg.batch_size, replacement=True)
        pts, cls, rot, trans, sizes = make_batch(train_split, idx, cfg, train=True)
        pts, cls, rot, trans, sizes = (a.to(device) for a in (pts, cls, rot, trans, sizes))
        cond, centroid, scale = model.condition(pts, cls)
        x0, size_n = targets(model, rot, trans, sizes, cls, centroid, scale)
        losses = {}
        if cfg.mode != "scratch":
            losses["reg"] = regression_loss(model.regress(cond), x0, size_n)
        if phase == 2:
            losses["dsm"] = cfg.dsm_weight * dsm_loss(model, cond, x0, cfg.noise_draws,
                                                      cfg.t_max_train)
        loss = sum(losses.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if ddp:  # average gradients over ranks (by hand: phase 1 leaves the score head unused)
            import torch.distributed as dist

            for p in model.parameters():
                if p.grad is not None:
                    dist.all_reduce(p.grad)
                    p.grad /= dist.get_world_size()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        d = min(cfg.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for k, v in model.state_dict().items():
                if v.dtype.is_floating_point:
                    ema[k].mul_(d).add_(v.detach(), alpha=1 - d)
                else:
                    ema[k].copy_(v)
        step += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", phase=phase)
        if master and (step % cfg.log_every == 0 or step == 1 or step == stop):
            log({"step": step, "kind": "train", "phase": phase, "lr": lr, "loss": loss.item(),
                 **{f"loss_{k}": v.item() for k, v in losses.items()},
                 "grad_norm": float(gnorm), "elapsed_s": elapsed()})
        if master and val_split is not None and step % cfg.eval_every == 0:
            do_eval()
        out_of_time = cfg.max_minutes > 0 and (time.time() - t_start) / 60 > cfg.max_minutes
        if master and (time.time() - last_ckpt > cfg.ckpt_minutes * 60 or step == stop
                       or out_of_time):
            save_checkpoint(ckpt, model, ema, opt, step, cfg,
                            {"elapsed_s": elapsed(), "history": history, "command": command})
            last_ckpt = time.time()
        if out_of_time:
            break
    if bar is not None:
        bar.close()
    final = {}
    if master and val_split is not None and (not history or history[-1]["step"] != step):
        do_eval()
        save_checkpoint(ckpt, model, ema, opt, step, cfg,
                        {"elapsed_s": elapsed(), "history": history, "command": command})
    if history:
        final = history[-1]
    if master and cfg.export:
        # also after a time-limit stop (marked incomplete); re-running resumes and re-exports
        model.load_state_dict(ema)
        training = {"command": command, "mode": cfg.mode, "steps": step,
                    "complete": step >= cfg.max_steps,
                    "elapsed_s": round(elapsed(), 1), "train_cache": cfg.train_cache,
                    "train_objects": len(train_split), "train_seeds": train_split.seeds,
                    "val_cache": cfg.val_cache,
                    "val_seeds": val_split.seeds if val_split is not None else None,
                    "seed": cfg.seed, "config": asdict(cfg), "final_eval": final}
        save_model(model, cfg.export, training)
        print(f"exported {cfg.export}", file=sys.stderr)
    if log_file is not None:
        log_file.close()
    if ddp:
        import torch.distributed as dist

        dist.destroy_process_group()
    return {"step": step, "final_eval": final, "history": history}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    cfg = load_config(argv)
    train(cfg, command=shlex.join(["posediff-train", *argv]))


if __name__ == "__main__":
    main()
