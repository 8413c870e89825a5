"""Tracking (ROS-free): stable object ids, warm-started sampling, SE(3) smoothing.

association.py (which object is which track), smoothing.py (per-object filter on SE(3)),
tracker.py (tracks, warm starts, re-initialisation, retirement).
"""

from posediff_ros.runtime.base import WarmStart
from posediff_ros.tracking.association import AssociationConfig
from posediff_ros.tracking.smoothing import FilterNoise, PoseFilter
from posediff_ros.tracking.tracker import (
    Observation,
    PredictFn,
    TrackedObject,
    Tracker,
    TrackerConfig,
    TrackerStats,
    observations,
)

__all__ = ["AssociationConfig", "FilterNoise", "Observation", "PoseFilter", "PredictFn",
           "TrackedObject", "Tracker", "TrackerConfig", "TrackerStats", "WarmStart",
           "observations"]
