"""The controller's output read the way the CARLA bridge reads it.

Two pure-Python models of the bridge's converters (their rules as in carla-simulator/ros-bridge,
docs/operations.md#carla), a simple longitudinal vehicle, and the tracker + mappers of
core/tracking.py in the loop: on a fallback (comfortable stop, re-planned at 10 Hz like the
planner does) the car must slow down and stop, and reverse gear must never engage.

- carla_twist_to_control: an exactly zero Twist = throttle 0, brake 1, steer 0; otherwise
  linear.x > 0 -> throttle min(10, x)/10, no brake; linear.x <= 0 -> REVERSE gear with
  throttle min(10, |x|)/10; steer = -clip(angular.z, +-max_steer)/max_steer.
- carla_ackermann_control: speed < 0 selects reverse (only while standing); speed 0 ->
  target acceleration -max_decel, and full stop (brake 1, hand brake) once standing;
  |acceleration| >= min_accel is followed directly, smaller lets the speed controller
  (integrating, clipped to +-|acceleration|) hold the speed; pedal above the driving
  impedance = throttle, below impedance + engine lay-off = brake, between = coasting;
  steer = -steering_angle / max_steer.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from latentvla_ros.core.fallback import comfortable_stop
from latentvla_ros.core.tracking import (
    COAST_LINEAR_X,
    ControlCommand,
    TrackerConfig,
    TwistConfig,
    TwistMapper,
    ackermann_values,
    track,
)

MAX_STEER = 1.22  # rad, the bridge's Tesla Model 3 front wheels (vehicle_info)
DT = 0.05  # CARLA synchronous mode, the controller's 20 Hz
A_THROTTLE = 5.0  # vehicle: m/s^2 at full throttle (TwistConfig.full_throttle_mps2 matches)
A_BRAKE = 8.0  # vehicle: m/s^2 at full brake


def twist_to_control(lin_x: float, ang_z: float) -> dict:
    if lin_x == 0.0 and ang_z == 0.0:  # Twist() == Twist(): the only brake
        return {"throttle": 0.0, "brake": 1.0, "steer": 0.0, "reverse": False}
    steer = -max(-MAX_STEER, min(MAX_STEER, ang_z)) / MAX_STEER
    if lin_x > 0:
        return {"throttle": min(10.0, lin_x) / 10.0, "brake": 0.0, "steer": steer, "reverse": False}
    return {"throttle": min(10.0, -lin_x) / 10.0, "brake": 0.0, "steer": steer, "reverse": True}


class AckermannControl:
    """carla_ackermann_control's rules (its two loops integrate: each cycle adds gain x error)."""

    max_accel, max_decel, min_accel, max_speed = 3.0, 8.0, 1.0, 50.0
    speed_gain = 0.05  # speed loop: acceleration target += gain * speed error
    accel_gain = 0.1  # acceleration loop: pedal += gain * acceleration error

    def __init__(self):
        self.reverse = False
        self.activation = 0
        self.accel_target = 0.0
        self.pedal = 0.0
        self.current_accel = 0.0
        self.prev_v: float | None = None

    def __call__(self, speed: float, accel: float, angle: float, v: float) -> dict:
        if self.prev_v is not None:  # its measured acceleration: (4 * old + new) / 5
            self.current_accel = (4.0 * self.current_accel + (v - self.prev_v) / DT) / 5.0
        self.prev_v = v
        target = float(np.clip(speed, -self.max_speed, self.max_speed))
        target_accel = -self.max_decel if abs(target) < 1e-5 else float(np.clip(accel, -self.max_decel, self.max_accel))
        steer = float(np.clip(-angle, -MAX_STEER, MAX_STEER)) / MAX_STEER
        if abs(v) < 0.1:
            if target < 0:
                self.reverse = True
            elif target > 0:
                self.reverse = False
            if abs(target) < 1e-5:
                self.accel_target = self.pedal = 0.0
                return {"throttle": 0.0, "brake": 1.0, "steer": steer, "reverse": self.reverse, "hand_brake": True}
        elif np.sign(v) * np.sign(target) == -1:
            target = 0.0
        self.activation = min(5, self.activation + 1) if abs(target_accel) < self.min_accel else max(0, self.activation - 1)
        if self.activation >= 5:
            bound = abs(target_accel) if abs(target_accel) > 1e-5 else None
            lo, hi = (-bound, bound) if bound else (-self.max_decel, self.max_accel)
            self.accel_target = float(np.clip(self.accel_target + self.speed_gain * (abs(target) - abs(v)), lo, hi))
        else:
            self.accel_target = target_accel
        max_pedal = min(self.max_accel, self.max_decel)
        self.pedal = float(np.clip(self.pedal + self.accel_gain * (self.accel_target - self.current_accel),
                                   -max_pedal, max_pedal))
        pedal = self.pedal
        impedance = -drag(v)
        lay_off = impedance - 0.3
        out = {"throttle": 0.0, "brake": 0.0, "steer": steer, "reverse": self.reverse, "hand_brake": False}
        if pedal > impedance:
            out["throttle"] = min(1.0, (pedal - impedance) / max_pedal)
        elif pedal <= lay_off:
            out["brake"] = min(1.0, (lay_off - pedal) / max_pedal)
        return out


