"""Property tests of the frame pairing (posediff_ros/sync.py) against brute-force references,
on random streams like a camera plus a segmenter deliver them: 30 Hz with jitter, per-topic
delays of 0-150 ms, reordering between (and within) topics, 0-20 % independent loss per topic,
duplicates, stale re-sends (stamps going back) and a restart of the stamps (bag loop).

The references know the whole stream at once and say which sets are right; they share no code
with the policies: the exact one decides frame by frame from the arrival log, the approximate
one takes the best of ALL combinations of messages, as the ApproximateTime policy defines it.
"""

import itertools
import random
from dataclasses import dataclass
from fractions import Fraction

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from posediff_ros.sync import ApproxTimeSync, ExactTimeSync

MS = 1_000_000
PERIOD = 33_333_333  # 30 Hz
T0 = 1_700_000_000 * 10**9  # a wall-clock epoch: stamps far beyond float precision in ns
TOPICS = ["depth", "mask", "detections"]
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))


@dataclass(frozen=True)
class Message:
    topic: str
    stamp: int
    frame: tuple[int, int]  # (epoch, frame index): what the message really belongs to


@dataclass
class Stream:
    log: list[Message]  # in arrival order
    frames: dict[tuple[int, int], int]  # frame -> its true stamp of the first topic


@st.composite
def streams(draw, restamp: bool = False, loop: bool = True):
    """A random arrival log. restamp: every topic stamps its copy a little differently
    (sources that re-stamp: what approximate pairing is for)."""
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    n = draw(st.integers(1, 45))
    topics = TOPICS[:draw(st.integers(2, 3))]
    delay = {t: draw(st.integers(0, 150)) * MS for t in topics}
    jitter = {t: draw(st.integers(0, 60)) * MS for t in topics}
    loss = {t: draw(st.sampled_from([0.0, 0.05, 0.1, 0.2])) for t in topics}
    dup, stale = draw(st.sampled_from([0.0, 0.05])), draw(st.sampled_from([0.0, 0.03]))
    offset = {t: (rng.randint(-12, 12) * MS if restamp and k else 0)
              for k, t in enumerate(topics)}
    epochs = 2 if loop and draw(st.booleans()) else 1
    timed, frames = [], {}
    for epoch in range(epochs):
        start = T0 - epoch * 5 * 10**9  # the second epoch restarts 5 s earlier
        arrive0 = epoch * (n * PERIOD + 400 * MS)  # ... after the first has been delivered
        for k in range(n):
            base = start + k * PERIOD + rng.randint(-3, 3) * MS
            for t in topics:
                stamp = base + offset[t] + (rng.randint(-2, 2) * MS if restamp else 0)
                frames.setdefault((epoch, k), stamp)
                if rng.random() < loss[t]:
                    continue
                arrival = arrive0 + k * PERIOD + delay[t] + rng.randint(0, jitter[t])
                msg = Message(t, stamp, (epoch, k))
                timed.append((arrival, rng.random(), msg))
                if rng.random() < dup:
                    timed.append((arrival + rng.randint(0, 50) * MS, rng.random(), msg))
                if k >= 3 and rng.random() < stale:  # an old message sent again
                    old = [m for _, _, m in timed if m.topic == t and m.frame[0] == epoch]
                    timed.append((arrival, rng.random(), rng.choice(old)))
    timed.sort(key=lambda x: x[:2])
    return Stream([m for _, _, m in timed], frames), topics


# --- exact ------------------------------------------------------------------------------


def reference_exact(log: list[Message], topics: list[str], max_age: int, reset: int):
    """Frames emitted by exact pairing, decided per frame from the whole log: a frame is
    emitted when its last missing message arrives while (1) no stamp more than max_age newer
    has arrived before it and (2) no newer frame was emitted before it; stamps of a topic
    jumping back more than `reset` start the log over."""
    segments, start, last = [], 0, {}
    for pos, m in enumerate(log):
        if m.topic in last and last[m.topic] - m.stamp > reset:
            segments.append((start, pos))
            start, last = pos, {}
        last[m.topic] = max(last.get(m.topic, m.stamp), m.stamp)
    segments.append((start, len(log)))
    emitted = []
    for lo, hi in segments:
        first: dict[int, dict[str, int]] = {}
        for pos in range(lo, hi):
            first.setdefault(log[pos].stamp, {}).setdefault(log[pos].topic, pos)
        done = sorted((max(p.values()), s) for s, p in first.items() if len(p) == len(topics))
        newest_emitted = None
        for j, stamp in done:
            newest_before = max(log[p].stamp for p in range(lo, j)) if j > lo else stamp
            if newest_before - stamp > max_age:
                continue
            if newest_emitted is not None and stamp <= newest_emitted:
                continue
            newest_emitted = stamp
            emitted.append({t: log[first[stamp][t]] for t in topics})
    return emitted


