"""twist_controller: PlannedTrajectory + Odometry -> CARLA bridge control commands.

Follows the newest trajectory (pure pursuit + speed control, core/tracking.py) and sends
it with the bridge's real control semantics (docs/operations.md#carla):

- ``output: ackermann`` (``auto`` picks it where ackermann_msgs is importable):
  ackermann_msgs/AckermannDrive (target speed, signed acceleration, steering angle) for
  carla_ackermann_control, whose speed/acceleration PID brakes;
- ``output: twist`` (``auto`` without ackermann_msgs): geometry_msgs/Twist for
  carla_twist_to_control, where linear.x > 0 is a throttle request, only an exactly zero
  Twist brakes (full brake, a duty cycle of them for partial braking) and linear.x <= 0
  would be reverse gear: never sent (core/tracking.py TwistMapper).

Fallback trajectories are followed like any other (they are comfortable stops). Safety:

- no fresh trajectory for ``trajectory_timeout_s`` (planner dead or silent): brake at
  ``stale_deceleration_mps2`` to a stop, then hold (zero Twist / speed 0);
- no fresh odometry for ``input_timeout_s``: the speed is unknown, brake fully;
- a trajectory older than the one being followed (out of order) is dropped and counted,
  unless time jumped back by more than a second (simulator reset, looping bag).

The CARLA bridge's ``vehicle_status`` (carla_msgs/CarlaEgoVehicleStatus) is subscribed
only when carla_msgs is importable (``use_vehicle_status``); its ``velocity`` then stands
in for a stale odometry speed. Without carla_msgs, odometry carries everything needed.
"""
from __future__ import annotations

import dataclasses
import math
import sys
import time

from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry

from latentvla_ros.core.fallback import comfortable_stop
from latentvla_ros.core.tracking import (
    ControlCommand,
    TrackerConfig,
    TwistConfig,
    TwistMapper,
    ackermann_values,
    track,
)
from latentvla_ros.msg import PlannedTrajectory
from latentvla_ros.ros.contracts.parameters import ParameterError
from latentvla_ros.ros.conversions import ConversionError, msg_to_trajectory
from latentvla_ros.ros.node_base import ERROR, WARN, LatentVlaNode, checked_odometry
from latentvla_ros.ros.node_main import run_node

_TIME_JUMP_NS = 1_000_000_000


def vehicle_status_type():
    """carla_msgs/CarlaEgoVehicleStatus if importable here, else None (never invented)."""
    try:
        from carla_msgs.msg import CarlaEgoVehicleStatus  # type: ignore[import-not-found]
    except ImportError:
        return None
    return CarlaEgoVehicleStatus


def ackermann_drive_type():
    """ackermann_msgs/AckermannDrive if importable here, else None (never invented)."""
    try:
        from ackermann_msgs.msg import AckermannDrive  # type: ignore[import-not-found]
    except ImportError:
        return None
    return AckermannDrive


