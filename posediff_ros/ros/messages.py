"""Core results -> ROS messages: Detection3DArray, TF transforms, MarkerArray.

Detection3D conventions (documented for consumers):
- header: the camera frame and the input stamp;
- id: the track id (tracking on: the same physical object keeps it from frame to frame),
  else the instance id of the object in the input mask (as a string);
- results[0].hypothesis.class_id: the NOCS category name ("mug"), score in [0, 1];
- results[0].pose: camera-from-object pose; covariance over (x, y, z, rot x, rot y, rot z)
  (calibration.py: calibrated per class when the model has a calibration file), or -1 in
  the first element and zeros else when nothing was estimated (one sample, no calibration:
  the "not estimated" convention of sensor_msgs/Imu);
- num_samples > 1: one result per mode of the samples (hypotheses.py), heaviest first, each
  with its own pose and covariance (-1 first for a mode of one sample) and score = the object's
  confidence x the mode's weight, so the scores of all modes add up to the confidence;
  results[0] is the best single pose;
- bbox: centre = results[0].pose (the object origin is its box centre), size = box extents.
See docs/OUTPUTS.md.
"""

import numpy as np
from geometry_msgs.msg import Point, Pose, PoseWithCovariance, TransformStamped, Vector3
from std_msgs.msg import ColorRGBA, Header
from vision_msgs.msg import (
    Detection3D,
    Detection3DArray,
    ObjectHypothesis,
    ObjectHypothesisWithPose,
)
from visualization_msgs.msg import Marker, MarkerArray

from posediff_ros.calibration import not_estimated
from posediff_ros.categories import BY_ID
from posediff_ros.geometry import box_corners, matrix_to_quaternion

# one colour per NOCS class (1..6), RGB in [0, 1]
CLASS_COLOURS = {
    1: (0.12, 0.47, 0.71), 2: (1.0, 0.5, 0.05), 3: (0.17, 0.63, 0.17),
    4: (0.84, 0.15, 0.16), 5: (0.58, 0.40, 0.74), 6: (0.55, 0.34, 0.29),
}
# the 12 edges of box_corners' corner order (x slowest, z fastest)
BOX_EDGES = [(0, 1), (2, 3), (4, 5), (6, 7), (0, 2), (1, 3), (4, 6), (5, 7),
             (0, 4), (1, 5), (2, 6), (3, 7)]


def pose_msg(rotation: np.ndarray, translation: np.ndarray,
             quaternion: np.ndarray | None = None) -> Pose:
    """quaternion (x, y, z, w): `rotation`'s, when already computed (for many at once)."""
    q = matrix_to_quaternion(rotation) if quaternion is None else quaternion
    pose = Pose()
    pose.position.x, pose.position.y, pose.position.z = (float(v) for v in translation)
    pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = (
        float(v) for v in q)
    return pose


def hypothesis_msg(class_name: str, score: float, rotation, translation,
                   covariance: np.ndarray | None, quaternion: np.ndarray | None = None
                   ) -> ObjectHypothesisWithPose:
    cov = (not_estimated() if covariance is None else np.asarray(covariance, np.float64)).ravel()
    return ObjectHypothesisWithPose(
        hypothesis=ObjectHypothesis(class_id=class_name, score=float(score)),
        pose=PoseWithCovariance(pose=pose_msg(rotation, translation, quaternion),
                                covariance=cov.tolist()))


def detection(header: Header, instance_id: int, class_id: int, rotation, translation, size,
              score: float, covariance: np.ndarray | None = None,
              hypotheses=(), quaternion: np.ndarray | None = None) -> Detection3D:
    """hypotheses: the object's modes (hypotheses.Hypothesis), heaviest first; none: the one
    pose given (`quaternion`: its rotation's, when already computed)."""
    det = Detection3D(header=header, id=str(instance_id))
    name = BY_ID[class_id].name
    det.results = [hypothesis_msg(name, score * h.weight, h.rotation, h.translation,
                                  h.covariance) for h in hypotheses] or [
        hypothesis_msg(name, score, rotation, translation, covariance, quaternion)]
    det.bbox.center = det.results[0].pose.pose
    det.bbox.size = Vector3(x=float(size[0]), y=float(size[1]), z=float(size[2]))
    return det


