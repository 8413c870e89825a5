"""Frame pairing by header stamp, and the newest-frame slot (ROS-free).

The node (and the bag tool) feed every depth, mask and detections message to one of two
policies (the node's `sync` parameter); `add()` returns the sets it completes, each a dict
{topic: message, "_stamp_ns": stamp of the first topic}:

exact (default)
    Segmenters and detectors copy the image header, so the messages of one frame share one
    stamp. A message waits for its partners (late ones still pair) until the newest stamp seen
    is more than `max_age` newer, or until `queue_size` messages of its topic are waiting;
    then its frame is given up and counted under the topic that was missing. When a newer
    frame completes first, the older incomplete frames are given up (`drop_older`, the node):
    a pose is never answered for a frame older than one already answered.

approximate
    For sources that re-stamp. The semantics of message_filters' C++ ApproximateTime policy
    (wiki.ros.org/message_filters/ApproximateTime): the first messages of every topic fix a
    pivot (the latest of them); among the sets whose earliest message is not after the pivot,
    the one with the smallest spread (later sets penalised by `age_penalty`, default 0.1 as in
    C++) is emitted, and only once no better set can still arrive. `slop` is the largest
    spread of a set (C++: max interval duration). Messages must come in stamp order per topic;
    older ones are dropped and counted.

Both count every message that is not part of an emitted set (SyncStats), reset when the stamps
of a topic jump back by more than `reset_after` seconds (bag looped, camera restarted,
simulated time reset), and keep at most `queue_size` messages per topic.

LatestSlot is the one-slot buffer between the callbacks and the inference worker: a newer set
replaces an unprocessed older one, so nothing queues up when inference is slower than the
camera, and older complete sets are skipped, never answered late.
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

POLICIES = ("exact", "approximate")


@dataclass
class SyncStats:
    """What happened to the messages fed in. Every message ends in exactly one place: part of
    an emitted set, `unmatched`, `late`, `duplicates`, or still waiting (`pending()`)."""

    sets: int = 0  # complete sets emitted
    unmatched: Counter = field(default_factory=Counter)  # topic -> messages given up unpaired
    missing: Counter = field(default_factory=Counter)  # exact: topic -> frames given up without it
    frames_dropped: int = 0  # exact: frames given up incomplete
    late: Counter = field(default_factory=Counter)  # topic -> messages too old to pair any more
    duplicates: Counter = field(default_factory=Counter)  # topic -> repeated stamps dropped
    resets: int = 0  # stamps jumped back: everything waiting was given up

    def values(self) -> dict[str, str]:
        """Key/values for /diagnostics."""
        dropped = sum(self.unmatched.values()) + sum(self.late.values()) \
            + sum(self.duplicates.values())
        out = {"sets emitted": str(self.sets), "unsynced messages dropped": str(dropped),
               "stamp resets": str(self.resets)}
        for name in ("missing", "unmatched", "late", "duplicates"):
            counts = getattr(self, name)
            out[f"{_LABELS[name]}"] = ", ".join(f"{t} {n}" for t, n in sorted(counts.items())) \
                or "0"
        if self.frames_dropped:
            out["frames dropped incomplete"] = str(self.frames_dropped)
        return out


_LABELS = {"missing": "frames dropped, missing topic", "unmatched": "messages dropped unpaired",
           "late": "messages dropped late", "duplicates": "duplicate stamps dropped"}


class _StampSync:
    """What both policies share: topic checks, reset on a jump back, counters."""

    def __init__(self, topics: list[str], queue_size: int, reset_after: float):
        if not topics or len(set(topics)) != len(topics):
            raise ValueError(f"need distinct topics, got {topics}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self.topics = list(topics)
        self.queue_size = queue_size
        self.reset_ns = int(reset_after * 1e9)
        self.stats = SyncStats()
        self._last: dict[str, int] = {}  # newest accepted stamp per topic

    def add(self, topic: str, stamp_ns: int, msg: Any) -> list[dict[str, Any]]:
        """Feed one message; returns the sets it completes, oldest first (usually 0 or 1)."""
        if topic not in self.topics:
            raise KeyError(f"unknown topic {topic!r}; synced topics: {self.topics}")
        last = self._last.get(topic)
        if last is not None and last - stamp_ns > self.reset_ns:
            self.reset()
            self.stats.resets += 1
            last = None
        self._last[topic] = stamp_ns if last is None else max(stamp_ns, last)
        return self._add(topic, stamp_ns, msg, last)

    def _emit(self, members: dict[str, tuple[int, Any]]) -> dict[str, Any]:
        self.stats.sets += 1
        out = {t: members[t][1] for t in self.topics}
        out["_stamp_ns"] = members[self.topics[0]][0]
        return out

    def reset(self) -> None:
        """Give up everything waiting (counted) and forget the stamps seen."""
        self._last.clear()

    def _add(self, topic, stamp_ns, msg, last) -> list[dict[str, Any]]:
        raise NotImplementedError

    def pending(self) -> int:
        raise NotImplementedError


class ExactTimeSync(_StampSync):
    """Sets of messages with identical stamps; see the module docstring."""

    def __init__(self, topics: list[str], queue_size: int = 30, max_age: float = 1.0,
                 drop_older: bool = True, reset_after: float = 2.0):
        super().__init__(topics, queue_size, reset_after)
        if not 0 <= max_age < reset_after:
            raise ValueError(f"need 0 <= max_age ({max_age}) < reset_after ({reset_after})")
        self.max_age_ns = int(max_age * 1e9)
        self.drop_older = drop_older
        self.frames: dict[int, dict[str, Any]] = {}  # stamp -> {topic: msg}, waiting
        self._newest: int | None = None  # newest stamp accepted (any topic)
        self._floor: int | None = None  # drop_older: the newest stamp emitted
        self._done: deque[int] = deque(maxlen=4 * queue_size)  # stamps emitted or given up
        self._emitted: deque[int] = deque(maxlen=4 * queue_size)  # stamps emitted

    def _too_old(self, stamp_ns: int) -> bool:
        return (stamp_ns in self._done
                or (self._floor is not None and stamp_ns <= self._floor)
                or (self._newest is not None and self._newest - stamp_ns > self.max_age_ns))

    def _add(self, topic, stamp_ns, msg, last) -> list[dict[str, Any]]:
        if stamp_ns in self._emitted:  # its frame was answered already
            self.stats.duplicates[topic] += 1
            return []
        if self._too_old(stamp_ns):
            self.stats.late[topic] += 1
            return []
        frame = self.frames.setdefault(stamp_ns, {})
        if topic in frame:
            self.stats.duplicates[topic] += 1
            return []
        frame[topic] = msg
        self._newest = stamp_ns if self._newest is None else max(self._newest, stamp_ns)
        out = []
        if len(frame) == len(self.topics):
            del self.frames[stamp_ns]
            self._done.append(stamp_ns)
            self._emitted.append(stamp_ns)
            if self.drop_older:
                self._floor = stamp_ns
                self._give_up(lambda s: s < stamp_ns)
            out.append(self._emit({t: (stamp_ns, m) for t, m in frame.items()}))
        self._give_up(lambda s: self._newest - s > self.max_age_ns)
        waiting = sorted(s for s, f in self.frames.items() if topic in f)
        if len(waiting) > self.queue_size:
            self._give_up(lambda s: s <= waiting[-self.queue_size - 1])
        return out

    def _give_up(self, which) -> None:
        for stamp in [s for s in self.frames if which(s)]:
            frame = self.frames.pop(stamp)
            self._done.append(stamp)
            self.stats.frames_dropped += 1
            self.stats.missing.update(t for t in self.topics if t not in frame)
            self.stats.unmatched.update(list(frame))

    def reset(self) -> None:
        self._give_up(lambda s: True)
        self._newest = self._floor = None
        self._done.clear()
        self._emitted.clear()
        super().reset()

    def pending(self) -> int:
        return sum(len(f) for f in self.frames.values())

    def flush(self) -> list[dict[str, Any]]:
        """End of the stream (a bag): give up the frames still waiting, counted like any
        other; returns [] (an incomplete frame is never a set)."""
        self._give_up(lambda s: True)
        return []


class ApproxTimeSync(_StampSync):
    """message_filters' ApproximateTime policy; see the module docstring.

    Each topic keeps its unused messages in stamp order. A decision (`_decide`) re-runs the
    policy's search over them: the heads fix the pivot, then the earliest head is advanced
    step by step, each step's heads being a candidate set; the search ends at the pivot, or
    earlier once no later candidate can be better. Where a topic runs out of messages, its
    next one is assumed at the pivot's stamp (the best it could be): if such a virtual
    candidate would be better, the decision waits for that topic.
    """

    def __init__(self, topics: list[str], slop: float, queue_size: int = 30,
                 age_penalty: float = 0.1, reset_after: float = 2.0):
        super().__init__(topics, queue_size, reset_after)
        if slop < 0 or age_penalty < 0:
            raise ValueError(f"need slop >= 0 and age_penalty >= 0, got {slop}, {age_penalty}")
        self.slop_ns = int(round(slop * 1e9))
        self.penalty = 1 + Fraction(age_penalty).limit_denominator(1000)  # exact comparisons
        self.queues: dict[str, list[tuple[int, Any]]] = {t: [] for t in self.topics}
        self._dropped: dict[str, bool] = dict.fromkeys(self.topics, False)  # overflowed lately

    def _add(self, topic, stamp_ns, msg, last) -> list[dict[str, Any]]:
        if last is not None and stamp_ns <= last:  # not in stamp order on this topic
            counts = self.stats.duplicates if stamp_ns == last else self.stats.late
            counts[topic] += 1
            return []
        queue = self.queues[topic]
        queue.append((stamp_ns, msg))
        out = self._emit_ready()
        if len(queue) > self.queue_size:  # still too many after matching: drop the oldest
            queue.pop(0)
            self.stats.unmatched[topic] += 1
            self._dropped[topic] = True
            out += self._emit_ready()
        return out

    def _emit_ready(self, final: bool = False) -> list[dict[str, Any]]:
        out = []
        while all(self.queues.values()):
            chosen = self._decide(final)
            if chosen is None:
                break
            members = {}
            for t, i in zip(self.topics, chosen, strict=True):
                members[t] = self.queues[t][i]
                if i:  # older messages are passed over for good
                    self.stats.unmatched[t] += i
                del self.queues[t][:i + 1]
            out.append(self._emit(members))
        return out

    def _heads(self, index: list[int], virtual: int | None = None) -> tuple[int, int, int, int]:
        """(start topic, start stamp, end topic, end stamp) of the heads at `index`; a topic
        whose messages ran out counts at the stamp `virtual`. Ties: the first topic starts,
        the last one ends (as in C++)."""
        stamps = [self.queues[t][i][0] if i < len(self.queues[t]) else virtual
                  for t, i in zip(self.topics, index, strict=True)]
        lo = min(range(len(stamps)), key=lambda k: (stamps[k], k))
        hi = max(range(len(stamps)), key=lambda k: (stamps[k], k))
        return lo, stamps[lo], hi, stamps[hi]

    def _decide(self, final: bool = False) -> list[int] | None:
        """Queue index per topic of the set to emit now, or None to wait. final: no message
        will come any more, so the best set so far is the set."""
        index = [0] * len(self.topics)
        while True:  # the first candidate: its end fixes the pivot
            lo, start, hi, end = self._heads(index)
            for k in range(len(self.topics)):
                if k != hi:  # nothing dropped could have ended this set
                    self._dropped[self.topics[k]] = False
            if end - start <= self.slop_ns and not self._dropped[self.topics[hi]]:
                break
            self.queues[self.topics[lo]].pop(0)  # too far apart: the earliest cannot pair
            self.stats.unmatched[self.topics[lo]] += 1
            if not self.queues[self.topics[lo]]:
                return None
        pivot, pivot_stamp = hi, end
        best, best_start, best_end = list(index), start, end
        while True:
            index[lo] += 1
            if lo == pivot or self._proven(end, pivot_stamp, best_start, best_end):
                return best
            if any(i == len(self.queues[t]) for t, i in zip(self.topics, index, strict=True)):
                return best if final or self._proven_virtually(index, pivot_stamp, best_start,
                                                               best_end) else None
            lo, start, hi, end = self._heads(index)
            for k in range(len(self.topics)):
                if k != hi:
                    self._dropped[self.topics[k]] = False
            if self._better(start, end, best_start, best_end):
                best, best_start, best_end = list(index), start, end

    def _better(self, start: int, end: int, best_start: int, best_end: int) -> bool:
        return (end - best_end) * self.penalty < start - best_start

    def _proven(self, end: int, pivot_stamp: int, best_start: int, best_end: int) -> bool:
        """Every later candidate contains [pivot, end]: none can beat the best any more."""
        return (end - best_end) * self.penalty >= pivot_stamp - best_start

    def _proven_virtually(self, index, pivot_stamp, best_start, best_end) -> bool:
        """Go on with the topics that ran out assumed at the pivot's stamp: proven when no
        such optimistic candidate beats the best."""
        index = list(index)
        while True:
            lo, start, _, end = self._heads(index, virtual=pivot_stamp)
            if self._proven(end, pivot_stamp, best_start, best_end):
                return True
            if self._better(start, end, best_start, best_end):
                return False
            index[lo] += 1  # start < pivot here, so `lo` still has real messages

    def reset(self) -> None:
        for topic, queue in self.queues.items():
            if queue:
                self.stats.unmatched[topic] += len(queue)
            queue.clear()
        self._dropped = dict.fromkeys(self.topics, False)
        super().reset()

    def pending(self) -> int:
        return sum(len(q) for q in self.queues.values())

    def flush(self) -> list[dict[str, Any]]:
        """End of the stream (a bag): the sets that were waiting for messages that will not
        come now are decided; the rest is given up (counted)."""
        out = self._emit_ready(final=True)
        self.reset()
        return out


def make_sync(policy: str, topics: list[str], slop: float = 0.0, queue_size: int = 30,
              max_age: float = 1.0, drop_older: bool = True) -> ExactTimeSync | ApproxTimeSync:
    """The node's and the bag tool's pairing, by name ('exact' or 'approximate')."""
    if policy == "exact":
        return ExactTimeSync(topics, queue_size, max_age, drop_older)
    if policy == "approximate":
        return ApproxTimeSync(topics, slop, queue_size)
    raise ValueError(f"sync {policy!r} not in {POLICIES}")


class StampHistory:
    """The last `size` items of a topic that is not paired (camera_info), kept by stamp, so a
    frame gets the one that was valid at its stamp: the item with the frame's stamp, else the
    newest one before it, else (the frame is older than all) the oldest one. When the
    intrinsics or the resolution change, the frames before the change keep the old ones."""

    def __init__(self, size: int = 30, reset_after: float = 2.0):
        self.size, self.reset_ns = size, int(reset_after * 1e9)
        self.stamps: list[int] = []
        self.items: list[Any] = []

    def add(self, stamp_ns: int, item: Any) -> None:
        if self.stamps and self.stamps[-1] - stamp_ns > self.reset_ns:  # time went back
            self.stamps, self.items = [], []
        k = bisect.bisect_left(self.stamps, stamp_ns)
        if k < len(self.stamps) and self.stamps[k] == stamp_ns:
            self.items[k] = item
            return
        self.stamps.insert(k, stamp_ns)
        self.items.insert(k, item)
        if len(self.stamps) > self.size:
            del self.stamps[0], self.items[0]

    def pick(self, stamp_ns: int) -> Any | None:
        if not self.stamps:
            return None
        k = bisect.bisect_right(self.stamps, stamp_ns)
        return self.items[max(k - 1, 0)]


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
