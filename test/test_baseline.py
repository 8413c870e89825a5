"""The one GenPose-style baseline (model/baseline.py) of RESULTS.md and BENCHMARKS.md: its
selection rule, its pose against the rule computed independently from the same hypotheses,
and the name the reports print."""

import numpy as np
import torch

from posediff_ros.cli.bench import BenchConfig
from posediff_ros.model.baseline import GenPoseBaseline, select_and_average
from posediff_ros.model.posenet import load_any, pose_to_camera

torch.set_num_threads(1)


def test_select_and_average_drops_outliers():
    eye = torch.eye(3)
    flip = torch.diag(torch.tensor([-1.0, 1.0, -1.0]))
    rot = torch.stack([eye] * 8 + [flip] * 2)[None]
    trans = torch.cat([torch.zeros(8, 3), torch.ones(2, 3)])[None]
    r, t = select_and_average(rot, trans, keep=0.6)
    torch.testing.assert_close(r[0], eye, atol=1e-5, rtol=0)
    torch.testing.assert_close(t[0], torch.zeros(3))


def _chordal_mean(rots: np.ndarray) -> np.ndarray:
    u, _, vt = np.linalg.svd(rots.mean(0))
    return u @ np.diag([1, 1, np.linalg.det(u @ vt)]) @ vt


def test_pose_is_the_mean_of_the_hypotheses_nearest_their_mean_in_the_normalised_frame():
    model = load_any("random")
    for head in (model.score_head.rot_head, model.score_head.trans_head):
        torch.nn.init.normal_(head[-1].weight, std=0.05)  # hypotheses that the sampler moved
    baseline = GenPoseBaseline(hypotheses=10, steps=3, keep=0.6)
    pts = (np.random.default_rng(0).normal(0, 0.03, (2, model.cfg.num_points, 3))
           + [0, 0, 0.8]).astype(np.float32)
    cls = np.array([1, 5])
    r, t, size = baseline.predict(model, pts, cls, seed=0)
    # the same hypotheses, drawn the documented way: 10 noises, 3 Heun steps, w = 1, from noise
    with torch.no_grad():
        cond, centroid, scale = model.condition(torch.from_numpy(pts), torch.from_numpy(cls))
        noise = torch.randn(2, 10, 9, generator=torch.Generator().manual_seed(0))
        x = model.sample_poses(cond, noise, steps=3, solver="heun", w_schedule="none",
                               w_max=1.0, init="noise")
        rot, trans = (a.double().numpy() for a in pose_to_camera(x, centroid, scale))
    c, s = centroid.double().numpy(), scale.double().numpy()
    for b in range(2):
        t_n = (trans[b] - c[b]) / s[b]  # distances relative to the object's point spread
        dist = (np.linalg.norm(rot[b] - _chordal_mean(rot[b]), axis=(1, 2))
                + np.linalg.norm(t_n - t_n.mean(0), axis=1))
        near = np.argsort(dist)[:6]  # ceil(0.6 * 10)
        assert np.sort(dist)[6] - np.sort(dist)[5] > 1e-4  # the choice is not a tie
        np.testing.assert_allclose(r[b], _chordal_mean(rot[b][near]), atol=1e-5)
        np.testing.assert_allclose(t[b], trans[b][near].mean(0), atol=1e-6)
    assert size.shape == (2, 3) and (size > 0).all()


def test_one_definition_for_both_reports():
    assert GenPoseBaseline().describe() == ("GenPose-style: 50 hypotheses x 50 Heun steps, "
                                            "keep 60% near the mean, average")
    bench = BenchConfig()
    assert GenPoseBaseline(bench.baseline_hypotheses, bench.baseline_steps,
                           keep=bench.baseline_keep) == GenPoseBaseline()
