"""Property-based fuzzing of every input of every node (hypothesis).

Each node's real subscription callback (the one rclpy would call, with the node's guard
around it) gets malformed messages: wrong encodings, sizes and steps, point clouds whose
fields lie outside the point, NaN/inf everywhere, shape fields that contradict the
arrays, random stamps and sequence numbers. Properties:

- nothing raises and no message reaches the last-resort guard (``callback_error`` stays
  0): every malformed input is recognised by the node's own validation;
- every message is accounted for: it produced an output or was counted as a drop;
- the node still works afterwards (a valid message goes through).

A last test sends malformed messages over DDS to running nodes (the real transport path).
"""
from __future__ import annotations

import math
import os
import time

import numpy as np
import pytest
import rclpy
from builtin_interfaces.msg import Duration, Time
from conftest import wait_for
from geometry_msgs.msg import Point, Pose, Quaternion, Vector3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nav_msgs.msg import Odometry
from rclpy.parameter import Parameter
from ros_helpers import camera_image, lidar_cloud, odometry
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import Header, UInt8

from latentvla_ros.msg import BevFeatures, LatentActionPlan, PlannedTrajectory, SensorFrame, TrajectoryPoint
from latentvla_ros.ros import conversions as conv

T0 = 1_700_000_000_000_000_000
SETTINGS = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "60")), deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])

# ----------------------------------------------------------------------------- strategies
floats = st.floats(allow_nan=True, allow_infinity=True, width=64)
f32 = st.floats(allow_nan=True, allow_infinity=True, width=32)
small = st.integers(0, 40)
# stamps from a small set, so that random messages do meet in the synchronizer; random past
# ones, and far-future ones (sensor_sync drops those as bad_stamp)
stamps = st.one_of(st.sampled_from([T0 + k * 50_000_000 for k in range(6)]), st.integers(0, 1_740_000_000 * 10**9),
                   st.integers(2_000_000_000 * 10**9, (2**31 - 1) * 10**9))
# after every fuzzed stamp that passes sensor_sync's stamp check, and in the past of the node clock
_valid_stamps = iter(range(1_750_000_000 * 10**9, 1_760_000_000 * 10**9, 10**9))


