"""Message <-> core conversions, including the malformed inputs nodes must reject."""
from __future__ import annotations

import math

import numpy as np
import pytest
from nav_msgs.msg import Odometry
from sensor_msgs.msg import Image, PointCloud2, PointField

from latentvla_ros.core.fallback import comfortable_stop
from latentvla_ros.core.types import BevTokens, LatentPlan, Trajectory
from latentvla_ros.ros import conversions as conv


def _image(h=4, w=5, encoding="rgb8", pad=0):
    rng = np.random.default_rng(0)
    ch = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}[encoding]
    data = rng.integers(0, 255, (h, w * ch + pad), dtype=np.uint8)
    msg = Image(height=h, width=w, encoding=encoding, step=w * ch + pad)
    msg.data = data.tobytes()
    return msg, data[:, : w * ch].reshape(h, w, ch)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8"])
def test_image_encodings_give_rgb(encoding):
    msg, raw = _image(encoding=encoding, pad=3)
    rgb = conv.image_to_numpy(msg)
    assert rgb.shape == (4, 5, 3)
    expected = {"rgb8": raw, "bgr8": raw[:, :, ::-1], "rgba8": raw[:, :, :3], "bgra8": raw[:, :, 2::-1],
                "mono8": np.repeat(raw, 3, axis=2)}[encoding]
    np.testing.assert_array_equal(rgb, expected)


def test_image_round_trip_is_exact():
    img = np.random.default_rng(1).integers(0, 255, (6, 7, 3), dtype=np.uint8)
    msg = conv.numpy_to_image(img, 123, "cam")
    np.testing.assert_array_equal(conv.image_to_numpy(msg), img)
    assert conv.stamp_to_ns(msg.header.stamp) == 123


@pytest.mark.parametrize("mutate,match", [
    (lambda m: setattr(m, "encoding", "16UC1"), "unsupported image encoding"),
    (lambda m: setattr(m, "step", 5), "step"),
    (lambda m: setattr(m, "height", 5), "expected step"),
    (lambda m: setattr(m, "width", 0), "empty image"),
])
def test_bad_images_are_rejected(mutate, match):
    msg, _ = _image()
    mutate(msg)
    with pytest.raises(conv.ConversionError, match=match):
        conv.image_to_numpy(msg)


def test_pointcloud_round_trip_and_layouts():
    pts = np.random.default_rng(2).normal(size=(50, 4)).astype(np.float32)
    msg = conv.xyzi_to_pointcloud2(pts, 5, "lidar")
    out = conv.pointcloud2_to_xyzi(msg)
    np.testing.assert_array_equal(out, pts)
    assert np.shares_memory(out, np.frombuffer(msg.data, np.uint8))  # packed x, y, z, intensity: a view
    # views are read-only: in a composed process the SensorFrame's buffers are shared by its consumers
    assert not out.flags.writeable
    image = conv.image_to_numpy(conv.numpy_to_image(np.zeros((4, 6, 3), np.uint8), 5, "cam"))
    assert not image.flags.writeable
    with pytest.raises(ValueError):
        image[0, 0, 0] = 1
    # same fields, other order (intensity first): not the packed layout, read field by field
    swapped = np.roll(pts, 1, axis=1)
    cloud = PointCloud2(height=1, width=50, point_step=16, row_step=800, is_bigendian=False,
                        fields=[PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1)
                                for i, n in enumerate(("intensity", "x", "y", "z"))])
    cloud.data = swapped.tobytes()
    np.testing.assert_array_equal(conv.pointcloud2_to_xyzi(cloud), pts)
    cloud.is_bigendian, cloud.data = True, swapped.astype(">f4").tobytes()
    np.testing.assert_array_equal(conv.pointcloud2_to_xyzi(cloud), pts)
    # CARLA-style padded layout without intensity, point_step 20
    raw = np.zeros((10, 5), np.float32)
    raw[:, :3] = pts[:10, :3]
    cloud = PointCloud2(height=1, width=10, point_step=20, row_step=200, is_bigendian=False,
                        fields=[PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1) for i, n in enumerate("xyz")])
    cloud.data = raw.tobytes()
    out = conv.pointcloud2_to_xyzi(cloud)
    np.testing.assert_array_equal(out[:, :3], pts[:10, :3])
    assert np.all(out[:, 3] == 0)


