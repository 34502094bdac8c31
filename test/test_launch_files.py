"""Launch files declare the graph we expect (evaluated like `ros2 launch` would).

Uses the real launch API where installed, otherwise test/launch_standin.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from launch_harness import evaluate

from latentvla_ros.ros.contracts.executables import EXECUTABLES
from latentvla_ros.ros.contracts.parameters import load_param_file, load_schema, validate_parameters
from latentvla_ros.ros.topology import BEV_FEATURES, CARLA_TWIST_TOPIC, FRAME_LIDAR, LATENT_PLAN, SENSOR_FRAME, TRAJECTORY

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "launch"


def _executables() -> set[str]:
    """What CMakeLists.txt installs (and setup.py declares): ros/contracts/executables.py."""
    return set(EXECUTABLES)


def _check_node(node, expected_name):
    assert node.package == "latentvla_ros"
    assert node.executable == expected_name == node.node_name
    assert node.executable in _executables(), "launch file names an executable CMake does not install"
    files = [p for p in node.parameters if isinstance(p, str)]
    assert files, "every node gets a param file"
    merged = {}
    for f in files:
        assert Path(f).is_file(), f
        merged.update(load_param_file(f, expected_name))
    inline = {k: v for p in node.parameters if isinstance(p, dict) for k, v in p.items()}
    merged.update({k: v for k, v in inline.items() if k != "use_sim_time"})
    return validate_parameters(load_schema(expected_name), expected_name, merged), inline


def test_default_launch_starts_the_four_nodes_wired_together():
    nodes, context = evaluate(LAUNCH / "latentvla.launch.py")
    by_name = {n.node_name: n for n in nodes}
    assert list(by_name) == ["sensor_sync", "bev_features", "latent_reasoner", "trajectory_planner"]
    for name, node in by_name.items():
        params, inline = _check_node(node, name)
        assert inline["use_sim_time"] is False
    remaps = {n: dict(by_name[n].remappings) for n in by_name}
    assert remaps["sensor_sync"]["~/output/frame"] == SENSOR_FRAME
    assert remaps["sensor_sync"]["~/input/camera/front/image"] == "/sensing/camera/front/image_raw"
    assert remaps["bev_features"]["~/input/frame"] == SENSOR_FRAME
    assert remaps["bev_features"]["~/output/bev"] == BEV_FEATURES
    assert remaps["latent_reasoner"]["~/output/plan"] == LATENT_PLAN
    assert remaps["trajectory_planner"]["~/input/bev"] == BEV_FEATURES
    assert remaps["trajectory_planner"]["~/input/plan"] == LATENT_PLAN
    assert remaps["trajectory_planner"]["~/input/frame"] == SENSOR_FRAME  # the obstacle guard's LiDAR (composed)
    # ... as its own process: the frame's cloud alone (guard_input auto)
    assert remaps["trajectory_planner"]["~/input/lidar"] == remaps["sensor_sync"]["~/output/lidar"] == FRAME_LIDAR
    assert remaps["trajectory_planner"]["~/output/trajectory"] == TRAJECTORY
    assert remaps["trajectory_planner"]["~/input/route"] == "/planning/mission_route"
    # the large-data transport is configured for every process the launch starts
    profile = Path(context.environment["FASTDDS_DEFAULT_PROFILES_FILE"])
    assert profile.name == "large_data.xml" and "<segment_size>" in profile.read_text()


def test_launch_arguments_select_nodes_namespace_time_and_topics(tmp_path):
    param_dir = tmp_path / "params"
    param_dir.mkdir()
    for f in (ROOT / "config").glob("*.param.yaml"):
        (param_dir / f.name).write_text(f.read_text())
    nodes, _ = evaluate(LAUNCH / "latentvla.launch.py", {
        "use_sim_time": "true", "namespace": "car1", "start_latent_reasoner": "false", "start_teacher_labeler": "true",
        "camera_names": "left,front,right", "lidar_topic": "/velodyne_points", "param_dir": str(param_dir)})
    by_name = {n.node_name: n for n in nodes}
    assert sorted(by_name) == ["bev_features", "sensor_sync", "teacher_labeler", "trajectory_planner"]
    for node in nodes:
        assert node.node_namespace == "car1"
        params, inline = _check_node(node, node.node_name)
        assert inline["use_sim_time"] is True
        assert str(node.parameters[0]).startswith(str(param_dir))
    sync = dict(by_name["sensor_sync"].remappings)
    assert sync["~/input/lidar/points"] == "/velodyne_points"
    assert {k for k in sync if k.startswith("~/input/camera/")} == {
        f"~/input/camera/{c}/{kind}" for c in ("left", "front", "right")
        for kind in ("image", "image/compressed", "camera_info")}  # image/compressed: camera_transport compressed
    inline = {k: v for p in by_name["sensor_sync"].parameters if isinstance(p, dict) for k, v in p.items()}
    assert inline["camera_names"] == ["left", "front", "right"]


def test_carla_profile_uses_bridge_topics_sim_time_and_twist_output():
    nodes, _ = evaluate(LAUNCH / "carla_bridge.launch.py")
    by_name = {n.node_name: n for n in nodes}
    assert sorted(by_name) == ["bev_features", "latent_reasoner", "sensor_sync", "trajectory_planner", "twist_controller"]
    for node in nodes:
        params, inline = _check_node(node, node.node_name)
        assert inline["use_sim_time"] is True
    sync = dict(by_name["sensor_sync"].remappings)
    assert sync["~/input/camera/front/image"] == "/carla/ego_vehicle/rgb_front/image"
    assert sync["~/input/camera/front/camera_info"] == "/carla/ego_vehicle/rgb_front/camera_info"
    assert sync["~/input/lidar/points"] == "/carla/ego_vehicle/lidar"
    assert sync["~/input/odometry"] == "/carla/ego_vehicle/odometry"
    planner = dict(by_name["trajectory_planner"].remappings)  # the bridge's waypoint publisher's route
    assert planner["~/input/route"] == "/carla/ego_vehicle/waypoints"
    planner_params, _ = _check_node(by_name["trajectory_planner"], "trajectory_planner")
    assert planner_params["route_timeout_s"] == 0.0  # latched once per goal, never republished
    ctrl = dict(by_name["twist_controller"].remappings)
    assert ctrl["~/output/twist"] == CARLA_TWIST_TOPIC and ctrl["~/input/trajectory"] == TRAJECTORY
    sync_params, _ = _check_node(by_name["sensor_sync"], "sensor_sync")
    assert sync_params["qos.input_reliability"] == "reliable"  # the bridge publishes reliable, depth 10


def test_autoware_profile_uses_autoware_topics_and_its_overlays():
    nodes, _ = evaluate(LAUNCH / "autoware.launch.py")
    by_name = {n.node_name: n for n in nodes}
    assert sorted(by_name) == ["bev_features", "latent_reasoner", "sensor_sync", "trajectory_planner"]
    for node in nodes:
        params, inline = _check_node(node, node.node_name)
        assert inline["use_sim_time"] is False  # a vehicle: system time
    sync = dict(by_name["sensor_sync"].remappings)
    assert sync["~/input/camera/camera0/image"] == "/sensing/camera/camera0/image_rect_color"
    assert sync["~/input/camera/camera0/camera_info"] == "/sensing/camera/camera0/camera_info"
    assert sync["~/input/lidar/points"] == "/sensing/lidar/concatenated/pointcloud"
    assert sync["~/input/odometry"] == "/localization/kinematic_state"
    assert dict(by_name["trajectory_planner"].remappings)["~/input/odometry"] == "/localization/kinematic_state"
    sync_params, inline = _check_node(by_name["sensor_sync"], "sensor_sync")
    assert inline["camera_names"] == ["camera0"] and sync_params["camera_names"] == ["camera0"]
    assert any("config/autoware/" in str(p) for p in by_name["bev_features"].parameters)
    bev_params, _ = _check_node(by_name["bev_features"], "bev_features")
    assert bev_params["frame_id"] == "base_link"  # the concatenated cloud's frame: no extrinsics needed
    # more cameras: the launch argument
    nodes, _ = evaluate(LAUNCH / "autoware.launch.py", {"camera_names": "camera0,camera1", "use_sim_time": "true"})
    sync = dict({n.node_name: n for n in nodes}["sensor_sync"].remappings)
    assert sync["~/input/camera/camera1/image"] == "/sensing/camera/camera1/image_rect_color"


def test_undeclared_argument_is_an_error():
    with pytest.raises(ValueError, match="undeclared"):
        evaluate(LAUNCH / "latentvla.launch.py", {"no_such_arg": "1"})


@pytest.mark.parametrize("path", sorted((ROOT / "config").rglob("*.param.yaml")), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_param_file_validates_against_its_schema(path):
    import json

    import jsonschema

    node = path.name.removesuffix(".param.yaml")
    schema = load_schema(node)
    data = yaml.safe_load(path.read_text())
    if path.parent.name == "config":  # complete files validate against the whole schema
        from latentvla_ros.ros.contracts.parameters import flatten

        flat = {"/**": {"ros__parameters": flatten(data["/**"]["ros__parameters"])}}
        jsonschema.validate(flat, schema)
    validate_parameters(schema, node, load_param_file(path, node))
    json.dumps(schema)


@pytest.mark.parametrize("launch,config", [("latentvla.launch.py", "latentvla.rviz"),
                                           ("carla_bridge.launch.py", "latentvla_carla.rviz")])
def test_rviz_starts_with_the_profiles_config(launch, config):
    nodes, _ = evaluate(LAUNCH / launch, {"rviz": "true"})
    rviz = [n for n in nodes if n.executable == "rviz2"]
    assert len(rviz) == 1
    args = list(getattr(rviz[0], "arguments", None) or getattr(rviz[0], "_Node__arguments", []))
    path = Path(str(args[args.index("-d") + 1]))
    assert path.name == config and path.is_file()
    assert not any(n.executable == "rviz2" for n in evaluate(LAUNCH / launch)[0])  # only with rviz:=true


def test_launch_files_document_only_arguments_they_declare():
    """Every snake_case name a launch file's docstring mentions (outside topic and file paths)
    is a declared argument, a node or a known package: no documented argument that does not exist."""
    import ast

    from launch_harness import load_launch_description

    from latentvla_ros.ros import topology

    known = {*topology.NODE_NAMES, "twist_controller", "latentvla_ros",  # nodes and packages the texts name
             "carla_twist_to_control", "carla_ackermann_control", "ackermann_msgs"}
    for name, topics in vars(topology).items():  # segments of topic names in prose (e.g. "+ camera_info")
        if name.endswith("SENSOR_TOPICS"):
            known |= {part for topic in topics.values() for part in topic.split("/")}
    for path in sorted(LAUNCH.glob("*.launch.py")):
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        declared = {a.name for a in load_launch_description(path).get_launch_arguments()}
        words = set(re.findall(r"(?<![/\w.<*])([a-z]+(?:_[a-z0-9]+)+)(?![\w.>*])", doc))
        assert words - known <= declared, f"{path.name} documents undeclared arguments: {sorted(words - known - declared)}"
        assert {m for m in re.findall(r"(\w+):=", doc)} <= declared
