"""Driving log <-> rosbag2 (rosbags, MCAP and sqlite3)."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import rosbags  # noqa: F401  (a requirement: a missing install fails, not skips)

from latentvla_ros.core.types import AgentBox, DrivingCommand
from latentvla_ros.data import bag_io
from latentvla_ros.data.log_format import DrivingLog, LogWriter

N = 50
EPOCH_NS = bag_io.DEFAULT_EPOCH_S * 1_000_000_000


@pytest.fixture(scope="module")
def source_log(tmp_path_factory):
    path = tmp_path_factory.mktemp("bag") / "log"
    rng = np.random.default_rng(3)
    writer = LogWriter(path, {"source": "test", "camera_meters_per_pixel": 0.5, "camera_ego_pixel_xy": [23.5, 24.0]},
                       camera_names=("front", "left"))
    yaw_rate = 0.1
    x = y = yaw = 0.0
    for t in range(N):
        writer.append(
            camera=rng.integers(0, 255, size=(2, 32, 48, 3), dtype=np.uint8),
            lidar_points=rng.normal(size=(int(rng.integers(1, 300)), 4)).astype(np.float32),
            ego_pose=(x, y, yaw), ego_status=(8.0, 0.1, 0.5, -0.2, yaw_rate),
            command=DrivingCommand.LEFT, agents=[AgentBox(1.0, 2.0, 0.0, 4.0, 2.0, track_id=1)],
        )
        x += 0.8 * math.cos(yaw)
        y += 0.8 * math.sin(yaw)
        yaw += yaw_rate * 0.1
    writer.close()
    return path


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_round_trip_preserves_arrays(tmp_path, source_log, storage):
    counts = bag_io.write_sensor_bag(source_log, tmp_path / "bag", storage)
    src = DrivingLog(source_log)
    valid = int(np.asarray(src.future_valid).sum())
    assert counts["/sensing/lidar/points"] == N and counts["/sensing/camera/left/image_raw"] == N
    assert counts["/localization/odometry"] == N and counts["/debug/expert_path"] == valid
    out = bag_io.log_from_bag(tmp_path / "bag", tmp_path / "log")
    log = DrivingLog(out)
    assert log.num_frames == N and log.camera_names == ["front", "left"] and log.dt_s == pytest.approx(0.1)
    np.testing.assert_array_equal(log.camera_array, src.camera_array)
    for t in range(N):
        np.testing.assert_array_equal(log.lidar_points(t), src.lidar_points(t))
    np.testing.assert_allclose(log.ego_pose_array, src.ego_pose_array, atol=1e-12)
    np.testing.assert_array_equal(log.ego_status_array, src.ego_status_array)
    np.testing.assert_array_equal(log.future_valid, src.future_valid)
    np.testing.assert_allclose(log.future_trajectory_array, src.future_trajectory_array, atol=1e-5)
    np.testing.assert_array_equal(log.timestamps_ns, EPOCH_NS + np.arange(N) * 100_000_000)
    # command from the (left-turning) future path; unknown without a future
    assert log.command(0) == DrivingCommand.LEFT and log.command(N - 1) == DrivingCommand.UNKNOWN


def test_bag_messages_stamps_and_frames(tmp_path, source_log):
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore

    bag_io.write_sensor_bag(source_log, tmp_path / "bag", "mcap", camera_offset_ms=12.0, odom_offset_ms=4.0, jitter_ms=2.0)
    ts = get_typestore(Stores.ROS2_KILTED)
    stamps: dict[str, list[int]] = {}
    first: dict[str, object] = {}
    last_recv = -1
    with Reader(tmp_path / "bag") as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
        for conn, recv, raw in reader.messages():
            assert recv >= last_recv  # written in receive-time order
            last_recv = recv
            msg = ts.deserialize_cdr(raw, conn.msgtype)
            if hasattr(msg, "header"):
                stamps.setdefault(conn.topic, []).append(msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec)
            first.setdefault(conn.topic, msg)
    assert types["/sensing/camera/front/image_raw"] == "sensor_msgs/msg/Image"
    assert types["/sensing/lidar/points"] == "sensor_msgs/msg/PointCloud2"
    assert types["/localization/odometry"] == "nav_msgs/msg/Odometry"
    assert types["/debug/expert_path"] == "nav_msgs/msg/Path" and types["/tf"] == "tf2_msgs/msg/TFMessage"
    lidar = np.array(stamps["/sensing/lidar/points"])
    cam = np.array(stamps["/sensing/camera/front/image_raw"])
    odom = np.array(stamps["/localization/odometry"])
    np.testing.assert_array_equal(lidar, EPOCH_NS + np.arange(N) * 100_000_000)
    assert np.all((cam - lidar >= 10_000_000) & (cam - lidar <= 14_000_000)) and len(np.unique(cam - lidar)) > 1
    assert np.all((odom - lidar >= 2_000_000) & (odom - lidar <= 6_000_000))
    img = first["/sensing/camera/front/image_raw"]
    assert img.encoding == "rgb8" and img.header.frame_id == "camera_front" and (img.height, img.width, img.step) == (32, 48, 144)
    np.testing.assert_array_equal(np.asarray(img.data).reshape(32, 48, 3), DrivingLog(source_log).camera(0)[0])
    info = first["/sensing/camera/front/camera_info"]
    assert info.k[0] == pytest.approx(2.0) and info.k[2] == pytest.approx(23.5)  # pixels per metre, ego pixel
    cloud = first["/sensing/lidar/points"]
    assert cloud.header.frame_id == "base_link" and [f.name for f in cloud.fields] == ["x", "y", "z", "intensity"]
    assert cloud.point_step == 16
    odo = first["/localization/odometry"]
    assert odo.header.frame_id == "map" and odo.child_frame_id == "base_link" and odo.twist.twist.linear.x == pytest.approx(8.0)
    path = first["/debug/expert_path"]
    assert path.header.frame_id == "base_link" and len(path.poses) == 8
    traj = DrivingLog(source_log).future_trajectory(0)
    assert path.poses[3].pose.position.x == pytest.approx(traj[3, 0], abs=1e-6)
    q = path.poses[7].pose.orientation
    assert bag_io.quaternion_to_yaw(0, 0, q.z, q.w) == pytest.approx(traj[7, 2], abs=1e-6)
    assert (path.poses[0].header.stamp.sec * 10**9 + path.poses[0].header.stamp.nanosec) - stamps["/debug/expert_path"][0] == 500_000_000


def test_mcap_readable_by_mcap_ros2(tmp_path, source_log):
    import mcap_ros2.reader as mcap_reader

    bag_io.write_sensor_bag(source_log, tmp_path / "bag", "mcap", topics={"tf": None, "expert_path": None})
    files = list((tmp_path / "bag").glob("*.mcap"))
    assert len(files) == 1
    topics = set()
    for msg in mcap_reader.read_ros2_messages(str(files[0])):
        topics.add(msg.channel.topic)
        if msg.channel.topic == "/sensing/lidar/points":
            assert msg.ros_msg.width > 0
    assert "/tf" not in topics and "/debug/expert_path" not in topics and "/sensing/camera/left/image_raw" in topics


def test_humble_metadata_and_custom_topics(tmp_path, source_log):
    counts = bag_io.write_sensor_bag(source_log, tmp_path / "bag", "sqlite3", version=8,
                                     topics={"lidar": "/points_raw", "camera": "/cam/{name}/image"}, frames=range(10))
    assert counts["/points_raw"] == 10 and "/cam/front/image" in counts
    assert "version: 8" in (tmp_path / "bag" / "metadata.yaml").read_text()
    log = DrivingLog(bag_io.log_from_bag(tmp_path / "bag", tmp_path / "log", lidar_topic="/points_raw"))
    assert log.num_frames == 10 and log.camera_names == ["cam_front_image", "cam_left_image"]
    with pytest.raises(bag_io.BagFormatError, match="missing topics"):
        bag_io.log_from_bag(tmp_path / "bag", tmp_path / "log2")  # default lidar topic is absent
    with pytest.raises(ValueError):
        bag_io.write_sensor_bag(source_log, tmp_path / "bag2", "rosbag1")


def test_mission_route_written_in_the_map_frame_once_a_second(tmp_path, source_log):
    """``routes(t)`` -> nav_msgs/Path in ``map`` on /planning/mission_route with the first frame
    and once per second of log time (the player latches it on replay); none without ``routes``."""
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore

    def routes(t):
        return np.array([[t, 0.0], [t + 10.0, 1.0], [t + 20.0, 3.0]])

    counts = bag_io.write_sensor_bag(source_log, tmp_path / "bag", "mcap", routes=routes)
    assert counts["/planning/mission_route"] == 5  # 50 frames at 10 Hz: t = 0, 10, 20, 30, 40
    ts = get_typestore(Stores.ROS2_KILTED)
    with Reader(tmp_path / "bag") as reader:
        conns = [c for c in reader.connections if c.topic == "/planning/mission_route"]
        msgs = [ts.deserialize_cdr(raw, c.msgtype) for c, _, raw in reader.messages(connections=conns)]
    assert conns[0].msgtype == "nav_msgs/msg/Path"
    stamps = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in msgs]
    assert stamps == [EPOCH_NS + t * 100_000_000 for t in (0, 10, 20, 30, 40)]  # the frame's LiDAR stamp
    assert all(m.header.frame_id == "map" for m in msgs)  # the odometry's frame
    assert [[p.pose.position.x, p.pose.position.y] for p in msgs[1].poses] == [[10.0, 0.0], [20.0, 1.0], [30.0, 3.0]]
    assert "/planning/mission_route" not in bag_io.write_sensor_bag(source_log, tmp_path / "bag2", "mcap", frames=range(3))


def test_image_and_cloud_decoding_variants():
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    padded = np.zeros((2, 12), np.uint8)
    padded[:, :9] = rgb[:, :, ::-1].reshape(2, 9)  # bgr8 with 3 bytes of row padding
    msg = SimpleNamespace(encoding="bgr8", height=2, width=3, step=12, data=padded.ravel())
    np.testing.assert_array_equal(bag_io.image_to_rgb(msg), rgb)
    mono = SimpleNamespace(encoding="mono8", height=1, width=2, step=2, data=np.array([7, 9], np.uint8))
    np.testing.assert_array_equal(bag_io.image_to_rgb(mono), [[[7, 7, 7], [9, 9, 9]]])
    with pytest.raises(bag_io.BagFormatError):
        bag_io.image_to_rgb(SimpleNamespace(encoding="yuv422", height=1, width=1, step=2, data=np.zeros(2, np.uint8)))
    # x, y, z float32 + ring uint16 + padding: 16-byte points without intensity
    rec = np.zeros(2, dtype=np.dtype({"names": ["x", "y", "z", "ring"], "formats": ["<f4", "<f4", "<f4", "<u2"],
                                      "offsets": [0, 4, 8, 12], "itemsize": 16}))
    rec["x"], rec["y"], rec["z"], rec["ring"] = [1, 2], [3, 4], [5, 6], [7, 8]
    fields = [SimpleNamespace(name=n, offset=o, datatype=d, count=1)
              for n, o, d in (("x", 0, 7), ("y", 4, 7), ("z", 8, 7), ("ring", 12, 4))]
    cloud = SimpleNamespace(fields=fields, width=2, height=1, point_step=16, is_bigendian=False,
                            data=np.frombuffer(rec.tobytes(), np.uint8))
    np.testing.assert_array_equal(bag_io.pointcloud2_to_xyzi(cloud), [[1, 3, 5, 0], [2, 4, 6, 0]])
