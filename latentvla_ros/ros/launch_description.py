"""Launch descriptions (used by launch/*.launch.py; needs the ROS 2 `launch` packages).

Everything the launch files declare is built here from ros/topology.py, so the
launch files and `latentvla run` start the same nodes with the same parameters.

Every node gets ``--ros-args --enclave /latentvla/<node>`` (SROS2, harmless while
security is off; docs/operations.md#security) and, with ``rviz:=true``, RViz starts with
the profile's config (config/rviz/latentvla.rviz; latentvla_carla.rviz for CARLA, whose
fixed frame and topics are the bridge's).
"""
from __future__ import annotations

import os

from latentvla_ros.ros.contracts.sros2 import enclave_args
from latentvla_ros.ros.graph import transport_env
from latentvla_ros.ros.topology import (
    AUTOWARE_SENSOR_TOPICS,
    CARLA_SENSOR_TOPICS,
    NODE_NAMES,
    SENSOR_TOPICS,
    carla_controller_spec,
    graph_nodes,
)

# A profile: its sensor topics, default use_sim_time and camera names, and a directory of
# param overlays (config/<profile>/<node>.param.yaml, applied after config/<node>.param.yaml).
PROFILES = {
    "default": {"sensor_topics": SENSOR_TOPICS, "use_sim_time": "false", "extra_param_dir": "", "camera_names": "front"},
    "carla": {"sensor_topics": CARLA_SENSOR_TOPICS, "use_sim_time": "true", "extra_param_dir": "config/carla",
              "camera_names": "front", "rviz": "config/rviz/latentvla_carla.rviz"},
    "autoware": {"sensor_topics": AUTOWARE_SENSOR_TOPICS, "use_sim_time": "false", "extra_param_dir": "config/autoware",
                 "camera_names": "camera0"},
}
RVIZ_CONFIG = "config/rviz/latentvla.rviz"  # a profile's "rviz" entry overrides it


def rviz_config(profile: str) -> str:
    return PROFILES[profile].get("rviz", RVIZ_CONFIG)


def profile_graph(profile: str = "default", camera_names=None, sensor_topics: dict[str, str] | None = None,
                  with_controller: bool | None = None, with_teacher: bool = False):
    """(node specs, {node: [param files]}, use_sim_time) of a profile, exactly as its launch
    file starts them (for `latentvla run`-style composition and tests)."""
    settings = PROFILES[profile]
    cameras = list(camera_names) if camera_names else settings["camera_names"].split(",")
    topics = dict(settings["sensor_topics"], **(sensor_topics or {}))
    specs = graph_nodes(cameras, topics, with_teacher=with_teacher)
    if with_controller if with_controller is not None else profile == "carla":
        specs.append(carla_controller_spec(topics))
    files = {spec.name: [extra] for spec in specs if (extra := profile_param_file(profile, spec.name))}
    return specs, files, settings["use_sim_time"] == "true"


def profile_param_file(profile: str, node: str) -> str | None:
    """The profile's overlay param file for ``node``, if it has one."""
    from latentvla_ros.core.resources import share_path

    extra_dir = PROFILES[profile]["extra_param_dir"]
    if not extra_dir:
        return None
    path = share_path(extra_dir, f"{node}.param.yaml")
    return str(path) if path.exists() else None


