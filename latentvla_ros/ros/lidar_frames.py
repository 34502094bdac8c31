"""The LiDAR of a SensorFrame in the node's ego frame: one helper for every node that reads it.

bev_features (BEV features) and trajectory_planner (obstacle guard) must see the same points:
a cloud already in the ego frame (``frame_id``) passes as is; otherwise the transform comes
from tf (``/tf_static``, ``/tf``) where tf2_ros is importable and ``use_tf`` is on, else from
``lidar_extrinsics.*`` for the frame ``lidar_extrinsics.frame_id`` (core/extrinsics.py). A
cloud in any other frame raises ``ExtrinsicsError`` (the node drops and counts it).
"""
from __future__ import annotations

import dataclasses
from typing import Any

from latentvla_ros.core.extrinsics import Extrinsics, points_to_ego, rotation_from_quaternion


class LidarToEgo:
    """``to_ego(frame, source)``: ``frame`` (core SensorFrame) with its LiDAR in ``ego_frame``.

    ``frames``: LiDAR frame -> where its transform came from ('identity', 'tf', 'parameter'),
    for the diagnostics; a new source is logged once."""

    def __init__(self, node: Any, ego_frame: str, extrinsics_params: Any, use_tf: bool):
        self.node = node
        self.ego_frame = ego_frame
        self.extrinsics = Extrinsics(**dataclasses.asdict(extrinsics_params))
        self.frames: dict[str, str] = {}
        self._tf_buffer = self._tf_listener() if use_tf else None
        self._tf_cache: dict[str, tuple] = {}

    def _tf_listener(self):
        """A tf2 buffer fed by /tf and /tf_static where tf2_ros is importable (apt ROS), else None."""
        try:
            import tf2_ros
        except ImportError:
            return None
        buffer = tf2_ros.Buffer()
        self._tf_listener_ref = tf2_ros.TransformListener(buffer, self.node)
        return buffer

    def _tf_lookup(self, source: str):
        """(R, t) of ``source`` in the ego frame from tf, cached (mounts do not move), or None."""
        if self._tf_buffer is None:
            return None
        if source not in self._tf_cache:
            from rclpy.time import Time

            try:
                tr = self._tf_buffer.lookup_transform(self.ego_frame, source, Time()).transform
            except Exception:  # noqa: BLE001 - tf2 Lookup/Connectivity/Extrapolation errors: not (yet) known
                return None
            q, t = tr.rotation, tr.translation
            self._tf_cache[source] = (rotation_from_quaternion(q.x, q.y, q.z, q.w), (t.x, t.y, t.z))
        return self._tf_cache[source]

    def points_to_ego(self, points, source: str):
        """``points`` (N, >=3) moved from ``source`` into the ego frame (raises ExtrinsicsError)."""
        ego = self.ego_frame
        looked_up = self._tf_lookup(source) if source != ego else None
        moved, how = points_to_ego(points, source, ego, self.extrinsics, looked_up)
        if self.frames.get(source) != how:
            self.frames[source] = how
            if how != "identity":
                self.node.get_logger().info(f"LiDAR frame {source!r} -> {ego!r} from {how}")
        return moved

    def to_ego(self, frame, source: str):
        """``frame`` with its LiDAR points moved from ``source`` into the ego frame (raises ExtrinsicsError)."""
        points = self.points_to_ego(frame.lidar_points, source)
        return frame if points is frame.lidar_points else dataclasses.replace(frame, lidar_points=points)

    def diagnostics(self) -> str:
        return ", ".join(f"{k or '(empty)'}: {v}" for k, v in sorted(self.frames.items())) or "-"