def drag(v: float) -> float:
    return 0.15 + 0.0006 * v * v


def vehicle_step(v: float, control: dict) -> float:
    """Longitudinal model: throttle pushes along the gear, brake and drag oppose the motion
    and never reverse it; coasting adds engine braking."""
    push = (-1.0 if control["reverse"] else 1.0) * control["throttle"] * (A_THROTTLE if not control["reverse"] else 2.0)
    resist = drag(v) + control["brake"] * A_BRAKE + (0.3 if control["throttle"] == 0 else 0.0)
    if abs(v) < 1e-6 and abs(push) <= resist:
        return 0.0
    moving = math.copysign(1.0, v) if abs(v) > 1e-6 else math.copysign(1.0, push)
    new_v = v + (push - moving * resist) * DT
    if abs(v) > 1e-6 and np.sign(new_v) != np.sign(v) and abs(push) <= resist:
        return 0.0  # brakes and drag stop the car, they do not drive it backwards
    return new_v


def _drive_fallback(output: str, v0: float, seconds: float = 20.0):
    """The controller follows the planner's comfortable-stop fallback (re-planned every 0.1 s
    from the current speed); returns per-step (speed, control)."""
    tracker = TrackerConfig(wheelbase_m=2.875)
    mapper = TwistMapper(TwistConfig(full_throttle_mps2=A_THROTTLE, full_brake_mps2=A_BRAKE))
    ackermann = AckermannControl()
    v, log, traj = v0, [], None
    for k in range(int(seconds / DT)):
        if k % 2 == 0:
            traj = comfortable_stop(v, 0.05, 2.0, reason="latent plan timeout")
        cmd = track(traj.poses, traj.interval_s, v, tracker)
        if output == "twist":
            lin, ang = mapper(cmd, v)
            assert math.isfinite(lin) and math.isfinite(ang)
            control = twist_to_control(lin, ang)
        else:
            speed, accel, angle = ackermann_values(cmd)
            control = ackermann(speed, accel, angle, v)
        v = vehicle_step(v, control)
        log.append((v, control))
    return log


