"""Diagnostics, debug topics, QoS and visualization outputs of the node graph.

- /diagnostics (diagnostic_msgs/DiagnosticArray) from every node: input rates and ages,
  processing time, drops, model status; levels that tell the operator what is wrong
  (stale inputs, drops, untrained or failing model, fallback, incompatible QoS);
- ~/debug/processing_time_ms, ~/debug/pipeline_latency_ms (now - header stamp), and the
  transient-local ~/debug/node_info;
- the QoS each endpoint really uses (sensor inputs best effort depth 1, outputs reliable,
  static information transient local);
- config/rviz/latentvla.rviz shows topics the graph publishes; recorded outputs are MCAP
  files Foxglove decodes; the optional live Foxglove server advertises the graph's topics.
"""
from __future__ import annotations

import base64
import json
import os
import socket
import struct
import threading
import time
from pathlib import Path

import pytest
import rclpy
import yaml
from conftest import wait_for
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Odometry
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from ros_helpers import camera_image, lidar_cloud, odometry
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Float64, String

from latentvla_ros.ros.conversions import make_header
from latentvla_ros.ros.executors import GraphExecutor
from latentvla_ros.ros.graph import GraphOptions, create_composed_nodes, wait_for_graph_ready
from latentvla_ros.ros.topology import (
    BEV_IMAGE,
    CARLA_SENSOR_TOPICS,
    MARKERS,
    PATH,
    SENSOR_TOPICS,
    TRAJECTORY,
    carla_controller_spec,
    graph_nodes,
)

ROOT = Path(__file__).resolve().parents[1]
RELIABLE = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
NODES = ("sensor_sync", "bev_features", "latent_reasoner", "trajectory_planner", "twist_controller", "teacher_labeler")


def _level(v) -> int:
    return v[0] if isinstance(v, (bytes, bytearray)) else int(v)


class SensorFeed:
    """Publishes camera + camera_info + LiDAR + odometry sets stamped with the wall clock."""

    def __init__(self, node, topics=SENSOR_TOPICS, qos=RELIABLE):
        self.pubs = {"image": node.create_publisher(Image, topics["camera_image"].format(name="front"), qos),
                     "info": node.create_publisher(CameraInfo, topics["camera_info"].format(name="front"), qos),
                     "lidar": node.create_publisher(PointCloud2, topics["lidar"], qos),
                     "odom": node.create_publisher(Odometry, topics["odometry"], qos)}
        self.sent = 0
        self.next_stamp = None

    def publish(self, bad_image: bool = False):
        # regular 10 Hz stamps (like a real sensor), never ahead of the wall clock
        now = time.time_ns() - 30_000_000
        if self.next_stamp is None or now - self.next_stamp > 1_000_000_000:
            self.next_stamp = now
        stamp, self.next_stamp = self.next_stamp, self.next_stamp + 100_000_000
        img = camera_image(stamp, 64, 64, seed=self.sent)
        if bad_image:
            img.step = 5
        self.pubs["image"].publish(img)
        self.pubs["info"].publish(CameraInfo(header=make_header(stamp, "camera_front"), k=[100.0, 0, 32, 0, 100.0, 32, 0, 0, 1]))
        self.pubs["lidar"].publish(lidar_cloud(stamp + 2_000_000, n=500, seed=self.sent))
        self.pubs["odom"].publish(odometry(stamp + 1_000_000, speed=8.0))
        self.sent += 1

    def run(self, seconds: float, rate_hz: float = 10.0):
        start, k = time.monotonic(), 0
        while time.monotonic() < start + seconds:
            self.publish()
            k += 1
            time.sleep(max(0.0, start + k / rate_hz - time.monotonic()))


class DiagMonitor:
    def __init__(self, node):
        self.lock = threading.Lock()
        self.latest: dict[str, tuple[float, object]] = {}
        self.history: list[tuple[float, str, object]] = []
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on, RELIABLE)

    def _on(self, msg):
        with self.lock:
            for st in msg.status:
                name = st.name.split("/")[-1]
                self.latest[name] = (time.monotonic(), st)
                self.history.append((time.monotonic(), name, st))

    def values(self, name):
        with self.lock:
            _, st = self.latest[name]
        return {kv.key: kv.value for kv in st.values}, _level(st.level), st.message

    def fresh(self, name, since):
        with self.lock:
            return name in self.latest and self.latest[name][0] > since


