"""Stand-in for ROS 2 `launch` (see ../README.md)."""
from launch.launch_context import LaunchContext
from launch.launch_description import LaunchDescription

__all__ = ["LaunchContext", "LaunchDescription"]
