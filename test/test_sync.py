"""Frame pairing (exact and approximate) and the one-slot latest-frame buffer: the cases the
issue reports, one by one (random streams: test_sync_properties.py)."""

import threading
import time

import pytest

from posediff_ros.sync import ApproxTimeSync, ExactTimeSync, LatestSlot, StampHistory, make_sync

MS = 1_000_000
PERIOD = 33_333_333  # 30 Hz
TOPICS = ["depth", "mask", "detections"]


def feed(sync, arrivals):
    """arrivals: (topic, frame index) in arrival order; message = (topic, frame index)."""
    sets = []
    for topic, k in arrivals:
        sets += sync.add(topic, 10**9 + k * PERIOD, (topic, k))
    return [tuple(s[t][1] for t in sync.topics) for s in sets]


@pytest.mark.parametrize("policy", ["exact", "approximate"])
def test_issue_reproduction_a_lost_depth_mixes_no_frames(policy):
    """The issue's reproduction: 30 Hz, slop 50 ms, frame 2's depth lost. The old sync paired
    depth k with mask k-1 and detections k-1 from frame 3 on, for ever, counting 0 drops."""
    sync = make_sync(policy, TOPICS, slop=0.05)
    arrivals = [(t, k) for k in range(8) for t in TOPICS if (k, t) != (2, "depth")]
    assert feed(sync, arrivals) == [(k, k, k) for k in (0, 1, 3, 4, 5, 6, 7)]
    if policy == "exact":
        assert sync.stats.missing == {"depth": 1} and sync.stats.frames_dropped == 1
    assert sync.stats.unmatched == {"mask": 1, "detections": 1}


@pytest.mark.parametrize("policy", ["exact", "approximate"])
@pytest.mark.parametrize("lost", ["mask", "detections"])
@pytest.mark.parametrize("order", [TOPICS, TOPICS[::-1]])
def test_a_lost_mask_or_detections_mixes_no_frames(policy, lost, order):
    sync = make_sync(policy, TOPICS, slop=0.05)
    arrivals = [(t, k) for k in range(10) for t in order if (k, t) != (4, lost)]
    assert feed(sync, arrivals) == [(k, k, k) for k in range(10) if k != 4]


def test_exact_late_partners_still_pair():
    """Masks 60-130 ms and detections 30-90 ms behind the depth, with jitter, so that they
    overtake each other: every frame pairs with its own messages; frames 2 and 6, whose
    messages were overtaken by the next frame's, are skipped (never answered late)."""
    mask_ms = [100, 70, 130, 90, 110, 60, 120, 80, 100, 75, 125, 95]
    detections_ms = [60, 40, 90, 50, 30, 80, 45, 70, 35, 65, 55, 85]
    timed = []
    for k in range(12):
        timed += [(k * 33, 0, "depth", k), (k * 33 + mask_ms[k], 1, "mask", k),
                  (k * 33 + detections_ms[k], 2, "detections", k)]
    sync = ExactTimeSync(TOPICS, queue_size=10)
    out = feed(sync, [(topic, k) for _, _, topic, k in sorted(timed)])
    assert out == [(k, k, k) for k in range(12) if k not in (2, 6)]
    assert sync.stats.frames_dropped == 2 and sync.pending() == 0


def test_exact_a_stalled_segmenter_mixes_no_frames():
    """The CPU stalls the segmenter for 400 ms (12 frames, more than queue_size), then its
    masks and detections come in a burst: the oldest depth frames were given up, the rest
    pair right."""
    sync = ExactTimeSync(TOPICS, queue_size=10)
    arrivals = [("depth", k) for k in range(12)]
    arrivals += [(t, k) for k in range(12) for t in ("mask", "detections")]
    assert feed(sync, arrivals) == [(k, k, k) for k in range(2, 12)]
    assert sync.stats.missing == {"mask": 2, "detections": 2}
    assert sync.stats.late == {"mask": 2, "detections": 2}


