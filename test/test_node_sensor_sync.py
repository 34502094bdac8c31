"""sensor_sync on real rclpy messages: matching, acceleration, bad input, parameters."""
from __future__ import annotations

import math

import pytest
import rclpy
from conftest import wait_for
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import SetParametersResult
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from ros_helpers import camera_image, lidar_cloud, odometry, sensor_remaps, stamp
from sensor_msgs.msg import Image, PointCloud2

from latentvla_ros.msg import SensorFrame
from latentvla_ros.ros.contracts.parameters import ParameterError
from latentvla_ros.ros.conversions import stamp_to_ns
from latentvla_ros.ros.nodes.sensor_sync import SensorSyncNode

QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


@pytest.fixture
def rig(ros_context, spin):
    return make_rig(ros_context, spin)


def make_rig(ros_context, spin, params=(), cam_type=Image, cam_topic="/test/camera/image", remaps=()):
    """sensor_sync (reliable inputs, depth 10) with publishers for its inputs and the frames it publishes."""
    node = SensorSyncNode(context=ros_context, cli_args=sensor_remaps() + [a for r in remaps for a in ("-r", r)],
                          parameter_overrides=[Parameter("qos.input_reliability", value="reliable"),
                                               Parameter("qos.input_depth", value=10), *params])
    io = rclpy.create_node("sync_test_io", context=ros_context)
    pubs = {"cam": io.create_publisher(cam_type, cam_topic, QOS),
            "lidar": io.create_publisher(PointCloud2, "/test/lidar", QOS),
            "odom": io.create_publisher(Odometry, "/test/odom", QOS)}
    frames: list[SensorFrame] = []
    io.create_subscription(SensorFrame, "/test/frame", frames.append, QOS)
    spin(node, io)
    assert wait_for(lambda: all(p.get_subscription_count() > 0 for p in pubs.values()), 10)
    assert wait_for(lambda: io.count_publishers("/test/frame") > 0, 10)
    return node, pubs, frames


def _publish_set(pubs, k, speed=10.0, cam=None, lidar=None, odom=None):
    pubs["cam"].publish(cam or camera_image(stamp(k)))
    pubs["lidar"].publish(lidar or lidar_cloud(stamp(k, offset_s=0.01)))
    pubs["odom"].publish(odom or odometry(stamp(k, offset_s=-0.005), speed=speed))


def test_synchronizes_sets_and_estimates_acceleration(rig):
    node, pubs, frames = rig
    for k in range(6):
        _publish_set(pubs, k, speed=10.0 + 0.1 * k)  # +1 m/s^2
    assert wait_for(lambda: len(frames) >= 5, 10), f"{len(frames)} frames"
    stamps = [stamp_to_ns(f.header.stamp) for f in frames]
    assert stamps == sorted(stamps) and stamps[0] in {stamp(k) for k in range(6)}
    last = frames[-1]
    assert last.header.frame_id == "base_link" and len(last.images) == 1
    assert 0.0 < last.sync_spread_s <= 0.05
    # each frame carries the odometry of its own set: set k was published at 10 + 0.1 k m/s
    ks = [round((s - stamp(0)) / 100_000_000) for s in stamps]
    assert [stamp(k) for k in ks] == stamps
    for frame, k in zip(frames, ks):
        assert frame.odometry.twist.twist.linear.x == pytest.approx(10.0 + 0.1 * k, abs=1e-9)
    # acceleration: +1 m/s^2 between any two frames, through the first-order low-pass (time constant tau):
    # the first frame gives 0, then each step of dt closes alpha = dt / (tau + dt) of the remaining gap to 1,
    # so after the frames received a = 1 - prod(1 - alpha); e.g. 5 steps of 0.1 s at tau 0.2: 1 - (2/3)^5
    tau = node.params.acceleration_filter_tau_s
    remaining = 1.0
    for k0, k1 in zip(ks, ks[1:]):
        dt = 0.1 * (k1 - k0)
        remaining *= 1.0 - dt / (tau + dt)
    assert frames[0].ego_acceleration.x == 0.0  # the first sample of the estimator
    assert last.ego_acceleration.x == pytest.approx(1.0 - remaining, abs=1e-4)
    assert last.ego_acceleration.y == pytest.approx(0.0, abs=1e-6)


def test_bad_messages_are_dropped_counted_and_node_keeps_running(rig):
    node, pubs, frames = rig
    bad_cam = camera_image(stamp(0))
    bad_cam.encoding = "16UC1"
    _publish_set(pubs, 0, cam=bad_cam)
    bad_step = camera_image(stamp(1))
    bad_step.step = 7
    _publish_set(pubs, 1, cam=bad_step)
    empty = lidar_cloud(stamp(2, offset_s=0.01), n=0)
    _publish_set(pubs, 2, lidar=empty)
    nan_odom = odometry(stamp(3, offset_s=-0.005))
    nan_odom.twist.twist.linear.x = math.nan
    _publish_set(pubs, 3, odom=nan_odom)
    assert wait_for(lambda: node.stats.snapshot()["dropped"].get("bad_message", 0) >= 4, 10), node.stats.snapshot()
    assert frames == []
    _publish_set(pubs, 4)
    _publish_set(pubs, 5)
    assert wait_for(lambda: len(frames) >= 1, 10)
    assert {stamp_to_ns(f.header.stamp) for f in frames} <= {stamp(4), stamp(5)}


def test_invalid_parameters_are_rejected_with_a_reason(ros_context):
    with pytest.raises(ParameterError, match="slop_s"):
        SensorSyncNode(context=ros_context, parameter_overrides=[Parameter("slop_s", value=-1.0)])
    with pytest.raises(ParameterError, match="qos.input_reliability"):
        SensorSyncNode(context=ros_context, parameter_overrides=[Parameter("qos.input_reliability", value="sometimes")])
    node = SensorSyncNode(context=ros_context)
    try:
        # slop_s shapes the synchronizer at start-up: changing it later is refused, not ignored
        result: SetParametersResult = node.set_parameters([Parameter("slop_s", value=0.08)])[0]
        assert not result.successful and "read-only" in result.reason
        assert node.params.slop_s == 0.05
    finally:
        node.destroy_node()


def test_stamp_gap_counter_counts_missing_samples_and_clock_jumps():
    from latentvla_ros.ros.nodes.sensor_sync import StampGapCounter

    c = StampGapCounter(factor=1.5, reset_ns=1_000_000_000)
    period = 100_000_000
    results = [c.update(k * period) for k in range(6)]
    assert results == [0] * 6
    assert c.update(9 * period) == 3  # samples 6, 7 and 8 never arrived
    assert c.update(9 * period) == StampGapCounter.DUPLICATE
    assert c.update(int(8.5 * period)) == StampGapCounter.OUT_OF_ORDER
    assert c.update(9 * period + 1000 * 1_000_000_000) == StampGapCounter.JUMP_FORWARD  # simulator reset
    assert c.update(10 * period + 1000 * 1_000_000_000) == 0
    assert c.update(0) == StampGapCounter.RESET  # looping bag
    assert c.missing == 3
