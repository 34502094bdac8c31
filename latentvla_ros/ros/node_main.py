"""``main()`` for a single node executable (``ros2 run`` / console scripts)."""
from __future__ import annotations

import rclpy
from rclpy.executors import ExternalShutdownException

from latentvla_ros.core.parameters import ParameterError
from latentvla_ros.ros.executors import GraphExecutor


def run_node(node_cls, argv: list[str]) -> int:
    """Spin one node until Ctrl-C (honoured at any point, also while the node is being
    built); executor kind from $LATENTVLA_EXECUTOR (ros/executors.py)."""
    rclpy.init(args=argv)
    node = executor = None
    try:
        try:
            node = node_cls()
        except ParameterError as exc:
            print(f"[{node_cls.schema_name}] refusing to start: {exc}", flush=True)
            return 2
        executor = GraphExecutor().add(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if executor is not None:
            executor.stop()  # detaches the node before it is destroyed
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0