def header(stamp_ns, frame="base_link"):
    return Header(stamp=Time(sec=int(stamp_ns // 1_000_000_000), nanosec=int(stamp_ns % 1_000_000_000)),
                  frame_id=frame)


@st.composite
def images(draw):
    if draw(st.booleans()):
        img = camera_image(draw(stamps), h=draw(st.integers(1, 24)), w=draw(st.integers(1, 24)))
        mutate = draw(st.sampled_from(["none", "encoding", "step", "data", "size"]))
        if mutate == "encoding":
            img.encoding = draw(st.sampled_from(["16UC1", "", "RGB8 ", "yuv422", "32FC1"]))
        elif mutate == "step":
            img.step = draw(st.integers(0, 200))
        elif mutate == "data":
            img.data = draw(st.binary(max_size=300))
        elif mutate == "size":
            img.height, img.width = draw(small), draw(small)
        return img
    return Image(header=header(draw(stamps)), height=draw(small), width=draw(small),
                 encoding=draw(st.sampled_from(["rgb8", "bgr8", "mono8", "rgba8", "bgra8", "16UC1", "", "x"])),
                 is_bigendian=draw(st.integers(0, 1)), step=draw(st.integers(0, 200)), data=draw(st.binary(max_size=600)))


@st.composite
def clouds(draw):
    if draw(st.booleans()):
        msg = lidar_cloud(draw(stamps), n=draw(st.integers(0, 30)))
        mutate = draw(st.sampled_from(["none", "step", "data", "fields", "width"]))
        if mutate == "step":
            msg.point_step, msg.row_step = draw(st.integers(0, 40)), draw(st.integers(0, 600))
        elif mutate == "data":
            msg.data = draw(st.binary(max_size=300))
        elif mutate == "fields":
            msg.fields = [PointField(name=draw(st.sampled_from(["x", "y", "z", "intensity", "rgb"])),
                                     offset=draw(st.integers(0, 40)),
                                     datatype=draw(st.integers(0, 12)), count=draw(st.integers(0, 3)))
                          for _ in range(draw(st.integers(0, 5)))]
        elif mutate == "width":
            msg.width, msg.height = draw(st.integers(0, 1000)), draw(st.integers(0, 3))
        if draw(st.booleans()):  # NaN/inf coordinates
            pts = np.frombuffer(bytes(msg.data), np.uint8).copy()
            if len(pts) >= 4:
                pts[:4] = np.frombuffer(np.float32(draw(f32)).tobytes(), np.uint8)
                msg.data = pts.tobytes()
        return msg
    fields = [PointField(name=draw(st.sampled_from(["x", "y", "z", "intensity"])), offset=draw(st.integers(0, 40)),
                         datatype=draw(st.integers(0, 12)), count=1) for _ in range(draw(st.integers(0, 5)))]
    return PointCloud2(header=header(draw(stamps)), height=draw(st.integers(0, 3)), width=draw(small), fields=fields,
                       is_bigendian=draw(st.booleans()), point_step=draw(st.integers(0, 40)), row_step=draw(st.integers(0, 600)),
                       data=draw(st.binary(max_size=600)), is_dense=draw(st.booleans()))


@st.composite
def odometries(draw):
    msg = odometry(draw(stamps), speed=draw(floats), yaw_rate=draw(floats), x=draw(floats))
    msg.twist.twist.linear.y = draw(floats)
    msg.pose.pose.orientation = Quaternion(x=draw(floats), y=draw(floats), z=draw(floats), w=draw(floats))
    return msg


@st.composite
def camera_infos(draw):
    return CameraInfo(header=header(draw(stamps)), height=draw(small), width=draw(small),
                      k=[draw(floats) for _ in range(9)], d=[draw(floats) for _ in range(draw(st.integers(0, 8)))],
                      distortion_model=draw(st.text(max_size=8)))


@st.composite
def sensor_frames(draw):
    msg = SensorFrame(header=header(draw(stamps)), sequence=draw(st.integers(0, 2**32 - 1)),
                      driving_command=draw(st.integers(0, 255)), sync_spread_s=draw(floats),
                      ego_acceleration=Vector3(x=draw(floats), y=draw(floats), z=draw(floats)))
    msg.images = [draw(images()) for _ in range(draw(st.integers(0, 2)))]
    msg.camera_infos = [draw(camera_infos()) for _ in range(draw(st.integers(0, 2)))]
    msg.lidar = draw(clouds())
    msg.odometry = draw(odometries())
    return msg


@st.composite
def bev_features(draw):
    rows, cols, ch = draw(st.integers(0, 9)), draw(st.integers(0, 9)), draw(st.integers(0, 300))
    n = draw(st.one_of(st.just(rows * cols), small))
    size = draw(st.one_of(st.just(n * ch), st.integers(0, 3000)))
    values = np.asarray(draw(st.lists(f32, min_size=1, max_size=4)) * (size // 1 + 1), np.float32)[:size]
    msg = BevFeatures(header=header(draw(stamps)), num_tokens=n, channels=ch, grid_rows=rows, grid_cols=cols,
                      cell_size_m=draw(f32), origin_x_m=draw(f32), origin_y_m=draw(f32), model_id=draw(st.text(max_size=5)))
    msg.tokens = values.tolist() if size < 50 else values
    msg.ego_status = np.asarray([draw(f32) for _ in range(draw(st.integers(0, 10)))], np.float32)
    return msg


@st.composite
def latent_plans(draw):
    n, k, d, v = (draw(st.integers(0, 14)), draw(st.integers(0, 20)), draw(st.integers(0, 70)), draw(st.integers(0, 20)))
    exact = draw(st.booleans())
    msg = LatentActionPlan(header=header(draw(stamps)), num_tokens=n, codebook_size=k, embedding_dim=d,
                           num_visual_tokens=v, model_id=draw(st.text(max_size=5)))
    msg.token_ids = [draw(st.integers(0, 255)) for _ in range(n if exact else draw(small))]
    fill = draw(f32)
    msg.token_probabilities = np.full(n * k if exact else draw(small), fill, np.float32)
    msg.action_embeddings = np.full(n * d if exact else draw(small), draw(f32), np.float32)
    msg.visual_embeddings = np.full(v * d if exact else draw(small), draw(f32), np.float32)
    return msg


@st.composite
def trajectories(draw):
    points = []
    for i in range(draw(st.integers(0, 10))):
        t = draw(st.integers(-5, 10))
        points.append(TrajectoryPoint(
            time_from_start=Duration(sec=t, nanosec=draw(st.integers(0, 999_999_999))),
            pose=Pose(position=Point(x=draw(floats), y=draw(floats), z=0.0),
                      orientation=Quaternion(x=0.0, y=0.0, z=draw(floats), w=draw(floats))),
            longitudinal_velocity_mps=draw(f32)))
    return PlannedTrajectory(header=header(draw(stamps)), points=points, is_fallback=draw(st.booleans()),
                             fallback_reason=draw(st.text(max_size=10)), model_id=draw(st.text(max_size=5)))


STRATEGIES = {Image: images(), PointCloud2: clouds(), Odometry: odometries(), CameraInfo: camera_infos(),
              UInt8: st.builds(UInt8, data=st.integers(0, 255)), SensorFrame: sensor_frames(),
              BevFeatures: bev_features(), LatentActionPlan: latent_plans(), PlannedTrajectory: trajectories()}


# ----------------------------------------------------------------------------- nodes
@pytest.fixture(scope="module")
def fuzz_nodes():
    from rclpy.context import Context

    from latentvla_ros.ros.nodes.bev_features import BevFeaturesNode
    from latentvla_ros.ros.nodes.latent_reasoner import LatentReasonerNode
    from latentvla_ros.ros.nodes.sensor_sync import SensorSyncNode
    from latentvla_ros.ros.nodes.teacher_labeler import TeacherLabelerNode
    from latentvla_ros.ros.nodes.trajectory_planner import TrajectoryPlannerNode
    from latentvla_ros.ros.nodes.twist_controller import TwistControllerNode

    context = Context()
    rclpy.init(context=context, domain_id=int(os.environ["ROS_DOMAIN_ID"]))
    untrained = [Parameter("checkpoint", value="")]
    ns = ["--ros-args", "-r", "__ns:=/fuzz"]
    nodes = {
        "sensor_sync": SensorSyncNode(context=context, cli_args=ns),
        "bev_features": BevFeaturesNode(context=context, cli_args=ns, parameter_overrides=untrained),
        "latent_reasoner": LatentReasonerNode(context=context, cli_args=ns, parameter_overrides=untrained),
        "trajectory_planner": TrajectoryPlannerNode(context=context, cli_args=ns, parameter_overrides=[
            *untrained, Parameter("allow_untrained", value=True), Parameter("input_timeout_s", value=10.0)]),
        "twist_controller": TwistControllerNode(context=context, cli_args=ns),
        "teacher_labeler": TeacherLabelerNode(context=context, cli_args=ns),  # tiny untrained teacher
    }
    yield nodes
    for n in nodes.values():
        n.destroy_node()
    rclpy.shutdown(context=context)


def _inputs(node):
    """[(input name, message type, callback)] of a node, as rclpy would call them."""

    out = []
    for sub in node.subscriptions:
        name = sub.topic_name.split("/input/", 1)[-1] if "/input/" in sub.topic_name else None
        if name is not None:
            out.append((name, sub.msg_type, sub.callback))
    assert out, node.get_name()
    assert {n for n, _, _ in out} <= set(node._inputs), (out, node._inputs)
    return out


CASES = [(node, name) for node, names in {
    "sensor_sync": ["camera/front/image", "camera/front/camera_info", "lidar/points", "odometry", "driving_command"],
    "bev_features": ["frame"], "latent_reasoner": ["frame"], "teacher_labeler": ["frame"],
    "trajectory_planner": ["bev", "plan", "odometry"], "twist_controller": ["trajectory", "odometry"]}.items()
    for name in names]


@pytest.mark.parametrize("node_name,input_name", CASES, ids=[f"{n}:{i}" for n, i in CASES])
def test_malformed_messages_are_counted_never_crash(fuzz_nodes, node_name, input_name):
    node = fuzz_nodes[node_name]
    entry = [(t, cb) for n, t, cb in _inputs(node) if n == input_name]
    assert entry, f"{node_name} has no input {input_name}: update CASES if the node's inputs changed"
    msg_type, callback = entry[0]
    before = node.stats.snapshot()
    accepted_before = getattr(node, "accepted_trajectories", 0)

    slow_model = node_name == "teacher_labeler"  # a VLM call per valid-looking frame

    must_drop = []  # messages an independent check says are malformed (see _must_drop)

    @settings(SETTINGS, max_examples=max(10, SETTINGS.max_examples // 3) if slow_model else SETTINGS.max_examples)
    @given(msg=STRATEGIES[msg_type])
    def feed(msg):
        must_drop.append(_must_drop(msg))
        callback(msg)  # the guarded callback: must not raise, whatever comes in

    feed()
    after = node.stats.snapshot()
    fed = after["received"].get(input_name, 0) - before["received"].get(input_name, 0)
    assert fed > 0
    assert after["dropped"].get("callback_error", 0) == 0, f"unhandled exception on {node_name}/{input_name}"
    assert after["dropped"].get("timer_error", 0) == 0

    def d(section, key):
        return after[section].get(key, 0) - before[section].get(key, 0)

    # accounting: every fuzzed message produced an output or a counted drop
    if node_name in ("bev_features", "latent_reasoner", "teacher_labeler"):
        out = "bev" if node_name == "bev_features" else "plan"
        assert d("published", out) + d("dropped", "bad_message") + d("dropped", "model_error") == fed
    elif node_name == "trajectory_planner" and input_name == "bev":
        with node._lock:
            waiting = node.matcher.expire(math.inf)  # frames still waiting for a plan: their fallback now
        node._handle(waiting)
        after = node.stats.snapshot()
        per_frame = d("published", "trajectory") - d("published", "fallback_no_bev")
        assert per_frame + d("dropped", "bad_bev") + d("dropped", "duplicate_bev") == fed
    elif node_name == "twist_controller" and input_name == "trajectory":
        # accepted or dropped, and at least every message with a non-finite pose or no points was dropped
        accepted = node.accepted_trajectories - accepted_before
        assert accepted + d("dropped", "bad_trajectory") + d("dropped", "out_of_order_trajectory") == fed
        assert sum(must_drop) > 0 and d("dropped", "bad_trajectory") >= sum(must_drop)
    elif input_name == "odometry" and node_name != "sensor_sync":
        # every message with a non-finite twist was dropped (and some were: the fuzzing did produce them)
        assert sum(must_drop) > 0 and sum(must_drop) <= d("dropped", "bad_odometry") <= fed
    # and the node still works: a valid message goes through
    _valid_message_goes_through(node_name, input_name, node)


def _must_drop(msg) -> bool:
    """Independent of the nodes' validation: odometry whose twist is not finite, a trajectory with no
    points or a non-finite position / orientation cannot be used, whatever else is in them."""
    if isinstance(msg, Odometry):
        tw = msg.twist.twist
        return not all(math.isfinite(v) for v in (tw.linear.x, tw.linear.y, tw.angular.z))
    if isinstance(msg, PlannedTrajectory):
        return not msg.points or not all(
            math.isfinite(v) for p in msg.points
            for v in (p.pose.position.x, p.pose.position.y, p.pose.orientation.z, p.pose.orientation.w))
    return False


def _valid_message_goes_through(node_name, input_name, node):
    if node_name in ("bev_features", "latent_reasoner", "teacher_labeler"):
        from fixtures.message_samples import samples

        out = "bev" if node_name == "bev_features" else "plan"
        before = node.stats.snapshot()["published"].get(out, 0)
        cb = [c for n, t, c in _inputs(node) if n == "frame"][0]
        frame = samples()["SensorFrame"]
        frame.sequence = 2**31
        cb(frame)
        assert node.stats.snapshot()["published"].get(out, 0) == before + 1
    elif node_name == "sensor_sync" and input_name != "driving_command":
        before = node.stats.snapshot()["published"].get("frame", 0)
        cbs = {n: c for n, t, c in _inputs(node)}
        stamp = next(_valid_stamps)
        cbs["camera/front/image"](camera_image(stamp))
        cbs["lidar/points"](lidar_cloud(stamp + 1_000_000))
        cbs["odometry"](odometry(stamp + 2_000_000))
        assert node.stats.snapshot()["published"].get("frame", 0) == before + 1
    elif node_name == "twist_controller":
        node._on_timer()
        assert node.stats.snapshot()["published"]["twist"] >= 1


def test_malformed_messages_over_dds_are_counted(ros_context, spin):
    """The transport path: malformed messages published on the nodes' topics."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from latentvla_ros.ros.nodes.sensor_sync import SensorSyncNode
    from latentvla_ros.ros.nodes.twist_controller import TwistControllerNode

    sync = SensorSyncNode(context=ros_context, cli_args=["--ros-args", "-r", "__ns:=/dds_fuzz"],
                          parameter_overrides=[Parameter("qos.input_reliability", value="reliable"),
                                               Parameter("qos.input_depth", value=50)])
    ctrl = TwistControllerNode(context=ros_context, cli_args=["--ros-args", "-r", "__ns:=/dds_fuzz"],
                               parameter_overrides=[Parameter("qos.sensor_reliability", value="reliable"),
                                                    Parameter("qos.sensor_depth", value=50)])
    io = rclpy.create_node("dds_fuzz_io", context=ros_context)
    qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
    pubs = {"image": io.create_publisher(Image, "/dds_fuzz/sensor_sync/input/camera/front/image", qos),
            "lidar": io.create_publisher(PointCloud2, "/dds_fuzz/sensor_sync/input/lidar/points", qos),
            "odom": io.create_publisher(Odometry, "/dds_fuzz/sensor_sync/input/odometry", qos),
            "traj": io.create_publisher(PlannedTrajectory, "/dds_fuzz/twist_controller/input/trajectory", qos),
            "codom": io.create_publisher(Odometry, "/dds_fuzz/twist_controller/input/odometry", qos)}
    spin(sync, ctrl, io)
    assert wait_for(lambda: all(p.get_subscription_count() > 0 for p in pubs.values()), 10)
    stamp = T0 + 5 * 10**9
    bad_img = camera_image(stamp, 8, 8)
    bad_img.step = 3
    empty = lidar_cloud(stamp, n=0)
    nan_odom = odometry(stamp)
    nan_odom.twist.twist.linear.x = math.nan
    for k in range(5):  # matching stamps: the synchronizer emits sets, the node rejects them
        s = stamp + k * 100_000_000
        img, cloud, od = bad_img, empty, nan_odom
        img.header.stamp = cloud.header.stamp = od.header.stamp = conv.ns_to_stamp(s)
        pubs["image"].publish(img)
        pubs["lidar"].publish(cloud)
        pubs["odom"].publish(od)
        pubs["traj"].publish(PlannedTrajectory(header=header(s), points=[TrajectoryPoint(
            pose=Pose(position=Point(x=math.nan)))]))
        pubs["codom"].publish(nan_odom)
        time.sleep(0.05)
    assert wait_for(lambda: sync.stats.snapshot()["dropped"].get("bad_message", 0) >= 4, 10), sync.stats.snapshot()
    assert wait_for(lambda: ctrl.stats.snapshot()["dropped"].get("bad_trajectory", 0) == 5
                    and ctrl.stats.snapshot()["dropped"].get("bad_odometry", 0) == 5, 10), ctrl.stats.snapshot()
    for n in (sync, ctrl):
        assert "callback_error" not in n.stats.snapshot()["dropped"]
    assert sync.stats.snapshot()["received"]["lidar/points"] == 5
