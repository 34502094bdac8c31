"""sensor_sync: cameras + LiDAR + odometry -> one SensorFrame (approximate time).

Cameras arrive as sensor_msgs/Image (``camera_transport: raw``; rgb8, bgr8, rgba8, bgra8,
mono8 pass through, Bayer and YUV 4:2:2 are decoded) or sensor_msgs/CompressedImage
(``compressed``: jpeg, png on ``.../image/compressed``); the SensorFrame carries images
every consumer reads without a decoder (ros/conversions.py ``camera_image_msg``: cv_bridge
where it is installed, else OpenCV).

Nothing is lost silently, and nothing twice (core/input_checks.py):

- a header stamp that cannot be a sensor's time (nanosec >= 1e9, zero, negative, more
  than ``max_stamp_ahead_s`` ahead of the node clock) is dropped before synchronization and
  counted in ``dropped/bad_stamp/<input>`` with the reason in the log (a zero stamp with
  ``allow_headerless`` is stamped with the receive time instead, ``anomalies/restamped/<input>``);
- every sensor input counts the samples missing from its stream (gaps between header
  stamps of more than ``input_gap_factor`` nominal periods: a sensor dropout or our own full
  input queue) in ``dropped/input_gap/<input>``, unless the stamps advanced
  ``time_jump_reset_s`` beyond what the pause in the arrivals explains (a clock jump);
  samples the middleware reports lost (``lost_in_transport/<input>``) are not counted again
  as a gap; stamps that repeat, go backwards or jump forward while messages keep arriving
  at their pace are ``anomalies/...``, not losses;
- NaN/inf LiDAR points are counted (``nonfinite_points``); a cloud without a finite point
  is a ``bad_message``;
- the synchronizer's own drops (overflow, unmatched, headerless, resets) are reported
  as ``sync/...`` in /diagnostics;
- a synchronized set that is malformed, repeats the previous frame's stamp or is older
  than it (``out_of_order_frame``) is dropped and counted; a jump backwards by more
  than ``time_jump_reset_s`` (looping bag, simulator reset) is accepted and resets the
  acceleration estimator.
"""
from __future__ import annotations

import sys
import time

import numpy as np
from geometry_msgs.msg import Vector3
from nav_msgs.msg import Odometry
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import UInt8

from latentvla_ros.core.ego_motion import AccelerationEstimator
from latentvla_ros.core.features import FeatureError
from latentvla_ros.core.input_checks import StampGapCounter, stamp_problem
from latentvla_ros.msg import SensorFrame
from latentvla_ros.ros.conversions import (
    ConversionError,
    camera_image_msg,
    frame_lidar,
    image_decoder,
    make_header,
    message_from_fields,
    pointcloud2_to_xyzi,
    sensor_frame_to_core,
    share_sensor_frame,
    stamp_to_ns,
)
from latentvla_ros.ros.node_base import WARN, LatentVlaNode, checked_odometry, input_name
from latentvla_ros.ros.node_main import run_node
from latentvla_ros.ros.sync import make_approximate_sync

__all__ = ["SensorSyncNode", "StampGapCounter", "main"]