def test_bad_pointclouds_are_rejected():
    empty = conv.xyzi_to_pointcloud2(np.zeros((0, 4), np.float32), 0, "lidar")
    with pytest.raises(conv.ConversionError, match="empty"):
        conv.pointcloud2_to_xyzi(empty)
    msg = conv.xyzi_to_pointcloud2(np.ones((4, 4), np.float32), 0, "lidar")
    msg.data = bytes(msg.data)[:-8]
    with pytest.raises(conv.ConversionError, match="bytes"):
        conv.pointcloud2_to_xyzi(msg)
    msg = conv.xyzi_to_pointcloud2(np.ones((4, 4), np.float32), 0, "lidar")
    msg.fields = msg.fields[1:]
    with pytest.raises(conv.ConversionError, match="lacks field 'x'"):
        conv.pointcloud2_to_xyzi(msg)


def test_nan_odometry_is_rejected():
    odom = Odometry()
    odom.pose.pose.orientation.w = 1.0
    odom.twist.twist.linear.x = 3.0
    v, w = conv.odometry_velocity(odom)
    assert v[0] == 3.0 and w == 0.0
    odom.twist.twist.linear.x = float("nan")
    with pytest.raises(conv.ConversionError, match="NaN"):
        conv.odometry_velocity(odom)


def test_bev_plan_trajectory_round_trips():
    rng = np.random.default_rng(3)
    bev = BevTokens(stamp_ns=10**18 + 7, tokens=rng.normal(size=(64, 32)).astype(np.float32), grid_rows=8, grid_cols=8,
                    cell_size_m=8.0, origin_x_m=-32, origin_y_m=-32, ego_status=np.arange(8, dtype=np.float32), model_id="m")
    back = conv.msg_to_bev(conv.bev_to_msg(bev, "base_link"))
    np.testing.assert_array_equal(back.tokens, bev.tokens)
    assert back.stamp_ns == bev.stamp_ns and back.model_id == "m"
    probs = rng.dirichlet(np.ones(16), size=12).astype(np.float32)
    plan = LatentPlan(stamp_ns=42, token_ids=probs.argmax(1), token_probabilities=probs,
                      action_embeddings=rng.normal(size=(12, 16)).astype(np.float32),
                      visual_embeddings=rng.normal(size=(4, 16)).astype(np.float32), model_id="s")
    pback = conv.msg_to_plan(conv.plan_to_msg(plan, "base_link"))
    np.testing.assert_array_equal(pback.token_ids, plan.token_ids)
    np.testing.assert_array_equal(pback.visual_embeddings, plan.visual_embeddings)
    traj = Trajectory(poses=np.stack([np.arange(1, 9) * 2.0, np.zeros(8), np.linspace(0, 0.3, 8)], 1), stamp_ns=99, model_id="p")
    msg = conv.trajectory_to_msg(traj, "base_link", initial_speed=4.0)
    assert msg.header.frame_id == "base_link" and len(msg.points) == 8
    assert msg.points[-1].time_from_start.sec == 4
    assert math.isclose(msg.points[0].longitudinal_velocity_mps, 4.0, rel_tol=1e-6)
    tback = conv.msg_to_trajectory(msg)
    np.testing.assert_allclose(tback.poses, traj.poses, atol=1e-6)
    path = conv.trajectory_to_path(traj, "base_link")
    assert len(path.poses) == 9 and path.header.frame_id == "base_link"


