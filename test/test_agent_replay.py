"""evaluation/agent_replay.py: logged agents resampled at 0.1 s, pinned by hand-computed answers
(interpolation between frames, single-frame tracks, constant-velocity continuation, static
objects, anonymous boxes, duplicate ids)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from latentvla_ros.core.types import AgentBox
from latentvla_ros.evaluation.agent_replay import build_agent_replay


def _scene():
    """3 frames 0.5 s apart. Track 0 moves (duplicate id 0 at x = 50 in frame 0 is dropped),
    track 3 is seen in frame 0 only, track 7 is static from frame 1, one anonymous box in frame 1."""
    t0 = [AgentBox(0.0, 0.0, 0.1, 4.0, 2.0, 2.0, 1.0, 0), AgentBox(1.0, 0.5, 0.2, 4.0, 2.0, 2.0, 1.0, 0),
          AgentBox(2.0, 1.0, 0.3, 5.0, 2.0, 3.0, 1.5, 0)]
    return [
        [AgentBox(30.0, 30.0, 0.0, 4.0, 2.0, 0.0, 0.0, 3), AgentBox(50.0, 0.0, 0.1, 4.0, 2.0, 2.0, 1.0, 0), t0[0]],
        [t0[1], AgentBox(10.0, 10.0, 0.0, 4.0, 2.0, 1.0, 0.0, 7, True), AgentBox(20.0, 0.0, 0.0, 4.0, 2.0, 4.0, 0.5, -1)],
        [AgentBox(10.0, 10.0, 0.0, 4.0, 2.0, 1.0, 0.0, 7, True), t0[2]],
    ]


def test_tracks_keys_ids_and_initial_speed():
    r = build_agent_replay(_scene(), 0.5, num_samples=21)
    assert r.track_keys == [(0, 0), (0, 3), (0, 7), (1, 1, 0)]
    assert r.track_ids.tolist() == [0, 3, 7, -1]
    assert r.is_static.tolist() == [False, False, True, False]
    np.testing.assert_allclose(r.initial_speed, [math.sqrt(5.0), 0.0, 0.0, math.hypot(4.0, 0.5)])
    np.testing.assert_allclose(r.times_s, 0.1 * np.arange(21))
    np.testing.assert_allclose(r.centers, r.boxes[..., :2])


def test_validity_windows():
    r = build_agent_replay(_scene(), 0.5, num_samples=21)
    assert r.valid[:, 0].all()  # recorded to 1.0 s, then continued
    assert np.flatnonzero(r.valid[:, 1]).tolist() == [0, 1, 2]  # frame 0 only: within 0.25 s
    assert np.flatnonzero(r.valid[:, 2]).tolist() == list(range(5, 21))  # from frame 1 on
    assert np.flatnonzero(r.valid[:, 3]).tolist() == [3, 4, 5, 6, 7]  # anonymous, frame 1 only


def test_interpolation_between_frames():
    r = build_agent_replay(_scene(), 0.5, num_samples=21)
    np.testing.assert_allclose(r.boxes[0, 0], [0.0, 0.0, 0.1, 4.0, 2.0])  # not the duplicate at x = 50
    np.testing.assert_allclose(r.boxes[3, 0], [0.6, 0.3, 0.16, 4.0, 2.0], atol=1e-12)
    np.testing.assert_allclose(r.velocity[3, 0], [2.0, 1.0], atol=1e-12)
    # 0.8 s: 60 % of the way from frame 1 to frame 2
    np.testing.assert_allclose(r.boxes[8, 0], [1.6, 0.8, 0.26, 4.6, 2.0], atol=1e-12)
    np.testing.assert_allclose(r.velocity[8, 0], [2.6, 1.3], atol=1e-12)
    np.testing.assert_allclose(r.boxes[5, 3], [20.0, 0.0, 0.0, 4.0, 2.0])
    np.testing.assert_allclose(r.velocity[5, 3], [4.0, 0.5])
    np.testing.assert_allclose(r.boxes[1, 1], [30.0, 30.0, 0.0, 4.0, 2.0])


def test_constant_velocity_continuation_after_the_last_frame():
    r = build_agent_replay(_scene(), 0.5, num_samples=21)
    # track 0 from its last frame (2, 1) at (3, 1.5) m/s: 0.5 s later (3.5, 1.75), last heading and size
    np.testing.assert_allclose(r.boxes[15, 0], [3.5, 1.75, 0.3, 5.0, 2.0], atol=1e-12)
    np.testing.assert_allclose(r.velocity[15, 0], [3.0, 1.5])
    # the static object stays put with zero velocity, though its log says 1 m/s
    np.testing.assert_allclose(r.boxes[15, 2], [10.0, 10.0, 0.0, 4.0, 2.0])
    np.testing.assert_allclose(r.velocity[15, 2], [0.0, 0.0])
    # at the last frame itself the log holds (velocity as logged)
    np.testing.assert_allclose(r.velocity[10, 2], [1.0, 0.0])
    np.testing.assert_allclose(r.corners[15, 0].mean(axis=0), [3.5, 1.75], atol=1e-12)


def test_single_frame_track_half_interval_boundary():
    # frame interval 0.2 s: a box seen in frame 3 (0.6 s) exists within 0.1 s of it: 0.5, 0.6, 0.7 s
    # (0.5 is 0.1 + 9e-17 away in floating point: the 1e-9 tolerance keeps it)
    frames = [[], [], [], [AgentBox(1.0, 2.0, 0.0, 4.0, 2.0, 1.0, 0.0, 5)], []]
    r = build_agent_replay(frames, 0.2, num_samples=11)
    assert np.flatnonzero(r.valid[:, 0]).tolist() == [5, 6, 7]
    frames = [[], [], [], [], [], [AgentBox(1.0, 2.0, 0.0, 4.0, 2.0, 1.0, 0.0, 5)], [], []]
    r = build_agent_replay(frames, 0.1, num_samples=11)
    assert np.flatnonzero(r.valid[:, 0]).tolist() == [5]


@pytest.mark.parametrize("tid", [0, 1])
def test_track_id_zero_is_a_named_track(tid):
    frames = [[AgentBox(0.0, 0.0, 0.0, 4.0, 2.0, 1.0, 0.0, tid)], [AgentBox(0.5, 0.0, 0.0, 4.0, 2.0, 1.0, 0.0, tid)]]
    r = build_agent_replay(frames, 0.5, num_samples=6)
    assert r.track_keys == [(0, tid)] and r.valid.all()
    np.testing.assert_allclose(r.boxes[:, 0, 0], 0.1 * np.arange(6), atol=1e-12)
