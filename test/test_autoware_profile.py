"""The Autoware profile end to end: a bag with Autoware's topic names
(/sensing/camera/camera0/image_rect_color + camera_info, /sensing/lidar/concatenated/pointcloud
in base_link, /localization/kinematic_state) replayed through exactly the nodes and param
files the autoware launch file starts. No remaps: the graph takes Autoware's topics as they
are. The bag is replayed without /clock and without use_sim_time (the profile's system
time), so its 2023 stamps disagree with the node clock: the planner says so once.
"""
from __future__ import annotations

import time

import pytest
import rclpy
from conftest import wait_for
from rclpy.qos import QoSProfile, ReliabilityPolicy
from ros_helpers import UNTRAINED

from latentvla_ros.msg import PlannedTrajectory, SensorFrame
from latentvla_ros.ros.conversions import stamp_to_ns
from latentvla_ros.ros.graph import GraphOptions, create_composed_nodes, wait_for_graph_ready
from latentvla_ros.ros.launch_description import profile_graph
from latentvla_ros.ros.topology import AUTOWARE_SENSOR_TOPICS, SENSOR_FRAME, TRAJECTORY

NUM_FRAMES = 30


@pytest.fixture(scope="module")
def autoware_bag(tmp_path_factory):
    from latentvla_ros.data.bag_io import write_sensor_bag
    from latentvla_ros.data.highway import generate_log

    root = tmp_path_factory.mktemp("autoware")
    generate_log(root / "log", scenario="highway", seed=5, num_frames=NUM_FRAMES)
    topics = {"camera": AUTOWARE_SENSOR_TOPICS["camera_image"].format(name="camera0"),
              "camera_info": AUTOWARE_SENSOR_TOPICS["camera_info"].format(name="camera0"),
              "lidar": AUTOWARE_SENSOR_TOPICS["lidar"], "odometry": AUTOWARE_SENSOR_TOPICS["odometry"],
              "acceleration": None, "expert_path": None, "tf": None}
    write_sensor_bag(root / "log", root / "bag", storage="mcap", topics=topics)
    return root / "bag"


def test_autoware_profile_replay_plans_every_frame(ros_context, spin, autoware_bag):
    from latentvla_ros.ros.bag_player import BagPlayer

    specs, param_files, use_sim_time = profile_graph("autoware")
    assert not use_sim_time and [s.name for s in specs] == ["sensor_sync", "bev_features", "latent_reasoner",
                                                            "trajectory_planner"]
    assert {n: [f.split("config/")[-1] for f in fs] for n, fs in param_files.items()} == {
        "sensor_sync": ["autoware/sensor_sync.param.yaml"], "bev_features": ["autoware/bev_features.param.yaml"]}
    options = GraphOptions(nodes=specs, param_files=param_files, overrides=UNTRAINED, use_sim_time=False,
                           log_level="error")
    nodes = {n.get_name(): n for n in create_composed_nodes(options, context=ros_context)}
    io = rclpy.create_node("autoware_side", context=ros_context)
    frames, trajectories = [], []
    qos = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)
    io.create_subscription(SensorFrame, "/" + SENSOR_FRAME, frames.append, qos)
    io.create_subscription(PlannedTrajectory, "/" + TRAJECTORY, trajectories.append, qos)
    player_node = rclpy.create_node("autoware_bag_player", context=ros_context)
    spin(*nodes.values())
    spin(io, player_node)
    assert wait_for_graph_ready(player_node, specs, timeout_s=30)
    sync, bev, planner = nodes["sensor_sync"], nodes["bev_features"], nodes["trajectory_planner"]
    assert sync.params.camera_names == ["camera0"]
    # the graph listens on Autoware's topics as they are
    subscribed = {name for name, _ in sync.get_subscriber_names_and_types_by_node("sensor_sync", "/")}
    assert {"/sensing/camera/camera0/image_rect_color", "/sensing/camera/camera0/camera_info",
            "/sensing/lidar/concatenated/pointcloud", "/localization/kinematic_state"} <= subscribed
    player = BagPlayer(player_node, str(autoware_bag), rate=1.0, publish_clock=False, wait_for_subscribers_s=5.0)
    player.start()
    assert player.wait(60)
    stats = player.stats()
    ticks = stats["published"]["/sensing/lidar/concatenated/pointcloud"]
    assert ticks == NUM_FRAMES
    frame_stamps = lambda: {stamp_to_ns(f.header.stamp) for f in frames}
    assert wait_for(lambda: len(frames) >= 0.8 * ticks and frame_stamps() <= {
        stamp_to_ns(t.header.stamp) for t in trajectories}, 30), (len(frames), len(trajectories))
    time.sleep(0.3)
    assert {f.lidar.header.frame_id for f in frames} == {"base_link"}
    assert bev.lidar_frames == {"base_link": "identity"}  # the concatenated cloud needs no extrinsics
    per_frame = [t for t in trajectories if stamp_to_ns(t.header.stamp) in frame_stamps()]
    assert len(per_frame) == len(frame_stamps()) and not any(t.is_fallback for t in per_frame)
    assert planner._odom_time is not None, "the planner never heard /localization/kinematic_state"
    for node in nodes.values():
        dropped = node.stats.snapshot()["dropped"]
        assert not {"bad_message", "lidar_frame_unknown", "callback_error"} & set(dropped), (node.get_name(), dropped)
    # no use_sim_time, no /clock: the bag's stamps are years from the system clock -> one warning
    assert planner.clock_warnings == 1 and planner.clock_offset_s > 5.0
