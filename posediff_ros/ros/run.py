"""The `main()` of every node of this package: start, spin, and stop cleanly on Ctrl-C,
SIGTERM or launch shutdown (exit 0, no traceback, no warning); a start-up failure is one
fatal line and exit code 1.

Order on stop: signal -> the spin loop ends -> `cleanup` (e.g. the worker thread finishes
its frame and publishes it) -> the node is destroyed -> the context shuts down. rclpy's own
signal handlers would shut the context down first, inside the signal, while a worker thread
may still be publishing ("publisher's context is invalid", "failed to publish log message to
rosout", a traceback from the executor's wait set): so they are not installed, and SIGINT /
SIGTERM only ask the spin loop to end.
"""

import os
import signal
import threading
from collections.abc import Callable

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

SPIN_PERIOD_S = 0.1  # how often the loop looks at the stop request


def _request_stop_on_signals(stop: threading.Event) -> None:
    def handler(signum, frame):  # repeats (terminal + launch both send SIGINT) are harmless
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)


def make_executor(context):
    """rclpy's EventsExecutor (callbacks dispatched from C++, far less Python per message)
    where this rclpy has it, unless POSEDIFF_EXECUTOR=single; else SingleThreadedExecutor."""
    if os.environ.get("POSEDIFF_EXECUTOR", "events") == "events":
        try:
            from rclpy.experimental import EventsExecutor
        except ImportError:  # rclpy before Kilted
            pass
        else:
            return EventsExecutor(context=context)
    return SingleThreadedExecutor(context=context)


def spin_until_stopped(node: Node, stop: threading.Event) -> None:
    executor = make_executor(node.context)
    executor.add_node(node)
    try:
        while not stop.is_set() and rclpy.ok(context=node.context):
            executor.spin_once(timeout_sec=SPIN_PERIOD_S)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.remove_node(node)
        executor.shutdown(timeout_sec=0)


def run_node(make_node: Callable[[], Node], name: str, args: list[str] | None = None,
             cleanup: Callable[[Node], None] = lambda node: None,
             startup_errors: tuple[type[Exception], ...] = (Exception,)) -> int:
    stop = threading.Event()
    _request_stop_on_signals(stop)
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    try:
        node = make_node()
    except startup_errors as err:
        # bad configuration or a missing/corrupt model: say so clearly and exit non-zero
        rclpy.logging.get_logger(name).fatal(f"cannot start: {err}")
        rclpy.try_shutdown()
        return 1
    try:
        spin_until_stopped(node, stop)
    finally:
        cleanup(node)  # while the context is valid: a frame in flight is published
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
