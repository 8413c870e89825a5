"""posediff_ros: category-level 6D object pose estimation.

The core (geometry, data, model, sampling, training, metrics, export, runtime backends)
imports without rclpy; only posediff_ros.ros needs ROS 2.
"""

__version__ = "0.1.0"
