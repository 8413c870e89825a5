"""With the seed fixed, a frame's poses depend on that frame alone: the same frame gives the same
poses (point subsets included) whatever came before it, in this process or another one. Two
node runs over the same objects used to differ (10d5cm 78.1 vs 83.3 on 21 objects) because the
point-subset generator ran on across frames."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from posediff_ros.data.synthetic import BACKGROUND, render_scene
from posediff_ros.pipeline import Pipeline, PipelineConfig
from posediff_ros.runtime import load_backend
from posediff_ros.runtime.base import SamplerSettings

HERE = Path(__file__).resolve().parent


def frame(seed: int):
    """A rendered frame as the node gets it: depth in metres, instance mask, classes."""
    f = render_scene(np.random.default_rng(seed), num_objects=4)
    classes = {i.instance_id: i.class_id for i in f.instances}
    return f.depth.astype(np.float32) / 1000.0, f.mask.astype(np.int32), f.K, classes


def poses(pipeline: Pipeline, seed: int) -> np.ndarray:
    """(objects, 3 + 9 + 3 + 1) instance id, rotation, translation, size, score."""
    depth, mask, K, classes = frame(seed)
    result = pipeline.process(depth, mask, K, classes, background=BACKGROUND)
    assert len(result.objects) >= 2, result.skipped
    return np.stack([np.r_[o.instance_id, o.rotation.ravel(), o.translation, o.size, o.score]
                     for o in result.objects])


def make_pipeline(subsets: int = 1, num_samples: int = 1) -> Pipeline:
    torch.set_num_threads(1)  # the same kernels in this process and the child
    backend = load_backend("torch", settings=SamplerSettings(num_samples=num_samples, seed=0))
    return Pipeline(backend, PipelineConfig(subsets=subsets))


CONFIGS = [(1, 1), (3, 2)]  # (point subsets, samples per object)


def child(out: str) -> None:
    """In a new process: only frame 11, nothing before it, for every configuration."""
    np.savez(out, **{f"{s}-{n}": poses(make_pipeline(s, n), 11) for s, n in CONFIGS})


@pytest.fixture(scope="module")
def other_process(tmp_path_factory) -> dict[str, np.ndarray]:
    """Frame 11's poses computed in one new interpreter (one process start for all configs)."""
    out = tmp_path_factory.mktemp("child") / "child.npz"
    code = (f"import sys; sys.path.insert(0, {str(HERE)!r}); import test_reproducible as t; "
            f"t.child({str(out)!r})")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=600)
    with np.load(out) as saved:
        return dict(saved)


@pytest.mark.xdist_group("reproducible_child")  # the one child process on one worker
@pytest.mark.parametrize("subsets,num_samples", CONFIGS)
def test_same_frame_same_poses_in_any_order_and_process(other_process, subsets, num_samples):
    pipeline = make_pipeline(subsets, num_samples)
    first = poses(pipeline, 11)
    poses(pipeline, 12)  # another frame in between
    np.testing.assert_array_equal(poses(pipeline, 11), first)
    other = make_pipeline(subsets, num_samples)  # frames in another order
    poses(other, 12)
    poses(other, 13)
    np.testing.assert_array_equal(poses(other, 11), first)
    np.testing.assert_array_equal(other_process[f"{subsets}-{num_samples}"], first)


@pytest.mark.ros
def test_the_node_answers_a_replayed_frame_with_the_same_poses():
    """Over real DDS: the synthetic camera replays 2 rendered frames in turn (fresh stamps);
    the node (bundled model, seed 0, averaging over 3 point subsets, per-frame estimates:
    tracking would filter them over frames by design) must answer every replay of a frame
    with the same poses, bit for bit, whatever it processed in between."""
    from test_node_e2e import BUNDLED
    from test_node_e2e import Pipeline as CameraAndNode

    if not BUNDLED.exists():
        pytest.skip("needs the bundled model")
    pipe = CameraAndNode("", num_objects=3, namespace="repro", rate=2.0,
                         node_params=("seed:=0", "average_subsets:=3", "tracking:=false"))
    try:
        ok = pipe.wait_frames(8, timeout=120)
    finally:
        logs = pipe.close()
    assert ok, logs
    c = pipe.collector
    answers: dict[tuple, list[tuple]] = {}  # replayed frame (its ground truth) -> answers
    for stamp in c.matched():
        frame = tuple(round(d.results[0].pose.pose.position.x, 6) for d in
                      c.truth[stamp].detections)
        poses = tuple((d.id, p.position.x, p.position.y, p.position.z, p.orientation.x,
                       p.orientation.y, p.orientation.z, p.orientation.w)
                      for d in c.poses[stamp].detections for p in [d.results[0].pose.pose])
        answers.setdefault(frame, []).append(poses)
    assert len(answers) == 2 and all(len(a) >= 2 for a in answers.values()), (
        {k: len(a) for k, a in answers.items()}, logs)
    for a in answers.values():
        assert a[0] and all(x == a[0] for x in a), a