@pytest.fixture(scope="module")
def live_graph():
    """The full graph + twist_controller + teacher_labeler, composed, fed at 10 Hz."""
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context, domain_id=int(os.environ["ROS_DOMAIN_ID"]))
    specs = graph_nodes(with_teacher=True) + [carla_controller_spec(SENSOR_TOPICS)]
    fast = {"diagnostics_period_s": 0.3}
    overrides = {n: dict(fast) for n in NODES}
    for n in ("bev_features", "latent_reasoner", "trajectory_planner"):
        overrides[n]["checkpoint"] = ""
        overrides[n]["backend"] = "torch"  # untrained weights: no ONNX export at every start
    overrides["trajectory_planner"]["plan_timeout_s"] = 2.0
    overrides["trajectory_planner"]["allow_untrained"] = True
    options = GraphOptions(nodes=specs, overrides=overrides, log_level="error")
    nodes = {n.get_name(): n for n in create_composed_nodes(options, context=context)}
    io = rclpy.create_node("diag_io", context=context)
    monitor = DiagMonitor(io)
    feed = SensorFeed(io)
    ex = GraphExecutor(context).add(*nodes.values(), io).start()
    assert wait_for_graph_ready(io, [s for s in specs if s.name != "twist_controller"], timeout_s=30)
    yield nodes, io, monitor, feed, context
    ex.stop()
    for n in (*nodes.values(), io):
        n.destroy_node()
    rclpy.shutdown(context=context)


def test_every_node_reports_rates_processing_drops_and_model_status(live_graph):
    nodes, io, monitor, feed, _ = live_graph
    got = {"processing": [], "latency": []}
    io.create_subscription(Float64, "/trajectory_planner/debug/processing_time_ms", got["processing"].append, RELIABLE)
    io.create_subscription(Float64, "/sensor_sync/debug/pipeline_latency_ms", got["latency"].append, RELIABLE)
    time.sleep(0.5)
    t0 = time.monotonic()
    # long enough that the slowest node (the teacher, whose first inference in a process is slow)
    # reports a steady input rate
    feed.run(4.0)
    assert wait_for(lambda: all(monitor.fresh(n, t0 + 3.5) for n in NODES), 10), sorted(monitor.latest)
    inputs = {"sensor_sync": ["camera/front/image", "lidar/points", "odometry"], "bev_features": ["frame"],
              "latent_reasoner": ["frame"], "trajectory_planner": ["bev", "plan"], "twist_controller": ["trajectory"],
              "teacher_labeler": ["frame"]}
    for name in NODES:
        values, level, message = monitor.values(name)
        for key in ("model", "uptime_s", "dropped_total", "stale_inputs", "processing_count", "processing_median_ms",
                    "processing_p99_ms"):
            assert key in values, (name, key, sorted(values))
        for inp in inputs[name]:
            assert int(values[f"received/{inp}"]) > 0, (name, inp, values)
            assert float(values[f"rate_hz/{inp}"]) > 0.5, (name, inp, values[f"rate_hz/{inp}"])
            assert float(values[f"age_s/{inp}"]) < 2.0
        assert any(k.startswith("published/") for k in values), name
        if name in ("bev_features", "latent_reasoner", "trajectory_planner"):
            assert "untrained" in values["model"] and level >= 1 and "untrained" in message  # loud
    sync_values, _, _ = monitor.values("sensor_sync")
    assert int(sync_values["published/frame"]) > 0 and "sync/emitted" in sync_values
    planner_values, _, _ = monitor.values("trajectory_planner")
    assert "fallback_active" in planner_values and "publishers/plan" in planner_values
    assert "mode" in monitor.values("twist_controller")[0]
    # debug topics: processing time per planning step, latency = now - sensor stamp (~30 ms + processing)
    assert got["processing"] and all(0 <= m.data < 5000 for m in got["processing"])
    assert got["latency"] and all(25.0 <= m.data < 5000 for m in got["latency"])


