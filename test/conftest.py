"""Session-wide test environment.

- ROS 2 traffic stays on this machine (localhost discovery) and on a domain id drawn
  per session, so parallel runs and other graphs do not interfere.
- The simulator renders off screen; no model hub is ever contacted.
"""
from __future__ import annotations

import os
import random
import time

import pytest

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 100)))
os.environ.setdefault("SDL_VIDEODRIVER", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")

from latentvla_ros.ros.graph import apply_transport_env  # before rclpy creates a participant

apply_transport_env()  # the shipped Fast DDS profile, as every latentvla process uses

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass


@pytest.fixture
def ros_context():
    """A fresh, initialised rclpy Context; shut down after the test."""
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context, domain_id=int(os.environ["ROS_DOMAIN_ID"]))
    try:
        yield context
    finally:
        if context.ok():
            rclpy.shutdown(context=context)


@pytest.fixture
def spin(ros_context):
    """spin(*nodes) -> started GraphExecutor (the executors the graph ships with,
    ros/executors.py); stopped and nodes destroyed after the test."""
    from latentvla_ros.ros.executors import GraphExecutor

    executors, all_nodes = [], []

    def start(*nodes):
        all_nodes.extend(nodes)
        ex = GraphExecutor(ros_context).add(*nodes).start()
        executors.append(ex)
        return ex

    yield start
    for ex in executors:
        ex.stop()
    for node in all_nodes:
        node.destroy_node()


def wait_for(predicate, timeout_s: float = 10.0, period_s: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(period_s)
    return predicate()
