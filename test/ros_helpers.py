"""Builders of realistic sensor messages for node tests."""
from __future__ import annotations

import math

import numpy as np
from nav_msgs.msg import Odometry

from latentvla_ros.ros import conversions as conv

T0_NS = 1_700_000_000_000_000_000
#: node parameter overrides that run the model nodes on random weights with torch (no checkpoint); the
#: planner is told explicitly to drive on them (allow_untrained), else it publishes fallbacks only
UNTRAINED = {n: {"checkpoint": "", "backend": "torch"} for n in ("bev_features", "latent_reasoner", "trajectory_planner")}
UNTRAINED["trajectory_planner"]["allow_untrained"] = True


def camera_image(stamp_ns: int, h: int = 128, w: int = 128, frame_id: str = "camera_front", seed: int = 0):
    img = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    return conv.numpy_to_image(img, stamp_ns, frame_id)


def lidar_cloud(stamp_ns: int, n: int = 2000, seed: int = 0):
    rng = np.random.default_rng(seed)
    pts = np.column_stack([rng.uniform(-30, 30, n), rng.uniform(-30, 30, n), rng.uniform(0, 2, n), rng.uniform(0, 1, n)])
    return conv.xyzi_to_pointcloud2(pts.astype(np.float32), stamp_ns, "base_link")


def odometry(stamp_ns: int, speed: float = 10.0, yaw_rate: float = 0.0, x: float = 0.0) -> Odometry:
    msg = Odometry(header=conv.make_header(stamp_ns, "map"), child_frame_id="base_link")
    msg.pose.pose.position.x = x
    msg.pose.pose.orientation = conv.quaternion_from_yaw(0.0)
    msg.twist.twist.linear.x = speed
    msg.twist.twist.angular.z = yaw_rate
    return msg


def sensor_remaps(prefix: str = "/test") -> list[str]:
    return ["--ros-args",
            "-r", f"~/input/camera/front/image:={prefix}/camera/image",
            "-r", f"~/input/camera/front/camera_info:={prefix}/camera/info",
            "-r", f"~/input/lidar/points:={prefix}/lidar",
            "-r", f"~/input/odometry:={prefix}/odom",
            "-r", f"~/output/frame:={prefix}/frame"]


def stamp(k: int, period_s: float = 0.1, offset_s: float = 0.0) -> int:
    return T0_NS + int(round((k * period_s + offset_s) * 1e9))


__all__ = ["camera_image", "lidar_cloud", "odometry", "sensor_remaps", "stamp", "T0_NS", "math"]
