"""Exact boundaries and counters of the approximate-time synchronizer (found by mutation testing).

Complements test_approx_sync.py: slop and time-jump thresholds to the nanosecond, the
default time-jump threshold, counters that must accumulate, error messages, and a
three-input case where the nearest candidate does not fit but a farther one does.
"""
from __future__ import annotations

import pytest

from latentvla_ros.ros.contracts.approx_sync import ApproximateTimeSync

SEC = 1_000_000_000
MS = 1_000_000


def test_slop_is_exact_to_the_nanosecond():
    # slop 1 s is 1_000_000_000 ns: a spread of exactly that is not emitted, one ns less is
    sync = ApproximateTimeSync(2, 10, 1.0)
    assert sync.slop_s == 1.0 and sync.slop_ns == SEC
    sync.add(0, 0, "a")
    assert sync.add(1, SEC, "b") is None
    assert sync.add(1, SEC - 1, "c") == ("a", "c")


def test_time_jump_threshold_is_exact_and_defaults_to_one_second():
    for kwargs in ({"time_jump_reset_s": 1.0}, {}):
        sync = ApproximateTimeSync(2, 10, 0.05, **kwargs)
        assert sync.time_jump_reset_s == 1.0
        sync.add(0, 10 * SEC, "a")
        sync.add(0, 10 * SEC - SEC, "b")  # exactly 1 s back: no reset
        assert sync.resets == 0
        sync.add(0, 10 * SEC - SEC - 1, "c")  # 1 s + 1 ns behind the newest (10 s): reset
        assert sync.resets == 1
    # a 1.5 s jump with the default resets (it would not with a 2 s default)
    sync = ApproximateTimeSync(2, 10, 0.05)
    sync.add(1, 5 * SEC, "x")
    sync.add(1, 5 * SEC - 3 * SEC // 2, "y")
    assert sync.resets == 1


def test_resets_and_replacements_accumulate():
    sync = ApproximateTimeSync(2, 10, 0.05, time_jump_reset_s=1.0)
    sync.add(0, 100 * SEC, "a")
    sync.add(0, 50 * SEC, "b")
    sync.add(0, 10 * SEC, "c")
    assert sync.resets == 2 and sync.stats()["resets"] == 2
    sync.reset()
    assert sync.resets == 3
    dup = ApproximateTimeSync(2, 10, 0.05)
    for msg in ("a", "b", "c"):
        dup.add(0, 7, msg)
    assert dup.dropped_unmatched == 2 and dup.queued() == 1
    assert dup.add(1, 7, "x") == ("c", "x")
    assert dup.queued() == 0


def test_a_farther_candidate_is_tried_when_the_nearest_does_not_fit():
    # slop 100 ms, anchor (input 0) at 0; input 1 only has -60 ms; input 2 has +50 ms (nearest to the
    # anchor, but with -60 the spread would be 110 ms) and -70 ms (spread 70 ms): (0, -60, -70) is emitted
    sync = ApproximateTimeSync(3, 10, 0.1)
    sync.add(1, 1000 * MS - 60 * MS, "b")
    sync.add(2, 1000 * MS + 50 * MS, "c_near")
    sync.add(2, 1000 * MS - 70 * MS, "c_far")
    assert sync.add(0, 1000 * MS, "a") == ("a", "b", "c_far")
    assert sync.queue_stamps() == [[], [], [1050 * MS]]


def test_error_messages_name_the_bad_value():
    with pytest.raises(ValueError, match="num_inputs must be >= 1, got 0"):
        ApproximateTimeSync(0, 1, 0.1)
    with pytest.raises(ValueError, match="queue_size must be >= 1, got 0"):
        ApproximateTimeSync(2, 0, 0.1)
    with pytest.raises(ValueError, match="slop_s must be > 0, got -0.1"):
        ApproximateTimeSync(2, 1, -0.1)
    with pytest.raises(ValueError, match="time_jump_reset_s must be >= 0 or None, got -1"):
        ApproximateTimeSync(2, 1, 0.1, time_jump_reset_s=-1)
    sync = ApproximateTimeSync(2, 1, 0.1)
    for bad in (2, -1):
        with pytest.raises(IndexError, match=rf"input_index {bad} out of range \[0, 2\)"):
            sync.add(bad, 0, "x")
    assert sync.received == 0
