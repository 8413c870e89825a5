"""The thin ROS 2 layer: message conversion, nodes, launch helpers. Needs rclpy."""