class SensorSyncNode(LatentVlaNode):
    schema_name = "sensor_sync"

    def __init__(self, **kwargs):
        self._gap_counters: dict[str, StampGapCounter] = {}
        self.anomalies: dict[str, int] = {}
        self.nonfinite_points = 0
        super().__init__(**kwargs)
        p = self.params
        self.camera_names = list(p.camera_names)
        self._camera_infos: dict[str, CameraInfo] = {}
        self._command = SensorFrame.COMMAND_UNKNOWN
        self._accel = AccelerationEstimator(tau_s=p.acceleration_filter_tau_s, max_gap_s=p.time_jump_reset_s)
        self._last_stamp_ns: int | None = None
        self._sequence = 0
        self._sync_drops_reported: dict[str, int] = {}
        qos = self.input_qos()
        if p.camera_transport == "compressed":  # image_transport's name for the compressed stream
            topics = [(f"~/input/camera/{name}/image/compressed", CompressedImage) for name in self.camera_names]
        else:
            topics = [(f"~/input/camera/{name}/image", Image) for name in self.camera_names]
        topics += [("~/input/lidar/points", PointCloud2), ("~/input/odometry", Odometry)]
        for name in self.camera_names:
            self.create_subscription(CameraInfo, f"~/input/camera/{name}/camera_info",
                                     lambda msg, n=name: self._camera_infos.__setitem__(n, msg), qos, watch=False)
        self.create_subscription(UInt8, "~/input/driving_command", self._on_command, 10, watch=False)
        self._gap_inputs = {input_name(t) for t, _ in topics}
        self._sync = make_approximate_sync(self, topics, qos, p.queue_size, p.slop_s, self._on_synchronized,
                                           allow_headerless=p.allow_headerless, time_jump_reset_s=p.time_jump_reset_s)
        self._pub = self.create_publisher(SensorFrame, "~/output/frame", self.output_qos())
        # the frame's LiDAR alone (trajectory_planner's obstacle guard in another process): built only while subscribed
        self._lidar_pub = self.create_publisher(PointCloud2, "~/output/lidar", self.output_qos())
        self.get_logger().info(f"synchronizing cameras {self.camera_names} ({p.camera_transport}, decoded with "
                               f"{image_decoder()}) + lidar + odometry "
                               f"(queue {p.queue_size}, slop {p.slop_s} s, QoS {p.qos.input_reliability} "
                               f"depth {p.qos.input_depth})")

    # ------------------------------------------------------------ per-input stream checks
    def create_subscription(self, msg_type, topic, callback, qos_profile, **kwargs):
        name = input_name(topic)
        if getattr(self, "_gap_inputs", None) and name in self._gap_inputs:
            inner = callback

            def callback(msg, _name=name, _inner=inner):  # wraps the synchronizer's callback
                if self._check_stream(_name, msg):
                    _inner(msg)

        return super().create_subscription(msg_type, topic, callback, qos_profile, **kwargs)

    def _check_stream(self, name: str, msg) -> bool:
        """Validates the stamp (False: dropped, counted) and counts the samples missing before it."""
        arrival = time.monotonic_ns()
        now_ns = self.now_ns()  # once per message: rclpy's Clock.now() builds a Time object
        st = msg.header.stamp
        sec, nanosec = st.sec, st.nanosec
        if sec == 0 and nanosec == 0 and self.params.allow_headerless:
            st.sec, st.nanosec = sec, nanosec = divmod(now_ns, 1_000_000_000)
            self._anomaly(f"restamped/{name}", f"{name}: zero stamp replaced by the receive time")
        problem = stamp_problem(sec, nanosec, now_ns, int(self.params.max_stamp_ahead_s * 1e9))
        if problem:
            self.drop(f"bad_stamp/{name}", f"{name}: {problem}")
            return False
        stamp = stamp_to_ns(st)
        counter = self._gap_counters.get(name)
        if counter is None:
            counter = self._gap_counters[name] = StampGapCounter(
                self.params.input_gap_factor, int(self.params.time_jump_reset_s * 1e9))
            self.watch_gaps(name)
        result = counter.update(stamp, arrival)
        if result > 0:
            self.count_gap_loss(name, f"input_gap/{name}", result, f"{{n}} {name} sample(s) missing before stamp "
                                                                   f"{stamp} (sensor dropout or input queue overflow)")
        elif result < 0:
            kind = {StampGapCounter.DUPLICATE: "duplicate_stamp", StampGapCounter.OUT_OF_ORDER: "out_of_order",
                    StampGapCounter.RESET: "time_jump_back", StampGapCounter.JUMP_FORWARD: "time_jump_forward"}[result]
            self._anomaly(f"{kind}/{name}", f"{name}: {kind.replace('_', ' ')} (stamp {stamp})")
        return True

    def _anomaly(self, key: str, text: str) -> None:
        self.anomalies[key] = self.anomalies.get(key, 0) + 1
        self._warn_throttled(key, text)

    def _on_command(self, msg: UInt8) -> None:
        self._command = msg.data if msg.data <= 3 else SensorFrame.COMMAND_UNKNOWN

    # ------------------------------------------------------------ synchronized sets
    def _on_synchronized(self, *msgs) -> None:
        images, lidar, odom = list(msgs[: len(self.camera_names)]), msgs[-2], msgs[-1]
        self.stats.on_receive("synchronized_set")
        stamp_ns = stamp_to_ns(images[0].header.stamp)
        with self.processing(stamp_ns):
            try:
                # validates encoding, step, size; Bayer, YUV and compressed images decoded once to rgb8
                images = [camera_image_msg(img) for img in images]
                points = pointcloud2_to_xyzi(lidar)
                self._check_points(points)  # layout; empty or no finite point raises
                velocity, yaw_rate = checked_odometry(odom)  # raises on NaN or implausible values
            except ConversionError as exc:
                self.drop("bad_message", str(exc))
                return
            if self._last_stamp_ns is not None and stamp_ns <= self._last_stamp_ns:
                back_ns = self._last_stamp_ns - stamp_ns
                if back_ns == 0:
                    self.drop("duplicate_frame", f"synchronized set repeats stamp {stamp_ns}")
                    return
                if back_ns < self.params.time_jump_reset_s * 1e9:
                    self.drop("out_of_order_frame", f"synchronized set {back_ns * 1e-6:.1f} ms older than the last frame")
                    return
                self.get_logger().warning(f"time jumped backwards by {back_ns * 1e-9:.2f} s: "
                                          "resetting the acceleration estimator")
                self._accel.reset()
            self._last_stamp_ns = stamp_ns
            acc = self._accel.update(stamp_to_ns(odom.header.stamp), velocity, yaw_rate)
            stamps = [stamp_to_ns(m.header.stamp) for m in msgs]
            infos = [self._camera_infos.get(n) for n in self.camera_names]
            frame = message_from_fields(  # SensorFrame(...) would build a default of each field first
                SensorFrame, header=make_header(stamp_ns, self.params.frame_id), images=images,
                camera_infos=[CameraInfo() if info is None else info for info in infos],
                lidar=lidar, odometry=odom, driving_command=self._command,
                ego_acceleration=Vector3(x=float(acc[0]), y=float(acc[1]), z=0.0),
                sync_spread_s=(max(stamps) - min(stamps)) * 1e-9, sequence=self._sequence + 1)
            self._sequence += 1
            self._share_conversion(frame, points, (velocity, yaw_rate))
            self._pub.publish(frame)
            self.stats.on_publish("frame")
            if self._lidar_pub.get_subscription_count():
                self._lidar_pub.publish(frame_lidar(lidar, stamp_ns))

    def _share_conversion(self, frame: SensorFrame, points: np.ndarray, odometry) -> None:
        """In a composed process the model nodes get this very message object: convert it once
        here, with the points and odometry already converted for the checks, and hand them
        that (ros/conversions.py ``shared_sensor_frame_to_core``). A message going only over DDS
        is a new object at every consumer: nothing to share."""
        local = getattr(self._pub, "local_subscriptions", None)
        if local is None or not local():
            return
        try:
            share_sensor_frame(frame, sensor_frame_to_core(frame, points, odometry))
        except (ConversionError, FeatureError):
            pass  # each consumer converts it again and drops it with the reason

    def _check_points(self, points: np.ndarray) -> None:
        ok = np.isfinite(points[:, :3])
        # the usual cloud is all finite: one reduction (4x cheaper than counting the rows)
        finite = points.shape[0] if ok.all() else int(np.count_nonzero(ok.all(axis=1)))
        bad = points.shape[0] - finite
        if bad:
            self.nonfinite_points += bad  # a driver's no-return points (is_dense false): counted, ignored downstream
        if not finite:
            raise ConversionError(f"point cloud has no finite point ({bad} NaN/inf points)")

    # ------------------------------------------------------------ diagnostics
    def diagnostic_values(self) -> dict[str, str]:
        values = {f"sync/{k}": str(v) for k, v in self._sync.stats().items()}
        values.update({f"anomalies/{k}": str(v) for k, v in sorted(self.anomalies.items())})
        values["camera_infos_received"] = ",".join(sorted(self._camera_infos)) or "-"
        values["nonfinite_points"] = str(self.nonfinite_points)
        for name, counter in self._gap_counters.items():
            period = counter.period_ns()
            if period:
                values[f"period_ms/{name}"] = f"{period * 1e-6:.1f}"
        return values

    def diagnostic_problems(self):
        stats = self._sync.stats()
        new = {}
        for key in ("dropped_overflow", "dropped_unmatched", "dropped_headerless"):
            value = stats.get(key)
            if value is None:
                continue
            delta = value - self._sync_drops_reported.get(key, 0)
            self._sync_drops_reported[key] = value
            if delta > 0:
                new[key] = delta
        if new:
            text = ", ".join(f"{k}: {v}" for k, v in sorted(new.items()))
            return [(WARN, f"synchronizer dropped {sum(new.values())} message(s) since last report ({text})")]
        return []


def main(argv: list[str] | None = None) -> int:
    return run_node(SensorSyncNode, argv if argv is not None else sys.argv)


if __name__ == "__main__":
    sys.exit(main())
