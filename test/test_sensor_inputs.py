"""sensor_sync input validation on real rclpy messages: stamps, NaN/inf clouds, losses counted
once and only when samples were really lost (core/input_checks.py)."""
from __future__ import annotations

import math
import time
from types import SimpleNamespace

import numpy as np
from conftest import wait_for
from ros_helpers import camera_image, lidar_cloud, odometry, stamp
from test_node_sensor_sync import _publish_set, rig  # noqa: F401 - the fixture

from latentvla_ros.core.input_checks import LossLedger, StampGapCounter, stamp_problem
from latentvla_ros.ros import conversions as conv
from latentvla_ros.ros.conversions import stamp_to_ns

INPUTS = ("camera/front/image", "lidar/points", "odometry")


def _dropped(node) -> dict:
    return node.stats.snapshot()["dropped"]


def _with_stamp(msg, sec: int, nanosec: int):
    msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nanosec
    return msg


def test_stamp_problem_names_each_bad_stamp():
    now = stamp(0)
    assert stamp_problem(1_700_000_000, 1_500_000_000, now, 60 * 10**9).startswith("nanosec 1500000000 outside")
    assert stamp_problem(0, 0, now, 60 * 10**9).startswith("zero stamp")
    assert stamp_problem(-5, 0, now, 60 * 10**9).startswith("negative stamp")
    assert "ahead of the node clock" in stamp_problem(2_000_000_000, 0, now, 60 * 10**9)
    assert stamp_problem(1_700_000_000, 5, now, 60 * 10**9) is None
    assert stamp_problem(0, 50_000_000, None, 60 * 10**9) is None  # CARLA at t = 0.05 s, sim clock not yet known


def test_bad_stamps_are_counted_per_input_with_the_reason_and_never_become_frames(rig):
    node, pubs, frames = rig
    bad = [(1_700_000_000, 1_500_000_000), (0, 0), (-3, 0), (2_100_000_000, 0)]  # nanosec >= 1e9, zero, negative, future
    for sec, nanosec in bad:
        _publish_set(pubs, 0, cam=_with_stamp(camera_image(0), sec, nanosec),
                     lidar=_with_stamp(lidar_cloud(0), sec, nanosec), odom=_with_stamp(odometry(0), sec, nanosec))
    assert wait_for(lambda: all(_dropped(node).get(f"bad_stamp/{i}", 0) == len(bad) for i in INPUTS), 10), _dropped(node)
    assert node._sync.stats()["received"] == 0  # nothing reached the synchronizer
    for k in (1, 2):
        _publish_set(pubs, k)
    assert wait_for(lambda: len(frames) >= 1, 10)
    time.sleep(0.3)
    assert {stamp_to_ns(f.header.stamp) for f in frames} <= {stamp(1), stamp(2)}


def test_nan_and_inf_clouds_are_counted_drops_and_nan_points_are_counted(rig):
    node, pubs, frames = rig
    for k, fill in ((0, math.nan), (1, math.inf)):
        pts = np.full((500, 4), fill, np.float32)
        _publish_set(pubs, k, lidar=conv.xyzi_to_pointcloud2(pts, stamp(k, offset_s=0.01), "base_link"))
    assert wait_for(lambda: _dropped(node).get("bad_message", 0) >= 2, 10), _dropped(node)
    assert frames == [] and node.nonfinite_points == 1000
    pts = np.asarray(conv.pointcloud2_to_xyzi(lidar_cloud(0))).copy()
    pts[:300, 0] = math.nan  # a driver's no-return points: the frame goes on, the points are counted
    _publish_set(pubs, 2, lidar=conv.xyzi_to_pointcloud2(pts, stamp(2, offset_s=0.01), "base_link"))
    _publish_set(pubs, 3)
    assert wait_for(lambda: len(frames) >= 1, 10)
    assert node.nonfinite_points == 1300
    assert node.diagnostic_values()["nonfinite_points"] == "1300"


