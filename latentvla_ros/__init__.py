"""latentvla_ros: LatentVLA-style end-to-end driving on a ROS 2 stack.

The pure core (``core``, ``models``, ``data``, ``training``, ``evaluation``)
never imports rclpy; the ROS 2 shell lives in ``latentvla_ros.ros``.
"""
# The generated message module (``latentvla_ros.msg``) may be installed in a
# different prefix than this source tree (e.g. messages built into a venv,
# sources used from a checkout): let Python find both parts.
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
__version__ = "0.1.0"
