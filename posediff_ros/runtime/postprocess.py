"""What every backend does around the network the same way: the start noise it draws, and the
samples -> pose, covariance and score it hands out (PoseBatch). One copy, in numpy (no torch:
a node running an exported graph needs none), so the same seed gives the same poses from
every backend."""

import numpy as np

from ..geometry import matrix_to_rotation_vector, project_to_so3
from ..model.settings import SamplerSettings
from .base import PoseBatch


def make_noise(settings: SamplerSettings, batch: int) -> np.ndarray:
    """The sampler's start noise (batch, num_samples, 9) float32 from the settings' seed
    (None: new noise every call), drawn on the CPU so that every device gets the same
    numbers."""
    rng = np.random.default_rng(settings.seed)
    return rng.standard_normal((batch, settings.num_samples, 9), dtype=np.float32)


def empty_batch(num_samples: int) -> PoseBatch:
    """The answer for a frame without objects."""
    z = np.zeros
    return PoseBatch(z((0, 3, 3), np.float32), z((0, 3), np.float32), z((0, 3), np.float32),
                     z((0,), np.float32), None if num_samples == 1 else z((0, 6, 6), np.float32))


def mean_pose(rot: np.ndarray, trans: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Chordal mean rotation and mean translation of (B,N,3,3), (B,N,3) samples, in float64
    (the SVD of the mean of widely spread samples is ill-conditioned)."""
    rot, trans = np.asarray(rot, np.float64), np.asarray(trans, np.float64)
    return project_to_so3(rot.mean(axis=1)), trans.mean(axis=1)


def pose_covariance(rot: np.ndarray, trans: np.ndarray, r_mean: np.ndarray,
                    t_mean: np.ndarray) -> np.ndarray:
    """(B,N,3,3), (B,N,3) samples -> (B,6,6) covariance over (x,y,z, rot x,y,z) (REP 103 /
    geometry_msgs order), rotations as rotation vectors of R_i R_mean^T (camera-frame axes),
    unbiased (N - 1). In float64: samples may spread to near pi, and the sums should add no
    rounding to what the float32 samples carry (geometry.matrix_to_rotation_vector is
    accurate at every angle)."""
    rot, trans = np.asarray(rot, np.float64), np.asarray(trans, np.float64)
    dr = matrix_to_rotation_vector(rot @ np.swapaxes(r_mean, -1, -2)[:, None])
    v = np.concatenate([trans - t_mean[:, None], dr], axis=-1)  # (B, N, 6)
    return np.swapaxes(v, 1, 2) @ v / max(v.shape[1] - 1, 1)


def agreement_score(r_a, t_a, r_b, t_b, scale) -> np.ndarray:
    """Confidence in [0, 1] from how well the diffusion sample and the regression pose agree
    (angle between the rotated y axes, atan2 form as model.rotation.y_axis_angle; translation
    relative to the object's size): 1 = identical. runtime/graph.py computes the same in the
    exported graph (test_backends checks that they agree)."""
    a = np.asarray(r_a, np.float64)[..., :, 1]
    b = np.asarray(r_b, np.float64)[..., :, 1]
    ang = np.degrees(np.arctan2(np.linalg.norm(np.cross(a, b), axis=-1), (a * b).sum(-1)))
    dt = np.linalg.norm(np.asarray(t_a, np.float64) - t_b, axis=-1) / scale
    return np.exp(-ang / 20.0) * np.exp(-dt / 0.5)


def summarise(rot: np.ndarray, trans: np.ndarray, r_reg: np.ndarray, t_reg: np.ndarray,
              scale: np.ndarray, size: np.ndarray, timings: dict[str, float]) -> PoseBatch:
    """Samples (B, N, 3, 3), (B, N, 3) -> PoseBatch: the sample itself (N = 1) or the chordal
    mean pose, the covariance and every sample (for hypotheses.py); the score compares that
    pose with the regression pose (r_reg, t_reg)."""
    if rot.shape[1] > 1:
        r_mean, t_mean = mean_pose(rot, trans)
        cov = pose_covariance(rot, trans, r_mean, t_mean)
    else:
        r_mean, t_mean, cov = rot[:, 0], trans[:, 0], None
    score = agreement_score(r_mean, t_mean, r_reg, t_reg, np.asarray(scale, np.float64))
    f = lambda a: np.asarray(a, np.float32)  # noqa: E731
    many = cov is not None
    return PoseBatch(f(r_mean), f(t_mean), f(size), f(score), f(cov) if many else None,
                     timings, samples_rotation=f(rot) if many else None,
                     samples_translation=f(trans) if many else None)


def to_pose_batch(out: dict[str, np.ndarray], num_samples: int,
                  timings: dict[str, float]) -> PoseBatch:
    """Graph outputs (graph.OUTPUTS) -> PoseBatch. One sample: the graph's pose and score as
    they are. Several: summarise() (SVD has no ONNX op), as the torch backend does."""
    if num_samples == 1:
        return PoseBatch(out["rotation"], out["translation"], out["size"], out["score"], None,
                         timings)
    return summarise(out["samples_rotation"], out["samples_translation"], out["reg_rotation"],
                     out["reg_translation"], out["point_scale"], out["size"], timings)
