"""``main()`` for a single node executable (``ros2 run`` / console scripts)."""
from __future__ import annotations

import rclpy

from latentvla_ros.ros.contracts.parameters import ParameterError
from latentvla_ros.ros.executors import spin_until_shutdown


def run_node(node_cls, argv: list[str]) -> int:
    """Spin one node until Ctrl-C; executor kind from $LATENTVLA_EXECUTOR (ros/executors.py)."""
    rclpy.init(args=argv)
    try:
        spin_until_shutdown(lambda: [node_cls()])
    except ParameterError as exc:
        print(f"[{node_cls.schema_name}] refusing to start: {exc}", flush=True)
        return 2
    finally:
        if rclpy.ok():
            rclpy.shutdown()
    return 0
