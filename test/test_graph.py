"""The whole node graph on a generated rosbag: one trajectory per synchronized frame,
with the sensor stamp carried from the camera image to the trajectory."""
from __future__ import annotations

import time
from collections import Counter

import numpy as np
import pytest
import rclpy
from conftest import wait_for
from rclpy.qos import QoSProfile, ReliabilityPolicy

from latentvla_ros.bags.replay import read_bag
from latentvla_ros.msg import BevFeatures, LatentActionPlan, PlannedTrajectory, SensorFrame
from latentvla_ros.ros.bag_player import BagPlayer
from latentvla_ros.ros.conversions import stamp_to_ns
from latentvla_ros.ros.graph import GraphOptions, create_composed_nodes, wait_for_graph_ready
from latentvla_ros.ros.topology import BEV_FEATURES, LATENT_PLAN, SENSOR_FRAME, TRAJECTORY, graph_nodes

NUM_FRAMES = 50


@pytest.fixture(scope="module")
def driving_bag(tmp_path_factory):
    from latentvla_ros.data.bag_io import write_sensor_bag
    from latentvla_ros.data.highway import generate_log

    root = tmp_path_factory.mktemp("graph")
    generate_log(root / "log", scenario="highway", seed=3, num_frames=NUM_FRAMES)
    write_sensor_bag(root / "log", root / "bag", storage="mcap")
    return root / "bag"


class Monitor:
    def __init__(self, context):
        self.node = rclpy.create_node("graph_monitor", context=context)
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.frames, self.bevs, self.plans, self.trajectories = [], [], [], []
        self.node.create_subscription(SensorFrame, "/" + SENSOR_FRAME, self.frames.append, qos)
        self.node.create_subscription(BevFeatures, "/" + BEV_FEATURES, self.bevs.append, qos)
        self.node.create_subscription(LatentActionPlan, "/" + LATENT_PLAN, self.plans.append, qos)
        self.node.create_subscription(PlannedTrajectory, "/" + TRAJECTORY, self.trajectories.append, qos)

    def frame_stamps(self):
        return [stamp_to_ns(f.header.stamp) for f in self.frames]

    def per_frame_trajectories(self):
        stamps = set(self.frame_stamps())
        return Counter(stamp_to_ns(t.header.stamp) for t in self.trajectories if stamp_to_ns(t.header.stamp) in stamps)


def _run_graph_on_bag(ros_context, spin, bag, mode_overrides=None):
    options = GraphOptions(nodes=graph_nodes(), overrides=mode_overrides or {})
    nodes = create_composed_nodes(options, context=ros_context)
    monitor = Monitor(ros_context)
    player_node = rclpy.create_node("bag_player", context=ros_context)
    spin(*nodes, monitor.node, player_node)
    assert wait_for_graph_ready(player_node, options.nodes, timeout_s=20)
    player = BagPlayer(player_node, str(bag), rate=0.5, publish_clock=False, wait_for_subscribers_s=3.0)
    player.start()
    assert player.wait(timeout=60), "bag replay did not finish"

    def frames_done() -> bool:
        return len(monitor.frames) > 0 and len(monitor.per_frame_trajectories()) == len(set(monitor.frame_stamps()))

    assert wait_for(frames_done, timeout_s=30), (len(monitor.frames), len(monitor.per_frame_trajectories()))
    time.sleep(0.5)  # nothing more may arrive for these frames
    return nodes, monitor, player


def test_graph_turns_a_bag_into_one_trajectory_per_frame(ros_context, spin, driving_bag):
    nodes, monitor, player = _run_graph_on_bag(ros_context, spin, driving_bag)
    camera_stamps = {stamp_to_ns(m_hdr) for m_hdr in _camera_header_stamps(driving_bag)}
    frame_stamps = monitor.frame_stamps()
    # synchronized frames carry the camera's sensor time and cover most of the log
    assert len(frame_stamps) == len(set(frame_stamps))
    assert set(frame_stamps) <= camera_stamps
    assert len(frame_stamps) >= 0.8 * NUM_FRAMES
    # exactly one trajectory per synchronized frame, stamps carried through every stage
    per_frame = monitor.per_frame_trajectories()
    assert set(per_frame) == set(frame_stamps) and set(per_frame.values()) == {1}
    assert {stamp_to_ns(b.header.stamp) for b in monitor.bevs} == set(frame_stamps)
    assert {stamp_to_ns(p.header.stamp) for p in monitor.plans} == set(frame_stamps)
    # any other trajectory is a watchdog fallback (before the bag started / after it ended)
    others = [t for t in monitor.trajectories if stamp_to_ns(t.header.stamp) not in per_frame]
    assert all(t.is_fallback and t.fallback_reason.startswith("no BEV") for t in others)
    frame_trajs = [t for t in monitor.trajectories if stamp_to_ns(t.header.stamp) in per_frame]
    assert not any(t.is_fallback for t in frame_trajs), Counter(t.fallback_reason for t in frame_trajs)
    for t in frame_trajs:
        assert len(t.points) == 8 and t.header.frame_id == "base_link" and t.model_id
        assert t.points[-1].time_from_start.sec == 4
        assert np.isfinite([p.pose.position.x for p in t.points]).all()
    # nodes counted their work; nothing was dropped silently
    snaps = {n.get_name(): n.stats.snapshot() for n in nodes}
    assert snaps["sensor_sync"]["published"]["frame"] == len(frame_stamps)
    assert snaps["trajectory_planner"]["dropped_total"] == 0
    assert player.stats()["published_total"] > 0


def _camera_header_stamps(bag):
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_KILTED)
    for m in read_bag(str(bag), topics=["/sensing/camera/front/image_raw"]):
        yield ts.deserialize_cdr(m.data, m.msgtype).header.stamp


def test_graph_ready_waits_for_the_producer_of_the_input_a_node_chose(ros_context):
    """A node that subscribes one of its ``either_inputs`` (the planner's guard LiDAR: the SensorFrame or
    the frame's cloud) is ready only once that topic has its publisher too (sensor_sync's cloud): its
    subscription alone, seen by a third node, is not."""
    from std_msgs.msg import UInt8

    from latentvla_ros.ros.topology import NodeSpec

    specs = [NodeSpec("producer", "m", [("~/output/frame", "ready_t/frame"), ("~/output/lidar", "ready_t/lidar")]),
             NodeSpec("consumer", "m", [("~/input/frame", "ready_t/frame"), ("~/input/lidar", "ready_t/lidar")],
                      either_inputs=("~/input/frame", "~/input/lidar"))]
    graph = rclpy.create_node("ready_graph", context=ros_context)
    watcher = rclpy.create_node("ready_watcher", context=ros_context)
    try:
        graph.create_subscription(UInt8, "/ready_t/lidar", lambda _: None, 10)  # the consumer chose the cloud
        graph.create_publisher(UInt8, "/ready_t/frame", 10)  # the producer's other output only
        assert wait_for(lambda: watcher.count_subscribers("/ready_t/lidar") == 1
                        and watcher.count_publishers("/ready_t/frame") == 1)
        assert not wait_for_graph_ready(watcher, specs, timeout_s=1.0)
        graph.create_publisher(UInt8, "/ready_t/lidar", 10)
        assert wait_for_graph_ready(watcher, specs, timeout_s=10.0)
    finally:
        graph.destroy_node()
        watcher.destroy_node()
