"""The node graph in one place: executables, parameter files and topic remaps.

Used by the launch files and by ``latentvla run`` so both start the same graph.
Plain data (no rclpy import) so launch files and tests can read it anywhere.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from latentvla_ros.ros.contracts.executables import NODE_EXECUTABLES
from latentvla_ros.ros.contracts.sros2 import enclave_for

# Topics between nodes (relative names: a namespace applies to them).
SENSOR_FRAME = "latentvla/sensor_frame"
# the synchronized frame's LiDAR cloud alone, stamped with the frame's stamp (the planner's obstacle guard
# reads it where the SensorFrame would cross a process boundary: trajectory_planner guard_input)
FRAME_LIDAR = "latentvla/frame_lidar"
BEV_FEATURES = "latentvla/bev_features"
LATENT_PLAN = "latentvla/latent_plan"
TRAJECTORY = "planning/latentvla/trajectory"
PATH = "planning/latentvla/path"
MARKERS = "planning/latentvla/markers"
BEV_IMAGE = "latentvla/bev_image"
TOKEN_MARKERS = "latentvla/latent_token_markers"
TEACHER_PLAN = "latentvla/teacher_plan"

# Default sensor topics (a vehicle's sensing stack or the demo bag). "route": the mission
# route ahead (nav_msgs/Path in the odometry's frame, latched: reliable + transient local),
# an optional input of trajectory_planner.
SENSOR_TOPICS = {
    "camera_image": "/sensing/camera/{name}/image_raw",
    "camera_info": "/sensing/camera/{name}/camera_info",
    "lidar": "/sensing/lidar/points",
    "odometry": "/localization/odometry",
    "driving_command": "/planning/driving_command",
    "route": "/planning/mission_route",
}

# The CARLA ROS bridge's topics (profile `carla`). Frames: ego_vehicle/rgb_<name>,
# ego_vehicle/lidar, odometry map -> ego_vehicle. vehicle_status
# (carla_msgs/CarlaEgoVehicleStatus) is only subscribed where carla_msgs is importable.
# route: carla_waypoint_publisher's nav_msgs/Path in the map frame (latched, once per goal).
CARLA_SENSOR_TOPICS = {
    "camera_image": "/carla/ego_vehicle/rgb_{name}/image",
    "camera_info": "/carla/ego_vehicle/rgb_{name}/camera_info",
    "lidar": "/carla/ego_vehicle/lidar",
    "odometry": "/carla/ego_vehicle/odometry",
    "driving_command": "/carla/ego_vehicle/driving_command",
    "vehicle_status": "/carla/ego_vehicle/vehicle_status",
    "route": "/carla/ego_vehicle/waypoints",
}
CARLA_FRAMES = {"map": "map", "ego": "ego_vehicle", "camera": "ego_vehicle/rgb_{name}", "lidar": "ego_vehicle/lidar"}

# Autoware's topic names (profile `autoware`): the graph drops into an Autoware vehicle
# without remaps. Cameras camera0..N under /sensing/camera/*, the concatenated LiDAR cloud
# (frame base_link) and the localization's kinematic state (nav_msgs/Odometry, map ->
# base_link). Autoware has no driving-command topic, and its mission planner's route is a
# LaneletRoute, not a Path: these optional inputs keep our names.
AUTOWARE_SENSOR_TOPICS = {
    "camera_image": "/sensing/camera/{name}/image_rect_color",
    "camera_info": "/sensing/camera/{name}/camera_info",
    "lidar": "/sensing/lidar/concatenated/pointcloud",
    "odometry": "/localization/kinematic_state",
    "driving_command": "/planning/driving_command",
    "route": "/planning/mission_route",
}


def resolve_guard_input(kind: str, in_process: bool) -> str:
    """trajectory_planner's ``guard_input`` with ``auto`` resolved: the SensorFrame (``frame``) where it is
    handed over in-process (a composed process), else the frame's LiDAR cloud alone (``lidar``: over DDS a
    SensorFrame brings the camera images along)."""
    if kind == "auto":
        return "frame" if in_process else "lidar"
    return kind


@dataclass
class NodeSpec:
    name: str  # node name == executable == schema name
    module: str
    remaps: list[tuple[str, str]] = field(default_factory=list)
    #: inputs of which the node subscribes exactly one, depending on how it runs (the planner's
    #: guard LiDAR: the SensorFrame in a composed process, the frame's cloud otherwise)
    either_inputs: tuple[str, ...] = ()

    @property
    def param_file(self) -> str:
        return f"config/{self.name}.param.yaml"

    def enclave(self, namespace: str = "") -> str:
        """SROS2 enclave of this node (ros/contracts/sros2.py, docs/operations.md#security)."""
        return enclave_for(self.name, namespace)


def graph_nodes(camera_names: list[str] | tuple[str, ...] = ("front",), sensor_topics: dict[str, str] | None = None,
                with_teacher: bool = False) -> list[NodeSpec]:
    topics = sensor_topics or SENSOR_TOPICS
    sync_remaps = []
    for name in camera_names:
        sync_remaps.append((f"~/input/camera/{name}/image", topics["camera_image"].format(name=name)))
        # sensor_sync camera_transport: compressed (image_transport's topic name)
        sync_remaps.append((f"~/input/camera/{name}/image/compressed",
                            topics["camera_image"].format(name=name) + "/compressed"))
        sync_remaps.append((f"~/input/camera/{name}/camera_info", topics["camera_info"].format(name=name)))
    sync_remaps += [("~/input/lidar/points", topics["lidar"]), ("~/input/odometry", topics["odometry"]),
                    ("~/input/driving_command", topics["driving_command"]), ("~/output/frame", SENSOR_FRAME),
                    ("~/output/lidar", FRAME_LIDAR)]
    nodes = [
        NodeSpec("sensor_sync", NODE_EXECUTABLES["sensor_sync"], sync_remaps),
        NodeSpec("bev_features", NODE_EXECUTABLES["bev_features"],
                 [("~/input/frame", SENSOR_FRAME), ("~/output/bev", BEV_FEATURES), ("~/debug/bev_image", BEV_IMAGE)]),
        NodeSpec("latent_reasoner", NODE_EXECUTABLES["latent_reasoner"],
                 [("~/input/frame", SENSOR_FRAME), ("~/output/plan", LATENT_PLAN), ("~/debug/markers", TOKEN_MARKERS)]),
        NodeSpec("trajectory_planner", NODE_EXECUTABLES["trajectory_planner"],
                 [("~/input/bev", BEV_FEATURES), ("~/input/plan", LATENT_PLAN), ("~/input/frame", SENSOR_FRAME),
                  ("~/input/lidar", FRAME_LIDAR),
                  ("~/input/odometry", topics["odometry"]),
                  ("~/input/route", topics.get("route", SENSOR_TOPICS["route"])),
                  ("~/output/trajectory", TRAJECTORY), ("~/output/path", PATH), ("~/debug/markers", MARKERS)],
                 either_inputs=("~/input/frame", "~/input/lidar")),
    ]
    if with_teacher:
        nodes.append(NodeSpec("teacher_labeler", NODE_EXECUTABLES["teacher_labeler"],
                              [("~/input/frame", SENSOR_FRAME), ("~/output/plan", TEACHER_PLAN)]))
    return nodes


#: the nodes of the latentvla graph (launch/latentvla.launch.py); twist_controller belongs to the CARLA profile
NODE_NAMES = tuple(name for name in NODE_EXECUTABLES if name != "twist_controller")


CARLA_TWIST_TOPIC = "/carla/ego_vehicle/twist"  # carla_twist_to_control (geometry_msgs/Twist)
CARLA_ACKERMANN_TOPIC = "/carla/ego_vehicle/ackermann_cmd"  # carla_ackermann_control (AckermannDrive)


def carla_controller_spec(sensor_topics: dict[str, str] | None = None) -> NodeSpec:
    topics = sensor_topics or CARLA_SENSOR_TOPICS
    return NodeSpec("twist_controller", NODE_EXECUTABLES["twist_controller"],
                    [("~/input/trajectory", TRAJECTORY), ("~/input/odometry", topics["odometry"]),
                     ("~/input/vehicle_status", topics.get("vehicle_status", CARLA_SENSOR_TOPICS["vehicle_status"])),
                     ("~/output/twist", CARLA_TWIST_TOPIC), ("~/output/ackermann", CARLA_ACKERMANN_TOPIC)])
