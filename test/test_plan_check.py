"""The plan check (``core/plan_check.py``) and the obstacle guard's use of it, on hand-made plans.

Plans are 8 poses at 0.5 s from the ego at the origin. ``plan_lateral_acceleration`` takes each segment's
direction at its mid time (0.25 s for the first, whose predecessor is the ego's direction of motion at 0 s)
and multiplies the turn rate between two directions by the later segment's speed; every expected value below
is that arithmetic written out.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from latentvla_ros.core.config_base import ConfigError
from latentvla_ros.core.obstacle_guard import GuardConfig, ObstacleGuard
from latentvla_ros.core.plan_check import limit_lateral, plan_lateral_acceleration
from latentvla_ros.core.types import EgoState, Trajectory

T = 0.5 * np.arange(1, 9)


def _straight(v: float) -> np.ndarray:
    return np.stack([v * T, np.zeros(8), np.zeros(8)], axis=1)


def _jump(v: float, side: float = 3.0) -> np.ndarray:
    """The planner's neighbouring-lane plan: straight ahead at ``v``, every pose ``side`` m to the left."""
    poses = _straight(v)
    poses[:, 1] = side
    return poses


def test_straight_plan_asks_for_nothing():
    assert plan_lateral_acceleration(_straight(20.0), 0.5, np.array([20.0, 0.0])) == 0.0


def test_arc_asks_for_its_centripetal_acceleration():
    v, r = 10.0, 50.0  # v^2 / r = 2 m/s^2
    phi = v * T / r
    poses = np.stack([r * np.sin(phi), r * (1 - np.cos(phi)), phi], axis=1)
    # every chord's direction is the tangent at its mid time: turn rate v / r between any two of them (the
    # first against the ego's heading at 0 s); each chord's speed is 2 r sin(v 0.5 / (2 r)) / 0.5
    chord_speed = 2 * r * math.sin(v * 0.5 / (2 * r)) / 0.5
    assert plan_lateral_acceleration(poses, 0.5, np.array([v, 0.0])) == pytest.approx(v / r * chord_speed, rel=1e-9)


def test_neighbouring_lane_jump_asks_for_an_impossible_acceleration():
    v = 20.0
    poses = _jump(v)
    first_dir = math.atan2(3.0, 10.0)  # origin -> (10, 3), at 0.25 s
    first = first_dir / 0.25 * math.hypot(10.0, 3.0) / 0.5  # from heading 0 at 0 s
    second = first_dir / 0.5 * 10.0 / 0.5  # back to straight (direction 0) at 0.75 s
    need = plan_lateral_acceleration(poses, 0.5, np.array([v, 0.0]))
    assert need == pytest.approx(max(first, second), rel=1e-9)
    assert need > 24.0  # 1.2 rad/s at 20.4 m/s


def test_direction_of_motion_includes_slip():
    """An ego sliding at 0.1 rad (vy = v tan 0.1) on a plan along that direction asks for nothing."""
    v = 10.0
    poses = np.stack([v * T, v * T * math.tan(0.1), np.full(8, 0.1)], axis=1)
    assert plan_lateral_acceleration(poses, 0.5, np.array([v, v * math.tan(0.1)])) == pytest.approx(0.0, abs=1e-9)
    # read against the heading instead (vy ignored) the same plan would ask for 0.1 / 0.25 x its speed
    assert plan_lateral_acceleration(poses, 0.5, np.array([v, 0.0])) > 3.9


def test_standing_and_creeping_segments_carry_no_direction():
    standing = np.zeros((8, 3))
    assert plan_lateral_acceleration(standing, 0.5, np.array([0.0, 0.0])) == 0.0
    # a creep (0.2 m per segment, < 0.5 m) that wiggles sideways: no direction, nothing asked
    creep = np.stack([0.2 * np.arange(1, 9), 0.1 * (-1) ** np.arange(8), np.zeros(8)], axis=1)
    assert plan_lateral_acceleration(creep, 0.5, np.array([0.4, 0.0])) == 0.0


def test_only_the_horizon_counts():
    poses = _straight(10.0)
    poses[4:, 1] = 3.0  # a jump at 2.5 s, after the 2 s horizon
    assert plan_lateral_acceleration(poses, 0.5, np.array([10.0, 0.0]), horizon_s=2.0) == 0.0
    assert plan_lateral_acceleration(poses, 0.5, np.array([10.0, 0.0]), horizon_s=4.0) > 10.0


def test_non_finite_plan_or_velocity_is_never_plausible():
    poses = _straight(10.0)
    poses[2, 1] = np.nan
    assert plan_lateral_acceleration(poses, 0.5, np.array([10.0, 0.0])) == math.inf
    assert plan_lateral_acceleration(_straight(10.0), 0.5, np.array([np.nan, 0.0])) == math.inf