@pytest.mark.parametrize("output", ["twist", "ackermann"])
@pytest.mark.parametrize("v0", [3.0, 15.0, 25.0])
def test_fallback_slows_and_stops_the_car_and_never_reverses(output, v0):
    log = _drive_fallback(output, v0)
    speeds = np.array([v for v, _ in log])
    assert not any(c["reverse"] for _, c in log), "reverse gear engaged on a fallback"
    assert speeds.min() >= 0.0, "the car drove backwards"
    assert np.all(np.diff(speeds) <= 1e-9), "the car sped up during a comfortable stop"
    stopped = np.nonzero(speeds < 0.05)[0]
    assert stopped.size, f"not stopped after {len(speeds) * DT:.0f} s (speed {speeds[-1]:.2f} m/s)"
    t_stop = (stopped[0] + 1) * DT
    assert t_stop <= v0 / 2.0 * 1.6 + 1.5, f"stopped after {t_stop:.1f} s from {v0} m/s (plan: 2 m/s^2)"
    assert np.all(speeds[stopped[0]:] < 0.05), "did not stay stopped"
    assert log[-1][1]["brake"] == 1.0, "a stopped car is held with the brake"
    if v0 >= 15.0:  # a comfortable stop, not a slam: mean deceleration near the plan's 2 m/s^2
        above = np.nonzero(speeds > 2.0)[0]
        mean_decel = (v0 - speeds[above[-1]]) / ((above[-1] + 1) * DT)
        assert 1.0 <= mean_decel <= 4.0, f"mean deceleration {mean_decel:.2f} m/s^2"


def test_twist_stream_means_throttle_coast_or_full_brake_never_reverse():
    """Every Twist of a drive (accelerate, cruise, fallback stop, hold) is either a throttle
    request (linear.x > 0) or exactly zero; a zero linear.x never comes with a steering angle."""
    tracker = TrackerConfig()
    mapper = TwistMapper()
    v = 0.0
    cruise = np.column_stack([np.arange(1, 9) * 5.0, np.linspace(0.1, 1.5, 8), np.zeros(8)])  # 10 m/s, bending left
    seen = []
    for k in range(400):
        poses = cruise if k < 200 else comfortable_stop(v, 0.0, 2.0).poses
        lin, ang = mapper(track(poses, 0.5, v, tracker), v)
        seen.append((lin, ang))
        v = vehicle_step(v, twist_to_control(lin, ang))
    lin = np.array([a for a, _ in seen])
    assert np.all((lin > 0) | ((lin == 0.0) & (np.array([b for _, b in seen]) == 0.0)))
    assert lin.max() <= 10.0
    assert any(b > 0 for _, b in seen[:200]), "steering left while the path bends left"
    assert v < 0.05


# ---------------------------------------------------------------- numbers pinned by hand
STRAIGHT_10 = np.column_stack([np.arange(1, 9) * 5.0, np.zeros(8), np.zeros(8)])  # 10 m/s at 0.5 s


@pytest.mark.parametrize("speed,expected", [
    (8.0, 2.4),     # 1.2 * (10 - 8): speed error target - speed, positive = accelerate
    (12.0, -2.4),   # 1.2 * (10 - 12)
    (0.0, 3.0),     # 12 clipped to max_acceleration 3 (not to the deceleration limit 6)
    (20.0, -6.0),   # -12 clipped to -max_deceleration 6 (not to 3)
])
def test_tracker_speed_control_by_hand(speed, expected):
    cmd = track(STRAIGHT_10, 0.5, speed, TrackerConfig())
    assert cmd.target_speed_mps == pytest.approx(10.0)
    assert cmd.acceleration_mps2 == pytest.approx(expected)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_tracker_steering_by_hand(sign):
    # a straight path at 10 deg to the left (right): at speed 0 the look-ahead is 4 m, the point
    # (4 cos 10, 4 sin 10) -> alpha = 10 deg, steer = atan(2 * 2.9 * sin(10 deg) / 4) = 0.246663
    angle = sign * math.radians(10.0)
    s = np.arange(1, 9) * 2.0
    poses = np.column_stack([s * math.cos(angle), s * math.sin(angle), np.full(8, angle)])
    cmd = track(poses, 0.5, 0.0, TrackerConfig(wheelbase_m=2.9))
    assert cmd.steering_rad == pytest.approx(sign * 0.246663, abs=1e-6)  # left positive
    lin, ang = TwistMapper()(cmd, 0.0)
    assert ang == cmd.steering_rad and twist_to_control(lin, ang)["steer"] == pytest.approx(-sign * 0.246663 / MAX_STEER, abs=1e-6)


