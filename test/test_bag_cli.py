"""`latentvla record` / `latentvla replay` as a user runs them, on real bags: record until
Ctrl-C, replay waits for the graph's subscribers, one clock only, progress, statistics on
Ctrl-C, bags without metadata.yaml. Bags are written by rosbags / the mcap library and read
back with `mcap` as an independent reader."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import rclpy
from conftest import wait_for
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from rosgraph_msgs.msg import Clock
from std_msgs.msg import String

SEC = 1_000_000_000
T0 = 1_700_000_000 * SEC


class Cli:
    """A `latentvla` subprocess with stdout and stderr read in the background."""

    def __init__(self, *args: str):
        self.proc = subprocess.Popen([sys.executable, "-m", "latentvla_ros.cli", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=dict(os.environ))
        self.out: list[str] = []
        self.err: list[str] = []
        for stream, sink in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=lambda s=stream, k=sink: k.extend(iter(s.readline, "")), daemon=True).start()

    @property
    def text(self) -> str:
        return "".join(self.out) + "".join(self.err)

    def stats(self) -> dict:
        text = "".join(self.out)
        return json.loads(text[text.index("{"):text.rindex("}") + 1])

    def finish(self, sig=None, timeout_s: float = 30.0) -> int:
        if sig is not None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"did not end within {timeout_s} s after {sig!r}:\n{self.text[-3000:]}")
        time.sleep(0.2)  # the reader threads drain the pipes
        return code


def _string_bag(path: Path, n: int = 20, period_ns: int = 50_000_000, clock: bool = False) -> list[bytes]:
    """A rosbag2 written by rosbags: /chatter (+ /clock in simulation time when ``clock``)."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_KILTED)
    clocks = []
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        chatter = w.add_connection("/chatter", "std_msgs/msg/String", typestore=ts)
        clk = w.add_connection("/clock", "rosgraph_msgs/msg/Clock", typestore=ts) if clock else None
        for k in range(n):
            t = T0 + k * period_ns
            if clk is not None:  # the simulator's clock: 100 s after it started, not the recorder's wall time
                sim = 100 * SEC + k * period_ns
                data = bytes(ts.serialize_cdr(ts.types["rosgraph_msgs/msg/Clock"](
                    clock=ts.types["builtin_interfaces/msg/Time"](sec=sim // SEC, nanosec=sim % SEC)),
                    "rosgraph_msgs/msg/Clock"))
                w.write(clk, t, data)
                clocks.append(data)
            w.write(chatter, t + 1000, bytes(ts.serialize_cdr(ts.types["std_msgs/msg/String"](data=f"m{k}"),
                                                              "std_msgs/msg/String")))
    return clocks


def _mcap_messages(bag: Path) -> list[tuple[str, int]]:
    """(topic, log time) of every message, read with the mcap library (not rosbags, not ours)."""
    from mcap.reader import make_reader

    out = []
    for file in sorted(bag.glob("*.mcap")):
        with file.open("rb") as f:
            for _schema, channel, message in make_reader(f).iter_messages(log_time_order=True):
                out.append((channel.topic, message.log_time))
    return out


# ------------------------------------------------------------------------------------------------ record
def test_record_without_duration_records_until_ctrl_c(ros_context, spin, tmp_path):
    """The README's `latentvla record TOPIC -o out`: no --duration means until Ctrl-C."""
    node = rclpy.create_node("record_source", context=ros_context)
    pub = node.create_publisher(String, "/rec_cli/chatter", 10)
    spin(node)
    out = tmp_path / "out"
    cli = Cli("record", "/rec_cli/chatter", "-o", str(out))
    assert wait_for(lambda: pub.get_subscription_count() > 0 or cli.proc.poll() is not None, 30), cli.text
    assert cli.proc.poll() is None, f"record ended by itself:\n{cli.text}"
    for k in range(30):
        pub.publish(String(data=f"r{k}"))
        time.sleep(0.05)
    time.sleep(0.5)
    assert cli.finish(signal.SIGINT) == 0, cli.text
    stats = cli.stats()
    assert stats["recorded"] == {"/rec_cli/chatter": 30} and stats["stopped_by"] == "SIGINT"
    got = _mcap_messages(out)
    assert [t for t, _ in got] == ["/rec_cli/chatter"] * 30
    assert (out / "metadata.yaml").exists()


def test_record_of_a_silent_topic_says_so_and_fails(tmp_path):
    cli = Cli("record", "/rec_cli/nobody", "-o", str(tmp_path / "empty"), "--duration", "1.5")
    assert cli.finish(timeout_s=60) == 1
    assert "no message was recorded" in cli.text and cli.stats()["stopped_by"] == "duration"


# ------------------------------------------------------------------------------------------------ replay
def test_looping_replay_stops_on_ctrl_c_with_statistics_and_progress(tmp_path):
    _string_bag(tmp_path / "bag", n=10, period_ns=50_000_000)  # 0.45 s per pass
    cli = Cli("replay", str(tmp_path / "bag"), "--loop", "--wait-for-subscribers", "0")
    assert wait_for(lambda: re.search(r"\[replay\] pass ([2-9]|\d\d+): ", cli.text), 40), cli.text[-3000:]
    assert cli.finish(signal.SIGINT) == 0, cli.text[-3000:]
    assert "Traceback" not in cli.text
    stats = cli.stats()
    assert stats["stopped_by"] == "SIGINT" and stats["passes_completed"] >= 2
    assert stats["published"]["/chatter"] >= 20 and stats["publish_errors"] == 0


def test_replay_waits_for_the_graphs_subscribers_and_counts_what_nobody_heard(ros_context, spin, tmp_path):
    """Sensor topics of the default profile: the player waits until they have subscribers.
    A subscriber that comes 1.5 s late still gets every message; without one, the timeout
    ends the wait and every message is counted as unheard."""
    from ros_helpers import lidar_cloud
    from sensor_msgs.msg import PointCloud2

    from latentvla_ros.bags.record import BagWriter
    from latentvla_ros.ros.bag_player import BagPlayer, graph_input_topics
    from latentvla_ros.ros.topology import CARLA_SENSOR_TOPICS, SENSOR_TOPICS

    lidar = SENSOR_TOPICS["lidar"]
    assert graph_input_topics(["/chatter", lidar, "/carla/ego_vehicle/rgb_left/image"]) == [
        lidar, "/carla/ego_vehicle/rgb_left/image"]
    assert CARLA_SENSOR_TOPICS["camera_image"].format(name="left") == "/carla/ego_vehicle/rgb_left/image"
    n = 10
    with BagWriter(tmp_path / "bag", "mcap") as w:
        w.add_topic(lidar, "sensor_msgs/msg/PointCloud2")
        w.add_topic("/chatter", "std_msgs/msg/String")  # not a graph input: not waited for
        from rclpy.serialization import serialize_message

        for k in range(n):
            w.write(lidar, T0 + k * 50_000_000, serialize_message(lidar_cloud(T0 + k * 50_000_000, n=10)))
    player_node = rclpy.create_node("wait_player", context=ros_context)
    sub_node = rclpy.create_node("late_graph", context=ros_context)
    spin(player_node, sub_node)
    got = []
    player = BagPlayer(player_node, tmp_path / "bag", publish_clock=False, wait_for_subscribers_s=20.0)
    assert player.wait_topics == [lidar]
    player.start()
    time.sleep(1.5)  # the graph comes up late
    sub_node.create_subscription(PointCloud2, lidar, got.append, QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
    assert player.wait(30)
    assert wait_for(lambda: len(got) == n, 5), len(got)
    stats = player.stats()
    player.destroy()
    assert stats["subscriber_wait"]["waited_s"] >= 1.0 and stats["subscriber_wait"]["unmatched"] == []
    assert stats["published_without_subscribers"] == {}
    # nobody at all: the wait times out, is reported, and every message is counted as unheard
    lonely = BagPlayer(player_node, tmp_path / "bag", publish_clock=False, wait_for_subscribers_s=0.5,
                       remap={lidar: "/nobody/lidar"}, wait_topics=["/nobody/lidar"])
    lonely.start()
    assert lonely.wait(30)
    stats = lonely.stats()
    lonely.destroy()
    assert stats["subscriber_wait"]["timed_out"] and stats["subscriber_wait"]["unmatched"] == ["/nobody/lidar"]
    assert stats["published_without_subscribers"] == {"/nobody/lidar": n}


def test_a_bags_own_clock_is_the_only_clock(ros_context, spin, tmp_path):
    """A simulator bag holds /clock in simulation time while its log times are the recorder's
    wall time: the player replays the bag's clock and publishes none of its own."""
    from latentvla_ros.ros.bag_player import BagPlayer

    bag_clocks = _string_bag(tmp_path / "bag", n=20, clock=True)
    node = rclpy.create_node("clock_listener", context=ros_context)
    got: list[bytes] = []
    node.create_subscription(Clock, "/clock", got.append, QoSProfile(depth=200), raw=True)
    spin(node)
    player = BagPlayer(node, tmp_path / "bag", rate=2.0, publish_clock=True, wait_for_subscribers_s=10.0,
                       wait_topics=["/clock"])
    player.start()
    assert player.wait(30)
    assert wait_for(lambda: len(got) >= len(bag_clocks), 5)
    time.sleep(0.3)
    stats = player.stats()
    player.destroy()
    assert stats["clock_source"] == "bag" and stats["clock_published"] == 0
    assert got == bag_clocks  # exactly the bag's clock messages, in order: nothing in between
    ns = [deserialize_message(d, Clock).clock.sec * SEC + deserialize_message(d, Clock).clock.nanosec for d in got]
    assert ns == sorted(ns) and ns[0] == 100 * SEC
    # --no-clock: no clock at all, not even the bag's
    quiet = BagPlayer(node, tmp_path / "bag", rate=4.0, publish_clock=False)
    assert "/clock" not in {p.topic_name for p in quiet._publishers.values()}
    quiet.destroy()


def test_replay_reads_a_bag_without_metadata_as_a_normal_case(tmp_path):
    from latentvla_ros.bags.replay import BagReader

    for storage in ("mcap", "sqlite3"):
        from latentvla_ros.bags.record import BagWriter

        bag = tmp_path / storage
        with BagWriter(bag, storage) as w:
            w.add_topic("/chatter", "std_msgs/msg/String")
            for k in range(5):
                w.write("/chatter", T0 + k, bytes.fromhex("000100000300000061620000"))
        (bag / "metadata.yaml").unlink()
        with BagReader(bag) as r:
            assert len(list(r.messages())) == 5
            assert r.report.ok and not r.report.recovered, (storage, r.report.errors)
            assert r.message_count == 5 and r.start_time_ns == T0


# ------------------------------------------------------------------------- a CARLA bag, end to end
CARLA_TICKS = 30
SIM_START_NS = 100 * SEC  # CARLA's simulation time: seconds since the world started


def _carla_bridge_bag(root: Path) -> Path:
    """What `ros2 bag record` of the CARLA-ROS bridge (synchronous mode, 10 Hz) looks like,
    written with the mcap library (another writer than ours and rosbags), as a directory
    without metadata.yaml: bgra8 camera, LiDAR, odometry in the bridge's frames, stamped in
    simulation time; /clock in simulation time; log times are the recorder's wall time."""
    from mcap.writer import Writer as McapWriter
    from rosbags.typesys import Stores, get_typestore

    from latentvla_ros.bags.replay import BagReader
    from latentvla_ros.data.bag_io import write_sensor_bag
    from latentvla_ros.data.highway import generate_log
    from latentvla_ros.ros.topology import CARLA_SENSOR_TOPICS

    generate_log(root / "log", scenario="highway", seed=5, num_frames=CARLA_TICKS)
    topics = {"camera": CARLA_SENSOR_TOPICS["camera_image"], "camera_info": CARLA_SENSOR_TOPICS["camera_info"],
              "lidar": CARLA_SENSOR_TOPICS["lidar"], "odometry": CARLA_SENSOR_TOPICS["odometry"],
              "acceleration": None, "expert_path": None, "tf": None}
    write_sensor_bag(root / "log", root / "raw", storage="mcap", topics=topics, epoch_s=SIM_START_NS // SEC,
                     camera_offset_ms=0.0, odom_offset_ms=0.0, jitter_ms=0.0)
    frames = {"image": "ego_vehicle/rgb_front", "camera_info": "ego_vehicle/rgb_front", "lidar": "ego_vehicle/lidar",
              "odometry": "map"}
    ts = get_typestore(Stores.ROS2_KILTED)
    bag = root / "carla_bag"
    bag.mkdir()
    with BagReader(root / "raw") as reader, (bag / "carla_bag_0.mcap").open("wb") as f:
        writer = McapWriter(f)
        writer.start(profile="ros2", library="another recorder")
        channels = {}

        def channel(topic: str, msgtype: str) -> int:
            if topic not in channels:
                schema = writer.register_schema(msgtype, "ros2msg", ts.generate_msgdef(msgtype, ros_version=2)[0].encode())
                channels[topic] = writer.register_channel(topic, "cdr", schema)
            return channels[topic]

        last_tick = None
        for m in reader.messages():
            msg = reader.deserialize(m)
            stamp = msg.header.stamp.sec * SEC + msg.header.stamp.nanosec
            log_ns = T0 + (stamp - SIM_START_NS) + 2_000_000  # the recorder's wall time
            if stamp != last_tick:  # the bridge publishes /clock once per tick, before its sensors
                last_tick = stamp
                clock = ts.types["rosgraph_msgs/msg/Clock"](clock=msg.header.stamp)
                writer.add_message(channel("/clock", "rosgraph_msgs/msg/Clock"), log_time=log_ns - 1_000_000,
                                   publish_time=log_ns - 1_000_000,
                                   data=bytes(ts.serialize_cdr(clock, "rosgraph_msgs/msg/Clock")))
            msg.header.frame_id = frames[m.topic.rsplit("/", 1)[-1]]
            if m.msgtype == "nav_msgs/msg/Odometry":
                msg.child_frame_id = "ego_vehicle"
            if m.msgtype == "sensor_msgs/msg/Image":  # the bridge's cameras send bgra8
                rgb = np.asarray(msg.data, np.uint8).reshape(msg.height, msg.width, 3)
                bgra = np.concatenate([rgb[..., ::-1], np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=-1)
                msg.encoding, msg.step, msg.data = "bgra8", msg.width * 4, bgra.reshape(-1)
            writer.add_message(channel(m.topic, m.msgtype), log_time=log_ns, publish_time=log_ns,
                               data=bytes(ts.serialize_cdr(msg, m.msgtype)))
        writer.finish()
    assert not (bag / "metadata.yaml").exists()
    return bag


def _missing_frames_report(got: set[int], ticks: set[int], nodes) -> str:
    """Which ticks never became a synchronized frame, and what sensor_sync counted meanwhile."""
    sync = next(n for n in nodes if n.get_name() == "sensor_sync")
    snap = sync.stats.snapshot()
    missing = sorted((t - SIM_START_NS) // 100_000_000 for t in ticks - got)
    return (f"{len(got & ticks)} of {CARLA_TICKS} frames; missing ticks {missing}; received {snap['received']}, "
            f"dropped {snap['dropped']}, sync {sync._sync.stats()}, anomalies {sync.anomalies}")


def test_latentvla_replay_delivers_every_frame_of_a_carla_bag_to_the_graph(ros_context, spin, tmp_path):
    """The issue's done-when: `latentvla replay` (defaults: waits for the graph, the bag's
    /clock as the only clock) of a CARLA-bridge-shaped bag written by another library: every
    camera frame becomes a synchronized frame and gets its trajectory."""
    from latentvla_ros.msg import PlannedTrajectory, SensorFrame
    from latentvla_ros.ros.conversions import stamp_to_ns
    from latentvla_ros.ros.graph import GraphOptions, create_composed_nodes
    from latentvla_ros.ros.launch_description import profile_graph
    from latentvla_ros.ros.topology import SENSOR_FRAME, TRAJECTORY

    bag = _carla_bridge_bag(tmp_path)
    specs, param_files, use_sim_time = profile_graph("carla")
    options = GraphOptions(nodes=specs, param_files=param_files, use_sim_time=use_sim_time, log_level="error")
    nodes = create_composed_nodes(options, context=ros_context)
    watcher = rclpy.create_node("carla_watcher", context=ros_context)
    qos = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)
    frames, trajectories, clocks = [], [], []
    watcher.create_subscription(SensorFrame, "/" + SENSOR_FRAME, frames.append, qos)
    watcher.create_subscription(PlannedTrajectory, "/" + TRAJECTORY, trajectories.append, qos)
    watcher.create_subscription(Clock, "/clock", lambda m: clocks.append(stamp_to_ns(m.clock)), QoSProfile(depth=200))
    spin(*nodes, watcher)
    cli = Cli("replay", str(bag))  # started right after the graph: discovery is still under way
    assert cli.finish(timeout_s=120) == 0, cli.text[-3000:]
    stats = cli.stats()
    camera = "/carla/ego_vehicle/rgb_front/image"
    assert stats["published"][camera] == CARLA_TICKS and stats["read_errors"] == []
    assert stats["clock_source"] == "bag" and stats["clock_published"] == 0
    assert camera in stats["subscriber_wait"]["topics"] and stats["subscriber_wait"]["unmatched"] == []
    assert stats["published_without_subscribers"] == {}
    frame_stamps = lambda: {stamp_to_ns(f.header.stamp) for f in frames}
    ticks = {SIM_START_NS + k * 100_000_000 for k in range(CARLA_TICKS)}
    assert wait_for(lambda: frame_stamps() == ticks, 30), _missing_frames_report(frame_stamps(), ticks, nodes)
    done = lambda: {stamp_to_ns(t.header.stamp) for t in trajectories} >= ticks
    assert wait_for(done, 60), f"{len(ticks & {stamp_to_ns(t.header.stamp) for t in trajectories})} trajectories"
    assert clocks and clocks == sorted(clocks) and min(clocks) >= SIM_START_NS, "/clock went backwards"
    print(f"\nCARLA bag via `latentvla replay`: {len(frame_stamps())}/{CARLA_TICKS} frames, waited "
          f"{stats['subscriber_wait']['waited_s']} s for subscribers")