def test_static_node_info_reaches_late_joiners(live_graph):
    nodes, io, *_ = live_graph
    late = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    infos = {}
    for name in ("bev_features", "trajectory_planner", "sensor_sync"):
        io.create_subscription(String, f"/{name}/debug/node_info", lambda m, n=name: infos.__setitem__(n, m), late)
    assert wait_for(lambda: len(infos) == 3, 10)
    info = json.loads(infos["trajectory_planner"].data)
    assert "untrained" in info["model"] and info["parameters"]["plan_timeout_s"] == 2.0
    assert info["inputs"]["bev"] == "~/input/bev"
    assert json.loads(infos["sensor_sync"].data)["parameters"]["qos.input_depth"] == 1


def test_qos_of_every_endpoint_matches_the_documented_choices(live_graph):
    nodes, io, *_ = live_graph

    def endpoints(topic, kind):
        infos = io.get_subscriptions_info_by_topic(topic) if kind == "sub" else io.get_publishers_info_by_topic(topic)
        return {i.node_name: i.qos_profile for i in infos}

    def depth(node, topic):  # (the graph does not carry history depths: ask the subscription)
        return [s.qos_profile.depth for s in nodes[node].subscriptions if s.topic_name == topic][0]

    # sensor inputs: best effort, depth 1
    for topic in (SENSOR_TOPICS["camera_image"].format(name="front"), SENSOR_TOPICS["lidar"], SENSOR_TOPICS["odometry"]):
        q = endpoints(topic, "sub")["sensor_sync"]
        assert q.reliability == ReliabilityPolicy.BEST_EFFORT and depth("sensor_sync", topic) == 1, (topic, q)
    for node in ("trajectory_planner", "twist_controller"):  # odometry is a sensor input there too
        q = endpoints(SENSOR_TOPICS["odometry"], "sub")[node]
        assert q.reliability == ReliabilityPolicy.BEST_EFFORT and depth(node, SENSOR_TOPICS["odometry"]) == 1
    # pipeline messages and outputs: reliable
    for topic, node in (("/latentvla/sensor_frame", "sensor_sync"), ("/latentvla/bev_features", "bev_features"),
                        ("/latentvla/latent_plan", "latent_reasoner"), ("/" + TRAJECTORY, "trajectory_planner"),
                        ("/" + PATH, "trajectory_planner"), ("/" + MARKERS, "trajectory_planner"),
                        ("/carla/ego_vehicle/twist", "twist_controller"), ("/diagnostics", "sensor_sync")):
        q = endpoints(topic, "pub")[node]
        assert q.reliability == ReliabilityPolicy.RELIABLE and q.durability == DurabilityPolicy.VOLATILE, topic
    for topic, node in (("/latentvla/sensor_frame", "bev_features"), ("/latentvla/bev_features", "trajectory_planner")):
        assert endpoints(topic, "sub")[node].reliability == ReliabilityPolicy.RELIABLE
    # static information: transient local
    q = endpoints("/bev_features/debug/node_info", "pub")["bev_features"]
    assert q.durability == DurabilityPolicy.TRANSIENT_LOCAL and q.reliability == ReliabilityPolicy.RELIABLE