def test_twist_mapper_by_hand():
    m = TwistMapper(TwistConfig(full_throttle_mps2=5.0, full_brake_mps2=8.0, coast_mps2=0.5))
    assert m(ControlCommand(2.5, 0.1, 10.0), 9.0) == (5.0, 0.1)  # half throttle
    assert m(ControlCommand(12.0, 0.0, 10.0), 0.0) == (10.0, 0.0)  # full throttle, clipped
    assert m(ControlCommand(0.0, 0.2, 10.0), 10.0) == (COAST_LINEAR_X, 0.2)  # hold speed: coast, never 0.0
    assert m(ControlCommand(-0.4, 0.2, 9.0), 10.0) == (COAST_LINEAR_X, 0.2)  # small deceleration: coast
    out = [m(ControlCommand(-4.0, 0.2, 6.0), 10.0) for _ in range(10)]  # 4 / 8: every other cycle a full brake
    assert sum(o == (0.0, 0.0) for o in out) == 5 and out.count((COAST_LINEAR_X, 0.2)) == 5
    out = [m(ControlCommand(-6.0, 0.0, 4.0), 10.0) for _ in range(8)]  # 6 / 8: three of four cycles
    assert sum(o == (0.0, 0.0) for o in out) == 6
    assert m(ControlCommand(-1.0, 0.3, 0.0), 0.1) == (0.0, 0.0)  # standing plan, standing car: hold
    assert m(ControlCommand(1.0, 0.3, 5.0), None) == (0.0, 0.0)  # speed unknown: full brake
    assert m(ControlCommand(math.nan, 0.3, 5.0), 5.0) == (0.0, 0.0)  # NaN demand: brake
    assert all(m(ControlCommand(a, 0.1, 5.0), 5.0)[0] >= 0.0 for a in np.linspace(-20, 20, 81))  # never reverse


def test_ackermann_values_by_hand():
    assert ackermann_values(ControlCommand(-2.4, 0.1, 7.6)) == (7.6, -2.4, 0.1)  # signed: negative brakes
    assert ackermann_values(ControlCommand(3.0, -0.2, -1.0)) == (0.0, 3.0, -0.2)  # never a negative (reverse) speed
    assert ackermann_values(ControlCommand(math.nan, math.inf, math.nan)) == (0.0, 0.0, 0.0)  # speed 0: it brakes
    # the bridge's model brakes (within a few cycles of its loops) when the car is faster than the target
    ctl = AckermannControl()
    out = [ctl(*ackermann_values(ControlCommand(-2.4, 0.0, 8.0)), 10.0) for _ in range(10)][-1]
    assert out["brake"] > 0 and out["throttle"] == 0 and not out["reverse"]


def test_twist_config_is_validated():
    from latentvla_ros.core.config_base import ConfigError

    for bad in ({"full_brake_mps2": math.nan}, {"full_throttle_mps2": 0.0}, {"coast_mps2": 9.0}):
        with pytest.raises(ConfigError):
            TwistConfig(**bad)


def test_controller_output_selection(ros_context):
    """auto = AckermannDrive where ackermann_msgs is importable, else Twist; an explicit
    ackermann output without the package refuses to start with the fix in the message."""
    from rclpy.parameter import Parameter

    from latentvla_ros.ros.contracts.parameters import ParameterError
    from latentvla_ros.ros.nodes.twist_controller import TwistControllerNode, ackermann_drive_type

    node = TwistControllerNode(context=ros_context)
    try:
        assert node.output == ("ackermann" if ackermann_drive_type() else "twist")
        assert node.diagnostic_values()["output"] == node.output
    finally:
        node.destroy_node()
    if ackermann_drive_type() is None:
        with pytest.raises(ParameterError, match="ackermann_msgs"):
            TwistControllerNode(context=ros_context, parameter_overrides=[Parameter("output", value="ackermann")])
    with pytest.raises(ParameterError, match="coast_mps2"):
        TwistControllerNode(context=ros_context, parameter_overrides=[Parameter("twist.coast_mps2", value=5.0),
                                                                      Parameter("twist.full_brake_mps2", value=4.0)])


