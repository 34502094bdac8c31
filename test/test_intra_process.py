"""In-process delivery between the nodes of a composed process (ros/intra_process.py):
the message object reaches in-process subscriptions without DDS, outside subscribers still
get it over DDS, nothing is delivered twice, overflows are counted."""
from __future__ import annotations

from types import SimpleNamespace

import rclpy
from conftest import wait_for
from fixtures.message_samples import samples
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from std_msgs.msg import Float64, String

from latentvla_ros.msg import BevFeatures, LatentActionPlan, SensorFrame
from latentvla_ros.ros.intra_process import IntraProcessBus, IntraProcessPublisher, LocalSubscription
from latentvla_ros.ros.node_base import LatentVlaNode
from latentvla_ros.ros.nodes.bev_features import BevFeaturesNode

QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


class FrameSource(LatentVlaNode):
    """A node of the composed process that publishes SensorFrames (stands in for sensor_sync)."""

    schema_name = "sensor_sync"

    def __init__(self, **kwargs):
        super().__init__("frame_source", **kwargs)
        self.pub = self.create_publisher(SensorFrame, "/ipc/frame", QOS)


def _frame(sequence: int) -> SensorFrame:
    msg = samples()["SensorFrame"]
    msg.sequence = sequence
    msg.header.stamp.sec += sequence
    return msg


def test_composed_nodes_hand_messages_over_in_process(ros_context, spin):
    bus = IntraProcessBus()
    source = FrameSource(context=ros_context, intra_process=bus)
    bev = BevFeaturesNode(context=ros_context, intra_process=bus, parameter_overrides=[Parameter("checkpoint", value="")],
                          cli_args=["--ros-args", "-r", "~/input/frame:=/ipc/frame", "-r", "~/output/bev:=/ipc/bev"])
    spin(source, bev)
    received = lambda: bev.stats.snapshot()["received"].get("frame", 0)
    published = lambda: bev.stats.snapshot()["published"].get("bev", 0)

    # only in-process subscribers: the frame never goes over DDS (no DDS copy reaches bev)
    for seq in (1, 2, 3):  # one at a time: of a burst, a busy node takes the newest (latest-frame policy)
        source.pub.publish(_frame(seq))
        assert wait_for(lambda: published() == seq, 30)
    assert received() == 3 and bev.dds_duplicates_ignored == {}

    # an outside subscriber: it gets every frame over DDS, bev still gets each frame once
    monitor = rclpy.create_node("ipc_monitor", context=ros_context)
    seen = []
    monitor.create_subscription(SensorFrame, "/ipc/frame", seen.append, QOS)
    spin(monitor)
    assert wait_for(lambda: source.pub.get_subscription_count() == 2)
    for seq in (4, 5, 6):
        source.pub.publish(_frame(seq))
        assert wait_for(lambda: published() == seq, 30)
    assert wait_for(lambda: len(seen) == 3, 30)
    assert wait_for(lambda: bev.dds_duplicates_ignored.get("frame") == 3)
    assert received() == 6 and [m.sequence for m in seen] == [4, 5, 6]
    assert bev.stats.snapshot()["dropped_total"] == 0
    status = {kv.key: kv.value for kv in bev.diagnostic_status().values}
    assert status["intra_process"] == "on" and status["intra_process/dds_duplicates_ignored/frame"] == "3"

    # bus off: the same nodes talk over DDS, still once per frame
    bus.enabled = False
    source.pub.publish(_frame(7))
    assert wait_for(lambda: published() == 7 and len(seen) == 4, 30)
    assert received() == 7 and bev.dds_duplicates_ignored["frame"] == 3
    bus.enabled = True

    # a publisher of the same topic that is not on the bus is not heard: said, not hidden
    stranger = rclpy.create_node("ipc_stranger", context=ros_context)
    stranger.create_publisher(SensorFrame, "/ipc/frame", QOS)
    assert wait_for(lambda: bool(bev.unheard_publishers()))
    assert "/ipc/frame" in bev.diagnostic_status().message

    # destroying a node takes it off the bus
    source.destroy_node()
    assert bus.local_publishers("/ipc/frame", SensorFrame) == 0
    assert bus.subscriptions("/ipc/frame", SensorFrame)  # bev still listens
    bev_sub = next(s for s in bev.subscriptions if s.topic_name == "/ipc/frame")
    bev.destroy_subscription(bev_sub)
    assert not bus.subscriptions("/ipc/frame", SensorFrame)


class _Node:
    def __init__(self):
        self.executor = None  # not added to an executor yet
        self.tasks = []

    def get_nodes(self):
        return [self]

    def create_task(self, fn):
        self.tasks.append(fn)


