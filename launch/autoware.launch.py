"""ros2 launch latentvla_ros autoware.launch.py

The Autoware profile: Autoware's topic names (/sensing/camera/<name>/image_rect_color +
camera_info, /sensing/lidar/concatenated/pointcloud, /localization/kinematic_state), the
overlays in config/autoware/, system time (use_sim_time:=true for a logging simulator).
"""
from latentvla_ros.ros.launch_description import generate


def generate_launch_description():
    return generate("autoware")