def test_exact_a_mask_overtaking_the_previous_one():
    """Mask 5 overtakes mask 4 (a segmenter's jitter): frame 5 is answered, frame 4 skipped
    (never answered late) and counted; no frame is mis-paired."""
    sync = ExactTimeSync(["depth", "mask"])
    arrivals = [(t, k) for k in range(4) for t in ("depth", "mask")]
    arrivals += [("depth", 4), ("depth", 5), ("mask", 5), ("mask", 4), ("depth", 6), ("mask", 6)]
    assert feed(sync, arrivals) == [(0, 0), (1, 1), (2, 2), (3, 3), (5, 5), (6, 6)]
    assert sync.stats.missing == {"mask": 1} and sync.stats.late == {"mask": 1}


def test_exact_for_a_bag_keeps_every_complete_frame():
    sync = ExactTimeSync(["depth", "mask"], drop_older=False)
    arrivals = [("depth", 4), ("depth", 5), ("mask", 5), ("mask", 4), ("mask", 5)]
    assert feed(sync, arrivals) == [(5, 5), (4, 4)]
    assert sync.stats.duplicates == {"mask": 1}  # the repeated mask 5


def test_exact_gives_up_frames_after_max_age_and_says_which_topic_was_missing():
    """The mask topic is dead: depth frames wait at most max_age (0.2 s = 6 frames here),
    then count as missing the mask."""
    sync = ExactTimeSync(["depth", "mask"], queue_size=1000, max_age=0.2)
    assert feed(sync, [("depth", k) for k in range(100)]) == []
    assert sync.pending() <= 7
    assert sync.stats.missing == {"mask": sync.stats.frames_dropped}
    assert sync.stats.frames_dropped >= 93
    values = sync.stats.values()
    assert values["frames dropped, missing topic"] == f"mask {sync.stats.frames_dropped}"


def test_exact_queue_size_bounds_each_topic():
    sync = ExactTimeSync(["depth", "mask"], queue_size=3, max_age=1.0)
    feed(sync, [("depth", k) for k in range(10)])
    assert sync.pending() == 3 and sync.stats.missing == {"mask": 7}


def test_duplicates_and_restarts():
    sync = ExactTimeSync(["depth", "mask"])
    assert feed(sync, [("depth", 0), ("depth", 0), ("mask", 0), ("mask", 0)]) == [(0, 0)]
    assert sync.stats.duplicates == {"depth": 1, "mask": 1}  # the second mask: answered
    # the stamps restart 10 s earlier (a bag looped): pairing starts over
    sync.add("depth", 10**9 + 5 * PERIOD, "d5")
    out = sync.add("depth", 10**9 - 10**10, "d_new") + sync.add("mask", 10**9 - 10**10, "m_new")
    assert [(s["depth"], s["mask"]) for s in out] == [("d_new", "m_new")]
    assert sync.stats.resets == 1 and sync.stats.missing == {"mask": 1}


def test_approximate_picks_the_nearest_candidate_not_the_newest():
    sync = ApproxTimeSync(["a", "b"], slop=0.05)
    for t in (100, 118, 140):
        assert sync.add("b", t * MS, f"b{t}") == []
    (out,) = sync.add("a", 119 * MS, "a")
    assert out["b"] == "b118" and out["_stamp_ns"] == 119 * MS
    assert sync.stats.unmatched == {"b": 1}  # b100 passed over


def test_approximate_waits_until_no_better_set_can_arrive():
    """a110 pairs with the nearest b, and only once no nearer b can still come."""
    sync = ApproxTimeSync(["a", "b"], slop=0.05, age_penalty=0.0)
    assert sync.add("a", 110 * MS, "a110") == []
    assert sync.add("b", 100 * MS, "b100") == []  # a b between 100 and 120 would be nearer
    assert sync.add("b", 108 * MS, "b108") == []  # ... and one between 108 and 112 still
    (out,) = sync.add("b", 130 * MS, "b130")  # b comes in stamp order: 108 is the nearest
    assert (out["a"], out["b"]) == ("a110", "b108")
    assert sync.stats.unmatched == {"b": 1} and sync.pending() == 1


