"""The VE-SDE noise schedule (GenPose): sigma(t) = sigma_min * (sigma_max / sigma_min)^t."""

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class VESDE:
    sigma_min: float = 0.01
    sigma_max: float = 50.0
    eps: float = 1e-5  # smallest t used in training and sampling

    def sigma(self, t: torch.Tensor | float) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=torch.float32)
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** t

    def t_of_sigma(self, sigma: torch.Tensor | float) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, dtype=torch.float32)
        return torch.log(sigma / self.sigma_min) / math.log(self.sigma_max / self.sigma_min)

    def perturb(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = x_0 + sigma(t) z; t broadcasts over the last dimension of x0."""
        return x0 + self.sigma(t).unsqueeze(-1) * noise