def test_watchdog_reports_drops_and_stale_inputs_then_recovers(ros_context, spin):
    from latentvla_ros.ros.nodes.sensor_sync import SensorSyncNode

    node = SensorSyncNode(context=ros_context, cli_args=["--ros-args", "-r", "__ns:=/wd"], parameter_overrides=[
        Parameter("diagnostics_period_s", value=0.2), Parameter("input_timeout_s", value=0.5)])
    io = rclpy.create_node("wd_io", context=ros_context)
    topics = {"camera_image": "/wd/sensor_sync/input/camera/{name}/image",
              "camera_info": "/wd/sensor_sync/input/camera/{name}/camera_info",
              "lidar": "/wd/sensor_sync/input/lidar/points", "odometry": "/wd/sensor_sync/input/odometry"}
    feed = SensorFeed(io, topics)
    monitor = DiagMonitor(io)
    spin(node, io)
    assert wait_for(lambda: all(p.get_subscription_count() for p in feed.pubs.values()), 10)
    # nothing yet: every sensor input is reported missing
    assert wait_for(lambda: monitor.fresh("sensor_sync", 0) and "since start" in monitor.values("sensor_sync")[2], 5)
    values, level, message = monitor.values("sensor_sync")
    assert level == 1 and set(values["stale_inputs"].split(",")) == {"camera/front/image", "lidar/points", "odometry"}
    # healthy stream: OK
    feed.run(1.2)
    t = time.monotonic()
    assert wait_for(lambda: monitor.fresh("sensor_sync", t) and monitor.values("sensor_sync")[1] == 0, 3), \
        monitor.values("sensor_sync")
    # a malformed image: counted and reported in the next report
    t = time.monotonic()
    feed.publish(bad_image=True)
    time.sleep(0.1)  # (depth 1: a set published right behind it would replace it in the queue)
    feed.run(0.3)
    assert wait_for(lambda: any(ts > t and "bad_message" in st.message for ts, n, st in monitor.history if n == "sensor_sync"), 3), \
        (node.stats.snapshot(), [st.message for ts, n, st in monitor.history if ts > t])
    # the camera dies: stale within input_timeout + a report period
    t_dead = time.monotonic()
    end = t_dead + 1.2
    while time.monotonic() < end:
        feed.pubs["lidar"].publish(lidar_cloud(time.time_ns()))
        feed.pubs["odom"].publish(odometry(time.time_ns()))
        time.sleep(0.1)
    stale = [(ts, st) for ts, n, st in monitor.history if n == "sensor_sync" and ts > t_dead and "no camera/front/image" in st.message]
    assert stale and stale[0][0] - t_dead <= 0.5 + 0.2 + 0.5
    # back: OK again
    feed.run(1.0)
    t = time.monotonic()
    assert wait_for(lambda: monitor.fresh("sensor_sync", t) and monitor.values("sensor_sync")[1] == 0, 3), \
        monitor.values("sensor_sync")
    assert int(monitor.values("sensor_sync")[0]["dropped/bad_message"]) == 1