def generate(profile: str = "default"):
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable

    settings = PROFILES[profile]
    args = [
        DeclareLaunchArgument("param_dir", default_value="",
                              description="Directory of <node>.param.yaml files (default: the package's config/)."),
        DeclareLaunchArgument("use_sim_time", default_value=settings["use_sim_time"], description="Use /clock (bag replay, simulator)."),
        DeclareLaunchArgument("namespace", default_value="", description="Namespace for every node."),
        DeclareLaunchArgument("camera_names", default_value=settings["camera_names"],
                              description="Comma-separated camera names, left to right."),
        DeclareLaunchArgument("log_level", default_value="info", description="Logging level of every node."),
        DeclareLaunchArgument("camera_transport", default_value="",
                              description="sensor_sync camera input: raw (sensor_msgs/Image) or compressed "
                                          "(CompressedImage on <camera topic>/compressed); empty: the param files' value."),
    ]
    for key, value in settings["sensor_topics"].items():
        args.append(DeclareLaunchArgument(f"{key}_topic", default_value=value,
                                          description=f"Input topic for {key} ({{name}} = camera name)."))
    for name in NODE_NAMES:
        default = "false" if name == "teacher_labeler" else "true"
        args.append(DeclareLaunchArgument(f"start_{name}", default_value=default, description=f"Start {name}."))
    if profile == "carla":
        args.append(DeclareLaunchArgument("start_twist_controller", default_value="true",
                                          description="Start twist_controller: AckermannDrive for carla_ackermann_control "
                                                      "(where ackermann_msgs is installed) or Twist for carla_twist_to_control."))
    args.append(DeclareLaunchArgument("rviz", default_value="false", description=f"Start RViz with {rviz_config(profile)}."))
    # the same Fast DDS profile in every process the launch starts (a value already set wins)
    env = [SetEnvironmentVariable(k, os.environ.get(k, v)) for k, v in transport_env().items()]
    return LaunchDescription([*args, *env, OpaqueFunction(function=_nodes, kwargs={"profile": profile})])


def _validate(node_name: str, params: list, namespace: str) -> None:
    """Every node's parameters are checked before any node starts (no model loads for a bad
    file); the launch stops with the reason (ros/contracts/parameters.py, as `latentvla run`)."""
    from latentvla_ros.ros.contracts.parameters import ParameterError, validate_node_config

    files = [p for p in params if isinstance(p, str)]
    overrides = {k: v for p in params if isinstance(p, dict) for k, v in p.items()}
    try:
        validate_node_config(node_name, files, overrides, namespace)
    except ParameterError as exc:
        raise RuntimeError(f"latentvla launch: {exc}") from None


def _truthy(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes", "on")


def _nodes(context, profile: str):
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    from latentvla_ros.core.resources import share_path

    def value(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    settings = PROFILES[profile]
    param_dir = value("param_dir") or str(share_path("config"))
    cameras = [c.strip() for c in value("camera_names").split(",") if c.strip()]
    topics = {key: value(f"{key}_topic") for key in settings["sensor_topics"]}
    use_sim_time = _truthy(value("use_sim_time"))
    specs = graph_nodes(cameras, topics, with_teacher=True)
    actions = []
    for spec in specs:
        if not _truthy(value(f"start_{spec.name}")):
            continue
        params = [f"{param_dir}/{spec.name}.param.yaml"]
        if profile_param_file(profile, spec.name):
            params.append(profile_param_file(profile, spec.name))
        inline = {"use_sim_time": use_sim_time}
        if spec.name == "sensor_sync":
            inline["camera_names"] = cameras
            if value("camera_transport"):
                inline["camera_transport"] = value("camera_transport")
        params.append(inline)
        _validate(spec.name, params, value("namespace"))
        actions.append(Node(package="latentvla_ros", executable=spec.name, name=spec.name, namespace=value("namespace"),
                            parameters=params, remappings=spec.remaps, output="screen",
                            ros_arguments=enclave_args(spec.name, value("namespace")),
                            arguments=["--ros-args", "--log-level", value("log_level")]))
    if profile == "carla" and _truthy(value("start_twist_controller")):
        spec = carla_controller_spec(topics)
        params = [f"{param_dir}/{spec.name}.param.yaml",
                  str(share_path(settings["extra_param_dir"], f"{spec.name}.param.yaml")), {"use_sim_time": use_sim_time}]
        _validate(spec.name, params, value("namespace"))
        actions.append(Node(package="latentvla_ros", executable=spec.name, name=spec.name, namespace=value("namespace"),
                            parameters=params,
                            remappings=spec.remaps, output="screen",
                            ros_arguments=enclave_args(spec.name, value("namespace")),
                            arguments=["--ros-args", "--log-level", value("log_level")]))
    if _truthy(value("rviz")):
        actions.append(Node(package="rviz2", executable="rviz2", name="rviz2", namespace=value("namespace"),
                            arguments=["-d", str(share_path(rviz_config(profile)))], parameters=[{"use_sim_time": use_sim_time}],
                            output="screen"))
    return actions
