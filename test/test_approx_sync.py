"""Tests for ros.contracts.approx_sync.ApproximateTimeSync (pure) and the ros.sync adapter."""
from __future__ import annotations

import itertools
import random
import sys
import threading
import types

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from latentvla_ros.ros.contracts.approx_sync import ApproximateTimeSync

SEC = 1_000_000_000


class Msg:
    """Hashable stand-in message, identity-compared."""

    def __init__(self, stamp_ns, data):
        self.stamp_ns = stamp_ns
        self.data = data

    def __repr__(self):
        return f"Msg({self.stamp_ns}, {self.data!r})"


def collector():
    out = []
    return out, (lambda *msgs: out.append(msgs))


# --------------------------------------------------------------- basic cases
def test_equal_stamps_pairs():
    out, cb = collector()
    sync = ApproximateTimeSync(2, 1, 0.1, callback=cb)
    for t in range(10):
        out.clear()
        m0, m1 = Msg(t * SEC, 33), Msg(t * SEC, 34)
        assert sync.add(0, m0.stamp_ns, m0) is None
        assert out == []
        assert sync.add(1, m1.stamp_ns, m1) == (m0, m1)
        assert out == [(m0, m1)]
    s = sync.stats()
    assert s["emitted"] == 10 and s["queued"] == 0 and s["received"] == 20


@pytest.mark.parametrize("n", range(1, 10))
def test_scrambled_sequences_two_inputs(n):
    """Like message_filters' test: sequences of length n arrive scrambled."""
    rng = random.Random(n)
    out, cb = collector()
    seq0 = [Msg(t * SEC, rng.random()) for t in range(n)]
    seq1 = [Msg(t * SEC, rng.random()) for t in range(n)]
    sync = ApproximateTimeSync(2, n, 0.1, callback=cb, time_jump_reset_s=None)
    for m in rng.sample(seq0, n):
        sync.add(0, m.stamp_ns, m)
    assert out == []
    for m in rng.sample(seq1, n):
        sync.add(1, m.stamp_ns, m)
    assert set(out) == set(zip(seq0, seq1))
    assert len(out) == n


@pytest.mark.parametrize("num_inputs", range(1, 10))
def test_scrambled_arrival_n_inputs(num_inputs):
    """num_inputs inputs, 6 stamps each, random global interleaving: every set exactly once."""
    rng = random.Random(100 + num_inputs)
    m = 6
    seqs = [[Msg(t * SEC + rng.randint(-2_000_000, 2_000_000), (i, t)) for t in range(m)]
            for i in range(num_inputs)]
    arrivals = [(i, msg) for i in range(num_inputs) for msg in seqs[i]]
    rng.shuffle(arrivals)
    out, cb = collector()
    sync = ApproximateTimeSync(num_inputs, m, 0.1, callback=cb, time_jump_reset_s=None)
    for i, msg in arrivals:
        sync.add(i, msg.stamp_ns, msg)
    expected = {tuple(seqs[i][t] for i in range(num_inputs)) for t in range(m)}
    assert len(out) == m
    assert set(out) == expected
    assert sync.stats()["queued"] == 0


def test_single_input_emits_immediately():
    out, cb = collector()
    sync = ApproximateTimeSync(1, 3, 0.05, callback=cb)
    a = Msg(5, "a")
    assert sync.add(0, 5, a) == (a,)
    assert out == [(a,)]


# -------------------------------------------------------------------- slop
def test_spread_equal_to_slop_not_emitted():
    slop_ns = 100_000_000
    sync = ApproximateTimeSync(2, 5, 0.1)
    sync.add(0, 0, "a")
    assert sync.add(1, slop_ns, "b") is None  # spread == slop: not < slop
    assert sync.add(1, slop_ns - 1, "c") == ("a", "c")