def test_a_full_in_process_queue_keeps_the_newest_and_counts_the_rest():
    node = _Node()
    got, overflows = [], []
    sub = LocalSubscription(node, "/t", BevFeatures, got.append, depth=1, on_overflow=overflows.append)
    for seq in (1, 2, 3):
        sub.offer(BevFeatures(sequence=seq))
    assert sum(overflows) == 2 and got == [] and node.tasks == []  # not spun: nothing runs
    sub.drain()
    assert got == []  # still not spun
    node.executor = node  # now it is (the stand-in is its own executor)
    sub.offer(BevFeatures(sequence=4))
    assert sum(overflows) == 3 and len(node.tasks) == 1
    node.tasks[0]()
    assert [m.sequence for m in got] == [4]


def test_transient_local_topics_stay_on_dds(ros_context):
    bus = IntraProcessBus()
    source = FrameSource(context=ros_context, intra_process=bus)
    try:
        # ~/debug/node_info is transient local: late joiners need the middleware's history
        assert bus.local_publishers("/frame_source/debug/node_info", String) == 0
        assert bus.local_publishers("/frame_source/debug/processing_time_ms", Float64) == 1
        assert bus.local_publishers("/ipc/frame", SensorFrame) == 1
    finally:
        source.destroy_node()


def test_in_process_pairs_follow_dds_reliability_matching():
    bus = IntraProcessBus()
    node = _Node()
    best_effort = LocalSubscription(node, "/t", BevFeatures, print, depth=1, on_overflow=print)
    reliable = LocalSubscription(node, "/t", BevFeatures, print, depth=1, on_overflow=print, requires_reliable=True)
    bus.add_subscription(best_effort)
    bus.add_subscription(reliable)
    # a reliable publisher reaches both, a best-effort one only the best-effort reader (as in DDS)
    assert bus.subscriptions("/t", BevFeatures, reliable=True) == (best_effort, reliable)
    assert bus.subscriptions("/t", BevFeatures, reliable=False) == (best_effort,)
    assert bus.subscriptions("/t", SensorFrame) == ()  # another type never matches
    bus.add_publisher(IntraProcessPublisher(node, SimpleNamespace(topic_name="/t"), bus, BevFeatures, reliable=False))
    assert bus.local_publishers("/t", BevFeatures) == 1
    assert bus.local_publishers("/t", BevFeatures, requires_reliable=True) == 0  # the reliable reader keeps DDS
    bus.remove_node(node)
    assert bus.subscriptions("/t", BevFeatures) == () and bus.local_publishers("/t", BevFeatures) == 0


def test_a_node_behind_its_input_loses_frames_counted_once(ros_context, spin):
    bus = IntraProcessBus()
    source = FrameSource(context=ros_context, intra_process=bus)
    bev = BevFeaturesNode(context=ros_context, intra_process=bus,
                          parameter_overrides=[Parameter("checkpoint", value=""), Parameter("qos.input_depth", value=1)],
                          cli_args=["--ros-args", "-r", "~/input/frame:=/ipc/frame", "-r", "~/output/bev:=/ipc/bev"])
    executor = spin(source, bev)
    published = lambda: bev.stats.snapshot()["published"].get("bev", 0)
    source.pub.publish(_frame(1))
    assert wait_for(lambda: published() == 1, 30)
    executor.remove(bev)  # stalled: frames 2..4 pile up in its depth-1 queue
    for seq in (2, 3, 4):
        source.pub.publish(_frame(seq))
    assert bev.queue_overflows == {"frame": 2}
    executor.add(bev)  # spun again: frame 4, which waited in the queue, is delivered
    assert wait_for(lambda: published() == 2, 30)
    source.pub.publish(_frame(5))  # (only now: sooner, it would replace frame 4 in the depth-1 queue)
    assert wait_for(lambda: published() == 3, 30)  # frames 1, 4 and 5
    snap = bev.stats.snapshot()
    assert snap["received"]["frame"] == 3
    # the two frames pushed out are dropped once (the sequence gap), not once more as overflows
    assert snap["dropped"] == {"frame_lost_upstream": 2} and snap["dropped_total"] == 2
    status = {kv.key: kv.value for kv in bev.diagnostic_status().values}
    assert status["intra_process/queue_overflow/frame"] == "2"


def test_a_direct_subscription_runs_in_the_publishers_thread_when_spun():
    node = _Node()
    got = []
    sub = LocalSubscription(node, "/t", BevFeatures, got.append, depth=2, on_overflow=lambda n: None, direct=True)
    sub.offer(BevFeatures(sequence=1))
    assert got == [] and len(sub.queue) == 1  # not spun: queued, as a DDS reader keeps it
    node.executor = node
    sub.offer(BevFeatures(sequence=2))  # one waits already: behind it, in order, on the executor
    assert got == [] and len(node.tasks) == 1
    node.tasks.pop()()
    assert [m.sequence for m in got] == [1, 2]
    sub.offer(BevFeatures(sequence=3))  # nothing waits: called at once, in this thread
    assert [m.sequence for m in got] == [1, 2, 3] and node.tasks == []


