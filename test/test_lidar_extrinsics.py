"""LiDAR points reach the BEV in the ego frame: a cloud in the sensor's mount frame gives the
same BEV as the same points given in the ego frame, the ground filter works on heights above
the road, and a cloud in a frame without a transform is a counted drop, never garbage."""
from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import wait_for
from fixtures.message_samples import samples
from rclpy.parameter import Parameter
from test_node_models import _io

from latentvla_ros.core.config_base import ConfigError
from latentvla_ros.core.extrinsics import (
    Extrinsics,
    ExtrinsicsError,
    points_to_ego,
    rotation_from_quaternion,
    rotation_from_rpy,
)
from latentvla_ros.core.features import lidar_bev_histogram
from latentvla_ros.msg import BevFeatures, SensorFrame
from latentvla_ros.ros.conversions import xyzi_to_pointcloud2

MOUNT = Extrinsics(frame_id="lidar_top", x=1.3, y=-0.2, z=1.9, roll=0.01, pitch=-0.03, yaw=0.25)


def _ego_points(n: int = 3000, seed: int = 0) -> np.ndarray:
    """Points at BEV pixel centres (0.25 m pixels), heights away from the 0.2 m threshold."""
    rng = np.random.default_rng(seed)
    xy = (rng.integers(-100, 100, size=(n, 2)) + 0.5) * 0.25
    z = np.where(rng.random(n) < 0.5, 0.0, rng.uniform(0.5, 2.5, n))  # half ground, half obstacles
    return np.column_stack([xy, z, rng.random(n)]).astype(np.float32)


def _in_mount_frame(points: np.ndarray, ext: Extrinsics) -> np.ndarray:
    rot, t = ext.transform()
    out = points.copy()
    out[:, :3] = ((points[:, :3].astype(np.float64) - t) @ rot).astype(np.float32)  # R^T (p - t)
    return out


def test_rotation_conventions_by_hand():
    np.testing.assert_allclose(rotation_from_rpy(0, 0, math.pi / 2) @ [1, 0, 0], [0, 1, 0], atol=1e-12)  # yaw left
    np.testing.assert_allclose(rotation_from_rpy(0, math.pi / 2, 0) @ [1, 0, 0], [0, 0, -1], atol=1e-12)  # pitch down
    np.testing.assert_allclose(rotation_from_rpy(math.pi / 2, 0, 0) @ [0, 1, 0], [0, 0, 1], atol=1e-12)  # roll
    # tf2's setRPY quaternion gives the same matrix
    r, p, y = 0.1, -0.2, 0.7
    cr, sr, cp, sp, cy, sy = (math.cos(r / 2), math.sin(r / 2), math.cos(p / 2), math.sin(p / 2), math.cos(y / 2),
                              math.sin(y / 2))
    q = (sr * cp * cy - cr * sp * sy, cr * sp * cy + sr * cp * sy, cr * cp * sy - sr * sp * cy, cr * cp * cy + sr * sp * sy)
    np.testing.assert_allclose(rotation_from_quaternion(*q), rotation_from_rpy(r, p, y), atol=1e-12)


def test_mount_frame_cloud_gives_the_same_bev_as_the_ego_frame_cloud():
    ego = _ego_points()
    mount = _in_mount_frame(ego, MOUNT)
    back, how = points_to_ego(mount, "lidar_top", "base_link", MOUNT)
    assert how == "parameter"
    np.testing.assert_allclose(back[:, :3], ego[:, :3], atol=1e-4)
    np.testing.assert_array_equal(back[:, 3], ego[:, 3])  # intensity kept
    np.testing.assert_array_equal(lidar_bev_histogram(back), lidar_bev_histogram(ego))
    # the ground filter (z > 0.2 m) works in the ego frame: ground out, obstacles in
    hist = lidar_bev_histogram(back)
    assert hist.sum() == pytest.approx(lidar_bev_histogram(ego[ego[:, 2] > 0.2]).sum())
    # without the transform (the old behaviour) the BEV sees another world
    assert not np.array_equal(lidar_bev_histogram(mount), lidar_bev_histogram(ego))
    same, how = points_to_ego(ego, "base_link", "base_link", MOUNT)
    assert how == "identity" and same is ego
    # tf wins where it has the frame
    looked_up = (rotation_from_rpy(MOUNT.roll, MOUNT.pitch, MOUNT.yaw), np.array([MOUNT.x, MOUNT.y, MOUNT.z]))
    via_tf, how = points_to_ego(mount, "lidar_top", "base_link", Extrinsics(), looked_up)
    assert how == "tf" and np.allclose(via_tf[:, :3], ego[:, :3], atol=1e-4)


def test_unknown_lidar_frame_is_an_error_naming_the_fix():
    with pytest.raises(ExtrinsicsError, match=r"'velodyne'.*'base_link'.*lidar_extrinsics are for 'lidar_top'"):
        points_to_ego(_ego_points(10), "velodyne", "base_link", MOUNT)
    with pytest.raises(ExtrinsicsError, match="no lidar_extrinsics set"):
        points_to_ego(_ego_points(10), "", "base_link", Extrinsics())


@pytest.mark.parametrize("bad", [{"z": math.nan}, {"yaw": math.inf}, {"x": 1e4}, {"roll": 7.0}, {"frame_id": " lidar"}])
def test_extrinsics_are_validated(bad):
    with pytest.raises(ConfigError):
        Extrinsics(**bad)