def test_candidates_within_slop_but_spread_too_large():
    # Every message is within slop of the anchor but the set spans 0.16 s > 0.1 s.
    sync = ApproximateTimeSync(3, 5, 0.1, time_jump_reset_s=None)
    sync.add(1, 80_000_000, "b")
    sync.add(2, -80_000_000 + SEC, "x")  # unrelated, far away
    sync.add(2, -80_000_000, "c")
    assert sync.add(0, 0, "a") is None
    # A closer partner for input 2 makes a valid set.
    assert sync.add(2, 30_000_000, "d") == ("a", "b", "d")


def test_closest_candidate_preferred():
    sync = ApproximateTimeSync(2, 5, 0.1)
    sync.add(0, 1_000_000_000, "far")
    sync.add(0, 1_050_000_000, "near")
    assert sync.add(1, 1_045_000_000, "x") == ("near", "x")
    assert sync.queue_stamps() == [[1_000_000_000], []]


# ----------------------------------------------------------------- overflow
def test_queue_overflow_drops_oldest_and_counts():
    sync = ApproximateTimeSync(2, 2, 0.1)
    for t in (1, 2, 3):
        sync.add(0, t * SEC // 10, f"m{t}")
    assert sync.stats()["dropped_overflow"] == 1
    assert sync.queue_stamps()[0] == [2 * SEC // 10, 3 * SEC // 10]
    # stamp 0.1 s was dropped; a partner for it matches 0.2 s only if within slop (it is not: 0.1 == slop)
    assert sync.add(1, 1 * SEC // 10, "p1") is None
    assert sync.add(1, 2 * SEC // 10, "p2") == ("m2", "p2")


def test_overflow_drops_new_message_when_it_is_oldest():
    sync = ApproximateTimeSync(2, 2, 0.1, time_jump_reset_s=None)
    sync.add(1, 500, "partner")  # would match stamp 500 on input 0
    sync.add(0, 10 * SEC, "a")
    sync.add(0, 11 * SEC, "b")
    assert sync.add(0, 500, "old") is None  # new one is the oldest: dropped, not matched
    s = sync.stats()
    assert s["dropped_overflow"] == 1 and s["emitted"] == 0
    assert sync.queue_stamps() == [[10 * SEC, 11 * SEC], [500]]


def test_duplicate_stamp_replaces_and_counts():
    sync = ApproximateTimeSync(2, 4, 0.1)
    sync.add(0, 7, "old")
    sync.add(0, 7, "new")
    assert sync.stats()["dropped_unmatched"] == 1
    assert sync.add(1, 7, "p") == ("new", "p")


# --------------------------------------------------------------- headerless
def test_headerless_rejected_by_default():
    sync = ApproximateTimeSync(2, 4, 0.1)
    assert sync.add(0, None, "h", now_ns=5) is None
    s = sync.stats()
    assert s["dropped_headerless"] == 1 and s["queued"] == 0 and s["received"] == 1


@pytest.mark.parametrize("n", range(1, 10))
def test_headerless_allowed_uses_now(n):
    """Like message_filters' headerless test: stamped seq + headerless seq, slop 10 s."""
    rng = random.Random(n)
    now = 1_700_000_000 * SEC
    seq0 = [Msg(now + t * SEC, rng.random()) for t in range(n)]
    seq1 = [Msg(None, rng.random()) for _ in range(n)]
    out, cb = collector()
    sync = ApproximateTimeSync(2, n, 10.0, True, cb, time_jump_reset_s=None)
    for m in rng.sample(seq0, n):
        sync.add(0, m.stamp_ns, m)
    assert out == []
    for m in seq1:
        sync.add(1, None, m, now_ns=now)
    assert set(out) == set(zip(seq0, seq1))


def test_headerless_allowed_uses_clock_when_no_now():
    sync = ApproximateTimeSync(2, 4, 0.1, allow_headerless=True, clock_ns=lambda: 42 * SEC)
    sync.add(0, 42 * SEC, "a")
    assert sync.add(1, None, "b") == ("a", "b")


# ---------------------------------------------------------------- time jump
def test_backwards_time_jump_resets_then_resumes():
    out, cb = collector()
    sync = ApproximateTimeSync(2, 10, 0.05, callback=cb, time_jump_reset_s=1.0)
    base = 100 * SEC
    for k in range(5):
        sync.add(0, base + k * SEC // 10, ("a", k))
        sync.add(1, base + k * SEC // 10 + 1_000_000, ("b", k))
    sync.add(0, base + SEC, "pending")  # left unmatched when the bag loops
    assert len(out) == 5 and sync.stats()["queued"] == 1
    # Small out-of-order arrival (0.5 s back) does not reset.
    sync.add(1, base + SEC // 2, "late")
    assert sync.stats()["resets"] == 0
    # Loop: time jumps back by ~100 s on input 1.
    sync.add(1, 0, ("b", "loop0"))
    s = sync.stats()
    assert s["resets"] == 1
    assert s["dropped_unmatched"] == 2  # "pending" and "late" were cleared
    assert sync.queue_stamps() == [[], [0]]
    # Matching resumes with the new timeline: input 0's newest was cleared, no second reset.
    assert sync.add(0, 2_000_000, ("a", "loop0")) == (("a", "loop0"), ("b", "loop0"))
    assert sync.stats()["resets"] == 1
    assert sync.add(0, SEC // 10, "x") is None
    assert sync.add(1, SEC // 10, "y") == ("x", "y")


def test_time_jump_disabled_keeps_original_behaviour():
    sync = ApproximateTimeSync(2, 10, 0.05, time_jump_reset_s=None)
    sync.add(0, 100 * SEC, "a")
    sync.add(1, 0, "b")
    assert sync.stats()["resets"] == 0 and sync.stats()["queued"] == 2


def test_invalid_arguments():
    with pytest.raises(ValueError):
        ApproximateTimeSync(0, 1, 0.1)
    with pytest.raises(ValueError):
        ApproximateTimeSync(2, 0, 0.1)
    with pytest.raises(ValueError):
        ApproximateTimeSync(2, 1, 0.0)
    with pytest.raises(IndexError):
        ApproximateTimeSync(2, 1, 0.1).add(2, 0, "x")


def test_threads_keep_invariants():
    n_in, per = 3, 300
    out, cb = collector()
    sync = ApproximateTimeSync(n_in, 20, 0.02, callback=cb)

    def feed(i):
        rng = random.Random(i)
        for k in range(per):
            sync.add(i, k * 50_000_000 + rng.randint(-3_000_000, 3_000_000), (i, k))

    threads = [threading.Thread(target=feed, args=(i,)) for i in range(n_in)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    s = sync.stats()
    assert s["received"] == n_in * per
    assert s["received"] == (s["emitted_messages"] + s["dropped_overflow"] + s["dropped_headerless"]
                             + s["dropped_unmatched"] + s["queued"])
    assert len(out) == s["emitted"] > 0
    for group in out:
        assert [g[0] for g in group] == list(range(n_in))
        assert len({g[1] for g in group}) == 1  # same k (stamps 50 ms apart, slop 20 ms)


# --------------------------------------------- reference model + properties
def reference_emissions(num_inputs, queue_size, slop_ns, arrivals):
    """Straightforward model of the upstream algorithm (itertools.product order)."""
    queues = [{} for _ in range(num_inputs)]
    emitted = []
    for i, stamp, msg in arrivals:
        q = queues[i]
        q[stamp] = msg
        while len(q) > queue_size:
            del q[min(q)]
        if stamp not in q:
            continue
        cand_lists, idx = [], []
        for j, qj in enumerate(queues):
            if j == i:
                continue
            c = sorted([s for s in qj if abs(s - stamp) <= slop_ns], key=lambda s: abs(s - stamp))
            if not c:
                break
            cand_lists.append(c)
            idx.append(j)
        else:
            for combo in itertools.product(*cand_lists):
                vv = [0] * num_inputs
                vv[i] = stamp
                for j, s in zip(idx, combo):
                    vv[j] = s
                if max(vv) - min(vv) < slop_ns:
                    emitted.append(tuple(queues[j].pop(s) for j, s in enumerate(vv)))
                    break
    return emitted


@st.composite
def scenarios(draw):
    num_inputs = draw(st.integers(1, 4))
    queue_size = draw(st.integers(1, 6))
    slop_ms = draw(st.integers(1, 60))
    n_frames = draw(st.integers(0, 8))
    period_ms = draw(st.integers(10, 100))
    msgs = []
    for i in range(num_inputs):
        for k in range(n_frames):
            if draw(st.integers(0, 4)) > 0:  # some frames missing on some inputs
                jitter = draw(st.integers(-40_000_000, 40_000_000))
                msgs.append((i, k * period_ms * 1_000_000 + jitter, (i, k)))
    perm = draw(st.permutations(list(range(len(msgs)))))
    return num_inputs, queue_size, slop_ms * 1_000_000, [msgs[p] for p in perm]


@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_property_any_arrival_order(scenario):
    num_inputs, queue_size, slop_ns, arrivals = scenario
    out, cb = collector()
    sync = ApproximateTimeSync(num_inputs, queue_size, slop_ns / 1e9, callback=cb,
                               time_jump_reset_s=None)
    stamp_of = {}
    for i, stamp, payload in arrivals:
        stamp_of[payload] = stamp
        sync.add(i, stamp, payload)
    seen = set()
    for group in out:
        assert len(group) == num_inputs
        assert [g[0] for g in group] == list(range(num_inputs))
        stamps = [stamp_of[g] for g in group]
        assert max(stamps) - min(stamps) < slop_ns
        for g in group:
            assert g not in seen
            seen.add(g)
    s = sync.stats()
    assert s["received"] == len(arrivals)
    assert s["received"] == (s["emitted_messages"] + s["dropped_overflow"] + s["dropped_headerless"]
                             + s["dropped_unmatched"] + s["queued"])
    # Same emissions, same order, as the brute-force model of the upstream algorithm.
    assert out == reference_emissions(num_inputs, queue_size, slop_ns, arrivals)


@settings(max_examples=100, deadline=None)
@given(scenarios(), st.floats(0.0, 0.2), st.lists(st.booleans(), max_size=40))
def test_property_with_resets_and_headerless(scenario, jump_s, headerless_mask):
    num_inputs, queue_size, slop_ns, arrivals = scenario
    sync = ApproximateTimeSync(num_inputs, queue_size, slop_ns / 1e9, allow_headerless=False,
                               time_jump_reset_s=jump_s)
    emitted = []
    sync.register_callback(lambda *m: emitted.extend(m))
    for n, (i, stamp, payload) in enumerate(arrivals):
        headerless = n < len(headerless_mask) and headerless_mask[n]
        sync.add(i, None if headerless else stamp, payload)
    s = sync.stats()
    assert len(emitted) == len(set(emitted)) == s["emitted_messages"]
    assert s["received"] == (s["emitted_messages"] + s["dropped_overflow"] + s["dropped_headerless"]
                             + s["dropped_unmatched"] + s["queued"])


# ------------------------------------------------------- ros.sync adapter
class _Stamp:
    def __init__(self, ns):
        self.sec, self.nanosec = divmod(ns, SEC)


class _Header:
    def __init__(self, ns):
        self.stamp = _Stamp(ns)


class StampedMsg:
    def __init__(self, ns, data):
        self.header = _Header(ns)
        self.data = data


class FakeNode:
    """Enough of rclpy.node.Node for the adapter: create/destroy_subscription, get_clock."""

    def __init__(self):
        self.subs = {}

    def create_subscription(self, msg_type, topic, callback, qos, callback_group=None, **kw):
        self.subs[topic] = callback
        return topic

    def destroy_subscription(self, sub):
        self.subs.pop(sub, None)

    def get_clock(self):
        clock = types.SimpleNamespace()
        clock.now = lambda: types.SimpleNamespace(nanoseconds=123 * SEC)
        return clock


def _fake_message_filters():
    """A small stand-in with the structure of the upstream Python message_filters."""
    mod = types.ModuleType("message_filters")

    class SimpleFilter:
        def __init__(self):
            self.callbacks = {}

        def registerCallback(self, cb, *args):
            conn = len(self.callbacks)
            self.callbacks[conn] = (cb, args)
            return conn

        def signalMessage(self, *msg):
            for cb, args in self.callbacks.values():
                cb(*(msg + args))

    class Subscriber(SimpleFilter):
        def __init__(self, node, msg_type, topic, qos_profile=10, **kw):
            super().__init__()
            self.sub = node.create_subscription(msg_type, topic, self.signalMessage, qos_profile)

    class ApproximateTimeSynchronizer(SimpleFilter):
        def __init__(self, fs, queue_size, slop, allow_headerless=False):
            super().__init__()
            self.lock = threading.Lock()
            self.queues = [{} for _ in fs]
            self._impl = ApproximateTimeSync(len(fs), queue_size, slop, allow_headerless,
                                             time_jump_reset_s=None)
            self._impl._queues = self.queues  # share the dicts so clearing is visible
            self._impl.register_callback(self.signalMessage)
            for i, f in enumerate(fs):
                f.registerCallback(self.add, i)

        def add(self, msg, i):
            from latentvla_ros.ros.sync import header_stamp_ns

            with self.lock:
                self._impl.add(i, header_stamp_ns(msg), msg, now_ns=0)

    mod.SimpleFilter = SimpleFilter
    mod.Subscriber = Subscriber
    mod.ApproximateTimeSynchronizer = ApproximateTimeSynchronizer
    return mod


@pytest.mark.parametrize("backend", ["builtin", "message_filters"])
def test_adapter_backends(monkeypatch, backend):
    from latentvla_ros.ros import sync as ros_sync

    if backend == "message_filters":
        monkeypatch.setitem(sys.modules, "message_filters", _fake_message_filters())
    else:
        monkeypatch.setitem(sys.modules, "message_filters", None)  # import fails
    node = FakeNode()
    out, cb = collector()
    handle = ros_sync.make_approximate_sync(node, [("/a", object), ("/b", object)], 10,
                                            queue_size=2, slop_s=0.05, callback=cb)
    assert handle.backend == backend
    a, b = node.subs["/a"], node.subs["/b"]
    base = 50 * SEC
    m = [StampedMsg(base + k * SEC // 10, k) for k in range(4)]
    a(m[0])
    b(StampedMsg(base + 1_000_000, "b0"))
    assert len(out) == 1 and out[0][0] is m[0]
    a(types.SimpleNamespace(data="no header"))
    a(m[1])
    a(m[2])
    a(m[3])  # queue 2: m[1] overflows
    a(StampedMsg(0, "loop"))  # backwards jump of ~50 s: reset
    b(StampedMsg(1_000_000, "b-loop"))
    assert len(out) == 2 and out[1][0].data == "loop"
    s = handle.stats()
    assert s["emitted"] == 2 and s["resets"] == 1
    assert s["dropped_headerless"] == 1
    assert s["dropped_overflow"] == 1
    assert s["dropped_unmatched"] == 2 and s["queued"] == 0
    assert s["received"] == 8
    handle.destroy()
    assert node.subs == {}


def test_header_stamp_ns():
    from latentvla_ros.ros.sync import header_stamp_ns

    assert header_stamp_ns(StampedMsg(3 * SEC + 7, None)) == 3 * SEC + 7
    assert header_stamp_ns(types.SimpleNamespace(data=1)) is None
