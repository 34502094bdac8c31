"""twist_controller: PlannedTrajectory + Odometry -> geometry_msgs/Twist for carla_twist_to_control.

Follows the newest trajectory (pure pursuit + speed control, core/tracking.py). With no
fresh trajectory for ``trajectory_timeout_s`` it commands a brake: a silent planner must
stop the car.
"""
from __future__ import annotations

import math
import sys
import time

from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry

from latentvla_ros.core.fallback import comfortable_stop
from latentvla_ros.core.tracking import ControlCommand, TrackerConfig, carla_twist_values, track
from latentvla_ros.msg import PlannedTrajectory
from latentvla_ros.ros.conversions import ConversionError, msg_to_trajectory, odometry_velocity
from latentvla_ros.ros.node_base import LatentVlaNode
from latentvla_ros.ros.node_main import run_node


class TwistControllerNode(LatentVlaNode):
    schema_name = "twist_controller"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        p = self.params
        self.tracker = TrackerConfig(wheelbase_m=p["wheelbase_m"], max_steering_rad=p["max_steering_rad"])
        self._trajectory = None
        self._trajectory_time = -math.inf
        self._speed = 0.0
        self._twist_pub = self.create_publisher(Twist, "~/output/twist", self.output_qos())
        self.create_subscription(PlannedTrajectory, "~/input/trajectory", self._on_trajectory, self.input_qos())
        self.create_subscription(Odometry, "~/input/odometry", self._on_odometry, self.input_qos())
        self.create_timer(1.0 / p["control_rate_hz"], self._on_timer)

    def _on_odometry(self, msg: Odometry) -> None:
        try:
            velocity, _ = odometry_velocity(msg)
        except ConversionError as exc:
            self.drop("bad_odometry", str(exc))
            return
        self._speed = float(math.hypot(*velocity))

    def _on_trajectory(self, msg: PlannedTrajectory) -> None:
        self.stats.on_receive("trajectory")
        traj = msg_to_trajectory(msg)
        if len(traj.poses) == 0 or not traj.is_finite():
            self.drop("bad_trajectory", "empty or non-finite trajectory")
            return
        self._trajectory, self._trajectory_time = traj, time.monotonic()

    def _on_timer(self) -> None:
        with self.processing():
            stale = time.monotonic() - self._trajectory_time > self.params["trajectory_timeout_s"]
            if self._trajectory is None or stale:
                stop = comfortable_stop(self._speed, 0.0, self.params["stale_deceleration_mps2"])
                cmd = track(stop.poses, stop.interval_s, self._speed, self.tracker)
                if self._speed < 0.1:
                    cmd = ControlCommand(0.0, 0.0, 0.0)  # standstill: zero twist = full brake (hold)
            else:
                cmd = track(self._trajectory.poses, self._trajectory.interval_s, self._speed, self.tracker)
            lin, ang = carla_twist_values(cmd)
            twist = Twist()
            twist.linear.x, twist.angular.z = lin, ang
            self._twist_pub.publish(twist)
            self.stats.on_publish("twist")


def main(argv: list[str] | None = None) -> int:
    return run_node(TwistControllerNode, argv if argv is not None else sys.argv)


if __name__ == "__main__":
    sys.exit(main())
