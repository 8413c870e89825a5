"""segmentation: boxes over real DDS: the synthetic camera as a box detector (no mask topic
subscribed, its classes named the way COCO-style detectors name them), posediff_node with the
bundled model cutting each object out of the depth inside its box. The poses must meet the
end-to-end tolerances of the mask input (test_node_e2e), with the detector's class names
mapped to NOCS classes by the default aliases."""

from pathlib import Path

import numpy as np
import pytest
from test_node_e2e import Pipeline

pytestmark = pytest.mark.ros

BUNDLED = Path(__file__).resolve().parents[1] / "models" / "posediff_default.json"


@pytest.mark.slow
@pytest.mark.skipif(not BUNDLED.exists(), reason="models/posediff_default.json not trained yet")
def test_box_detector_input_gives_poses_within_the_e2e_tolerances():
    pipe = Pipeline("", num_objects=3, namespace="boxes",
                    node_params=("segmentation:=boxes", "publish_debug:=false"),
                    camera_params=("class_names:=['mug:Cup', 'can:tin_can', 'bottle:BOTTLE']",))
    try:
        assert pipe.wait_frames(4, timeout=120), "no results in box mode"
        errors = pipe.collector.errors()
        subscribed = pipe.node_subscriptions()
        truth = {d.results[0].hypothesis.class_id for s in pipe.collector.matched()
                 for d in pipe.collector.truth[s].detections}
    finally:
        logs = pipe.close()
    assert "segmentation boxes" in logs, logs
    assert "mask" not in subscribed, subscribed  # a box detector has no mask topic
    assert len(errors) >= 6
    # every class was recognised, the renamed ones (Cup, tin_can, BOTTLE) through the aliases
    assert {e.class_name for e in errors} == truth, truth
    trans = np.array([e.translation_cm for e in errors])
    rot = np.array([e.rotation_deg for e in errors])
    size = np.array([e.size_error for e in errors])
    print(f"box input over DDS: {len(errors)} objects of {sorted(truth)}, median translation "
          f"{np.median(trans):.2f} cm, rotation {np.median(rot):.1f} deg, size "
          f"{100 * np.median(size):.1f} %")
    assert np.median(trans) < 2.0, trans
    assert np.median(rot) < 15.0, rot
    assert np.median(size) < 0.15, size
