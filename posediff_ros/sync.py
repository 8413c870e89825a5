"""Approximate time synchronisation and a one-slot latest-frame buffer (ROS-free).

The node feeds every incoming message to ApproxTimeSync; a complete set (one message per
topic, stamps within `slop`) goes into a LatestSlot that the inference worker empties. A newer
set replaces an unprocessed older one, so nothing queues up when inference is slower than
the camera.
"""

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass
class SyncStats:
    matched: int = 0
    dropped: int = 0  # messages discarded without ever being part of a set (unsynced stamps)


class ApproxTimeSync:
    """Pairs messages of several topics whose stamps (ns) lie within `slop` seconds.

    Each topic keeps a short queue. When a message arrives, the nearest message of every other
    topic is looked up; if all lie within slop of it, the set is returned and everything up to
    the matched stamps is dropped from the queues.
    """

    def __init__(self, topics: list[str], slop: float, queue_size: int = 10):
        if not topics:
            raise ValueError("need at least one topic")
        if slop < 0:
            raise ValueError(f"slop must be >= 0, got {slop}")
        self.topics = list(topics)
        self.slop_ns = int(slop * 1e9)
        self.queues: dict[str, deque[tuple[int, Any]]] = {t: deque() for t in self.topics}
        self.queue_size = queue_size
        self.stats = SyncStats()

    def reset(self) -> None:
        """Forget everything queued (time jumped back: old stamps would never pair)."""
        for queue in self.queues.values():
            queue.clear()

    def add(self, topic: str, stamp_ns: int, msg: Any) -> dict[str, Any] | None:
        """Add one message; returns {topic: msg} (plus '_stamp_ns') when a set is complete."""
        queue = self.queues[topic]
        queue.append((stamp_ns, msg))
        while len(queue) > self.queue_size:
            queue.popleft()
            self.stats.dropped += 1
        match = {topic: (stamp_ns, msg)}
        for other in self.topics:
            if other == topic:
                continue
            candidates = self.queues[other]
            if not candidates:
                return None
            best = min(candidates, key=lambda item: abs(item[0] - stamp_ns))
            match[other] = best
        stamps = [s for s, _ in match.values()]
        if max(stamps) - min(stamps) > self.slop_ns:
            return None
        for name, (stamp, _) in match.items():
            q = self.queues[name]
            while q and q[0][0] <= stamp:
                s, _ = q.popleft()
                if s != stamp:
                    self.stats.dropped += 1
        self.stats.matched += 1
        result = {name: m for name, (_, m) in match.items()}
        result["_stamp_ns"] = stamp_ns if len(self.topics) == 1 else match[self.topics[0]][0]
        return result


@dataclass
class LatestSlot:
    """Holds at most one item; put() replaces an unconsumed item (counted in `replaced`)."""

    replaced: int = 0
    _item: Any = None
    _full: bool = False
    _closed: bool = False
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def put(self, item: Any) -> None:
        with self._cond:
            if self._full:
                self.replaced += 1
            self._item, self._full = item, True
            self._cond.notify()

    def take(self, timeout: float | None = None) -> Any | None:
        """The newest item, or None after `timeout` seconds or once closed."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._full or self._closed, timeout):
                return None
            if not self._full:
                return None
            item, self._item, self._full = self._item, None, False
            return item

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
