"""latentvla_ros: LatentVLA-style end-to-end driving on a ROS 2 stack.

The layers (docs/architecture.md, checked by test/test_layers.py): ``core`` at the bottom;
``models``, ``data``, ``bags``, ``ros.contracts``; ``runtime``; ``training``, ``evaluation``
(no rclpy in any of these); the ROS 2 shell ``ros``; the apps on top.
"""
# The generated message module (``latentvla_ros.msg``) may be installed in a
# different prefix than this source tree (e.g. messages built into a venv,
# sources used from a checkout): let Python find both parts.
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
__version__ = "0.1.0"