class TwistControllerNode(LatentVlaNode):
    schema_name = "twist_controller"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        p = self.params
        self.tracker = TrackerConfig(wheelbase_m=p.wheelbase_m, max_steering_rad=p.max_steering_rad,
                                     max_yaw_acceleration_radps2=p.max_yaw_acceleration_radps2,
                                     speed_kp=p.speed_kp, accel_fit_s=p.accel_fit_s,
                                     feedforward_from_mps=p.feedforward_from_mps,
                                     feedforward_full_mps=p.feedforward_full_mps)
        # checked with the parameters (ros/contracts/parameters.py GROUP_CONFIGS)
        self.twist_mapper = TwistMapper(TwistConfig(**dataclasses.asdict(p.twist)))
        self._trajectory = None
        self._trajectory_time = -math.inf
        self._speed = 0.0
        self._odom_time = -math.inf
        self._status_speed: float | None = None
        self._status_time = -math.inf
        self.accepted_trajectories = 0
        self.last_command: ControlCommand | None = None  # the tracker limits the steering rate from it
        # the time between two commands: the timer's period on the node clock (simulation time in CARLA: a
        # paused simulator sends no commands, its next tick is one period later)
        self.control_period_s = 1.0 / p.control_rate_hz
        self.mode = "waiting"  # following | following_fallback | stale_trajectory | stale_odometry | standstill
        drive_type = ackermann_drive_type()
        if p.output == "ackermann" and drive_type is None:
            raise ParameterError("twist_controller: output 'ackermann' needs ackermann_msgs (apt: "
                                 "ros-$ROS_DISTRO-ackermann-msgs), not importable here: use output 'twist' or 'auto'")
        self.output = "ackermann" if p.output == "ackermann" or (p.output == "auto" and drive_type) else "twist"
        self._drive_type = drive_type
        self._twist_pub = self._drive_pub = None
        if self.output == "ackermann":
            self._drive_pub = self.create_publisher(drive_type, "~/output/ackermann", self.output_qos())
        else:
            self._twist_pub = self.create_publisher(Twist, "~/output/twist", self.output_qos())
        self.get_logger().info(f"output: {self.output} (" + ("AckermannDrive for carla_ackermann_control)" if
                               self.output == "ackermann" else "Twist for carla_twist_to_control)"))
        self.create_subscription(PlannedTrajectory, "~/input/trajectory", self._on_trajectory, self.input_qos(),
                                 timeout_param="trajectory_timeout_s")
        self.create_subscription(Odometry, "~/input/odometry", self._on_odometry, self.sensor_qos())
        status_type = vehicle_status_type() if p.use_vehicle_status else None
        self.vehicle_status_subscribed = status_type is not None
        if status_type is not None:
            self.create_subscription(status_type, "~/input/vehicle_status", self._on_vehicle_status, self.sensor_qos(),
                                     watch=False)
        self.create_timer(1.0 / p.control_rate_hz, self._on_timer)

    def _on_odometry(self, msg: Odometry) -> None:
        try:
            velocity, _ = checked_odometry(msg)
        except ConversionError as exc:
            self.drop("bad_odometry", str(exc))
            return
        self._speed = float(math.hypot(*velocity))
        self._odom_time = time.monotonic()

    def _on_vehicle_status(self, msg) -> None:
        speed = float(getattr(msg, "velocity", math.nan))
        if not math.isfinite(speed):
            self.drop("bad_vehicle_status", "non-finite velocity")
            return
        self._status_speed, self._status_time = abs(speed), time.monotonic()

    def _on_trajectory(self, msg: PlannedTrajectory) -> None:
        traj = msg_to_trajectory(msg)
        if len(traj.poses) == 0 or not traj.is_finite() or not (0.0 < traj.interval_s < 10.0):
            self.drop("bad_trajectory", "empty or non-finite trajectory, or bad time_from_start")
            return
        if self._trajectory is not None and traj.stamp_ns < self._trajectory.stamp_ns:
            if self._trajectory.stamp_ns - traj.stamp_ns < _TIME_JUMP_NS:
                self.drop("out_of_order_trajectory", f"trajectory {traj.stamp_ns} is older than the one being followed")
                return
            self.get_logger().warning("trajectory stamps jumped backwards: following the new one")
        self._trajectory, self._trajectory_time = traj, time.monotonic()
        self.accepted_trajectories += 1

    def _current_speed(self, now: float) -> float | None:
        if now - self._odom_time <= self.params.input_timeout_s:
            return self._speed
        if self._status_speed is not None and now - self._status_time <= self.params.input_timeout_s:
            return self._status_speed
        return None

    def _on_timer(self) -> None:
        with self.processing():
            now = time.monotonic()
            speed = self._current_speed(now)
            stale = now - self._trajectory_time > self.params.trajectory_timeout_s
            if self._trajectory is None or stale or speed is None:
                known = self._speed if speed is None else speed
                self.mode = "stale_odometry" if speed is None and self._trajectory is not None and not stale else (
                    "stale_trajectory" if self._trajectory is not None else "waiting")
                sampling = {} if self._trajectory is None else {  # the last plan's own poses and interval
                    "num_poses": len(self._trajectory.poses), "interval_s": self._trajectory.interval_s}
                stop = comfortable_stop(known, 0.0, self.params.stale_deceleration_mps2, **sampling)
                cmd = track(stop.poses, stop.interval_s, known, self.tracker, self.last_command, self.control_period_s)
                if speed is None:  # unknown speed: brake firmly, straight
                    cmd = ControlCommand(-self.params.stale_deceleration_mps2, 0.0, 0.0)
                elif known < 0.1:
                    cmd = ControlCommand(0.0, 0.0, 0.0)  # standstill: hold
                    self.mode = "standstill"
            else:
                self.mode = "following_fallback" if self._trajectory.is_fallback else "following"
                cmd = track(self._trajectory.poses, self._trajectory.interval_s, speed, self.tracker, self.last_command,
                            self.control_period_s)
            self.last_command = cmd
            if self._drive_pub is not None:
                drive = self._drive_type()
                drive.speed, drive.acceleration, drive.steering_angle = ackermann_values(cmd)
                self._drive_pub.publish(drive)
                self.stats.on_publish("ackermann")
            else:
                twist = Twist()
                twist.linear.x, twist.angular.z = self.twist_mapper(cmd, speed)
                self._twist_pub.publish(twist)
                self.stats.on_publish("twist")

    def diagnostic_values(self) -> dict[str, str]:
        return {"mode": self.mode, "output": self.output, "accepted_trajectories": str(self.accepted_trajectories),
                "vehicle_status": "subscribed" if self.vehicle_status_subscribed else
                "not available (carla_msgs not importable)" if self.params.use_vehicle_status else "off"}

    def diagnostic_problems(self):
        if self.mode in ("stale_trajectory", "stale_odometry"):
            return [(ERROR, f"braking: {self.mode.replace('_', ' ')}")]
        if self.mode == "following_fallback":
            return [(WARN, f"following a fallback trajectory: {self._trajectory.fallback_reason}")]
        return []


def main(argv: list[str] | None = None) -> int:
    return run_node(TwistControllerNode, argv if argv is not None else sys.argv)


if __name__ == "__main__":
    sys.exit(main())