def run(sync, log):
    out = []
    for m in log:
        out += sync.add(m.topic, m.stamp, m)
    return [{t: s[t] for t in sync.topics} for s in out]


def accounted(sync, fed: int) -> bool:
    """Every message fed is in a set, counted as dropped, or still waiting."""
    s = sync.stats
    dropped = sum(s.unmatched.values()) + sum(s.late.values()) + sum(s.duplicates.values())
    return fed == s.sets * len(sync.topics) + dropped + sync.pending()


@PROPERTY
@given(streams(), st.sampled_from([0.1, 0.2, 1.0]))
def test_exact_pairing_matches_the_reference(stream_topics, max_age):
    (stream, topics) = stream_topics
    sync = ExactTimeSync(topics, queue_size=10_000, max_age=max_age)
    got = run(sync, stream.log)
    want = reference_exact(stream.log, topics, int(max_age * 1e9), sync.reset_ns)
    assert got == want
    for s in got:  # every set is one frame's messages, nothing else
        assert len({m.frame for m in s.values()}) == 1
    assert accounted(sync, len(stream.log))
    # emitted in stamp order within an epoch: never a frame older than one already answered
    stamps = [s[topics[0]].stamp for s in got]
    assert all(b > a or a - b > 2 * 10**9 for a, b in itertools.pairwise(stamps))


@PROPERTY
@given(streams(loop=False))
def test_exact_every_frame_that_arrived_in_time_is_emitted_or_counted(stream_topics):
    """A frame whose messages all arrived, each within max_age of the newest stamp, is
    emitted, or skipped because a newer frame was complete first; a frame that lost a
    message is never emitted, and counted under the topic it lost."""
    stream, topics = stream_topics
    max_age = 200 * MS
    sync = ExactTimeSync(topics, queue_size=10_000, max_age=max_age / 1e9)
    emitted_at, newest_before = {}, []
    newest = -1
    for pos, m in enumerate(stream.log):
        newest_before.append(newest)
        newest = max(newest, m.stamp)
        for s in sync.add(m.topic, m.stamp, m):
            emitted_at[s[topics[0]].frame] = pos
    sync.flush()
    arrived: dict[tuple, dict[str, int]] = {}
    for pos, m in enumerate(stream.log):
        arrived.setdefault(m.frame, {}).setdefault(m.topic, pos)

    def answerable(frame, pos):  # not too old to be answered at `pos`
        return (newest_before[pos] - stream.frames[frame] <= max_age and
                not any(e > frame and p < pos for e, p in emitted_at.items()))

    for frame, where in arrived.items():
        if len(where) < len(topics):
            assert frame not in emitted_at
            waited = any(answerable(frame, p) for p in where.values())
            assert not waited or all(sync.stats.missing[t] > 0 for t in topics
                                     if t not in where)
        elif answerable(frame, max(where.values())):
            assert frame in emitted_at, frame
    lost = {t: sum(1 for f, w in arrived.items() if t not in w and
                   any(answerable(f, p) for p in w.values())) for t in topics}
    assert all(sync.stats.missing[t] >= lost[t] for t in topics), (sync.stats, lost)
    assert accounted(sync, len(stream.log))


# --- approximate ------------------------------------------------------------------------