def test_limit_lateral_keeps_what_the_acceleration_reaches():
    out = limit_lateral(_jump(20.0), 0.5, np.array([20.0, 0.0]), 2.0)
    # reach 0.5 * 2 * t^2 = 0.25, 1.0, 2.25, 4.0, ... m at 0.5, 1, 1.5, 2 s: the 3 m offset from 2 s on
    np.testing.assert_allclose(out[:, 1], [0.25, 1.0, 2.25, 3.0, 3.0, 3.0, 3.0, 3.0])
    np.testing.assert_allclose(out[:, 0], 20.0 * T)  # progress kept
    assert out[0, 2] == pytest.approx(math.atan2(1.0 - 0.0, 20.0))  # heading along the moved path (origin -> pose 2)
    assert out[5, 2] == 0.0  # an unmoved pose keeps its heading


def test_limit_lateral_measures_from_the_direction_of_motion():
    v = 10.0
    poses = _straight(v)  # straight along the heading while the car slides 0.1 rad to the left
    out = limit_lateral(poses, 0.5, np.array([v, v * math.tan(0.1)]), 2.0)
    base = v * T * math.tan(0.1)
    np.testing.assert_allclose(out[:, 1], base - np.minimum(base, 0.5 * 2.0 * T ** 2))


def _ego(v: float = 20.0) -> EgoState:
    return EgoState(velocity=np.array([v, 0.0], np.float32), acceleration=np.zeros(2, np.float32), yaw_rate=0.0)


def test_guard_limits_an_impossible_plan_and_passes_the_others():
    guard = ObstacleGuard(GuardConfig())
    no_points = np.zeros((0, 3))
    plan = Trajectory(poses=_straight(20.0), interval_s=0.5, stamp_ns=1)
    out, verdict = guard.filter(no_points, 100_000_000, _ego(), plan)
    assert verdict.action == "clear" and not verdict.limited and out is plan
    jump = Trajectory(poses=_jump(20.0), interval_s=0.5, stamp_ns=2, model_id="m")
    out, verdict = guard.filter(no_points, 200_000_000, _ego(), jump)
    assert verdict.action == "limit" and verdict.limited and guard.limited == 1
    np.testing.assert_allclose(out.poses[:, 1], [0.25, 1.0, 2.25, 3.0, 3.0, 3.0, 3.0, 3.0])
    assert out.model_id == "m" and out.stamp_ns == 2 and not out.is_fallback
    off = ObstacleGuard(GuardConfig(plan_check=False))
    out, verdict = off.filter(no_points, 100_000_000, _ego(), jump)
    assert verdict.action == "clear" and out is jump


def test_guard_retimes_a_limited_plan_for_an_obstacle():
    """The limited plan still goes through the obstacle checks: a standing car 15 m ahead in the ego's lane,
    which the limited plan (0.25 m to the left at 10 m, 1.0 m at 20 m) still meets."""
    from test_obstacle_guard import _car_along_x

    guard = ObstacleGuard(GuardConfig(young_track_horizon_s=3.0))
    jump = Trajectory(poses=_jump(20.0), interval_s=0.5)
    out, verdict = guard.filter(_car_along_x(15.0), 100_000_000, _ego(), jump)
    assert verdict.limited and verdict.action in ("stop", "slow")
    assert np.hypot(*out.poses[-1, :2]) < 15.0  # stops before the car
    # the verdict says where the car is: its rear edge's point nearest the ego (x = 15, |y| = 0.9 / 7 of the
    # 8 points from -0.9 to 0.9), standing (a first sighting: velocity unknown, zero)
    assert verdict.conflict_point[0] == pytest.approx(15.0) and abs(verdict.conflict_point[1]) == pytest.approx(0.9 / 7)
    assert verdict.conflict_velocity == (0.0, 0.0)


@pytest.mark.parametrize("name", ["max_plan_lateral_accel_mps2", "plan_limit_lateral_accel_mps2"])
def test_bad_plan_check_parameters_are_refused(name):
    with pytest.raises(ConfigError):
        GuardConfig(**{name: 0.0})
    with pytest.raises(ConfigError):
        GuardConfig(**{name: float("nan")})