def test_corrupt_bev_and_plan_messages_are_rejected():
    bev = BevTokens(stamp_ns=1, tokens=np.zeros((64, 4), np.float32), grid_rows=8, grid_cols=8, cell_size_m=8,
                    origin_x_m=0, origin_y_m=0, ego_status=np.zeros(8, np.float32))
    msg = conv.bev_to_msg(bev, "base_link")
    msg.num_tokens = 65
    with pytest.raises(conv.ConversionError):
        conv.msg_to_bev(msg)
    msg = conv.bev_to_msg(bev, "base_link")
    msg.tokens[3] = float("nan")
    with pytest.raises(conv.ConversionError, match="NaN"):
        conv.msg_to_bev(msg)
    probs = np.full((12, 16), 1 / 16, np.float32)
    plan = LatentPlan(stamp_ns=1, token_ids=np.full(12, 20), token_probabilities=probs,
                      action_embeddings=np.zeros((12, 4), np.float32), visual_embeddings=np.zeros((2, 4), np.float32))
    with pytest.raises(conv.ConversionError, match="outside codebook"):
        conv.msg_to_plan(conv.plan_to_msg(plan, "base_link"))


def test_comfortable_stop_is_comfortable_and_stops():
    traj = comfortable_stop(8.0, 0.0, 2.0, stamp_ns=5, reason="test")
    assert traj.is_fallback and traj.fallback_reason == "test" and traj.stamp_ns == 5
    x = traj.poses[:, 0]
    assert np.all(np.diff(x) >= -1e-9) and x[-1] == pytest.approx(16.0)  # v^2 / 2a, stopped at 4 s
    assert np.allclose(traj.poses[:, 1], 0)
    curved = comfortable_stop(10.0, 0.2, 2.0)
    assert curved.poses[-1, 1] > 0 and curved.poses[-1, 2] > 0
    still = comfortable_stop(float("nan"), float("nan"))
    assert np.all(still.poses == 0)


def test_trajectory_kinematics_across_the_heading_wrap():
    """Speeds, accelerations and heading rates by finite differences from the ego; a heading
    that crosses +-pi turns by the short way (np.unwrap semantics), not by ~2 pi."""
    yaw = [0.0, 1.5, 3.1, -3.1, -1.5, 0.0, 3.0, -3.0]
    traj = Trajectory(poses=np.stack([np.arange(1, 9) * 2.0, np.zeros(8), yaw], 1), stamp_ns=1)
    speeds, acc, rate = conv.trajectory_kinematics(traj, initial_speed=2.0)
    np.testing.assert_allclose(speeds, 4.0)  # 2 m per 0.5 s
    np.testing.assert_allclose(acc, [4.0] + [0.0] * 7, atol=1e-12)
    expected = np.diff(np.unwrap(np.concatenate([[0.0], yaw]))) / traj.interval_s
    np.testing.assert_allclose(rate, expected, atol=1e-12)
    assert abs(rate[3]) < 0.2 and abs(rate[7]) < 1.0  # 3.1 -> -3.1 and 3.0 -> -3.0: short way round
    msg = conv.trajectory_to_msg(traj, "base_link", initial_speed=2.0)
    np.testing.assert_allclose([p.heading_rate_rps for p in msg.points], expected, atol=1e-12)
    np.testing.assert_allclose([math.atan2(2 * p.pose.orientation.w * p.pose.orientation.z,
                                           1 - 2 * p.pose.orientation.z ** 2) for p in msg.points],
                               np.arctan2(np.sin(yaw), np.cos(yaw)), atol=1e-12)


# ---------------------------------------------------------------- odometry pose, route Path, shared frame
def _odom_pose(x, y, yaw=None, quat=None) -> Odometry:
    odom = Odometry()
    p = odom.pose.pose
    p.position.x, p.position.y = x, y
    if quat is None:
        quat = (0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2))
    p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w = quat
    return odom


def test_odometry_pose_by_hand_and_non_finite_parts_rejected():
    x, y, yaw = conv.odometry_pose(_odom_pose(3.0, -4.0, math.radians(30)))
    assert (x, y) == (3.0, -4.0) and yaw == pytest.approx(math.radians(30))
    assert conv.odometry_pose(_odom_pose(0.0, 0.0, math.radians(170)))[2] == pytest.approx(math.radians(170))
    for odom in (_odom_pose(float("nan"), 1.0, 0.0), _odom_pose(1.0, float("inf"), 0.0),
                 _odom_pose(1.0, 1.0, quat=(0.0, 0.0, float("nan"), 1.0))):  # each part on its own
        with pytest.raises(conv.ConversionError, match=r"^odometry pose contains NaN/inf$"):
            conv.odometry_pose(odom)