def reference_approximate(log: list[Message], topics: list[str], slop: int,
                          age_penalty: Fraction):
    """The ApproximateTime policy's sets, from all messages at once. Per topic the messages
    in stamp order are used (an older one than the topic's previous is dropped). Repeatedly:
    the first unused message of every topic form the first candidate; if its spread exceeds
    slop, the earliest is dropped; else its latest message is the pivot, and among ALL
    combinations of unused messages (one per topic) whose earliest message is not after the
    pivot, the one with the smallest (1 + age_penalty) * end - start is the set (ties: the
    earlier start, then the earlier messages). Messages are ordered by (stamp, topic index)."""
    queues: dict[str, list[Message]] = {t: [] for t in topics}
    for m in log:
        if not queues[m.topic] or m.stamp > queues[m.topic][-1].stamp:
            queues[m.topic].append(m)
    key = {id(m): (m.stamp, topics.index(m.topic)) for q in queues.values() for m in q}
    used = dict.fromkeys(topics, 0)
    out = []
    while all(used[t] < len(queues[t]) for t in topics):
        heads = [queues[t][used[t]] for t in topics]
        first = min(heads, key=lambda m: key[id(m)])
        pivot = max(heads, key=lambda m: key[id(m)])
        if pivot.stamp - first.stamp > slop:
            used[first.topic] += 1
            continue
        # a set can only beat the first candidate with every stamp <= pivot + slop
        choices = [[i for i in range(used[t], len(queues[t]))
                    if queues[t][i].stamp <= pivot.stamp + slop] for t in topics]
        best = None
        for combo in itertools.product(*choices):
            members = [queues[t][i] for t, i in zip(topics, combo, strict=True)]
            start = min(key[id(m)] for m in members)
            end = max(m.stamp for m in members)
            if start > key[id(pivot)]:
                continue
            rank = ((1 + age_penalty) * end - start[0], start, [key[id(m)] for m in members])
            if best is None or rank < best[0]:
                best = (rank, combo, members)
        out.append(dict(zip(topics, best[2], strict=True)))
        used = {t: i + 1 for t, i in zip(topics, best[1], strict=True)}
    return out


def with_sentinels(log: list[Message], topics: list[str]) -> list[Message]:
    """Three far-future frames at the end, so that every real set can be decided."""
    end = max((m.stamp for m in log), default=T0)
    return log + [Message(t, end + k * 10**10, (-1, k)) for k in (1, 2, 3) for t in topics]


@PROPERTY
@given(streams(restamp=True, loop=False), st.sampled_from([0.0, 0.01, 0.02, 0.05, 0.1]),
       st.sampled_from(["0", "0.1", "0.5"]))
def test_approximate_pairing_matches_the_reference(stream_topics, slop, age_penalty):
    stream, topics = stream_topics
    log = with_sentinels(stream.log, topics)
    sync = ApproxTimeSync(topics, slop, queue_size=10_000, age_penalty=float(age_penalty))
    got = [s for s in run(sync, log) if s[topics[0]].frame[0] >= 0]
    want = [s for s in reference_approximate(log, topics, int(round(slop * 1e9)),
                                             Fraction(age_penalty))
            if s[topics[0]].frame[0] >= 0]
    assert got == want
    assert accounted(sync, len(log))
    for s in got:
        stamps = [m.stamp for m in s.values()]
        assert max(stamps) - min(stamps) <= slop * 1e9 + 1
    for a, b in itertools.pairwise(got):  # sets never cross
        assert all(a[t].stamp < b[t].stamp for t in topics)


@PROPERTY
@given(streams(restamp=True), st.sampled_from([0.01, 0.05]), st.integers(1, 6))
def test_approximate_with_small_queues_and_restarts_stays_sane(stream_topics, slop, queue):
    """Overflowing queues and restarted stamps: bounded queues, sets within slop, every
    message accounted for, no set across a restart."""
    stream, topics = stream_topics
    sync = ApproxTimeSync(topics, slop, queue_size=queue)
    for m in stream.log:
        for s in sync.add(m.topic, m.stamp, m):
            assert len({s[t].frame[0] for t in topics}) == 1
            stamps = [s[t].stamp for t in topics]
            assert max(stamps) - min(stamps) <= slop * 1e9 + 1
        assert all(len(q) <= queue for q in sync.queues.values())
    assert accounted(sync, len(stream.log))


@PROPERTY
@given(streams(), st.integers(1, 6))
def test_exact_with_small_queues_stays_bounded_and_right(stream_topics, queue):
    stream, topics = stream_topics
    sync = ExactTimeSync(topics, queue_size=queue, max_age=1.0)
    for m in stream.log:
        for s in sync.add(m.topic, m.stamp, m):
            assert len({s[t].frame for t in topics}) == 1
        for t in topics:
            assert sum(t in f for f in sync.frames.values()) <= queue
    assert accounted(sync, len(stream.log))
