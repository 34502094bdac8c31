"""The data generator's expert drives within NAVSIM's comfort bounds (data/expert.py).

A real highway-env roundabout log (the entry into the ring joins the lanes at a
1.15 rad kink, where highway-env's own lane controller swerved at up to 2.7 rad/s): its
logged poses, differentiated the way NAVSIM's comfort metric does (Savitzky-Golay,
window 5 at 10 Hz), stay within NAVSIM v1.1's yaw-rate, yaw-acceleration, lateral- and
longitudinal-acceleration bounds, and its boxes stay on the drivable area.
"""
from __future__ import annotations

import os

os.environ.setdefault("SDL_VIDEODRIVER", "offscreen")

import numpy as np
import pytest

pytest.importorskip("highway_env")

from latentvla_ros.data.highway import generate_log
from latentvla_ros.data.log_format import DrivingLog
from latentvla_ros.evaluation.geometry import box_corners, points_in_union
from latentvla_ros.evaluation.pdms import PdmsConfig
from latentvla_ros.evaluation.savgol import savgol_filter

BOUNDS = PdmsConfig()  # NAVSIM v1.1's comfort bounds


def _motion(log: DrivingLog) -> dict[str, np.ndarray]:
    dt = float(log.meta["dt_s"])
    poses = np.asarray(log.ego_pose_array, dtype=np.float64)
    heading = np.unwrap(poses[:, 2])
    yaw_rate = savgol_filter(heading, 5, 2, deriv=1, delta=dt)
    status = np.asarray(log.ego_status_array, dtype=np.float64)
    speed = np.hypot(status[:, 0], status[:, 1])
    lon_acc = savgol_filter(speed, 5, 2, deriv=1, delta=dt)
    return {
        "poses": poses,
        "yaw_rate": yaw_rate,
        "yaw_accel": savgol_filter(heading, 5, 3, deriv=2, delta=dt),
        "lat_accel": speed * yaw_rate,
        "lon_accel": lon_acc,
        "status_yaw_rate": status[:, 4],
    }


def test_expert_enters_roundabout_within_navsim_comfort_bounds(tmp_path):
    path = tmp_path / "roundabout"
    generate_log(path, "roundabout", seed=3, density=1.0, num_frames=60)
    log = DrivingLog(path)
    assert log.num_frames == 60, log.meta["terminated_reason"]
    m = _motion(log)
    poses = m["poses"]
    ring = np.hypot(poses[:, 0], poses[:, 1]) < 26.0  # the ring's lanes: radius 20 and 24 m about (0, 0)
    assert ring[-10:].all(), "the log should pass the entry kink into the ring within 6 s"
    # NAVSIM's bounds are strict
    assert np.abs(m["yaw_rate"]).max() < BOUNDS.max_abs_yaw_rate, np.abs(m["yaw_rate"]).max()
    assert np.abs(m["status_yaw_rate"]).max() < BOUNDS.max_abs_yaw_rate
    assert np.abs(m["yaw_accel"]).max() < BOUNDS.max_abs_yaw_accel, np.abs(m["yaw_accel"]).max()
    assert np.abs(m["lat_accel"]).max() < BOUNDS.max_abs_lat_accel, np.abs(m["lat_accel"]).max()
    assert m["lon_accel"].max() < BOUNDS.max_lon_accel, m["lon_accel"].max()
    # smooth, and still on the road: every logged corner inside the drivable area
    corners = box_corners(poses[:, 0], poses[:, 1], poses[:, 2], log.meta["ego_length_m"], log.meta["ego_width_m"])
    polygons = [np.asarray(p, dtype=np.float64) for p in log.map.drivable_polygons]
    assert points_in_union(corners.reshape(-1, 2), polygons).all()