def test_route_path_poses_are_positions_with_identity_orientation():
    route = conv.route_to_path(np.array([1.5, -2.0, 3.0, 4.25]), 9_000_000_001, "map")  # flat (x, y) pairs
    assert conv.stamp_to_ns(route.header.stamp) == 9_000_000_001 and route.header.frame_id == "map"
    assert len(route.poses) == 2
    for ps, (x, y) in zip(route.poses, [(1.5, -2.0), (3.0, 4.25)]):
        assert ps.header.frame_id == "map" and conv.stamp_to_ns(ps.header.stamp) == 9_000_000_001
        p, q = ps.pose.position, ps.pose.orientation
        assert (p.x, p.y, p.z) == (x, y, 0.0) and (q.x, q.y, q.z, q.w) == (0.0, 0.0, 0.0, 1.0)
    assert conv.route_to_path(np.zeros((0, 2)), 0, "map").poses == []
    # integer arrays: the message holds floats, as one received over DDS would (in-process consumers share it)
    ints = conv.route_to_path(np.array([[1, 2], [3, 4]]), 0, "map")
    xy = [(ps.pose.position.x, ps.pose.position.y) for ps in ints.poses]
    assert xy == [(1.0, 2.0), (3.0, 4.0)] and all(type(v) is float for p in xy for v in p)


def test_path_xy_error_messages_count_bad_poses():
    with pytest.raises(conv.ConversionError, match=r"^empty path \(no poses\)$"):
        conv.path_xy(conv.route_to_path(np.zeros((0, 2)), 0, "map"))
    route = conv.route_to_path(np.arange(8.0).reshape(4, 2), 0, "map")
    route.poses[0].pose.position.x = float("nan")
    route.poses[1].pose.position.x = float("-inf")  # two bad poses, both in x
    with pytest.raises(conv.ConversionError, match=r"^path has 2 non-finite pose\(s\) of 4$"):
        conv.path_xy(route)
    route.poses[0].pose.position.x = route.poses[1].pose.position.x = 0.0
    xy = conv.path_xy(route)
    assert xy.dtype == np.float64 and xy.tolist() == [[0.0, 1.0], [0.0, 3.0], [4.0, 5.0], [6.0, 7.0]]


def test_shared_sensor_frame_converts_each_message_object_once(monkeypatch):
    converted = []

    def convert(msg):
        if msg == "bad":
            raise conv.ConversionError("bad frame")
        converted.append(msg)
        return ("frame", len(converted))

    monkeypatch.setattr(conv, "_shared", {})
    monkeypatch.setattr(conv, "sensor_frame_to_core", convert)
    a, b = ["msg"], ["msg"]  # equal contents, two objects (two DDS deliveries)
    first = conv.shared_sensor_frame_to_core(a)
    assert first == ("frame", 1) and conv.shared_sensor_frame_to_core(a) is first  # same object: no reconversion
    assert conv.shared_sensor_frame_to_core(b) == ("frame", 2)  # another object is converted
    for _ in range(2):  # a failed conversion is not kept (nor does it evict the last one)
        with pytest.raises(conv.ConversionError, match="bad frame"):
            conv.shared_sensor_frame_to_core("bad")
    assert conv.shared_sensor_frame_to_core(b) == ("frame", 2) and converted == [a, b]


