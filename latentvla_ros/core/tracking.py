"""Trajectory tracking for execution: pure pursuit (lateral) + feedforward and P speed control (longitudinal).

Turns a planned ego-frame trajectory into (acceleration, steering angle). Adapters map
that to the CARLA bridge's two control inputs with their real semantics
(``TwistMapper`` for carla_twist_to_control, ``ackermann_values`` for
carla_ackermann_control) and to highway-env's continuous action. Pure numpy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from latentvla_ros.core.config_base import ConfigBase, require
from latentvla_ros.core.lanes import arc_lengths


@dataclass
class TrackerConfig(ConfigBase):
    wheelbase_m: float = 2.9
    """Distance between the axles of the controlled vehicle [m]."""
    lookahead_min_m: float = 4.0
    """Shortest pure-pursuit look-ahead distance [m]."""
    lookahead_time_s: float = 0.8
    """Look-ahead distance grows with speed: speed x this time [s]."""
    speed_preview_s: float = 1.0
    """The command's target speed (``ControlCommand.target_speed_mps``, the Ackermann bridge's speed)
    is the planned speed this far ahead [s]."""
    speed_kp: float = 1.2
    """Gain from a speed error [m/s] to acceleration [m/s^2] in both speed laws (below)."""
    accel_fit_s: float = 1.5
    """Feedforward law: the plan's acceleration is the slope of a straight line fitted to its speed
    profile over this first part of the plan [s]; the line's value at t = 0 is the plan's speed now;
    command = that acceleration + ``speed_kp`` x (the plan's speed now - speed)."""
    feedforward_from_mps: float = 10.0
    """Speed law, scheduled with the speed: up to this speed [m/s] the firm law, ``speed_kp`` x (the planned
    speed ``speed_preview_s`` ahead - speed), which brakes 1.2-1.5 x harder than a braking plan; from
    ``feedforward_full_mps`` on the feedforward law, which follows the plan's own deceleration; linear in
    between. Measured on the validation seeds (docs/operations.md#tracker): at cruising speed the firm law's
    over-braking failed the comfort checks and cost the highway 5 points; at roundabout entries and
    unprotected left turns (<= 10 m/s) it is what made the car yield, and the feedforward law collided."""
    feedforward_full_mps: float = 15.0
    """From this speed on [m/s], the feedforward law alone (see ``feedforward_from_mps``); at or below
    ``feedforward_from_mps``: a step there (0 and 0: the feedforward law at every speed above standstill)."""
    max_acceleration_mps2: float = 3.0
    """Acceleration limit of the command [m/s^2]."""
    max_deceleration_mps2: float = 6.0
    """Deceleration limit of the command [m/s^2]."""
    max_steering_rad: float = 0.6
    """Steering-angle limit of the command [rad]."""
    stop_deceleration_mps2: float = 3.0
    """A standing plan (all of it within ``STANDING_PLAN_M``: a stop) brakes at least this hard while
    the car still moves faster than ``STOPPED_MPS`` [m/s^2]: the P controller alone would only
    approach standstill exponentially (1.2 m/s^2 at 1 m/s) and creep into what the plan stops for."""
    reference_to_rear_axle_m: float = 0.0
    """How far the planned poses' origin (the vehicle's reference point) lies ahead of the rear
    axle [m]: 0 for a rear-axle reference; highway-env's poses are the box centre, half the
    wheelbase ahead. Pure pursuit then steers the reference point's own arc through the
    look-ahead point: that point slips sideways as the wheels turn (its velocity points
    atan(d tan(delta) / L) off the heading), and the rear-axle formula would oversteer it by
    (ld + L) / ld for d = L / 2 (2.25 x at a 4 m look-ahead) and cut inside every corner."""
    max_yaw_acceleration_radps2: float = 1.5
    """Steering-rate limit, scheduled with speed: from one command to the next (``dt_s`` apart) the
    steering angle moves at most ``max_yaw_acceleration_radps2 * dt_s * wheelbase_m / max(v, 1 m/s)``,
    i.e. the bicycle's yaw rate ``v tan(delta) / L`` (small angles) changes by at most this per second
    [rad/s^2] (NAVSIM's comfort bound is 1.93). A real steering actuator is rate limited; without it a
    plan that flickers for one frame (a fused planner's lateral jitter) became a one-step steering spike
    of 0.12 rad at 25 m/s, a 4 rad/s^2 yaw acceleration. Highway lane changes need < 0.02 rad, so the
    limit adds no lag there; at low speed it is loose (0.75 rad/s at 10 m/s on a 5 m wheelbase)."""

    def validate(self) -> None:
        for name in ("wheelbase_m", "lookahead_min_m", "lookahead_time_s", "speed_preview_s", "accel_fit_s", "speed_kp",
                     "max_acceleration_mps2", "max_deceleration_mps2", "max_steering_rad", "stop_deceleration_mps2"):
            value = getattr(self, name)
            require(math.isfinite(value) and value > 0, name, "must be a positive number")
        for name in ("feedforward_from_mps", "feedforward_full_mps"):
            value = getattr(self, name)
            require(math.isfinite(value) and value >= 0, name, "must be a number >= 0")
        require(self.max_yaw_acceleration_radps2 > 0, "max_yaw_acceleration_radps2", "must be > 0 (inf: no limit)")
        d = self.reference_to_rear_axle_m
        require(math.isfinite(d) and 0.0 <= d <= self.wheelbase_m, "reference_to_rear_axle_m", "must be in [0, wheelbase_m]")


STANDING_PLAN_M = 0.5
"""A plan whose whole path is shorter than this [m] stands: a stop."""
STOPPED_MPS = 0.05
"""Slower than this the car counts as stopped (NAVSIM's collision_stopped_speed_threshold)."""
STEERING_RATE_MIN_SPEED_MPS = 1.0
"""The steering-rate limit is scheduled with the speed, but never with a speed below this [m/s]."""


@dataclass
class ControlCommand:
    acceleration_mps2: float
    steering_rad: float  # positive = left
    target_speed_mps: float


def _polyline(poses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pts = np.vstack([[0.0, 0.0], np.asarray(poses, dtype=np.float64)[:, :2]])
    return pts, arc_lengths(pts)


def max_steering_step(speed_mps: float, dt_s: float, cfg: TrackerConfig) -> float:
    """The largest steering change [rad] allowed ``dt_s`` after the last command at ``speed_mps``
    (``TrackerConfig.max_yaw_acceleration_radps2``)."""
    return cfg.max_yaw_acceleration_radps2 * dt_s * cfg.wheelbase_m / max(float(speed_mps), STEERING_RATE_MIN_SPEED_MPS)


def track(poses: np.ndarray, interval_s: float, speed_mps: float, cfg: TrackerConfig | None = None,
          previous: ControlCommand | None = None, dt_s: float | None = None) -> ControlCommand:
    """Control command following ``poses`` ((N, >=2) ego frame at ``interval_s``) from ``speed_mps``.

    With ``previous`` (the last command, ``dt_s`` [s] ago) the steering moves from its steering at most
    ``max_steering_step``; None (the first command, or after a command not from the tracker): no limit."""
    cfg = cfg or TrackerConfig()
    cmd = _track(poses, interval_s, speed_mps, cfg)
    last = previous.steering_rad if previous is not None else math.nan
    if not (math.isfinite(last) and dt_s is not None and math.isfinite(dt_s) and dt_s > 0):
        return cmd
    step = max_steering_step(speed_mps if math.isfinite(speed_mps) else 0.0, dt_s, cfg)  # floored at 1 m/s there
    cmd.steering_rad = float(np.clip(cmd.steering_rad, last - step, last + step))
    return cmd


def feedforward_share(speed_mps: float, cfg: TrackerConfig) -> float:
    """The feedforward law's share of the speed command at ``speed_mps`` (0: firm law, 1: feedforward)."""
    lo, hi = cfg.feedforward_from_mps, cfg.feedforward_full_mps
    if speed_mps <= lo:
        return 0.0
    return 1.0 if speed_mps >= hi else (speed_mps - lo) / (hi - lo)  # hi > speed > lo here


def plan_speed_line(seg_speed: np.ndarray, interval_s: float, fit_s: float) -> tuple[float, float]:
    """(speed at t = 0 [m/s], acceleration [m/s^2]) of the least-squares line through the segment
    speeds ``seg_speed`` (each the mean speed between consecutive poses, so at the segment's mid
    time) whose mid time is within ``fit_s``; a single segment: its speed, no acceleration."""
    mid_t = (np.arange(len(seg_speed)) + 0.5) * interval_s
    n = max(1, int(np.count_nonzero(mid_t <= fit_s)))
    if n < 2:
        return max(0.0, float(seg_speed[0])), 0.0
    slope, intercept = np.polyfit(mid_t[:n], seg_speed[:n], 1)
    return max(0.0, float(intercept)), float(slope)


def _track(poses: np.ndarray, interval_s: float, speed_mps: float, cfg: TrackerConfig) -> ControlCommand:
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim != 2 or poses.shape[0] == 0 or not np.all(np.isfinite(poses[:, :2])):
        return ControlCommand(-cfg.max_deceleration_mps2, 0.0, 0.0)  # nothing sane to follow: brake
    speed = max(0.0, float(speed_mps)) if math.isfinite(speed_mps) else 0.0
    pts, arc = _polyline(poses)
    # planned speed profile from the poses; target = planned speed a little ahead
    seg_speed = np.diff(arc) / interval_s
    preview_index = min(len(seg_speed) - 1, int(cfg.speed_preview_s / interval_s))
    target_speed = float(seg_speed[preview_index])
    accel = cfg.speed_kp * (target_speed - speed)  # firm: the planned speed a preview ahead, now
    share = feedforward_share(speed, cfg)
    if share > 0.0:
        plan_speed_now, plan_accel = plan_speed_line(seg_speed, interval_s, cfg.accel_fit_s)
        accel += share * (plan_accel + cfg.speed_kp * (plan_speed_now - speed) - accel)
    accel = float(np.clip(accel, -cfg.max_deceleration_mps2, cfg.max_acceleration_mps2))
    # pure pursuit towards the point at the look-ahead distance along the path
    lookahead = max(cfg.lookahead_min_m, speed * cfg.lookahead_time_s)
    if arc[-1] < STANDING_PLAN_M:  # (almost) standing plan: keep the wheels straight, brake firmly
        if speed > STOPPED_MPS:
            accel = min(accel, -min(cfg.stop_deceleration_mps2, cfg.max_deceleration_mps2))
        return ControlCommand(accel, 0.0, target_speed)
    s = min(lookahead, arc[-1])
    x = float(np.interp(s, arc, pts[:, 0]))
    y = float(np.interp(s, arc, pts[:, 1]))
    # the arc of the reference point (d ahead of the rear axle) through (x, y): its instantaneous
    # centre lies at (-d, R) with R = L / tan(delta), so tan(delta) = 2 L y / (x^2 + y^2 + 2 d x);
    # d = 0 is the classic 2 L sin(alpha) / ld
    d = cfg.reference_to_rear_axle_m
    steer = math.atan2(2.0 * cfg.wheelbase_m * y, max(x * x + y * y + 2.0 * d * x, 1e-6))
    return ControlCommand(accel, float(np.clip(steer, -cfg.max_steering_rad, cfg.max_steering_rad)), target_speed)


# ---------------------------------------------------------------- CARLA bridge commands
#: linear.x of a coasting Twist: a throttle request of 1e-4 (carla_twist_to_control divides by
#: 10). Never 0.0: a Twist with linear.x == 0 and a steering angle means REVERSE gear there.
COAST_LINEAR_X = 1e-3
STANDSTILL_MPS = 0.3
"""Below this speed, with a plan that stands, the car is held with the full brake."""


@dataclass
class TwistConfig(ConfigBase):
    """How accelerations map onto carla_twist_to_control's Twist (docs/operations.md#carla).

    That node reads linear.x > 0 as a throttle request min(10, x)/10 (never any brake),
    linear.x <= 0 as REVERSE gear with throttle |x|/10, and only an exactly zero Twist as
    braking (full brake, steering 0). So: accelerations become throttle, small decelerations
    coast, larger ones are a duty cycle of full-brake (zero) Twists whose mean matches the
    demand, and linear.x is never negative (the tracker never plans a reverse).
    """

    full_throttle_mps2: float = 5.0
    """Acceleration of the vehicle at full throttle (linear.x = 10) [m/s^2]."""
    full_brake_mps2: float = 8.0
    """Deceleration of the vehicle under full brake (a zero Twist) [m/s^2]."""
    coast_mps2: float = 0.5
    """Decelerations up to this are left to coasting (engine drag), no brake [m/s^2]."""

    def validate(self) -> None:
        for name in ("full_throttle_mps2", "full_brake_mps2", "coast_mps2"):
            value = getattr(self, name)
            require(math.isfinite(value) and value > 0, name, "must be a positive number")
        require(self.coast_mps2 < self.full_brake_mps2, "coast_mps2", "must be below full_brake_mps2")


class TwistMapper:
    """ControlCommand -> (linear.x, angular.z) with carla_twist_to_control's meaning.

    Stateful only for the brake duty cycle (a sigma-delta accumulator: over n cycles
    the number of zero Twists is the demanded deceleration / full_brake_mps2 times n).
    """

    def __init__(self, cfg: TwistConfig | None = None):
        self.cfg = cfg or TwistConfig()
        self._brake_share = 0.0

    def __call__(self, cmd: ControlCommand, speed_mps: float | None) -> tuple[float, float]:
        """``speed_mps`` None: the speed is unknown, brake fully."""
        cfg = self.cfg
        accel = cmd.acceleration_mps2 if math.isfinite(cmd.acceleration_mps2) else -cfg.full_brake_mps2
        steer = float(cmd.steering_rad) if math.isfinite(cmd.steering_rad) else 0.0
        if speed_mps is None or (cmd.target_speed_mps < 0.05 and speed_mps < STANDSTILL_MPS):
            self._brake_share = 0.0
            return 0.0, 0.0  # exactly zero: full brake (and hold)
        if accel > -cfg.coast_mps2:
            self._brake_share = 0.0
            throttle = min(1.0, max(0.0, accel) / cfg.full_throttle_mps2)
            return max(COAST_LINEAR_X, 10.0 * throttle), steer
        self._brake_share += min(1.0, -accel / cfg.full_brake_mps2)
        if self._brake_share >= 1.0 - 1e-9:
            self._brake_share -= 1.0
            return 0.0, 0.0  # full brake this cycle (the bridge also centres the wheel)
        return COAST_LINEAR_X, steer


def ackermann_values(cmd: ControlCommand) -> tuple[float, float, float]:
    """(speed, acceleration, steering_angle) of an ackermann_msgs/AckermannDrive for
    carla_ackermann_control.

    That node drives forward for speed >= 0 (reverse only for a negative speed, never sent
    here); speed 0 brakes at the vehicle's maximum deceleration and holds with the hand
    brake once standing; |acceleration| >= its min_accel (1 m/s^2) is followed directly
    (signed: negative brakes), smaller values let its speed PID hold ``speed``;
    steering_angle is in rad, left positive.
    """
    speed = max(0.0, float(cmd.target_speed_mps)) if math.isfinite(cmd.target_speed_mps) else 0.0
    accel = float(cmd.acceleration_mps2) if math.isfinite(cmd.acceleration_mps2) else 0.0
    steer = float(cmd.steering_rad) if math.isfinite(cmd.steering_rad) else 0.0
    return speed, accel, steer
