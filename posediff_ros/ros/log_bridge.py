"""The core's Python log records (posediff_ros.*: backend fallback, graph export) sent to a
node's logger, so that they reach the console and /rosout with their level like the node's own
lines, instead of Python's last-resort stderr print."""

import logging


class RosLogHandler(logging.Handler):
    def __init__(self, ros_logger):
        super().__init__(logging.INFO)
        self.ros_logger = ros_logger

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.levelno >= logging.ERROR:
            self.ros_logger.error(text)
        elif record.levelno >= logging.WARNING:
            self.ros_logger.warning(text)
        else:
            self.ros_logger.info(text)


def forward_core_logs(ros_logger) -> RosLogHandler:
    """Attach a handler for the posediff_ros loggers (INFO and up); returns it, to remove."""
    handler = RosLogHandler(ros_logger)
    core = logging.getLogger("posediff_ros")
    core.addHandler(handler)
    if core.level == logging.NOTSET or core.level > logging.INFO:
        core.setLevel(logging.INFO)
    return handler
