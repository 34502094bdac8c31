"""ros2 launch latentvla_ros carla_bridge.launch.py

The CARLA-ROS bridge profile: /carla/ego_vehicle/* inputs, use_sim_time, the bridge's
QoS and LiDAR mount, and twist_controller publishing AckermannDrive on
/carla/ego_vehicle/ackermann_cmd for carla_ackermann_control (where ackermann_msgs is
installed) or Twist on /carla/ego_vehicle/twist for carla_twist_to_control.
The planner's route is the Path that the bridge's waypoint publisher latches on
/carla/ego_vehicle/waypoints (map frame, once per goal: never stale here).
"""
from latentvla_ros.ros.launch_description import generate


def generate_launch_description():
    return generate("carla")
