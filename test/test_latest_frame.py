"""Latest-frame policy (ros/latest_frame.py): a model stage slower than its input works on
the newest frame, never on a backlog, and counts every frame it skips once."""
from __future__ import annotations

import dataclasses
import threading
import time

import pytest
from conftest import wait_for
from fixtures.message_samples import samples
from rclpy.parameter import Parameter

from latentvla_ros.msg import SensorFrame
from latentvla_ros.ros.conversions import sensor_frame_to_core
from latentvla_ros.ros.intra_process import IntraProcessBus
from latentvla_ros.ros.latest_frame import LatestFrame
from latentvla_ros.ros.node_base import LatentVlaNode
from latentvla_ros.ros.nodes.bev_features import BevFeaturesNode
from latentvla_ros.ros.nodes.latent_reasoner import LatentReasonerNode
from latentvla_ros.ros.qos import output_qos

PERIOD_S = 0.1  # 10 Hz input
MODEL_S = 0.15  # the stub forward pass: slower than the input
FRAMES = 30
SLACK_S = 0.1  # executor hand-off and a loaded machine


def test_latest_frame_keeps_the_newest_and_counts_each_replaced_once():
    done, skipped, scheduled = [], [], []
    latest = LatestFrame(done.append, skipped.append, scheduled.append)
    for k in range(1, 5):
        latest.offer(k)
    assert len(scheduled) == 1 and latest.pending  # one run scheduled for the lot
    scheduled.pop()()
    assert done == [4] and skipped == [1, 2, 3] and latest.superseded == 3 and not latest.pending
    latest.offer(5)
    scheduled.pop()()
    assert done == [4, 5] and skipped == [1, 2, 3]
    LatestFrame(done.append, skipped.append, None).offer(6)  # nothing schedules: at once
    assert done[-1] == 6

    def busy_process(msg):  # another thread offers while the model runs (MultiThreadedExecutor)
        done.append(msg)
        if msg == 7:
            latest.offer(8)
            latest.offer(9)

    latest = LatestFrame(busy_process, skipped.append, scheduled.append)
    latest.offer(7)
    scheduled.pop()()
    assert done[-3:] == [6, 7, 9] and skipped[-1] == 8 and scheduled == []  # no second run scheduled alongside


class FrameSource(LatentVlaNode):
    """Stands in for sensor_sync (in the composed process when given the bus)."""

    schema_name = "sensor_sync"

    def __init__(self, **kwargs):
        super().__init__("overload_source", **kwargs)
        self.pub = self.create_publisher(SensorFrame, "/overload/frame", output_qos(5))


#: the model stages under the latest-frame policy: node class, its runtime attribute, the model call
MODEL_STAGES = {"latent_reasoner": (LatentReasonerNode, "reasoner", "reason"),
                "bev_features": (BevFeaturesNode, "extractor", "extract")}


@pytest.mark.parametrize("stage", sorted(MODEL_STAGES))
@pytest.mark.parametrize("in_process", [True, False], ids=["composed", "dds"])
def test_overloaded_model_stage_works_on_fresh_frames_only(ros_context, spin, in_process, stage):
    bus = IntraProcessBus() if in_process else None
    source = FrameSource(context=ros_context, intra_process=bus)
    node_cls, attr, method = MODEL_STAGES[stage]
    node = node_cls(context=ros_context, intra_process=bus, parameter_overrides=[Parameter("checkpoint", value="")],
                    cli_args=["--ros-args", "-r", "~/input/frame:=/overload/frame"])
    runtime = getattr(node, attr)
    real = getattr(runtime, method)(sensor_frame_to_core(samples()["SensorFrame"]))  # the real output, reused
    ages, busy = [], threading.Lock()

    def slow_model(frame):  # slower than the input period; records the age of every frame it gets
        assert busy.acquire(blocking=False), "two forward passes at once"
        try:
            ages.append(time.time_ns() * 1e-9 - frame.stamp_ns * 1e-9)
            time.sleep(MODEL_S)
            return dataclasses.replace(real, stamp_ns=frame.stamp_ns)
        finally:
            busy.release()

    setattr(runtime, method, slow_model)
    spin(source, node)
    if not in_process:
        assert wait_for(lambda: source.pub.get_subscription_count() > 0)
    start = time.monotonic()
    for k in range(1, FRAMES + 1):
        msg = samples()["SensorFrame"]
        msg.sequence = k
        now_ns = time.time_ns()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(now_ns, 1_000_000_000)
        source.pub.publish(msg)
        time.sleep(max(0.0, start + k * PERIOD_S - time.monotonic()))
    assert wait_for(lambda: node.stats.snapshot()["received"].get("frame", 0) == FRAMES, 10)
    assert wait_for(lambda: not node.latest_frame.pending and not busy.locked(), 10)
    time.sleep(MODEL_S)  # the last one's publish
    dropped = node.stats.snapshot()["dropped"]
    bound = PERIOD_S + MODEL_S + SLACK_S
    assert max(ages) <= bound, f"frame ages {[round(a, 3) for a in ages]}: a backlog (bound {bound:.2f} s)"
    assert len(ages) < FRAMES  # overloaded: some frames were skipped ...
    assert len(ages) + dropped.get("superseded", 0) == FRAMES  # ... each counted exactly once
    assert dropped.get("frame_lost_upstream", 0) == 0  # and not again as a sequence gap
    # operators see the reason: the node's /diagnostics report counts the skipped frames as superseded
    values = {kv.key: kv.value for kv in node.diagnostic_status().values}
    assert values["dropped/superseded"] == str(FRAMES - len(ages))
    assert node.stats.snapshot()["published"].get("bev" if stage == "bev_features" else "plan", 0) == len(ages)


@pytest.mark.parametrize("stage", sorted(MODEL_STAGES))
def test_in_process_frame_is_parked_by_the_publisher_and_processed_after_one_hop(ros_context, spin, stage):
    """Composed: the arrival (counting, parking) runs in the publisher's thread; the forward pass
    on the stage's own executor thread: one executor hop per frame, not two (bus queue + task)."""
    bus = IntraProcessBus()
    source = FrameSource(context=ros_context, intra_process=bus)
    node_cls, attr, method = MODEL_STAGES[stage]
    node = node_cls(context=ros_context, intra_process=bus, parameter_overrides=[Parameter("checkpoint", value="")],
                    cli_args=["--ros-args", "-r", "~/input/frame:=/overload/frame"])
    runtime = getattr(node, attr)
    real = getattr(runtime, method)(sensor_frame_to_core(samples()["SensorFrame"]))
    model_threads = []

    def model(frame):
        model_threads.append(threading.current_thread())
        return dataclasses.replace(real, stamp_ns=frame.stamp_ns)

    setattr(runtime, method, model)
    spin(source)
    spin(node)
    msg = samples()["SensorFrame"]
    msg.sequence = 1
    source.pub.publish(msg)  # from this (the test's) thread
    # parked at once, before any executor ran: received and pending (or already taken)
    assert node.stats.snapshot()["received"].get("frame", 0) == 1
    assert wait_for(lambda: len(model_threads) == 1)
    assert model_threads[0] is not threading.current_thread()  # the work: on the node's own thread
    assert model_threads[0].name.startswith("spin[")
