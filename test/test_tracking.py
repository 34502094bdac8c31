"""Numeric contracts of core/tracking.py pinned by hand-computed answers.

The tracker (pure pursuit + the speed law scheduled with the speed: firm P law up to 10 m/s, feedforward
from 15 m/s), its input guards, the CARLA Twist mapping
(throttle, coasting, brake duty cycle) and the Ackermann values. Every expected value below
follows from the formulas in the module docstrings with the default configs
(wheelbase 2.9 m, look-ahead max(4 m, 0.8 s x speed), preview 1 s, kp 1.2, limits +3 / -6 m/s^2,
steering 0.6 rad; Twist: full throttle 5, full brake 8, coast 0.5 m/s^2).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from latentvla_ros.core import tracking
from latentvla_ros.core.config_base import ConfigError
from latentvla_ros.core.tracking import (
    COAST_LINEAR_X,
    ControlCommand,
    TrackerConfig,
    TwistConfig,
    TwistMapper,
    ackermann_values,
    feedforward_share,
    plan_speed_line,
    track,
)

BRAKE = ControlCommand(-6.0, 0.0, 0.0)


def _straight(speed_mps: float, interval_s: float = 0.5, n: int = 8) -> np.ndarray:
    """n poses along +x at constant speed, heading 0."""
    xs = speed_mps * interval_s * np.arange(1, n + 1)
    return np.stack([xs, np.zeros(n), np.zeros(n)], axis=1)


# ---------------------------------------------------------------- track(): input guards
@pytest.mark.parametrize("poses", [
    np.zeros((0, 3)),                       # no poses
    np.array([1.0, 2.0, 3.0]),              # 1-D
    np.array([[1.0, 0.0], [np.nan, 0.0]]),  # NaN position
    np.array([[1.0, np.inf, 0.0]]),         # infinite position
    [[None, 0.0]],                          # not a number at all
], ids=["empty", "1d", "nan", "inf", "none"])
def test_unusable_plan_brakes_at_the_deceleration_limit(poses):
    assert track(poses, 0.5, 5.0) == BRAKE  # default config: max_deceleration_mps2 = 6
    cfg = TrackerConfig(max_deceleration_mps2=4.0)
    assert track(poses, 0.5, 5.0, cfg) == ControlCommand(-4.0, 0.0, 0.0)


def test_nan_heading_is_ignored():
    """Only x, y are followed: a NaN heading column does not turn a good plan into a brake."""
    poses = _straight(5.0)
    poses[:, 2] = np.nan
    assert track(poses, 0.5, 5.0) == track(_straight(5.0), 0.5, 5.0)
    assert track(poses, 0.5, 5.0).target_speed_mps == pytest.approx(5.0)


def test_single_pose_plan_is_followed():
    # one pose 5 m ahead after 0.5 s: planned speed 10 m/s; from 10 m/s nothing to correct
    cmd = track([[5.0, 0.0, 0.0]], 0.5, 10.0)
    assert cmd.target_speed_mps == pytest.approx(10.0)
    assert cmd.acceleration_mps2 == pytest.approx(0.0)
    assert cmd.steering_rad == pytest.approx(0.0)


# ---------------------------------------------------------------- track(): longitudinal
def test_speed_error_times_gain_within_limits():
    # plan at 5 m/s, ego at 4.5 m/s: 1.2 * 0.5 = 0.6 m/s^2
    cmd = track(_straight(5.0), 0.5, 4.5)
    assert cmd.target_speed_mps == pytest.approx(5.0)
    assert cmd.acceleration_mps2 == pytest.approx(0.6)
    # ego at 5.5 m/s: -0.6 m/s^2
    assert track(_straight(5.0), 0.5, 5.5).acceleration_mps2 == pytest.approx(-0.6)


def test_standing_ego_accelerates_from_zero():
    # ego 0 m/s, plan 2 m/s: 1.2 * 2 = 2.4 (below the 3 m/s^2 limit); a slower start would read less
    assert track(_straight(2.0), 0.5, 0.0).acceleration_mps2 == pytest.approx(2.4)


def test_acceleration_and_braking_limits():
    # plan 20 m/s from standstill: 1.2 * 20 = 24 -> acceleration limit 3
    assert track(_straight(20.0), 0.5, 0.0).acceleration_mps2 == pytest.approx(3.0)
    # plan 1 m/s from 20 m/s: 1.2 * -19 -> deceleration limit -6
    assert track(_straight(1.0), 0.5, 20.0).acceleration_mps2 == pytest.approx(-6.0)
    cfg = TrackerConfig(max_acceleration_mps2=1.0, max_deceleration_mps2=2.0)
    assert track(_straight(20.0), 0.5, 0.0, cfg).acceleration_mps2 == pytest.approx(1.0)
    assert track(_straight(1.0), 0.5, 20.0, cfg).acceleration_mps2 == pytest.approx(-2.0)


@pytest.mark.parametrize("speed", [float("nan"), float("inf"), -3.0])
def test_unusable_or_negative_ego_speed_reads_as_standing(speed):
    assert track(_straight(2.0), 0.5, speed) == track(_straight(2.0), 0.5, 0.0)
    assert track(_straight(2.0), 0.5, speed).acceleration_mps2 == pytest.approx(2.4)


def test_target_is_the_planned_speed_one_second_ahead():
    # segments at 0.1 s: 1 m/s for the first 10, then 3 m/s; preview 1 s -> segment index 10 -> 3 m/s
    steps = np.array([0.1] * 10 + [0.3] * 5)
    poses = np.stack([np.cumsum(steps), np.zeros(15)], axis=1)
    assert track(poses, 0.1, 3.0).target_speed_mps == pytest.approx(3.0)
    # a plan shorter than the preview: its last segment (index 1 of 2 segments)
    assert track([[0.1, 0.0], [0.4, 0.0]], 0.1, 3.0).target_speed_mps == pytest.approx(3.0)
    assert track([[0.3, 0.0], [0.4, 0.0]], 0.1, 3.0).target_speed_mps == pytest.approx(1.0)


def _braking(v0: float, decel: float, interval_s: float = 0.5, n: int = 8) -> np.ndarray:
    """n poses along +x of a plan braking from v0 at a constant decel (s = v0 t - decel t^2 / 2, while moving)."""
    t = np.minimum(interval_s * np.arange(1, n + 1), v0 / decel)
    return np.stack([v0 * t - 0.5 * decel * t * t, np.zeros(n), np.zeros(n)], axis=1)


def test_cruising_speed_follows_the_plans_own_deceleration():
    # 20 m/s (>= feedforward_full_mps 15), plan braking at 2 m/s^2 from 20 m/s. Segment speeds (each the mean
    # over its 0.5 s, i.e. the speed at its mid time) 20 - 2 * (0.25, 0.75, 1.25, ...): the line through
    # those with mid time <= accel_fit_s 1.5 s is v = 20 - 2 t exactly: feedforward -2 + 1.2 * (20 - 20) = -2.0.
    # The firm law would command 1.2 * (v(1.25) - 20) = 1.2 * (17.5 - 20) = -3.0 (1.5 x the plan).
    cmd = track(_braking(20.0, 2.0), 0.5, 20.0)
    assert cmd.acceleration_mps2 == pytest.approx(-2.0)
    assert cmd.target_speed_mps == pytest.approx(17.5)  # the planned speed 1 s ahead, as before
    # a speed error on top: ego 21 m/s -> -2 + 1.2 * (20 - 21) = -3.2
    assert track(_braking(20.0, 2.0), 0.5, 21.0).acceleration_mps2 == pytest.approx(-3.2)


def test_low_speed_keeps_the_firm_law():
    # 8 m/s (<= feedforward_from_mps 10), plan braking at 2 m/s^2 from 8: 1.2 * ((8 - 2 * 1.25) - 8) = -3.0
    assert track(_braking(8.0, 2.0), 0.5, 8.0).acceleration_mps2 == pytest.approx(-3.0)


def test_speed_law_is_blended_between_the_two_speeds():
    # 12.5 m/s: half-way between 10 and 15 -> share 0.5; firm 1.2 * ((12.5 - 2.5) - 12.5) = -3.0,
    # feedforward -2.0 -> -2.5
    assert feedforward_share(12.5, TrackerConfig()) == pytest.approx(0.5)
    assert track(_braking(12.5, 2.0), 0.5, 12.5).acceleration_mps2 == pytest.approx(-2.5)
    # a step where full <= from; 0 / 0: the feedforward law above standstill; a large from: firm everywhere
    step = TrackerConfig(feedforward_from_mps=12.0, feedforward_full_mps=5.0)
    assert (feedforward_share(11.9, step), feedforward_share(12.1, step)) == (0.0, 1.0)
    assert track(_braking(8.0, 2.0), 0.5, 8.0, TrackerConfig(feedforward_from_mps=0.0, feedforward_full_mps=0.0)
                 ).acceleration_mps2 == pytest.approx(-2.0)
    assert track(_braking(20.0, 2.0), 0.5, 20.0, TrackerConfig(feedforward_from_mps=60.0, feedforward_full_mps=60.0)
                 ).acceleration_mps2 == pytest.approx(-3.0)


def test_plan_speed_line_by_hand():
    # segments at 0.5 s with speeds 10, 11, 13, 20: mid times 0.25, 0.75, 1.25 (<= 1.5), 1.75 (not fitted).
    # Least squares through (0.25, 10), (0.75, 11), (1.25, 13): mean t 0.75, mean v 34/3;
    # slope = sum((t - 0.75)(v - 34/3)) / sum((t - 0.75)^2) = (-0.5 * -4/3 + 0 + 0.5 * 5/3) / 0.5 = 3.0,
    # intercept 34/3 - 3 * 0.75 = 9.0833
    v0, a = plan_speed_line(np.array([10.0, 11.0, 13.0, 20.0]), 0.5, 1.5)
    assert (v0, a) == (pytest.approx(34 / 3 - 2.25), pytest.approx(3.0))
    assert plan_speed_line(np.array([7.0]), 0.5, 1.5) == (7.0, 0.0)  # one segment: its speed, no slope
    # a start from standstill, 0, 2, 4 m/s: slope 4, intercept 2 - 4 * 0.75 = -1 -> no negative speed: 0
    assert plan_speed_line(np.array([0.0, 2.0, 4.0]), 0.5, 1.5) == (0.0, pytest.approx(4.0))


# ---------------------------------------------------------------- track(): lateral (pure pursuit)
def test_pure_pursuit_steering_on_a_known_point():
    # straight line y = 0.5 x (to x = 40): at 10 m/s the look-ahead is max(4, 0.8 * 10) = 8 m along the path
    poses = np.stack([np.linspace(1.0, 40.0, 40), 0.5 * np.linspace(1.0, 40.0, 40)], axis=1)
    cmd = track(poses, 0.5, 10.0, TrackerConfig(max_steering_rad=1.5))
    alpha = math.atan(0.5)
    # the look-ahead point is 8 m from the origin along the ray: steer = atan(2 L sin(alpha) / 8)
    assert cmd.steering_rad == pytest.approx(math.atan(2 * 2.9 * math.sin(alpha) / 8.0))
    # slow: minimum look-ahead 4 m
    cmd = track(poses, 0.5, 1.0, TrackerConfig(max_steering_rad=1.5))
    assert cmd.steering_rad == pytest.approx(math.atan(2 * 2.9 * math.sin(alpha) / 4.0))


def test_reference_ahead_of_the_rear_axle_steers_its_own_arc_through_the_point():
    # highway-env's vehicle: poses are the box centre, d = L / 2 = 2.5 m ahead of the rear axle (L = 5).
    # Target (3, 1) (3.16 m < 4 m look-ahead: the plan's end). tan(delta) = 2 L y / (x^2 + y^2 + 2 d x)
    # = 10 / (9 + 1 + 15) = 0.4; the rear-axle formula would give 10 / 10 = 1 (0.785 rad, twice the angle).
    cfg = TrackerConfig(wheelbase_m=5.0, reference_to_rear_axle_m=2.5, max_steering_rad=1.5)
    delta = track([[3.0, 1.0]], 0.5, 2.0, cfg).steering_rad
    assert delta == pytest.approx(math.atan(0.4))
    # the centre then moves along the circle through (3, 1): its velocity points beta off the heading,
    # tan(beta) = d tan(delta) / L = 0.2, radius R = d / sin(beta), centre (-d, R cos(beta)) = (-2.5, 12.5)
    beta = math.atan(2.5 * math.tan(delta) / 5.0)
    radius = 2.5 / math.sin(beta)
    assert math.hypot(3.0 + 2.5, 1.0 - radius * math.cos(beta)) == pytest.approx(radius)
    # d = 0 is the rear-axle formula; d outside [0, L] is refused
    assert track([[3.0, 1.0]], 0.5, 2.0, TrackerConfig(wheelbase_m=5.0, max_steering_rad=1.5)).steering_rad == \
        pytest.approx(math.atan(1.0))
    with pytest.raises(ConfigError):
        TrackerConfig(wheelbase_m=5.0, reference_to_rear_axle_m=6.0)


def test_short_plan_aims_at_its_last_point():
    # path (1,0) -> (2,1): 1 + sqrt(2) = 2.41 m < 4 m look-ahead, so the target is the end (2, 1)
    cmd = track([[1.0, 0.0], [2.0, 1.0]], 0.5, 2.0, TrackerConfig(max_steering_rad=1.5))
    alpha = math.atan2(1.0, 2.0)
    assert cmd.steering_rad == pytest.approx(math.atan(2 * 2.9 * math.sin(alpha) / math.hypot(2.0, 1.0)))


def test_point_closer_than_one_metre_is_not_floored():
    # the end point (0, 0.8) at 0.8 m: alpha = 90 deg, steer = atan(2 L / 0.8)
    cmd = track([[0.0, 0.8]], 0.5, 0.0, TrackerConfig(max_steering_rad=1.5))
    assert cmd.steering_rad == pytest.approx(math.atan(2 * 2.9 / 0.8))


def test_steering_limit_both_ways():
    assert track([[2.0, 3.0]], 0.5, 0.0).steering_rad == pytest.approx(0.6)
    assert track([[2.0, -3.0]], 0.5, 0.0).steering_rad == pytest.approx(-0.6)
    assert track([[2.0, -3.0]], 0.5, 0.0, TrackerConfig(max_steering_rad=0.3)).steering_rad == pytest.approx(-0.3)


def test_standing_plan_keeps_the_wheels_straight():
    # 0.4 m to the left: below the 0.5 m of a moving plan -> steer exactly 0
    cmd = track([[0.0, 0.4]], 0.5, 1.0)
    assert cmd.steering_rad == 0.0
    assert cmd.target_speed_mps == pytest.approx(0.8)
    # a standing plan is a stop: the P term alone (1.2 * (0.8 - 1.0) = -0.24) would creep on; the car
    # brakes at stop_deceleration_mps2 (3.0) while faster than 0.05 m/s
    assert cmd.acceleration_mps2 == pytest.approx(-3.0)
    assert track([[0.0, 0.4]], 0.5, 1.0, TrackerConfig(stop_deceleration_mps2=1.0)).acceleration_mps2 == pytest.approx(-1.0)
    # never past the deceleration limit; a P term already harder than the stop deceleration is kept
    assert track([[0.0, 0.0]], 0.5, 1.0, TrackerConfig(max_deceleration_mps2=2.0)).acceleration_mps2 == pytest.approx(-2.0)
    assert track([[0.0, 0.0]], 0.5, 4.0).acceleration_mps2 == pytest.approx(-1.2 * 4.0)
    # stopped (0.04 <= 0.05 m/s): the P term only, no brake pulse at standstill
    assert track([[0.0, 0.0]], 0.5, 0.04).acceleration_mps2 == pytest.approx(-1.2 * 0.04)
    # exactly 0.5 m (and 1 m) of path is a moving plan: steer towards it (limit 0.6)
    assert track([[0.0, 0.5]], 0.5, 0.0).steering_rad == pytest.approx(0.6)
    assert track([[0.0, 1.0]], 0.5, 0.0).steering_rad == pytest.approx(0.6)


def test_total_path_length_decides_standing_not_the_first_segments():
    # first segment 0.2 m, the rest 5.7 m to the left: a moving plan, steer left
    cmd = track([[0.2, 0.0], [5.0, 3.0]], 0.5, 0.0)
    assert cmd.steering_rad > 0.3


# ---------------------------------------------------------------- steering-rate limit
def _veer_left(speed_mps: float) -> np.ndarray:
    """A straight line along (0.8, 0.6): at 25 m/s the look-ahead point (20 m along it) is (16, 12)."""
    s = speed_mps * 0.5 * np.arange(1, 9)
    return np.stack([0.8 * s, 0.6 * s, np.full(8, math.atan2(0.6, 0.8))], axis=1)


def _last(steering_rad: float) -> ControlCommand:
    return ControlCommand(0.0, steering_rad, 25.0)


def test_steering_rate_limit_caps_the_change_from_the_last_command_by_hand():
    """L 5 m, d 0, 1.5 rad/s^2, 25 m/s, 0.1 s: the step is 1.5 * 0.1 * 5 / 25 = 0.03 rad; the free command
    towards (16, 12) is atan(2 * 5 * 12 / (16^2 + 12^2)) = atan(0.3) = 0.29146 rad."""
    cfg = TrackerConfig(wheelbase_m=5.0, max_steering_rad=0.6)
    poses = _veer_left(25.0)
    free = math.atan(0.3)
    assert tracking.max_steering_step(25.0, 0.1, cfg) == pytest.approx(0.03)
    assert track(poses, 0.5, 25.0, cfg).steering_rad == pytest.approx(free)  # first command: no limit
    assert track(poses, 0.5, 25.0, cfg, previous=_last(0.0), dt_s=0.1).steering_rad == pytest.approx(0.03)
    assert track(poses, 0.5, 25.0, cfg, previous=_last(-0.01), dt_s=0.1).steering_rad == pytest.approx(0.02)
    assert track(poses, 0.5, 25.0, cfg, previous=_last(0.28), dt_s=0.1).steering_rad == pytest.approx(free)
    assert track(poses, 0.5, 25.0, cfg, previous=_last(0.4), dt_s=0.1).steering_rad == pytest.approx(0.37)
    # 0.05 s later half the step: 0.015
    assert track(poses, 0.5, 25.0, cfg, previous=_last(0.0), dt_s=0.05).steering_rad == pytest.approx(0.015)
    # 2 rad/s^2: 2 * 0.1 * 5 / 25 = 0.04
    cfg2 = TrackerConfig(wheelbase_m=5.0, max_yaw_acceleration_radps2=2.0)
    assert track(poses, 0.5, 25.0, cfg2, previous=_last(0.0), dt_s=0.1).steering_rad == pytest.approx(0.04)
    # no limit: inf
    cfg_off = TrackerConfig(wheelbase_m=5.0, max_yaw_acceleration_radps2=math.inf)
    assert track(poses, 0.5, 25.0, cfg_off, previous=_last(0.0), dt_s=0.1).steering_rad == pytest.approx(free)


def test_steering_rate_limit_is_loose_at_low_speed_and_scheduled_from_1_mps():
    """Below 1 m/s the schedule uses 1 m/s: 1.5 * 0.1 * 2.9 / 1 = 0.435 rad; at 10 m/s 0.0435 rad."""
    cfg = TrackerConfig()
    assert tracking.max_steering_step(0.0, 0.1, cfg) == pytest.approx(0.435)
    assert tracking.max_steering_step(0.5, 0.1, cfg) == pytest.approx(0.435)
    assert tracking.max_steering_step(10.0, 0.1, cfg) == pytest.approx(0.0435)
    # a sharp left at standstill (free command 0.6, the angle limit): 0.435 from a straight wheel
    assert track([[2.0, 3.0]], 0.5, 0.0, cfg, previous=_last(0.0), dt_s=0.1).steering_rad == pytest.approx(0.435)


@pytest.mark.parametrize("previous, dt", [(None, 0.1), (0.0, None), (float("nan"), 0.1), (0.0, 0.0), (0.0, -0.1),
                                          (0.0, float("nan"))])
def test_steering_rate_limit_without_a_usable_previous_command_steers_freely(previous, dt):
    poses = _veer_left(25.0)
    cfg = TrackerConfig(wheelbase_m=5.0)
    last = None if previous is None else _last(previous)
    assert track(poses, 0.5, 25.0, cfg, previous=last, dt_s=dt).steering_rad == \
        pytest.approx(math.atan(0.3))


@pytest.mark.parametrize("value", [0.0, -1.0, float("nan")])
def test_tracker_config_rejects_a_non_positive_yaw_acceleration_limit(value):
    with pytest.raises(ConfigError, match="^max_yaw_acceleration_radps2: must be > 0"):
        TrackerConfig(max_yaw_acceleration_radps2=value)
    TrackerConfig(max_yaw_acceleration_radps2=math.inf)  # no limit


# ---------------------------------------------------------------- configs
@pytest.mark.parametrize("name", ["wheelbase_m", "lookahead_min_m", "lookahead_time_s", "speed_preview_s", "speed_kp",
                                  "accel_fit_s", "max_acceleration_mps2", "max_deceleration_mps2", "max_steering_rad",
                                  "stop_deceleration_mps2"])
@pytest.mark.parametrize("value", [0.0, -1.0, float("inf"), float("nan")])
def test_tracker_config_rejects_non_positive_or_non_finite(name, value):
    with pytest.raises(ConfigError, match=f"^{name}: must be a positive number$"):
        TrackerConfig(**{name: value})


@pytest.mark.parametrize("name", ["feedforward_from_mps", "feedforward_full_mps"])
@pytest.mark.parametrize("value", [-1.0, float("inf"), float("nan")])
def test_tracker_config_rejects_a_negative_or_non_finite_feedforward_speed(name, value):
    with pytest.raises(ConfigError, match=f"^{name}: must be a number >= 0$"):
        TrackerConfig(**{name: value})


@pytest.mark.parametrize("name", ["full_throttle_mps2", "full_brake_mps2", "coast_mps2"])
@pytest.mark.parametrize("value", [0.0, -1.0, float("inf"), float("nan")])
def test_twist_config_rejects_non_positive_or_non_finite(name, value):
    with pytest.raises(ConfigError, match=f"^{name}: must be a positive number$"):
        TwistConfig(**{name: value})


@pytest.mark.parametrize("coast", [8.0, 9.0])
def test_twist_config_coast_must_be_below_full_brake(coast):
    with pytest.raises(ConfigError, match="^coast_mps2: must be below full_brake_mps2$"):
        TwistConfig(coast_mps2=coast, full_brake_mps2=8.0)
    TwistConfig(coast_mps2=7.9, full_brake_mps2=8.0)


# ---------------------------------------------------------------- TwistMapper (carla_twist_to_control)
def _cmd(accel: float, steer: float = 0.1, target: float = 5.0) -> ControlCommand:
    return ControlCommand(accel, steer, target)


def test_twist_throttle_and_coast():
    m = TwistMapper()
    assert m(_cmd(2.5), 5.0) == (5.0, 0.1)  # 2.5 / 5 = half throttle -> linear.x 5
    assert m(_cmd(0.3), 5.0) == pytest.approx((0.6, 0.1))  # 0.3 / 5 * 10
    assert m(_cmd(9.0), 5.0) == (10.0, 0.1)  # saturates
    assert m(_cmd(0.0), 5.0) == (COAST_LINEAR_X, 0.1)
    assert m(_cmd(-0.4), 5.0) == (COAST_LINEAR_X, 0.1)  # within the coasting band


def test_twist_non_finite_inputs():
    m = TwistMapper()
    assert m(_cmd(1.0, steer=float("nan")), 5.0) == (2.0, 0.0)  # NaN steering -> straight
    assert m(_cmd(float("inf")), 5.0) == (0.0, 0.0)  # unusable acceleration -> full brake
    assert TwistMapper()(_cmd(float("nan")), 5.0) == (0.0, 0.0)


def test_twist_hold_at_standstill_boundaries():
    m = TwistMapper()
    assert m(_cmd(0.0, target=0.0), None) == (0.0, 0.0)  # unknown speed: brake
    assert m(_cmd(0.0, target=0.0), 0.29) == (0.0, 0.0)  # plan stands, car (almost) stands: hold
    assert m(_cmd(0.0, target=0.0), 0.3) == (COAST_LINEAR_X, 0.1)  # at STANDSTILL_MPS: not held
    assert m(_cmd(0.0, target=0.05), 0.1) == (COAST_LINEAR_X, 0.1)  # target at 0.05 m/s: not held
    assert m(_cmd(0.0, target=0.5), 0.1) == (COAST_LINEAR_X, 0.1)


def test_twist_brake_duty_cycle_from_a_fresh_mapper():
    # -4 m/s^2 = half of full brake: coast, brake, coast, brake ...
    m = TwistMapper()
    out = [m(_cmd(-4.0), 5.0) for _ in range(4)]
    assert out == [(COAST_LINEAR_X, 0.1), (0.0, 0.0), (COAST_LINEAR_X, 0.1), (0.0, 0.0)]


def test_twist_hold_and_throttle_reset_the_duty_cycle():
    m = TwistMapper()
    assert m(_cmd(-4.0), 5.0) == (COAST_LINEAR_X, 0.1)  # share 0.5
    assert m(_cmd(0.0, target=0.0), 0.0) == (0.0, 0.0)  # hold: share back to 0
    assert m(_cmd(-4.0), 5.0) == (COAST_LINEAR_X, 0.1)  # 0.5 again, not 1.5
    assert m(_cmd(0.0), 5.0) == (COAST_LINEAR_X, 0.1)  # no brake demand: share back to 0
    assert m(_cmd(-4.0), 5.0) == (COAST_LINEAR_X, 0.1)  # 0.5 again, not 1.0


def test_twist_coast_boundary_accumulates():
    # exactly -coast (0.5) is braked by duty cycle: 0.5 / 8 = 0.0625 of a cycle added
    m = TwistMapper()
    assert m(_cmd(-7.5), 5.0) == (COAST_LINEAR_X, 0.1)  # share 0.9375
    assert m(_cmd(-0.5), 5.0) == (0.0, 0.0)  # 0.9375 + 0.0625 = 1 -> brake


def test_twist_brake_share_per_cycle_is_at_most_one():
    m = TwistMapper()
    assert m(_cmd(-16.0), 5.0) == (0.0, 0.0)  # capped at 1: brake, share back to 0
    assert m(_cmd(-4.0), 5.0) == (COAST_LINEAR_X, 0.1)  # 0.5: coast


def test_twist_brake_tolerance():
    # a share within 1e-9 of a whole cycle counts as one
    m = TwistMapper()
    assert m(_cmd(-8.0 * (1.0 - 1e-9)), 5.0) == (0.0, 0.0)


# ---------------------------------------------------------------- Ackermann
def test_ackermann_values():
    assert ackermann_values(ControlCommand(-2.0, 0.2, 7.0)) == (7.0, -2.0, 0.2)
    assert ackermann_values(ControlCommand(1.0, 0.0, -3.0)) == (0.0, 1.0, 0.0)  # never reverse
    nan, inf = float("nan"), float("inf")
    assert ackermann_values(ControlCommand(nan, nan, inf)) == (0.0, 0.0, 0.0)
    assert ackermann_values(ControlCommand(inf, -inf, nan)) == (0.0, 0.0, 0.0)
