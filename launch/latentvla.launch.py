"""ros2 launch latentvla_ros latentvla.launch.py [param_dir:=...] [use_sim_time:=true] [namespace:=...]

Starts sensor_sync, bev_features, latent_reasoner and trajectory_planner (and, with
with_teacher/start_teacher_labeler, the offline teacher) with config/<node>.param.yaml.
"""
from latentvla_ros.ros.launch_description import generate


def generate_launch_description():
    return generate("default")
