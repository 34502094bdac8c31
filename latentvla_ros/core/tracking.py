"""Trajectory tracking for execution: pure pursuit (lateral) + P speed control (longitudinal).

Turns a planned ego-frame trajectory into (acceleration, steering angle). Adapters map
that to the CARLA bridge's ``geometry_msgs/Twist`` convention and to highway-env's
continuous action. Pure numpy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from latentvla_ros.core.config_base import ConfigBase, require


@dataclass
class TrackerConfig(ConfigBase):
    wheelbase_m: float = 2.9
    """Distance between the axles of the controlled vehicle [m]."""
    lookahead_min_m: float = 4.0
    """Shortest pure-pursuit look-ahead distance [m]."""
    lookahead_time_s: float = 0.8
    """Look-ahead distance grows with speed: speed x this time [s]."""
    speed_preview_s: float = 1.0
    """The target speed is the planned speed this far ahead [s]."""
    speed_kp: float = 1.2
    """Proportional gain from speed error [m/s] to acceleration [m/s^2]."""
    max_acceleration_mps2: float = 3.0
    """Acceleration limit of the command [m/s^2]."""
    max_deceleration_mps2: float = 6.0
    """Deceleration limit of the command [m/s^2]."""
    max_steering_rad: float = 0.6
    """Steering-angle limit of the command [rad]."""

    def validate(self) -> None:
        for name in ("wheelbase_m", "lookahead_min_m", "lookahead_time_s", "speed_preview_s", "speed_kp",
                     "max_acceleration_mps2", "max_deceleration_mps2", "max_steering_rad"):
            value = getattr(self, name)
            require(math.isfinite(value) and value > 0, name, "must be a positive number")


@dataclass
class ControlCommand:
    acceleration_mps2: float
    steering_rad: float  # positive = left
    target_speed_mps: float


def _polyline(poses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pts = np.vstack([[0.0, 0.0], np.asarray(poses, dtype=np.float64)[:, :2]])
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
    return pts, arc


def track(poses: np.ndarray, interval_s: float, speed_mps: float, cfg: TrackerConfig | None = None) -> ControlCommand:
    """Control command following ``poses`` ((N, >=2) ego frame at ``interval_s``) from ``speed_mps``."""
    cfg = cfg or TrackerConfig()
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim != 2 or poses.shape[0] == 0 or not np.all(np.isfinite(poses[:, :2])):
        return ControlCommand(-cfg.max_deceleration_mps2, 0.0, 0.0)  # nothing sane to follow: brake
    speed = max(0.0, float(speed_mps)) if math.isfinite(speed_mps) else 0.0
    pts, arc = _polyline(poses)
    # planned speed profile from the poses; target = planned speed a little ahead
    seg_speed = np.diff(arc) / interval_s
    preview_index = min(len(seg_speed) - 1, int(cfg.speed_preview_s / interval_s))
    target_speed = float(seg_speed[preview_index])
    accel = float(np.clip(cfg.speed_kp * (target_speed - speed), -cfg.max_deceleration_mps2, cfg.max_acceleration_mps2))
    # pure pursuit towards the point at the look-ahead distance along the path
    lookahead = max(cfg.lookahead_min_m, speed * cfg.lookahead_time_s)
    if arc[-1] < 0.5:  # (almost) standing plan: keep the wheels straight
        return ControlCommand(accel, 0.0, target_speed)
    s = min(lookahead, arc[-1])
    x = float(np.interp(s, arc, pts[:, 0]))
    y = float(np.interp(s, arc, pts[:, 1]))
    dist = math.hypot(x, y)
    alpha = math.atan2(y, x)
    steer = math.atan2(2.0 * cfg.wheelbase_m * math.sin(alpha), max(dist, 1e-3))
    return ControlCommand(accel, float(np.clip(steer, -cfg.max_steering_rad, cfg.max_steering_rad)), target_speed)


def carla_twist_values(cmd: ControlCommand, max_lon_acceleration: float = 10.0) -> tuple[float, float]:
    """(linear.x, angular.z) for carla_twist_to_control.

    That node clips linear.x to +-10 and divides by 10: positive is throttle, negative
    brake, exactly zero full brake; angular.z is the steering angle [rad] (left positive;
    the node negates and normalises it by the vehicle's max steering angle).
    """
    lin = float(np.clip(cmd.acceleration_mps2, -max_lon_acceleration, max_lon_acceleration))
    if lin == 0.0 and cmd.target_speed_mps > 0.1:
        lin = 1e-3  # zero means full brake for the bridge: coast instead
    return lin, float(cmd.steering_rad)
