"""trajectory_planner's queue of plans held for their guard input (ros/guard_input.py ``HeldFrames``): stamp order,
a frame waits while its input can still come (at most max_wait_s), each held frame counted once, the longest hold."""
from __future__ import annotations

import pytest

from latentvla_ros.ros.guard_input import HeldFrames


def test_frames_leave_in_order_up_to_the_first_still_waiting():
    q = HeldFrames()
    q.push(["a", "b", "c"], now=10.0)
    waiting = {"b"}
    assert list(q.release(lambda f: f in waiting, 10.0, 0.05)) == [("a", False)]
    assert len(q) == 2 and q.held == 1  # b holds c behind it
    assert list(q.release(lambda f: f in waiting, 10.01, 0.05)) == []
    assert q.held == 1  # counted once, not once per look
    waiting.clear()  # b's cloud came 20 ms after the match
    assert list(q.release(lambda f: f in waiting, 10.02, 0.05)) == [("b", True), ("c", False)]
    assert len(q) == 0 and q.held_max_ms == pytest.approx(20.0)


def test_a_frame_whose_input_never_comes_leaves_after_max_wait():
    q = HeldFrames()
    q.push(["a"], now=5.0)
    assert list(q.release(lambda f: True, 5.049, 0.05)) == []
    q.push(["b"], now=5.049)
    assert list(q.release(lambda f: True, 5.06, 0.05)) == [("a", True)]  # its time is up; b still may wait
    assert len(q) == 1 and q.held == 2 and q.held_max_ms == pytest.approx(60.0)


def test_release_is_lazy_so_each_frame_is_published_before_the_next_leaves():
    q = HeldFrames()
    q.push([1, 2], now=0.0)
    out = q.release(lambda f: False, 0.0, 0.05)
    assert next(out) == (1, False) and len(q) == 1  # 2 is still queued while 1 is published
    assert next(out) == (2, False) and len(q) == 0
