"""Sensor extrinsics: points from a sensor's mount frame into the ego frame.

The BEV features (``core/features.py``) expect LiDAR points in the ego frame
(``base_link`` / ``ego_vehicle``: x forward, y left, z up from the ground), where the
ground filter (``lidar_min_height_m``) means "above the road". A LiDAR publishes in its
own mount frame (the CARLA bridge's ``ego_vehicle/lidar`` sits 2.4 m up), so its points
are moved by the mount pose first: ``p_ego = R @ p_lidar + t`` with ``R`` from roll,
pitch, yaw (fixed axes x, y, z, as ROS and tf2 define RPY) or a tf quaternion. Pure numpy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from latentvla_ros.core.config_base import ConfigBase, require


class ExtrinsicsError(ValueError):
    """No transform from a sensor frame into the ego frame; the text says which and why."""


@dataclass
class Extrinsics(ConfigBase):
    """Mount pose of a sensor in the ego frame; it applies to clouds stamped ``frame_id``."""

    frame_id: str = ""
    """The sensor frame these extrinsics describe ("" = none configured)."""
    x: float = 0.0
    """Position of the sensor in the ego frame [m] (forward)."""
    y: float = 0.0
    """[m] (left)."""
    z: float = 0.0
    """[m] (up)."""
    roll: float = 0.0
    """Orientation of the sensor in the ego frame: roll about x [rad]."""
    pitch: float = 0.0
    """pitch about y [rad]."""
    yaw: float = 0.0
    """yaw about z [rad]."""

    def validate(self) -> None:
        require(isinstance(self.frame_id, str) and self.frame_id == self.frame_id.strip(), "frame_id",
                "must be a frame name without surrounding spaces")
        for name in ("x", "y", "z", "roll", "pitch", "yaw"):
            value = getattr(self, name)
            require(isinstance(value, (int, float)) and math.isfinite(value), name, "must be a finite number")
        for name in ("x", "y", "z"):
            require(abs(getattr(self, name)) <= 100.0, name, "a sensor mount more than 100 m from the ego origin")
        for name in ("roll", "pitch", "yaw"):
            require(abs(getattr(self, name)) <= 2 * math.pi, name, "must be in [-2 pi, 2 pi] rad")

    def transform(self) -> tuple[np.ndarray, np.ndarray]:
        return rotation_from_rpy(self.roll, self.pitch, self.yaw), np.array([self.x, self.y, self.z])


def rotation_from_rpy(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """R = Rz(yaw) Ry(pitch) Rx(roll) (fixed axes x, y, z; tf2 Quaternion.setRPY)."""
    cr, sr, cp, sp, cy, sy = (math.cos(roll), math.sin(roll), math.cos(pitch), math.sin(pitch),
                              math.cos(yaw), math.sin(yaw))
    return np.array([[cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
                     [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
                     [-sp, cp * sr, cp * cr]])


def rotation_from_quaternion(x: float, y: float, z: float, w: float) -> np.ndarray:
    norm = math.sqrt(x * x + y * y + z * z + w * w)
    if not math.isfinite(norm) or norm < 1e-9:
        raise ExtrinsicsError(f"quaternion ({x}, {y}, {z}, {w}) is not a rotation")
    x, y, z, w = x / norm, y / norm, z / norm, w / norm
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def transform_points(points: np.ndarray, rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """(N, >=3) points -> a new float32 array with x, y, z moved (other columns kept)."""
    out = np.array(points, dtype=np.float32, copy=True)
    xyz = points[:, :3].astype(np.float64) @ np.asarray(rotation, np.float64).T + np.asarray(translation, np.float64)
    out[:, :3] = xyz
    return out


def points_to_ego(points: np.ndarray, source_frame: str, ego_frame: str, extrinsics: Extrinsics,
                  looked_up: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, str]:
    """Points stamped ``source_frame`` in ``ego_frame``; returns (points, where the transform came from).

    ``looked_up``: (R, t) from tf for this frame, if tf had one. Clouds already in the ego
    frame pass unchanged; a frame neither tf nor ``extrinsics`` knows raises ExtrinsicsError
    (the caller drops the frame and counts it: BEV features in a wrong frame are garbage).
    """
    if source_frame == ego_frame:
        return points, "identity"
    if looked_up is not None:
        return transform_points(points, *looked_up), "tf"
    if extrinsics.frame_id and source_frame == extrinsics.frame_id:
        return transform_points(points, *extrinsics.transform()), "parameter"
    known = f"lidar_extrinsics are for {extrinsics.frame_id!r}" if extrinsics.frame_id else "no lidar_extrinsics set"
    raise ExtrinsicsError(f"LiDAR cloud in frame {source_frame!r}, ego frame is {ego_frame!r}: no transform "
                          f"({known}; no tf for it): set lidar_extrinsics.* for this frame or publish it on /tf_static")
