"""ros2 launch latentvla_ros latentvla.launch.py [param_dir:=...] [use_sim_time:=true] [namespace:=...] [rviz:=true]

Starts sensor_sync, bev_features, latent_reasoner and trajectory_planner (and, with
start_teacher_labeler:=true, the offline teacher) with config/<node>.param.yaml.
trajectory_planner takes the mission route (a latched Path) from route_topic.
`ros2 launch latentvla_ros latentvla.launch.py --show-args` lists every argument.
"""
from latentvla_ros.ros.launch_description import generate


def generate_launch_description():
    return generate("default")