def test_approximate_never_pairs_beyond_slop():
    sync = ApproxTimeSync(["a", "b"], slop=0.01)
    sync.add("a", 100 * MS, "a")
    assert sync.add("b", 150 * MS, "b") == []
    assert sync.stats.unmatched == {"a": 1}


def test_rejects_bad_arguments():
    with pytest.raises(ValueError):
        ApproxTimeSync([], 0.1)
    with pytest.raises(ValueError):
        ApproxTimeSync(["a"], -1)
    with pytest.raises(ValueError):
        ExactTimeSync(["a", "a"])
    with pytest.raises(ValueError):
        ExactTimeSync(["a"], max_age=5.0)  # must be below the reset jump
    with pytest.raises(ValueError, match="not in"):
        make_sync("nearest", ["a"])
    with pytest.raises(KeyError):
        ExactTimeSync(["a"]).add("b", 0, None)


def test_slot_keeps_only_the_newest():
    slot = LatestSlot()
    for i in range(5):
        slot.put(i)
    assert slot.take(timeout=0) == 4 and slot.replaced == 4
    assert slot.take(timeout=0.01) is None


def test_slot_with_a_slow_consumer_never_queues():
    """The consumer takes one item per three puts: it waits for the producer's progress, not
    for a clock (sleeps stretch under load and let a slow consumer keep up)."""
    slot, seen, progress = LatestSlot(), [], threading.Condition()
    produced = 0

    def consume():
        while (item := slot.take(timeout=5.0)) is not None:
            seen.append(item)
            with progress:  # slower than the producer: three more puts before the next take
                progress.wait_for(lambda: produced >= min(item + 4, 50), timeout=5.0)

    worker = threading.Thread(target=consume)
    worker.start()
    for i in range(50):
        slot.put(i)
        with progress:
            produced = i + 1
            progress.notify_all()
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


def test_camera_info_is_picked_by_stamp():
    """The resolution changes at t = 10: frames before keep the old camera_info, even when
    the new one has arrived already; out-of-order and older-than-all frames are served."""
    history = StampHistory(size=4)
    assert history.pick(5) is None
    for t in (7, 8, 9):
        history.add(t * MS, f"640x480@{t}")
    history.add(10 * MS, "1280x720@10")
    assert history.pick(9 * MS) == "640x480@9"
    assert history.pick(int(9.5 * MS)) == "640x480@9"  # the newest one not after the frame
    assert history.pick(12 * MS) == "1280x720@10"
    history.add(int(8.5 * MS), "640x480@8.5")  # late: inserted in stamp order, 7 drops out
    assert history.pick(int(8.7 * MS)) == "640x480@8.5"
    assert history.pick(1 * MS) == "640x480@8"  # older than all: the oldest kept
    history.add(10 * MS - 10**10, "restarted")  # stamps jumped back 10 s: start over
    assert history.stamps == [10 * MS - 10**10]


def test_flush_at_the_end_of_a_bag():
    """Approximate: the set that waited for a next message is decided at the end; exact:
    the incomplete frames are given up and counted."""
    sync = ApproxTimeSync(["a", "b"], slop=0.05)
    sync.add("a", 110 * MS, "a110")
    sync.add("b", 100 * MS, "b100")
    assert sync.add("b", 108 * MS, "b108") == []
    (out,) = sync.flush()
    assert (out["a"], out["b"]) == ("a110", "b108") and sync.pending() == 0
    assert sync.stats.unmatched == {"b": 1}
    exact = ExactTimeSync(["a", "b"])
    exact.add("a", 110 * MS, "a110")
    assert exact.flush() == [] and exact.stats.missing == {"b": 1} and exact.pending() == 0
