"""Approximate time sync and the one-slot latest-frame buffer."""

import threading
import time

import pytest

from posediff_ros.sync import ApproxTimeSync, LatestSlot

MS = 1_000_000


def test_pairs_within_slop_in_any_arrival_order():
    sync = ApproxTimeSync(["depth", "mask"], slop=0.01)
    assert sync.add("mask", 100 * MS, "m1") is None
    out = sync.add("depth", 105 * MS, "d1")
    assert out["depth"] == "d1" and out["mask"] == "m1" and out["_stamp_ns"] == 105 * MS
    assert sync.add("depth", 200 * MS, "d2") is None
    out = sync.add("mask", 203 * MS, "m2")
    assert (out["depth"], out["mask"], out["_stamp_ns"]) == ("d2", "m2", 200 * MS)
    assert sync.stats.matched == 2 and sync.stats.dropped == 0


def test_no_set_beyond_slop_and_lost_messages_are_counted():
    sync = ApproxTimeSync(["depth", "mask", "detections"], slop=0.01)
    sync.add("depth", 100 * MS, "d1")
    sync.add("mask", 100 * MS, "m1")
    assert sync.add("detections", 150 * MS, "x") is None  # 50 ms apart: not a set
    # frame 2 complete: frame 1's depth and mask are discarded as unsynced
    sync.add("depth", 200 * MS, "d2")
    sync.add("mask", 201 * MS, "m2")
    out = sync.add("detections", 199 * MS, "x2")
    assert (out["depth"], out["mask"], out["detections"]) == ("d2", "m2", "x2")
    assert sync.stats.dropped == 3  # d1, m1, x (150 ms)


def test_picks_the_nearest_candidate():
    sync = ApproxTimeSync(["a", "b"], slop=0.05)
    for t in (100, 120, 140):
        sync.add("b", t * MS, f"b{t}")
    out = sync.add("a", 138 * MS, "a")
    assert out["b"] == "b140"


def test_queues_stay_bounded():
    sync = ApproxTimeSync(["a", "b"], slop=0.001, queue_size=3)
    for i in range(100):
        sync.add("a", i * 100 * MS, i)
    assert len(sync.queues["a"]) == 3 and sync.stats.dropped == 97


def test_rejects_bad_arguments():
    with pytest.raises(ValueError):
        ApproxTimeSync([], 0.1)
    with pytest.raises(ValueError):
        ApproxTimeSync(["a"], -1)


def test_slot_keeps_only_the_newest():
    slot = LatestSlot()
    for i in range(5):
        slot.put(i)
    assert slot.take(timeout=0) == 4 and slot.replaced == 4
    assert slot.take(timeout=0.01) is None


def test_slot_with_a_slow_consumer_never_queues():
    slot, seen = LatestSlot(), []

    def consume():
        while (item := slot.take(timeout=1.0)) is not None:
            seen.append(item)
            time.sleep(0.02)  # slower than the producer

    worker = threading.Thread(target=consume)
    worker.start()
    for i in range(50):
        slot.put(i)
        time.sleep(0.002)
    time.sleep(0.05)
    slot.close()
    worker.join(timeout=5)
    assert not worker.is_alive()
    assert seen[-1] == 49 and seen == sorted(seen)  # newest last, never out of order
    assert len(seen) < 25 and slot.replaced == 50 - len(seen)


def test_close_wakes_a_waiting_consumer():
    slot = LatestSlot()
    threading.Timer(0.05, slot.close).start()
    start = time.monotonic()
    assert slot.take(timeout=5) is None
    assert time.monotonic() - start < 2