def test_bev_features_node_moves_the_cloud_into_the_ego_frame(ros_context, spin):
    from latentvla_ros.ros.nodes.bev_features import BevFeaturesNode

    params = [Parameter("checkpoint", value=""), Parameter("lidar_extrinsics.frame_id", value="lidar_top"),
              *(Parameter(f"lidar_extrinsics.{k}", value=float(getattr(MOUNT, k)))
                for k in ("x", "y", "z", "roll", "pitch", "yaw"))]
    node = BevFeaturesNode(context=ros_context, parameter_overrides=params,
                           cli_args=["--ros-args", "-r", "~/input/frame:=/x/frame", "-r", "~/output/bev:=/x/bev"])
    io, pub, got = _io(ros_context, SensorFrame, "/x/frame", BevFeatures, "/x/bev")
    spin(node, io)
    assert wait_for(lambda: pub.get_subscription_count() > 0 and io.count_publishers("/x/bev") > 0)
    ego = _ego_points()
    frames = []
    for k, (points, frame_id) in enumerate(((ego, "base_link"), (_in_mount_frame(ego, MOUNT), "lidar_top"),
                                            (ego, "velodyne"))):
        msg = samples()["SensorFrame"]
        msg.sequence = k + 1
        msg.header.stamp.sec += k
        msg.lidar = xyzi_to_pointcloud2(points, 0, frame_id)
        frames.append(msg)
        pub.publish(msg)
        # one frame at a time: the node works on the newest frame only (a burst would be superseded)
        handled = lambda n=k + 1: len(got) + node.stats.snapshot()["dropped"].get("lidar_frame_unknown", 0) >= n
        assert wait_for(handled, 30)
    assert wait_for(lambda: len(got) == 2 and node.stats.snapshot()["dropped"].get("lidar_frame_unknown") == 1, 30)
    tokens = [np.frombuffer(b.tokens, np.float32) for b in got]
    np.testing.assert_allclose(tokens[1], tokens[0], atol=1e-5)  # same BEV from either frame
    assert node.lidar_frames == {"base_link": "identity", "lidar_top": "parameter"}
    assert "lidar_top: parameter" in node.diagnostic_values()["lidar_frames"]
    assert any("lidar_frame_unknown" in text for _, text in node.diagnostic_problems())


def test_bad_mount_refuses_to_start_before_the_model_loads(ros_context, monkeypatch):
    from latentvla_ros.ros.contracts.parameters import ParameterError
    from latentvla_ros.ros.nodes import bev_features

    monkeypatch.setattr(bev_features, "load_model_runtime", lambda *a: pytest.fail("the model loaded first"))
    with pytest.raises(ParameterError, match="frame_id"):
        bev_features.BevFeaturesNode(context=ros_context, parameter_overrides=[
            Parameter("checkpoint", value=""), Parameter("lidar_extrinsics.frame_id", value="lidar top")])


def test_tf_transform_is_used_and_cached_where_tf_knows_the_frame(ros_context):
    """The tf path with a stand-in buffer (tf2_ros is not installed here): the node asks for
    the LiDAR frame in its ego frame, applies the answer and asks once per frame."""
    from geometry_msgs.msg import TransformStamped

    from latentvla_ros.ros.conversions import sensor_frame_to_core
    from latentvla_ros.ros.nodes.bev_features import BevFeaturesNode

    class Buffer:
        calls: list = []

        def lookup_transform(self, target, source, _time):
            self.calls.append((target, source))
            if source != "lidar_top":
                raise LookupError(f"{source} unknown to tf")
            out = TransformStamped()
            out.transform.translation.x, out.transform.translation.y, out.transform.translation.z = MOUNT.x, MOUNT.y, MOUNT.z
            half = [a / 2 for a in (MOUNT.roll, MOUNT.pitch, MOUNT.yaw)]
            cr, sr, cp, sp, cy, sy = (f(a) for a in half for f in (math.cos, math.sin))
            rot = out.transform.rotation
            rot.x, rot.y = sr * cp * cy - cr * sp * sy, cr * sp * cy + sr * cp * sy
            rot.z, rot.w = cr * cp * sy - sr * sp * cy, cr * cp * cy + sr * sp * sy
            return out

    node = BevFeaturesNode(context=ros_context, parameter_overrides=[Parameter("checkpoint", value="")])
    try:
        node.lidar_to_ego._tf_buffer = Buffer()  # ros/lidar_frames.py, shared with trajectory_planner
        ego = _ego_points(500)
        msg = samples()["SensorFrame"]
        msg.lidar = xyzi_to_pointcloud2(_in_mount_frame(ego, MOUNT), 0, "lidar_top")
        for _ in range(3):
            frame = node.lidar_to_ego.to_ego(sensor_frame_to_core(msg), "lidar_top")
            np.testing.assert_allclose(frame.lidar_points[:, :3], ego[:, :3], atol=1e-4)
        assert Buffer.calls == [("base_link", "lidar_top")] and node.lidar_frames == {"lidar_top": "tf"}
        with pytest.raises(ExtrinsicsError, match="'velodyne'"):
            node.lidar_to_ego.to_ego(sensor_frame_to_core(msg), "velodyne")  # tf does not know it, nor the parameters
    finally:
        node.destroy_node()