# ----------------------------------------------------------------- edges (each computed by hand)
def test_reversing_straight_plan_asks_for_nothing_across_the_angle_seam():
    """Directions just either side of +-pi (reversing, drifting right) differ by 0.02 rad, not 2 pi - 0.02."""
    v = np.array([-10.0, 0.1])  # direction pi - 0.01
    poses = np.stack([-5.0 * np.arange(1, 9), -0.05 * np.arange(1, 9), np.zeros(8)], axis=1)  # -pi + 0.01
    d_ego, d_plan = math.atan2(0.1, -10.0), math.atan2(-0.05, -5.0)
    turn = (d_plan - d_ego) + 2 * math.pi  # the short way round
    expected = abs(turn) / 0.25 * math.hypot(5.0, 0.05) / 0.5
    assert plan_lateral_acceleration(poses, 0.5, v) == pytest.approx(expected, rel=1e-9)
    assert expected < 1.0


def test_empty_plan_is_never_plausible_and_a_heading_is_not_read():
    assert plan_lateral_acceleration(np.zeros((0, 3)), 0.5, np.array([10.0, 0.0])) == math.inf
    poses = _straight(10.0)
    poses[:, 2] = np.nan  # the check reads positions only
    assert plan_lateral_acceleration(poses, 0.5, np.array([10.0, 0.0])) == 0.0


@pytest.mark.parametrize("horizon_s, expected", [(0.5, 0.0), (1.5, 0.0), (2.0, None)])
def test_horizon_counts_whole_segments(horizon_s, expected):
    """A 3 m jump in the fourth segment (1.5 .. 2.0 s): inside a 2 s horizon, outside 1.5 s and 0.5 s."""
    poses = _straight(10.0)
    poses[3:, 1] = 3.0
    need = plan_lateral_acceleration(poses, 0.5, np.array([10.0, 0.0]), horizon_s=horizon_s)
    if expected is None:
        first = math.atan2(3.0, 5.0)  # segment 4's direction, 0.5 s after segment 3's (straight)
        assert need == pytest.approx(first / 0.5 * math.hypot(5.0, 3.0) / 0.5, rel=1e-9)
    else:
        assert need == expected


@pytest.mark.parametrize("speed", [0.0, 0.5])
def test_no_direction_of_motion_at_or_below_min_moving(speed):
    """Standing (or at exactly 0.5 m/s) the first segment has nothing to turn from: a plan leaving sideways
    along +y at 2 m/s asks for nothing."""
    poses = np.stack([np.zeros(8), 1.0 * np.arange(1, 9), np.full(8, math.pi / 2)], axis=1)
    assert plan_lateral_acceleration(poses, 0.5, np.array([speed, 0.0])) == 0.0


def test_a_segment_of_exactly_min_segment_m_has_a_direction():
    """0.5 m segments along +y from an ego moving along +x at 1 m/s: the first turns pi / 2 in 0.25 s at
    1 m/s; with the segments skipped nothing would be asked."""
    poses = np.stack([np.zeros(8), 0.5 * np.arange(1, 9), np.zeros(8)], axis=1)
    assert plan_lateral_acceleration(poses, 0.5, np.array([1.0, 0.0])) == pytest.approx(2 * math.pi, rel=1e-9)


def test_limit_lateral_small_slip_and_slow_ego():
    v = np.array([10.0, 0.3])  # slip atan(0.03): the line ahead rises 0.03 m per metre
    out = limit_lateral(_straight(10.0), 0.5, v, 2.0)
    base = 10.0 * T * 0.03
    np.testing.assert_allclose(out[:, 1], base - np.minimum(base, T ** 2))
    # slower than 0.5 m/s the direction of motion is unknown: the line is the heading (y = 0), nothing moves
    slow = limit_lateral(_straight(10.0), 0.5, np.array([0.3, 0.3]), 2.0)
    np.testing.assert_array_equal(slow, _straight(10.0))


def test_limit_lateral_headings_of_moved_and_kept_poses():
    poses = np.stack([10.0 * T, 3.0 * T ** 2, np.full(8, 0.1)], axis=1)  # curving away at 6 m/s^2
    out = limit_lateral(poses, 0.5, np.array([20.0, 0.0]), 2.0)
    np.testing.assert_allclose(out[:, 1], T ** 2)  # every pose beyond the 2 m/s^2 reach: all moved
    pts = np.vstack([np.zeros(2), out[:, :2]])
    central = np.arctan2(pts[2:, 1] - pts[:-2, 1], pts[2:, 0] - pts[:-2, 0])  # poses 1..7: neighbours' chord
    np.testing.assert_allclose(out[:-1, 2], central)
    last = math.atan2(pts[-1, 1] - pts[-2, 1], pts[-1, 0] - pts[-2, 0])  # the last: its own segment's direction
    assert out[-1, 2] == pytest.approx(last)
    kept = _jump(20.0)
    kept[:, 2] = 0.1
    out = limit_lateral(kept, 0.5, np.array([20.0, 0.0]), 2.0)
    np.testing.assert_array_equal(out[3:, 2], 0.1)  # within reach from 2 s on: heading as planned
