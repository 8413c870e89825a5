"""Point-cloud encoders, chosen by name. Input: centred, scale-normalised points (B, P, 3) and
a per-point-broadcast category embedding (B, E); output: a global feature (B, feat_dim).

- "pointnet": shared MLP + max pool (cheapest; on a 2-core CPU steps/minute decide most).
- "pointnet2": light PointNet++ (two set-abstraction layers, random centres, k-NN grouping,
  fully vectorised with gather), the GenPose-style choice when compute allows.
"""

import torch
import torch.nn as nn


def mlp(sizes: list[int], last_act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=False)):
        layers.append(nn.Linear(a, b))
        if last_act or i < len(sizes) - 2:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class PointNetEncoder(nn.Module):
    """Shared MLP 3-64-128, add the category embedding, then 256-feat_dim, max pool."""

    def __init__(self, feat_dim: int = 1024, emb_dim: int = 64, width: int = 128):
        super().__init__()
        self.local = mlp([3, 64, width])
        self.emb = nn.Linear(emb_dim, width)
        self.trunk = mlp([width, 256, feat_dim], last_act=False)

    def forward(self, points: torch.Tensor, class_emb: torch.Tensor) -> torch.Tensor:
        h = self.local(points) + self.emb(class_emb).unsqueeze(1)
        return self.trunk(torch.relu(h)).amax(dim=1)


def knn_group(xyz: torch.Tensor, feats: torch.Tensor | None, centres: torch.Tensor, k: int):
    """Gather the k nearest points of each centre: (B,M,k,3) offsets and (B,M,k,C) features."""
    d = torch.cdist(centres, xyz)  # (B, M, P)
    idx = d.topk(k, dim=-1, largest=False).indices  # (B, M, k)
    b = torch.arange(xyz.shape[0], device=xyz.device)[:, None, None]
    rel = xyz[b, idx] - centres.unsqueeze(2)
    return rel, (feats[b, idx] if feats is not None else None)


class SetAbstraction(nn.Module):
    def __init__(self, num_centres: int, k: int, in_dim: int, sizes: list[int]):
        super().__init__()
        self.num_centres, self.k = num_centres, k
        self.mlp = mlp([in_dim + 3] + sizes)

    def forward(self, xyz: torch.Tensor, feats: torch.Tensor | None):
        # points arrive in random order (sampled upstream), so the first M are random centres
        centres = xyz[:, : self.num_centres]
        rel, f = knn_group(xyz, feats, centres, self.k)
        h = rel if f is None else torch.cat([rel, f], dim=-1)
        return centres, self.mlp(h).amax(dim=2)


class PointNet2LiteEncoder(nn.Module):
    def __init__(self, feat_dim: int = 1024, emb_dim: int = 64, centres=(256, 64), k: int = 32):
        super().__init__()
        self.sa1 = SetAbstraction(centres[0], k, 0, [64, 128])
        self.emb = nn.Linear(emb_dim, 128)
        self.sa2 = SetAbstraction(centres[1], min(k, centres[0]), 128, [128, 256])
        self.trunk = mlp([256 + 3, 512, feat_dim], last_act=False)

    def forward(self, points: torch.Tensor, class_emb: torch.Tensor) -> torch.Tensor:
        c1, f1 = self.sa1(points, None)
        f1 = torch.relu(f1 + self.emb(class_emb).unsqueeze(1))
        c2, f2 = self.sa2(c1, f1)
        return self.trunk(torch.cat([c2, f2], dim=-1)).amax(dim=1)


ENCODERS = {"pointnet": PointNetEncoder, "pointnet2": PointNet2LiteEncoder}


def build_encoder(name: str, feat_dim: int, emb_dim: int) -> nn.Module:
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; known: {', '.join(ENCODERS)}")
    return ENCODERS[name](feat_dim=feat_dim, emb_dim=emb_dim)