def test_cv_bridge_glue_with_a_recording_bridge(monkeypatch):
    # the ROS 2 cv_bridge is absent here (test_camera_inputs skips its decoder cases): a recording stand-in
    # with its API checks what our glue hands it (aliased encodings for newer names, every other field kept,
    # rgb8 asked for) and that its failures become ConversionErrors
    from sensor_msgs.msg import CompressedImage

    calls = []

    class Bridge:
        def imgmsg_to_cv2(self, msg, desired_encoding):
            calls.append(("imgmsg_to_cv2", msg, desired_encoding))
            if msg.header.frame_id == "broken":
                raise RuntimeError("boom")
            return None if msg.header.frame_id == "none" else np.full((msg.height, msg.width, 3), 5, np.uint8)

        def compressed_imgmsg_to_cv2(self, msg, desired_encoding):
            calls.append(("compressed_imgmsg_to_cv2", msg, desired_encoding))
            return np.full((1, 2), 3, np.uint8)  # grey: repeated to 3 channels

    monkeypatch.setattr(conv, "_BRIDGE", Bridge())
    assert conv.image_decoder() == "cv_bridge"
    for encoding, sent in (("yuyv", "yuv422_yuy2"), ("uyvy", "yuv422"), ("bayer_rggb8", "bayer_rggb8")):
        per_px = 1 if encoding.startswith("bayer") else 2
        msg = Image(height=2, width=2, encoding=encoding, is_bigendian=1, step=2 * per_px + 1)
        msg.header = conv.make_header(77, "cam")
        msg.data = bytes(range(2 * (2 * per_px + 1)))
        assert conv.image_to_numpy(msg, "cv_bridge").tolist() == [[[5, 5, 5]] * 2] * 2
        method, got, desired = calls.pop()
        assert (method, got.encoding, desired) == ("imgmsg_to_cv2", sent, "rgb8")
        assert (got.header, got.height, got.width, got.is_bigendian, got.step, bytes(got.data)) == \
            (msg.header, 2, 2, 1, msg.step, bytes(msg.data)), encoding
        assert (got is msg) == (encoding == sent)  # no alias: the message itself
    msg.header.frame_id = "broken"
    with pytest.raises(conv.ConversionError, match=r"^cv_bridge imgmsg_to_cv2: boom$"):
        conv.image_to_numpy(msg, "cv_bridge")
    msg.header.frame_id = "none"
    with pytest.raises(conv.ConversionError):
        conv.image_to_numpy(msg, "cv_bridge")
    jpeg = CompressedImage(format="jpeg", data=b"\xff\xd8\xff\xe0" + bytes(16))
    assert conv.compressed_image_to_numpy(jpeg, "cv_bridge").tolist() == [[[3, 3, 3]] * 2]
    assert calls[-1] == ("compressed_imgmsg_to_cv2", jpeg, "rgb8")


def test_image_decoder_choice_and_messages_without_cv_bridge(monkeypatch):
    monkeypatch.setattr(conv, "_BRIDGE", False)  # absent (as it is here)
    assert conv.image_decoder() == "opencv" and conv.image_decoder("opencv") == "opencv"
    with pytest.raises(ImportError, match=r"^cv_bridge is not installed \(apt: ros-\$ROS_DISTRO-cv-bridge\)$"):
        conv.image_decoder("cv_bridge")
    with pytest.raises(ValueError, match=r"^unknown image decoder 'pil' \(known: \('cv_bridge', 'opencv'\)\)$"):
        conv.image_decoder("pil")


def test_camera_image_msg_decodes_compressed_and_passes_the_decoder_on(monkeypatch):
    import cv2
    from sensor_msgs.msg import CompressedImage

    monkeypatch.setattr(conv, "_BRIDGE", False)
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[:, 4:] = (200, 40, 10)  # left black, right red: survives png exactly
    png = CompressedImage(header=conv.make_header(42, "cam_front"), format="png",
                          data=cv2.imencode(".png", rgb[:, :, ::-1])[1].tobytes())
    out = conv.camera_image_msg(png)
    assert (out.encoding, out.height, out.width, out.header.frame_id) == ("rgb8", 8, 8, "cam_front")
    assert conv.stamp_to_ns(out.header.stamp) == 42
    np.testing.assert_array_equal(conv.image_to_numpy(out), rgb)
    bayer = Image(header=png.header, height=2, width=2, encoding="bayer_rggb8", step=2, data=bytes(4))
    assert conv.camera_image_msg(bayer, "opencv").encoding == "rgb8"
    for msg in (png, bayer):  # the decoder asked for is used: cv_bridge, absent, is refused
        with pytest.raises(ImportError, match="cv_bridge is not installed"):
            conv.camera_image_msg(msg, "cv_bridge")