def test_incompatible_qos_is_an_error_in_diagnostics(ros_context, spin):
    from latentvla_ros.ros.nodes.sensor_sync import SensorSyncNode

    node = SensorSyncNode(context=ros_context, cli_args=["--ros-args", "-r", "__ns:=/qos"], parameter_overrides=[
        Parameter("qos.input_reliability", value="reliable"), Parameter("diagnostics_period_s", value=0.2)])
    io = rclpy.create_node("qos_io", context=ros_context)
    io.create_publisher(PointCloud2, "/qos/sensor_sync/input/lidar/points",
                        QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
    spin(node, io)
    assert wait_for(lambda: "incompatible QoS on lidar/points" in node.diagnostic_status().message, 10)
    assert _level(node.diagnostic_status().level) == 2


# ----------------------------------------------------------------------------- visualization
def test_rviz_config_shows_what_the_graph_publishes():
    text = (ROOT / "config" / "rviz" / "latentvla.rviz").read_text()
    cfg = yaml.safe_load(text)
    manager = cfg["Visualization Manager"]
    displays = {d["Class"].split("/")[-1]: d for d in manager["Displays"]}
    assert manager["Global Options"]["Fixed Frame"] == "base_link"  # the ego frame of trajectory, Path, markers
    assert manager["Views"]["Current"]["Target Frame"] == "base_link"
    topics = {d["Name"]: d["Topic"] for d in manager["Displays"] if "Topic" in d}
    assert topics["Planned path"]["Value"] == "/" + PATH
    assert topics["Trajectory, latent tokens, fallback state"]["Value"] == "/" + MARKERS
    assert topics["BEV image (LiDAR + BEV tokens)"]["Value"] == "/" + BEV_IMAGE
    assert topics["Camera"]["Value"] == SENSOR_TOPICS["camera_image"].format(name="front")
    assert topics["LiDAR point cloud"]["Value"] == SENSOR_TOPICS["lidar"]
    assert topics["Camera"]["Reliability Policy"] == "Best Effort" and topics["Planned path"]["Reliability Policy"] == "Reliable"
    assert topics["Mission route"]["Value"] == SENSOR_TOPICS["route"]  # latched, as the planner subscribes it
    assert topics["Mission route"]["Durability Policy"] == "Transient Local"
    assert {"TF", "Image", "PointCloud2", "Path", "MarkerArray"} <= set(displays)
    namespaces = displays["MarkerArray"]["Namespaces"]
    assert {"latentvla/latent_tokens", "latentvla/fallback_state"} <= set(namespaces)
    carla = yaml.safe_load((ROOT / "config" / "rviz" / "latentvla_carla.rviz").read_text())
    assert carla["Visualization Manager"]["Global Options"]["Fixed Frame"] == "ego_vehicle"
    carla_topics = {d["Name"]: d["Topic"]["Value"] for d in carla["Visualization Manager"]["Displays"] if "Topic" in d}
    assert carla_topics["Mission route"] == CARLA_SENSOR_TOPICS["route"]


def test_recorded_outputs_decode_like_foxglove_and_markers_show_tokens_and_state(live_graph, tmp_path):
    """Record the outputs to MCAP with the project's recorder, then decode every message the
    way Foxglove does (ros2msg schema from the file + CDR), including our own types."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    from latentvla_ros.ros.bag_recorder import BagRecorder

    nodes, io, monitor, feed, context = live_graph
    rec_node = rclpy.create_node("diag_recorder", context=context)
    ex = GraphExecutor(context).add(rec_node).start()
    topics = ["/" + TRAJECTORY, "/" + PATH, "/" + MARKERS, "/" + BEV_IMAGE, "/diagnostics"]
    recorder = BagRecorder(rec_node, tmp_path / "outputs", topics, storage="mcap", discovery_timeout_s=5.0)
    feed.run(2.0)
    time.sleep(0.5)
    recorder.close()
    ex.stop()
    rec_node.destroy_node()
    mcap_file = next((tmp_path / "outputs").glob("*.mcap"))
    seen: dict[str, int] = {}
    markers_ns: set[str] = set()
    with mcap_file.open("rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        assert reader.get_header().profile == "ros2"
        summary = reader.get_summary()
        for ch in summary.channels.values():
            schema = summary.schemas[ch.schema_id]
            assert ch.message_encoding == "cdr" and schema.encoding == "ros2msg" and schema.data
        for schema, channel, message, decoded in reader.iter_decoded_messages():
            seen[channel.topic] = seen.get(channel.topic, 0) + 1
            if channel.topic == "/" + MARKERS:
                markers_ns |= {m.ns for m in decoded.markers}
            if channel.topic == "/" + TRAJECTORY:
                assert len(decoded.points) == 8
    assert set(topics) <= set(seen), seen
    assert {"latentvla/poses", "latentvla/state", "latentvla/latent_tokens", "latentvla/fallback_state"} <= markers_ns


def _ws_handshake(port: int):
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                  "Sec-WebSocket-Protocol: foxglove.sdk.v1, foxglove.websocket.v1\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert b" 101 " in head.split(b"\r\n")[0], head
    return sock


def _ws_text_frames(sock, seconds: float):
    """Unmasked server frames -> decoded JSON text messages."""
    out, buf, end = [], b"", time.monotonic() + seconds
    sock.settimeout(0.2)
    while time.monotonic() < end:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        if not chunk:
            break
        buf += chunk
        while len(buf) >= 2:
            opcode, length, off = buf[0] & 0x0F, buf[1] & 0x7F, 2
            if length == 126:
                if len(buf) < 4:
                    break
                length, off = struct.unpack(">H", buf[2:4])[0], 4
            elif length == 127:
                if len(buf) < 10:
                    break
                length, off = struct.unpack(">Q", buf[2:10])[0], 10
            if len(buf) < off + length:
                break
            payload, buf = buf[off:off + length], buf[off + length:]
            if opcode == 1:
                out.append(json.loads(payload))
    return out


def test_live_foxglove_server_advertises_the_graph_topics(live_graph):
    from latentvla_ros.ros.foxglove_bridge import FoxgloveBridge

    nodes, io, monitor, feed, context = live_graph
    fox_node = rclpy.create_node("diag_foxglove", context=context)
    ex = GraphExecutor(context).add(fox_node).start()
    bridge = FoxgloveBridge(fox_node, ["/" + TRAJECTORY, "/" + MARKERS, "/diagnostics", "/" + BEV_IMAGE], port=0)
    try:
        assert bridge.port and wait_for(lambda: len(bridge.channels) == 4, 10), (bridge.channels, bridge.skipped)
        sock = _ws_handshake(bridge.port)
        threading.Thread(target=feed.run, args=(1.5,), daemon=True).start()
        msgs = _ws_text_frames(sock, 2.0)
        sock.close()
        ops = {m.get("op") for m in msgs}
        assert "serverInfo" in ops and "advertise" in ops, ops
        channels = {c["topic"]: c for m in msgs if m.get("op") == "advertise" for c in m["channels"]}
        traj = channels["/" + TRAJECTORY]
        assert traj["encoding"] == "cdr" and traj["schemaName"] == "latentvla_ros/msg/PlannedTrajectory"
        assert traj.get("schemaEncoding") == "ros2msg" and "MSG: latentvla_ros/TrajectoryPoint" in traj["schema"]
        assert wait_for(lambda: bridge.forwarded["/" + TRAJECTORY] > 0 and bridge.forwarded["/diagnostics"] > 0, 5)
    finally:
        bridge.close()
        ex.stop()
        fox_node.destroy_node()


def _node_with_own_diagnostics(ros_context, name: str):
    """A bare LatentVlaNode (sensor_sync's schema) and the diagnostics topic of its own it publishes on:
    another graph in this DDS domain listening on /diagnostics must not count as a subscriber."""
    from latentvla_ros.ros.node_base import LatentVlaNode

    class Bare(LatentVlaNode):
        schema_name = "sensor_sync"

    diagnostics = f"/{name}_diagnostics_{os.getpid()}_{time.monotonic_ns()}"
    node = Bare(f"{name}_node", context=ros_context, cli_args=["--ros-args", "-r", f"/diagnostics:={diagnostics}"])
    return node, diagnostics


def test_reports_and_debug_topics_are_built_only_for_subscribers(ros_context):
    """Nobody listens: no /diagnostics report is built and no debug sample published (both
    would run on the node's frame thread); a subscriber gets both again."""
    from types import SimpleNamespace

    node, diagnostics = _node_with_own_diagnostics(ros_context, "quiet")
    io = rclpy.create_node("quiet_io", context=ros_context)
    try:
        built, sent = [], []
        status = node.diagnostic_status
        node.diagnostic_status = lambda: built.append(1) or status()
        pub = node._processing_pub
        node._processing_pub = SimpleNamespace(get_subscription_count=pub.get_subscription_count, publish=sent.append)
        node._publish_diagnostics()
        with node.processing(time.time_ns()):
            pass
        assert built == [] and sent == [] and node.stats.snapshot()["processing"]["count"] == 1  # still counted
        io.create_subscription(DiagnosticArray, diagnostics, lambda m: None, 10)
        io.create_subscription(Float64, "/quiet_node/debug/processing_time_ms", lambda m: None, 10)
        assert wait_for(lambda: node._diag_pub.get_subscription_count() > 0 and pub.get_subscription_count() > 0)
        node._publish_diagnostics()
        with node.processing(time.time_ns()):
            pass
        assert built == [1] and len(sent) == 1
    finally:
        io.destroy_node()
        node.destroy_node()


def test_diagnostics_wait_for_the_end_of_a_frame_while_frames_flow(ros_context):
    """The report is not built on a frame thread at the tick (it delayed the frame it met): while
    frames flow it is built right after the next frame's output; a node without frames for a
    period, or a second tick without a frame, publishes at the tick as before."""
    node, diagnostics = _node_with_own_diagnostics(ros_context, "busy")
    io = rclpy.create_node("busy_io", context=ros_context)
    try:
        built, status = [], node.diagnostic_status
        node.diagnostic_status = lambda: built.append(time.monotonic()) or status()
        io.create_subscription(DiagnosticArray, diagnostics, lambda m: None, 10)
        assert wait_for(lambda: node._diag_pub.get_subscription_count() > 0)
        node._on_diagnostics_timer()  # no frame yet: at the tick
        assert len(built) == 1
        with node.processing(time.time_ns()):
            pass
        node._on_diagnostics_timer()  # frames flow: deferred ...
        assert len(built) == 1
        with node.processing(time.time_ns()):
            assert len(built) == 1  # ... not inside the frame ...
        assert len(built) == 2  # ... but right after its output
        with node.processing(time.time_ns()):
            pass
        node._on_diagnostics_timer()
        node._on_diagnostics_timer()  # a second tick without a frame: published
        assert len(built) == 3
    finally:
        io.destroy_node()
        node.destroy_node()


def test_in_a_composed_process_reports_wait_for_the_end_of_the_frame_path(ros_context):
    """A node's report built right after its own output still met the frame on its way through
    the other nodes of the process (their Python shares the GIL): in a composed process it waits
    until the node that ends the frame path (the planner) says the frame is out, and is then
    built on the node's own thread; a second tick without that publishes it as before."""
    from latentvla_ros.ros.intra_process import IntraProcessBus
    from latentvla_ros.ros.node_base import LatentVlaNode

    class Bare(LatentVlaNode):
        schema_name = "sensor_sync"

    from latentvla_ros.ros.executors import GraphExecutor
    from latentvla_ros.ros.node_base import REPORT_AFTER_FRAME_S

    bus = IntraProcessBus()
    diagnostics = f"/composed_diagnostics_{os.getpid()}_{time.monotonic_ns()}"
    node = Bare("composed_node", context=ros_context, intra_process=bus,
                parameter_overrides=[Parameter("diagnostics_period_s", value=60.0)],  # ticks by hand only
                cli_args=["--ros-args", "-r", f"/diagnostics:={diagnostics}"])
    io = rclpy.create_node("composed_io", context=ros_context)
    frame = lambda: node.processing(time.time_ns())
    spinner = GraphExecutor(context=ros_context).add(node).start()
    try:
        built, status = [], node.diagnostic_status
        node.diagnostic_status = lambda: built.append(time.monotonic()) or status()
        io.create_subscription(DiagnosticArray, diagnostics, lambda m: None, 10)
        assert wait_for(lambda: node._diag_pub.get_subscription_count() > 0)
        with frame():
            pass
        node._on_diagnostics_timer()  # frames flow: due
        with frame():
            pass
        assert len(built) == 1  # no node ends a frame path in this process: right after the output, as before

        bus.add_frame_end(object())  # stands in for the trajectory planner
        node._on_diagnostics_timer()
        with frame():
            pass
        assert len(built) == 1  # waits for the frame path's end ...
        with frame():  # (another frame of this node: still waiting, once)
            pass
        assert len(built) == 1 and len(bus._after_frame) == 1
        done = time.monotonic()
        bus.frame_done()  # ... the trajectory is out: built on the node's thread a moment later
        assert bus._after_frame == [] and wait_for(lambda: len(built) == 2)
        assert built[1] - done >= REPORT_AFTER_FRAME_S * 0.9
        bus.frame_done()
        time.sleep(3 * REPORT_AFTER_FRAME_S)
        assert len(built) == 2  # once

        node._on_diagnostics_timer()
        with frame():
            pass
        node._on_diagnostics_timer()  # the frame path did not end: the second tick publishes it
        assert len(built) == 3
        bus.frame_done()  # the waiting call finds nothing due any more
        time.sleep(3 * REPORT_AFTER_FRAME_S)
        assert len(built) == 3
    finally:
        spinner.stop()
        io.destroy_node()
        node.destroy_node()