def test_forward_stamp_jumps_are_not_losses_and_real_losses_count_once(rig):
    node, pubs, frames = rig
    period = 0.2

    def publish(k: int, jump_s: float = 0.0) -> None:
        _publish_set(pubs, k, cam=camera_image(stamp(k, period, jump_s)),
                     lidar=lidar_cloud(stamp(k, period, jump_s + 0.01)), odom=odometry(stamp(k, period, jump_s - 0.005)))

    k = 0
    for k in range(8):  # the period of stamps and arrivals is learned
        publish(k)
        time.sleep(period)
    for k in range(8, 12):  # the stamps jump 5 s forward, the messages keep their pace: no sample is missing
        publish(k, jump_s=5.0)
        time.sleep(period)
    assert wait_for(lambda: node.stats.snapshot()["received"].get("odometry", 0) >= 12, 10)
    assert not any(key.startswith("input_gap/") for key in _dropped(node)), _dropped(node)
    assert all(node.anomalies.get(f"time_jump_forward/{i}", 0) >= 1 for i in INPUTS), node.anomalies
    # a real outage: 4 samples never published, the arrivals pause as long
    time.sleep(4 * period)
    publish(16, jump_s=5.0)
    time.sleep(period)
    publish(17, jump_s=5.0)
    assert wait_for(lambda: all(_dropped(node).get(f"input_gap/{i}", 0) == 4 for i in INPUTS), 10), _dropped(node)
    # the middleware reports 2 lost odometry samples and the stamps show them too: counted once
    time.sleep(1.5)  # (a pause without a stamp gap: nothing is missing)
    publish(18, jump_s=5.0)
    assert wait_for(lambda: node.stats.snapshot()["received"].get("odometry", 0) >= 15, 10)
    node._on_message_lost("odometry", SimpleNamespace(total_count_change=2))
    time.sleep(3 * period)
    publish(21, jump_s=5.0)
    assert wait_for(lambda: node.stats.snapshot()["received"].get("odometry", 0) >= 16, 10)
    assert wait_for(lambda: _dropped(node).get("input_gap/lidar/points", 0) == 6, 10), _dropped(node)
    time.sleep(0.2)
    dropped = _dropped(node)
    assert dropped["lost_in_transport/odometry"] == 2
    assert dropped["input_gap/odometry"] == 4, dropped  # the 2 lost in transport are not counted again


def test_gap_counter_tells_stamp_jumps_from_losses_by_the_arrivals():
    c = StampGapCounter(factor=1.5, reset_ns=10**9)
    p = 100_000_000
    for k in range(6):
        assert c.update(k * p, arrival_ns=k * p) == 0
    assert c.update(6 * p + 3 * 10**9, arrival_ns=6 * p) == StampGapCounter.JUMP_FORWARD  # 3 s jump, no pause
    assert c.update(7 * p + 3 * 10**9, arrival_ns=7 * p) == 0
    assert c.update(10 * p + 3 * 10**9, arrival_ns=10 * p) == 2  # samples 8 and 9: stamps and arrivals agree
    assert c.update(12 * p + 8 * 10**9, arrival_ns=12 * p) == 1  # a pause of one sample and a 5 s jump
    assert c.missing == 3 and c.jumps_forward == 2
    # a queue overwrite under load: the sample before the gap was taken late, so the pause in
    # the arrivals looks like one period; one missing sample is still one missing sample
    assert c.update(14 * p + 8 * 10**9, arrival_ns=int(13.1 * p)) == 1
    # without arrival times (stamps only) the old rule: any gap under 10 s is lost samples
    s = StampGapCounter(factor=1.5, reset_ns=10**9)
    for k in range(6):
        s.update(k * p)
    assert s.update(6 * p + 3 * 10**9) == 30


def test_loss_ledger_counts_each_loss_once_whichever_witness_reports_first():
    ledger = LossLedger(window_ns=10**9)
    assert ledger.from_transport(2, 0) == 2
    assert ledger.from_gap(3, 10**8) == 1  # 2 of the 3 were reported by the middleware already
    assert ledger.from_gap(4, 2 * 10**8) == 4
    assert ledger.from_transport(6, 3 * 10**8) == 1  # 5 of the 6 were counted from the gaps
    assert ledger.from_gap(2, 20 * 10**9) == 2  # reports further apart than the window are different losses


def test_a_sensor_frame_lost_in_transport_is_counted_once(ros_context):
    """The middleware's message_lost report and the SensorFrame sequence gap are one loss."""
    from rclpy.parameter import Parameter

    from latentvla_ros.ros.nodes.latent_reasoner import LatentReasonerNode

    node = LatentReasonerNode(context=ros_context, parameter_overrides=[Parameter("checkpoint", value="")])
    try:
        for sequence, lost_before in ((1, 0), (2, 0), (5, 2), (9, 0)):
            if lost_before:  # the middleware noticed 2 of the 2 frames #3, #4 missing
                node._on_message_lost("frame", SimpleNamespace(total_count_change=lost_before))
            node.count_lost_frames(sequence)
        node._on_message_lost("frame", SimpleNamespace(total_count_change=1))  # 1 of #6..#8, reported late
        dropped = _dropped(node)
        assert dropped.get("lost_in_transport/frame", 0) + dropped.get("frame_lost_upstream", 0) == 5, dropped
        assert dropped["lost_in_transport/frame"] == 2 and dropped["frame_lost_upstream"] == 3
    finally:
        node.destroy_node()
