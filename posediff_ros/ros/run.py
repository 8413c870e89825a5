"""The `main()` of every node of this package: start, spin, and stop cleanly on Ctrl-C,
SIGTERM or launch shutdown (exit 0, no traceback); a start-up failure is one fatal line and
exit code 1."""

import signal
from collections.abc import Callable

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node


def run_node(make_node: Callable[[], Node], name: str, args: list[str] | None = None,
             cleanup: Callable[[Node], None] = lambda node: None,
             startup_errors: tuple[type[Exception], ...] = (Exception,)) -> int:
    rclpy.init(args=args)
    try:
        node = make_node()
    except startup_errors as err:
        # bad configuration or a missing/corrupt model: say so clearly and exit non-zero
        rclpy.logging.get_logger(name).fatal(f"cannot start: {err}")
        rclpy.try_shutdown()
        return 1
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        # A terminal's Ctrl-C reaches `ros2 launch` and the node, and launch then forwards its
        # own SIGINT: ignore repeats while cleaning up, or they interrupt destroy_node().
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        cleanup(node)
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