def detections_msg(header: Header, objects) -> Detection3DArray:
    """objects: pipeline.DetectedObject list (or anything with the same fields)."""
    quaternions = (matrix_to_quaternion(np.stack([o.rotation for o in objects])) if objects
                   else [])  # one call for all objects: most of the cost of building them
    return Detection3DArray(header=header, detections=[
        detection(header, o.instance_id, o.class_id, o.rotation, o.translation, o.size,
                  o.score, o.covariance, getattr(o, "hypotheses", ()), q)
        for o, q in zip(objects, quaternions, strict=True)])


def transforms(header: Header, objects, names: list[str]) -> list[TransformStamped]:
    out = []
    for obj, name in zip(objects, names, strict=True):
        tf = TransformStamped(header=header, child_frame_id=name)
        pose = pose_msg(obj.rotation, obj.translation)
        tf.transform.translation = Vector3(x=pose.position.x, y=pose.position.y,
                                           z=pose.position.z)
        tf.transform.rotation = pose.orientation
        out.append(tf)
    return out


def _colour(rgb, a: float = 1.0) -> ColorRGBA:
    return ColorRGBA(r=float(rgb[0]), g=float(rgb[1]), b=float(rgb[2]), a=a)


def _point(p) -> Point:
    return Point(x=float(p[0]), y=float(p[1]), z=float(p[2]))


def object_markers(header: Header, obj, name: str, line_width: float = 0.004) -> list[Marker]:
    """Box (LINE_LIST), axes (LINE_LIST, x red y green z blue) and a text label."""
    colour = CLASS_COLOURS.get(obj.class_id, (1.0, 1.0, 1.0))
    corners = box_corners(obj.size, obj.rotation, obj.translation)
    box = Marker(header=header, ns="box", id=obj.instance_id, type=Marker.LINE_LIST,
                 action=Marker.ADD)
    box.pose.orientation.w = 1.0
    box.scale.x = line_width
    box.color = _colour(colour)
    box.points = [_point(corners[i]) for edge in BOX_EDGES for i in edge]

    axes = Marker(header=header, ns="axes", id=obj.instance_id, type=Marker.LINE_LIST,
                  action=Marker.ADD)
    axes.pose = pose_msg(obj.rotation, obj.translation)
    axes.scale.x = line_width
    length = 0.6 * float(np.max(obj.size))
    for axis, rgb in enumerate([(1, 0, 0), (0, 1, 0), (0, 0, 1)]):
        tip = np.zeros(3)
        tip[axis] = length
        axes.points += [_point((0, 0, 0)), _point(tip)]
        axes.colors += [_colour(rgb), _colour(rgb)]

    label = Marker(header=header, ns="label", id=obj.instance_id,
                   type=Marker.TEXT_VIEW_FACING, action=Marker.ADD)
    label.pose.position = _point(obj.translation - obj.rotation[:, 1] * 0.6 * obj.size[1])
    label.pose.orientation.w = 1.0
    label.scale.z = 0.03
    label.color = _colour((1.0, 1.0, 1.0))
    label.text = f"{name} {obj.score:.2f}"
    return [box, axes, label]


class MarkerTracker:
    """Builds each frame's MarkerArray and deletes the markers of objects that vanished."""

    NAMESPACES = ("box", "axes", "label")

    def __init__(self):
        self.previous: set[int] = set()

    def update(self, header: Header, objects, names: list[str]) -> MarkerArray:
        markers = MarkerArray()
        current = {o.instance_id for o in objects}
        for obj, name in zip(objects, names, strict=True):
            markers.markers += object_markers(header, obj, name)
        for gone in sorted(self.previous - current):
            for ns in self.NAMESPACES:
                markers.markers.append(Marker(header=header, ns=ns, id=gone,
                                              action=Marker.DELETE))
        self.previous = current
        return markers
