"""ros/executors.py: how the graph's nodes are spun (thread layout, timers, removal,
executor kinds, a stderr without a file descriptor)."""
from __future__ import annotations

import io
import sys
import time

import pytest
import rclpy
from conftest import wait_for
from ros_helpers import UNTRAINED
from std_msgs.msg import String

from latentvla_ros.ros.executors import EXECUTOR_ENV, GraphExecutor, events_executor_available, resolve_kind, spin_until_shutdown
from latentvla_ros.ros.graph import GraphOptions, create_composed_nodes
from latentvla_ros.ros.qos import static_qos
from latentvla_ros.ros.topology import graph_nodes


def test_kinds_resolve(monkeypatch):
    monkeypatch.delenv(EXECUTOR_ENV, raising=False)
    assert resolve_kind() == ("events" if events_executor_available() else "single")
    monkeypatch.setenv(EXECUTOR_ENV, "multi")
    assert resolve_kind() == "multi" and resolve_kind("single") == "single"
    with pytest.raises(ValueError, match="not one of"):
        resolve_kind("telepathy")


def test_thread_groups_and_timers_run(ros_context):
    nodes = create_composed_nodes(GraphOptions(nodes=graph_nodes(), overrides=UNTRAINED, log_level="error"),
                                  context=ros_context)
    helper = rclpy.create_node("helper", context=ros_context)
    executor = GraphExecutor(ros_context).add(*nodes, helper)
    try:
        layout = executor.thread_layout()
        # the light, latency-critical nodes never wait behind a model; the student runs beside the BEV chain
        assert sorted(map(sorted, layout)) == [["bev_features"], ["helper", "sensor_sync"], ["latent_reasoner"],
                                               ["trajectory_planner"]], layout
        # timers (diagnostics, watchdogs) run on every executor kind: a node's diagnostics count rises
        executor.start()
        by_name = {n.get_name(): n for n in nodes}
        got: list[String] = []
        # node_info is published from the diagnostics timer
        helper.create_subscription(String, "/latent_reasoner/debug/node_info", got.append, static_qos())
        assert wait_for(lambda: got, 10), "no node_info: the diagnostics timer did not run"
        assert not by_name["latent_reasoner"].stats.snapshot()["dropped"].get("timer_error")
    finally:
        executor.stop()
        for node in (*nodes, helper):
            node.destroy_node()


@pytest.mark.parametrize("kind", ["events", "single", "multi"])
def test_every_kind_delivers_and_remove_stops_a_node(ros_context, kind):
    if kind == "events" and not events_executor_available():
        pytest.skip("rclpy without EventsExecutor")
    talker = rclpy.create_node("talker", context=ros_context)
    listener = rclpy.create_node("listener", context=ros_context)
    got: list[str] = []
    pub = talker.create_publisher(String, "chatter_exec_test", 10)
    listener.create_subscription(String, "chatter_exec_test", lambda m: got.append(m.data), 10)
    executor = GraphExecutor(ros_context, kind=kind).add(talker, listener).start()
    try:
        assert wait_for(lambda: pub.get_subscription_count() == 1, 10)
        pub.publish(String(data="a"))
        assert wait_for(lambda: got == ["a"], 5), got
        executor.remove(listener)
        time.sleep(0.3)
        pub.publish(String(data="b"))
        time.sleep(0.5)
        assert got == ["a"], "a removed node's callbacks still ran"
    finally:
        executor.stop()
        talker.destroy_node()
        listener.destroy_node()


@pytest.mark.skipif(not events_executor_available(), reason="rclpy without EventsExecutor")
def test_events_executor_with_a_stderr_that_has_no_file_descriptor(ros_context, monkeypatch):
    """rclpy's factory calls faulthandler.enable(), which fails on such a stderr (pytest's
    capsys, notebooks): the graph must still start."""
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    node = rclpy.create_node("no_fileno", context=ros_context)
    executor = GraphExecutor(ros_context, kind="events").add(node).start()
    try:
        assert executor.kind == "events" and executor.thread_layout() == [["no_fileno"]]
    finally:
        executor.stop()
        node.destroy_node()


def test_ctrl_c_during_start_up_is_a_clean_shutdown_other_errors_propagate():
    """A SIGINT that lands inside a C extension's import (onnxruntime, first run on a cold
    machine) surfaces as ImportError raised from the KeyboardInterrupt: still a shutdown."""
    def interrupted_import():
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as exc:
            raise ImportError("initialization failed") from exc

    def bad_parameter():
        raise ValueError("a real start-up error")

    rclpy.init()
    try:
        spin_until_shutdown(interrupted_import)  # returns, no exception
        with pytest.raises(ValueError, match="real start-up error"):
            spin_until_shutdown(bad_parameter)
    finally:
        rclpy.shutdown()
