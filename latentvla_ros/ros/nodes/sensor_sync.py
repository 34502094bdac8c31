"""sensor_sync: cameras + LiDAR + odometry -> one SensorFrame (approximate time).

Nothing is lost silently:

- every sensor input counts the samples missing from its stream (gaps between header
  stamps of more than ``input_gap_factor`` nominal periods: a sensor dropout or our own
  full input queue) in ``dropped/input_gap/<input>``, and stamps that repeat or go
  backwards in ``anomalies/...``;
- the synchronizer's own drops (overflow, unmatched, headerless, resets) are reported
  as ``sync/...`` in /diagnostics;
- a synchronized set that is malformed, repeats the previous frame's stamp or is older
  than it (``out_of_order_frame``) is dropped and counted; a jump backwards by more
  than ``time_jump_reset_s`` (looping bag, simulator reset) is accepted and resets the
  acceleration estimator.
"""
from __future__ import annotations

import statistics
import sys
from collections import deque

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
    pointcloud2_to_xyzi,
    stamp_to_ns,
)
from latentvla_ros.ros.node_base import WARN, LatentVlaNode, checked_odometry, input_name
from latentvla_ros.ros.node_main import run_node
from latentvla_ros.ros.sync import header_stamp_ns, make_approximate_sync


class StampGapCounter:
    """Samples missing from a periodic stream, from the gaps between its header stamps.

    The nominal period is bootstrapped from the first intervals (the median of those close
    to the shortest: drops only lengthen intervals) and then refined with the running mean
    of every single-period interval, so that long gaps are counted accurately. An interval
    longer than ``factor`` periods counts ``round(interval / period) - 1`` missing samples.
    Repeated stamps and small steps backwards are anomalies (returned as negative codes);
    a step backwards of more than ``reset_ns`` restarts the stream (looping bag, simulator
    reset); a step forwards of more than ``JUMP_FACTOR x reset_ns`` is a clock jump, reported as such and
    not as thousands of missing samples (a real outage that long shows in the input
    watchdog's staleness). A sustained faster rate (10 intervals in a row well below the period) starts
    the estimate over.
    """

    DUPLICATE, OUT_OF_ORDER, RESET, JUMP_FORWARD = -1, -2, -3, -4
    JUMP_FACTOR = 10  # forward steps of 10 x reset_ns or more are clock jumps; shorter ones are lost samples

    def __init__(self, factor: float = 1.5, reset_ns: int = 1_000_000_000, window: int = 20, max_samples: int = 500):
        self.factor = float(factor)
        self.reset_ns = int(reset_ns)
        self.max_samples = max_samples
        self.intervals: deque[int] = deque(maxlen=window)
        self.last: int | None = None
        self.missing = 0
        self._period: float | None = None
        self._samples = 0
        self._short_in_row = 0

    def period_ns(self) -> float | None:
        if self._period is not None:
            return self._period
        if len(self.intervals) < 3:
            return None
        shortest = min(self.intervals)
        return float(statistics.median([d for d in self.intervals if d <= 1.5 * shortest]))

    def update(self, stamp_ns: int) -> int:
        """Missing samples before ``stamp_ns`` (>= 0), or one of the negative anomaly codes."""
        if self.last is None:
            self.last = stamp_ns
            return 0
        dt = stamp_ns - self.last
        if dt == 0:
            return self.DUPLICATE
        if dt < 0:
            if -dt >= self.reset_ns:
                self.last = stamp_ns
                return self.RESET
            return self.OUT_OF_ORDER
        self.last = stamp_ns
        if dt >= self.JUMP_FACTOR * self.reset_ns:  # a clock jump (simulator reset), not N lost samples
            return self.JUMP_FORWARD
        bootstrapped = self._period is not None
        if bootstrapped:
            self._short_in_row = self._short_in_row + 1 if dt < 0.7 * self._period else 0
            if self._short_in_row >= 10:  # the sensor runs faster now: estimate again
                self._period, self._samples, self._short_in_row = None, 0, 0
                self.intervals.clear()
                bootstrapped = False
        had_period = self.period_ns() is not None
        self.intervals.append(dt)
        period = self.period_ns()
        if period is None:
            return 0
        if self._period is None:
            self._period = period
            self._samples = sum(1 for d in self.intervals if 0.75 * period < d < 1.25 * period)
        # the first intervals are judged once the period is known (retroactively)
        judged = [dt] if had_period else list(self.intervals)
        period = self._period
        missing = sum(max(0, int(round(d / period)) - 1) for d in judged if d > self.factor * period)
        if bootstrapped and 0.75 * period < dt < 1.25 * period:  # refine with single intervals
            self._samples = min(self._samples + 1, self.max_samples)
            self._period += (dt - self._period) / self._samples
        self.missing += missing
        return missing


