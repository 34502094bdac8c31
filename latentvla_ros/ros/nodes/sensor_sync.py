"""sensor_sync: cameras + LiDAR + odometry -> one SensorFrame (approximate time)."""
from __future__ import annotations

import sys

from geometry_msgs.msg import Vector3
from nav_msgs.msg import Odometry
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import UInt8

from latentvla_ros.core.ego_motion import AccelerationEstimator
from latentvla_ros.msg import SensorFrame
from latentvla_ros.ros.conversions import (
    ConversionError,
    image_to_numpy,
    make_header,
    odometry_velocity,
    pointcloud2_to_xyzi,
    stamp_to_ns,
)
from latentvla_ros.ros.node_base import LatentVlaNode
from latentvla_ros.ros.node_main import run_node
from latentvla_ros.ros.sync import make_approximate_sync


class SensorSyncNode(LatentVlaNode):
    schema_name = "sensor_sync"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        p = self.params
        self.camera_names = list(p["camera_names"])
        self._camera_infos: dict[str, CameraInfo] = {}
        self._command = SensorFrame.COMMAND_UNKNOWN
        self._accel = AccelerationEstimator(tau_s=p["acceleration_filter_tau_s"], max_gap_s=p["time_jump_reset_s"])
        self._last_stamp_ns: int | None = None
        self._sequence = 0
        qos = self.input_qos()
        topics = [(f"~/input/camera/{name}/image", Image) for name in self.camera_names]
        topics += [("~/input/lidar/points", PointCloud2), ("~/input/odometry", Odometry)]
        for name in self.camera_names:
            self.create_subscription(CameraInfo, f"~/input/camera/{name}/camera_info",
                                     lambda msg, n=name: self._camera_infos.__setitem__(n, msg), qos)
        self.create_subscription(UInt8, "~/input/driving_command", self._on_command, 10)
        self._sync = make_approximate_sync(self, topics, qos, p["queue_size"], p["slop_s"], self._on_synchronized,
                                           allow_headerless=p["allow_headerless"], time_jump_reset_s=p["time_jump_reset_s"])
        self._pub = self.create_publisher(SensorFrame, "~/output/frame", self.output_qos())
        self.get_logger().info(f"synchronizing cameras {self.camera_names} + lidar + odometry "
                               f"(queue {p['queue_size']}, slop {p['slop_s']} s)")

    def _on_command(self, msg: UInt8) -> None:
        self._command = msg.data if msg.data <= 3 else SensorFrame.COMMAND_UNKNOWN

    def _on_synchronized(self, *msgs) -> None:
        images, lidar, odom = list(msgs[: len(self.camera_names)]), msgs[-2], msgs[-1]
        self.stats.on_receive("synchronized_set")
        stamp_ns = stamp_to_ns(images[0].header.stamp)
        with self.processing(stamp_ns):
            try:
                for img in images:
                    image_to_numpy(img)  # validates encoding, step, size
                pointcloud2_to_xyzi(lidar)  # validates layout; raises on an empty cloud
                velocity, yaw_rate = odometry_velocity(odom)  # raises on NaN
            except ConversionError as exc:
                self.drop("bad_message", str(exc))
                return
            if self._last_stamp_ns is not None and stamp_ns < self._last_stamp_ns:
                self.get_logger().warning("time jumped backwards: resetting the acceleration estimator")
                self._accel.reset()
            self._last_stamp_ns = stamp_ns
            acc = self._accel.update(stamp_to_ns(odom.header.stamp), velocity, yaw_rate)
            stamps = [stamp_to_ns(m.header.stamp) for m in msgs]
            frame = SensorFrame(header=make_header(stamp_ns, self.params["frame_id"]), images=images,
                                camera_infos=[self._camera_infos.get(n, CameraInfo()) for n in self.camera_names],
                                lidar=lidar, odometry=odom, driving_command=self._command,
                                ego_acceleration=Vector3(x=float(acc[0]), y=float(acc[1]), z=0.0),
                                sync_spread_s=(max(stamps) - min(stamps)) * 1e-9, sequence=self._sequence + 1)
            self._sequence += 1
            self._pub.publish(frame)
            self.stats.on_publish("frame")

    def diagnostic_values(self) -> dict[str, str]:
        return {f"sync/{k}": str(v) for k, v in self._sync.stats().items()}


def main(argv: list[str] | None = None) -> int:
    return run_node(SensorSyncNode, argv if argv is not None else sys.argv)


if __name__ == "__main__":
    sys.exit(main())