class StageSource(LatentVlaNode):
    """Stands in for bev_features and latent_reasoner in the composed process."""

    schema_name = "sensor_sync"

    def __init__(self, **kwargs):
        super().__init__("stage_source", **kwargs)
        self.bev_pub = self.create_publisher(BevFeatures, "/ipc2/bev", QOS)
        self.plan_pub = self.create_publisher(LatentActionPlan, "/ipc2/plan", QOS)


def test_composed_planner_plans_in_the_thread_that_hands_the_pair_over(ros_context, spin):
    """No executor hop to the planner's own thread in a composed process: the frame is planned
    and its trajectory published in the thread that delivered the last of its inputs (the
    planner is a serial stage; the hop only added a thread wake-up per frame)."""
    import threading

    from latentvla_ros.ros.nodes.trajectory_planner import TrajectoryPlannerNode

    bus = IntraProcessBus()
    source = StageSource(context=ros_context, intra_process=bus)
    planner = TrajectoryPlannerNode(context=ros_context, intra_process=bus,
                                    parameter_overrides=[Parameter("checkpoint", value=""),
                                                         Parameter("allow_untrained", value=True)],
                                    cli_args=["--ros-args", "-r", "~/input/bev:=/ipc2/bev", "-r", "~/input/plan:=/ipc2/plan"])
    threads = []
    publish = planner._publish
    planner._publish = lambda traj, plan: (threads.append(threading.current_thread()), publish(traj, plan))
    spin(source, planner)
    assert wait_for(lambda: planner.executor is not None and planner in planner.executor.get_nodes())
    sample = samples()
    source.plan_pub.publish(sample["LatentActionPlan"])
    source.bev_pub.publish(sample["BevFeatures"])
    assert threads[:1] == [threading.current_thread()]  # planned before publish() returned, in this thread
    assert planner.stats.snapshot()["received"] == {"bev": 1, "plan": 1}


def test_sensor_sync_converts_a_frame_once_for_every_in_process_consumer(ros_context, monkeypatch):
    """In a composed process bev_features and latent_reasoner receive sensor_sync's very message
    object: sensor_sync converts it to the core frame once (with the points and odometry it
    converted for its checks) and both consumers get that conversion; with no in-process
    consumer nothing is converted for nobody."""
    import numpy as np
    from ros_helpers import camera_image, lidar_cloud, odometry, sensor_remaps, stamp

    from latentvla_ros.ros import conversions
    from latentvla_ros.ros.nodes import sensor_sync as sensor_sync_module
    from latentvla_ros.ros.nodes.sensor_sync import SensorSyncNode

    bus = IntraProcessBus()
    sync = SensorSyncNode(context=ros_context, intra_process=bus, cli_args=sensor_remaps("/share"))
    made = []
    convert = sensor_sync_module.sensor_frame_to_core
    monkeypatch.setattr(sensor_sync_module, "sensor_frame_to_core", lambda *a: made.append(1) or convert(*a))
    try:
        sync._on_synchronized(camera_image(stamp(0)), lidar_cloud(stamp(0)), odometry(stamp(0)))
        assert made == [] and sync.stats.snapshot()["published"]["frame"] == 1  # over DDS only: not converted

        sub = LocalSubscription(SimpleNamespace(executor=None), "/share/frame", SensorFrame, lambda m: None, 10,
                                lambda n: None)
        bus.add_subscription(sub)
        sync._on_synchronized(camera_image(stamp(1)), lidar_cloud(stamp(1)), odometry(stamp(1)))
        msg = sub.queue[-1]
        assert made == [1]
        expected = conversions.sensor_frame_to_core(msg)  # what each consumer would compute on its own
        monkeypatch.setattr(conversions, "sensor_frame_to_core", lambda *a: (_ for _ in ()).throw(AssertionError("converted again")))
        for _consumer in ("bev_features", "latent_reasoner"):
            frame = conversions.shared_sensor_frame_to_core(msg)
            assert frame.stamp_ns == expected.stamp_ns == stamp(1)
            assert np.array_equal(frame.lidar_points, expected.lidar_points)
            assert np.array_equal(frame.cameras[0].image, expected.cameras[0].image)
            assert frame.cameras[0].name == expected.cameras[0].name
            assert np.array_equal(frame.ego.velocity, expected.ego.velocity)
            assert np.array_equal(frame.ego.acceleration, expected.ego.acceleration)
            assert frame.ego.yaw_rate == expected.ego.yaw_rate and frame.ego.command == expected.ego.command
    finally:
        sync.destroy_node()