class SensorSyncNode(LatentVlaNode):
    schema_name = "sensor_sync"

    def __init__(self, **kwargs):
        self._gap_counters: dict[str, StampGapCounter] = {}
        self.anomalies: dict[str, int] = {}
        super().__init__(**kwargs)
        p = self.params
        self.camera_names = list(p["camera_names"])
        self._camera_infos: dict[str, CameraInfo] = {}
        self._command = SensorFrame.COMMAND_UNKNOWN
        self._accel = AccelerationEstimator(tau_s=p["acceleration_filter_tau_s"], max_gap_s=p["time_jump_reset_s"])
        self._last_stamp_ns: int | None = None
        self._sequence = 0
        self._sync_drops_reported: dict[str, int] = {}
        qos = self.input_qos()
        topics = [(f"~/input/camera/{name}/image", Image) for name in self.camera_names]
        topics += [("~/input/lidar/points", PointCloud2), ("~/input/odometry", Odometry)]
        for name in self.camera_names:
            self.create_subscription(CameraInfo, f"~/input/camera/{name}/camera_info",
                                     lambda msg, n=name: self._camera_infos.__setitem__(n, msg), qos, watch=False)
        self.create_subscription(UInt8, "~/input/driving_command", self._on_command, 10, watch=False)
        self._gap_inputs = {input_name(t) for t, _ in topics}
        self._sync = make_approximate_sync(self, topics, qos, p["queue_size"], p["slop_s"], self._on_synchronized,
                                           allow_headerless=p["allow_headerless"], time_jump_reset_s=p["time_jump_reset_s"])
        self._pub = self.create_publisher(SensorFrame, "~/output/frame", self.output_qos())
        self.get_logger().info(f"synchronizing cameras {self.camera_names} + lidar + odometry "
                               f"(queue {p['queue_size']}, slop {p['slop_s']} s, QoS {p['qos.input_reliability']} "
                               f"depth {p['qos.input_depth']})")

    # ------------------------------------------------------------ per-input stream checks
    def create_subscription(self, msg_type, topic, callback, qos_profile, **kwargs):
        name = input_name(topic)
        if getattr(self, "_gap_inputs", None) and name in self._gap_inputs:
            inner = callback

            def callback(msg, _name=name, _inner=inner):  # noqa: F811 - wraps the synchronizer's callback
                self._check_stream(_name, msg)
                _inner(msg)

        return super().create_subscription(msg_type, topic, callback, qos_profile, **kwargs)

    def _check_stream(self, name: str, msg) -> None:
        stamp = header_stamp_ns(msg)
        if not stamp:
            return  # headerless: the synchronizer counts it
        counter = self._gap_counters.get(name)
        if counter is None:
            counter = self._gap_counters[name] = StampGapCounter(
                self.params["input_gap_factor"], int(self.params["time_jump_reset_s"] * 1e9))
        result = counter.update(stamp)
        if result > 0:
            self.drop(f"input_gap/{name}", f"{result} {name} sample(s) missing before stamp {stamp} "
                                           "(sensor dropout or input queue overflow)", count=result)
        elif result < 0:
            kind = {StampGapCounter.DUPLICATE: "duplicate_stamp", StampGapCounter.OUT_OF_ORDER: "out_of_order",
                    StampGapCounter.RESET: "time_jump_back", StampGapCounter.JUMP_FORWARD: "time_jump_forward"}[result]
            key = f"{kind}/{name}"
            self.anomalies[key] = self.anomalies.get(key, 0) + 1
            self._warn_throttled(key, f"{name}: {kind.replace('_', ' ')} (stamp {stamp})")

    def _on_command(self, msg: UInt8) -> None:
        self._command = msg.data if msg.data <= 3 else SensorFrame.COMMAND_UNKNOWN

    # ------------------------------------------------------------ synchronized sets
    def _on_synchronized(self, *msgs) -> None:
        images, lidar, odom = list(msgs[: len(self.camera_names)]), msgs[-2], msgs[-1]
        self.stats.on_receive("synchronized_set")
        stamp_ns = stamp_to_ns(images[0].header.stamp)
        with self.processing(stamp_ns):
            try:
                for img in images:
                    image_to_numpy(img)  # validates encoding, step, size
                pointcloud2_to_xyzi(lidar)  # validates layout; raises on an empty cloud
                velocity, yaw_rate = checked_odometry(odom)  # raises on NaN or implausible values
            except ConversionError as exc:
                self.drop("bad_message", str(exc))
                return
            if self._last_stamp_ns is not None and stamp_ns <= self._last_stamp_ns:
                back_ns = self._last_stamp_ns - stamp_ns
                if back_ns == 0:
                    self.drop("duplicate_frame", f"synchronized set repeats stamp {stamp_ns}")
                    return
                if back_ns < self.params["time_jump_reset_s"] * 1e9:
                    self.drop("out_of_order_frame", f"synchronized set {back_ns * 1e-6:.1f} ms older than the last frame")
                    return
                self.get_logger().warning(f"time jumped backwards by {back_ns * 1e-9:.2f} s: "
                                          "resetting the acceleration estimator")
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

    # ------------------------------------------------------------ diagnostics
    def diagnostic_values(self) -> dict[str, str]:
        values = {f"sync/{k}": str(v) for k, v in self._sync.stats().items()}
        values.update({f"anomalies/{k}": str(v) for k, v in sorted(self.anomalies.items())})
        values["camera_infos_received"] = ",".join(sorted(self._camera_infos)) or "-"
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