def test_stale_trajectory_stop_keeps_the_last_plans_sampling(ros_context):
    """When the trajectory goes stale, the comfortable stop is sampled like the last trajectory
    received (its number of poses and interval), not at the default sampling."""
    from ros_helpers import odometry

    from latentvla_ros.core.types import Trajectory
    from latentvla_ros.ros.conversions import trajectory_to_msg
    from latentvla_ros.ros.nodes.twist_controller import TwistControllerNode

    node = TwistControllerNode(context=ros_context)  # not spun: its callbacks are called here
    try:
        node._on_odometry(odometry(10**9, speed=10.0))
        poses = np.column_stack([10.0 * 0.2 * np.arange(1, 5), np.zeros(4), np.zeros(4)])
        node._on_trajectory(trajectory_to_msg(Trajectory(poses, interval_s=0.2, stamp_ns=10**9), "base_link"))
        node._on_timer()
        assert node.mode == "following"
        node._trajectory_time -= node.params.trajectory_timeout_s + 1.0  # no trajectory since: stale
        node._on_timer()
        assert node.mode == "stale_trajectory"
        decel = node.params.stale_deceleration_mps2
        own = comfortable_stop(10.0, 0.0, decel, num_poses=4, interval_s=0.2)
        expected = track(own.poses, own.interval_s, 10.0, node.tracker)
        default = comfortable_stop(10.0, 0.0, decel)
        assert track(default.poses, default.interval_s, 10.0, node.tracker) != expected  # the check can fail
        assert dataclasses.astuple(node.last_command) == pytest.approx(dataclasses.astuple(expected))
    finally:
        node.destroy_node()


def test_controller_rate_limits_the_steering_between_its_commands(ros_context):
    """The node hands the tracker its last command and the timer's period: at 25 m/s with the default
    1.5 rad/s^2 and the Model 3's 2.875 m wheelbase, 50 ms (20 Hz) after a 0.17082 rad command (free: the
    look-ahead point (16, 12) of a plan along (0.8, 0.6), atan(2 * 2.875 * 12 / 400)) a straight plan may
    only take the wheel back by 1.5 * 0.05 * 2.875 / 25 = 0.008625 rad, to 0.16220."""
    from ros_helpers import odometry

    from latentvla_ros.core.types import Trajectory
    from latentvla_ros.ros.conversions import trajectory_to_msg
    from latentvla_ros.ros.nodes.twist_controller import TwistControllerNode

    node = TwistControllerNode(context=ros_context)  # not spun: its callbacks are called here
    try:
        assert node.tracker.max_yaw_acceleration_radps2 == node.params.max_yaw_acceleration_radps2 == 1.5
        # the speed law's parameters reach the tracker (schema defaults = TrackerConfig's)
        assert (node.tracker.speed_kp, node.tracker.accel_fit_s, node.tracker.feedforward_from_mps,
                node.tracker.feedforward_full_mps) == (node.params.speed_kp, node.params.accel_fit_s,
                                                       node.params.feedforward_from_mps,
                                                       node.params.feedforward_full_mps) == (1.2, 1.5, 10.0, 15.0)
        assert node.params.control_rate_hz == 20.0
        s = 12.5 * np.arange(1, 9)
        veer = np.column_stack([0.8 * s, 0.6 * s, np.full(8, math.atan2(0.6, 0.8))])
        straight = np.column_stack([s, np.zeros(8), np.zeros(8)])
        node._on_odometry(odometry(10**9, speed=25.0))
        node._on_trajectory(trajectory_to_msg(Trajectory(veer, interval_s=0.5, stamp_ns=10**9), "base_link"))
        node._on_timer()
        assert node.last_command.steering_rad == pytest.approx(math.atan(2 * 2.875 * 12 / 400))  # first: free
        node._on_odometry(odometry(10**9 + 50_000_000, speed=25.0))
        node._on_trajectory(trajectory_to_msg(Trajectory(straight, interval_s=0.5, stamp_ns=10**9 + 50_000_000),
                                              "base_link"))
        node._on_timer()
        assert node.last_command.steering_rad == pytest.approx(math.atan(2 * 2.875 * 12 / 400) - 0.008625)
    finally:
        node.destroy_node()
