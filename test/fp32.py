"""Tolerances for comparing two float32 implementations of the pose network (torch on any CPU
kernel set, onnxruntime, the fused module), derived from float32 error growth rather than
tuned on one machine.

Derivation. u = 2^-24 is float32's unit roundoff. A length-n dot product computed in any
order, with or without FMA, differs from the exact value by at most gamma_n * sum|a_i b_i|
with gamma_n = n u / (1 - n u) (Higham, Accuracy and Stability of Numerical Algorithms,
Thm 3.1); with rounding errors that behave like independent zero-mean variables the bound
becomes lambda * sqrt(n) * u * sum|a_i b_i|, holding with probability >= 1 - 2 exp(-lambda^2 / 2)
(Higham & Mary 2019). Two backends (other summation order, other SIMD width, other kernels)
each err by that much, so they differ by twice it. Along the network the relative errors of
the layers add (ReLU and max-pooling are 1-Lipschitz and exact; activations are O(1) for these
initialisations, so sum|a_i b_i| is the size of the output): one pass of the encoder +
regression head costs sum over its layers of sqrt(fan_in) (plus the 256-point mean and RMS
of the normalisation), one denoiser call the same sum over the score head. The sampler's step
x' = D + (x - D) r^w with r^w <= 1 does not amplify an error of x, so the errors of the E
denoiser calls (E = steps, twice that for heun/dpm2) add. Hence, in the normalised frame,

    tol = 2 * lambda * u * (S_once + E * S_score),  lambda = 4 (fails by chance < 1e-3).

For the default model that is ~1e-4 at 4 Euler steps and ~2e-4 at 3 Heun steps, while the
backends really differ by ~1e-6 (AVX-512, AVX2 and the default kernels) and a sampler bug (a
wrong sign, a skipped or repeated step, Euler in place of Heun) moves the poses by >= 1e-3 in
the normalised frame. Metres: the normalised frame is scaled by the cloud's RMS radius s and
shifted by its centroid c (t = c + s x), so translations get s * tol plus the centroid's own
rounding (lambda sqrt(P) u |c|). Score = exp(-angle_deg / 20) exp(-dt / 0.5): at most
(180 / pi / 20) * 2 tol + 2 tol / 0.5 ~ 10 tol.

Reduced precision (GPU autocast fp16 / bf16, TF32 matmuls): the inputs of every layer are
rounded to the short format (u = 2^-11 for fp16 and TF32, 2^-8 for bf16) and accumulated in
float32, so each layer adds a relative error ~u independent of its width (the n rounding
errors average out against an output of size ~sqrt(n) |term|); independent layers add in
quadrature: tol = 2 * lambda * u * sqrt(L_once + E * L_score) with L the layer counts.
"""

import math
from dataclasses import dataclass

import torch.nn as nn

U = 2.0**-24  # float32 unit roundoff
UNIT = {"fp32": U, "tf32": 2.0**-11, "fp16": 2.0**-11, "bf16": 2.0**-8}
LAMBDA = 4.0


def _fan_in_sum(module: nn.Module, per_layer: bool = False) -> float:
    """sum of sqrt(fan_in) over the Linear layers (1 per layer with per_layer)."""
    return sum(1.0 if per_layer else math.sqrt(m.in_features) for m in module.modules()
               if isinstance(m, nn.Linear))


@dataclass(frozen=True)
class Tolerance:
    normalised: float  # rotation matrix entries, 6-D and offsets (units of the cloud radius)
    translation: float  # metres
    size: float  # metres
    score: float

    def __str__(self) -> str:
        return (f"tol: normalised {self.normalised:.2e}, translation {self.translation:.2e} m, "
                f"size {self.size:.2e} m, score {self.score:.2e}")


def parity_tolerance(model, steps: int, solver: str, num_points: int,
                     cloud_radius: float, centroid_norm: float,
                     precision: str = "fp32") -> Tolerance:
    """Bound on |backend A - backend B| for one model and sampler setting (see module doc);
    precision: "fp32" for both, or the short format one of them computes in."""
    reduced = precision != "fp32"
    head = model.score_head
    cond_proj = 1.0 if reduced else math.sqrt(head.cond_proj.in_features)  # runs once
    s_score = _fan_in_sum(head, reduced) - cond_proj
    s_once = (_fan_in_sum(model.encoder, reduced) + _fan_in_sum(model.regression, reduced)
              + cond_proj + (0 if reduced else 2 * math.sqrt(num_points)))
    evals = steps * (2 if solver in ("heun", "dpm2") else 1)
    grow = math.sqrt if reduced else (lambda x: x)
    u = UNIT[precision]
    tol = 2 * LAMBDA * u * grow(s_once + evals * s_score)
    once = 2 * LAMBDA * u * grow(s_once)
    centroid = LAMBDA * math.sqrt(num_points) * U * centroid_norm
    return Tolerance(normalised=tol, translation=cloud_radius * tol + centroid,
                     size=cloud_radius * once, score=(180 / math.pi / 20 * 2 + 2 / 0.5) * tol)
