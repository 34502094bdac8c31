"""``main()`` for a single node executable (``ros2 run`` / console scripts)."""
from __future__ import annotations

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor

from latentvla_ros.core.parameters import ParameterError


def run_node(node_cls, argv: list[str]) -> int:
    rclpy.init(args=argv)
    try:
        try:
            node = node_cls()
        except ParameterError as exc:
            print(f"[{node_cls.schema_name}] refusing to start: {exc}", flush=True)
            return 2
        executor = MultiThreadedExecutor(num_threads=2)
        executor.add_node(node)
        try:
            executor.spin()
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        finally:
            executor.shutdown()
            node.destroy_node()
    finally:
        if rclpy.ok():
            rclpy.shutdown()
    return 0