def test_message_from_fields_builds_what_the_constructor_builds_without_its_defaults():
    """sensor_sync builds each SensorFrame with ``message_from_fields``: the same message (equal,
    and it goes over the wire) as the generated constructor, without building a default Odometry,
    CameraInfo and PointCloud2 first; every field must be given and is checked as usual."""
    from geometry_msgs.msg import Vector3
    from rclpy.serialization import deserialize_message, serialize_message
    from ros_helpers import camera_image, lidar_cloud, odometry, stamp
    from sensor_msgs.msg import CameraInfo

    from latentvla_ros.msg import SensorFrame
    from latentvla_ros.ros.conversions import make_header, message_from_fields

    fields = dict(header=make_header(stamp(3), "base_link"), images=[camera_image(stamp(3))],
                  camera_infos=[CameraInfo(width=128)], lidar=lidar_cloud(stamp(3)), odometry=odometry(stamp(3)),
                  driving_command=2, ego_acceleration=Vector3(x=0.5, y=-0.1, z=0.0), sync_spread_s=0.01, sequence=7)
    built = message_from_fields(SensorFrame, **fields)
    assert built == SensorFrame(**fields)
    # (not the bytes themselves: CDR's alignment padding is not initialised)
    wire = lambda msg: deserialize_message(serialize_message(msg), SensorFrame)
    assert wire(built) == wire(SensorFrame(**fields))
    with pytest.raises(TypeError, match="missing.*sequence"):
        message_from_fields(SensorFrame, **{k: v for k, v in fields.items() if k != "sequence"})
    with pytest.raises(TypeError, match="unknown.*speed"):
        message_from_fields(SensorFrame, speed=1.0, **fields)


def test_shared_bev_and_plan_are_the_publishers_objects_in_process_and_converted_over_dds(monkeypatch):
    # in a composed process the planner gets the BEV stage's / reasoner's own output object for the message
    # they published (no conversion back); any other message object (a DDS delivery) is converted and checked
    monkeypatch.setattr(conv, "_shared", {})
    rng = np.random.default_rng(5)
    bev = BevTokens(stamp_ns=11, tokens=rng.normal(size=(64, 4)).astype(np.float32), grid_rows=8, grid_cols=8,
                    cell_size_m=8.0, origin_x_m=-32, origin_y_m=-32, ego_status=np.arange(8, dtype=np.float32))
    msg = conv.share_bev(conv.bev_to_msg(bev, "base_link"), bev)
    assert conv.shared_msg_to_bev(msg) is bev
    other = conv.bev_to_msg(bev, "base_link")  # equal contents, another object
    back = conv.shared_msg_to_bev(other)
    assert back is not bev and back.stamp_ns == 11
    np.testing.assert_array_equal(back.tokens, bev.tokens)
    bad = conv.bev_to_msg(bev, "base_link")
    bad.tokens[3] = float("nan")
    with pytest.raises(conv.ConversionError, match="NaN"):  # converted, so checked
        conv.shared_msg_to_bev(bad)
    probs = rng.dirichlet(np.ones(16), size=12).astype(np.float32)
    plan = LatentPlan(stamp_ns=12, token_ids=probs.argmax(1), token_probabilities=probs,
                      action_embeddings=rng.normal(size=(12, 16)).astype(np.float32),
                      visual_embeddings=rng.normal(size=(4, 16)).astype(np.float32))
    pmsg = conv.share_plan(conv.plan_to_msg(plan, "base_link"), plan)
    # one slot per kind (the last converted BEV message is kept, the failed one was not)
    assert conv.shared_msg_to_plan(pmsg) is plan and conv.shared_msg_to_bev(other) is back
    pback = conv.shared_msg_to_plan(conv.plan_to_msg(plan, "base_link"))
    assert pback is not plan
    np.testing.assert_array_equal(pback.action_embeddings, plan.action_embeddings)
