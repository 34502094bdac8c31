"""bev_features, latent_reasoner, trajectory_planner and teacher_labeler on real messages."""
from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
import rclpy
from conftest import wait_for
from fixtures.message_samples import STAMP_NS, samples
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy

from latentvla_ros.msg import BevFeatures, LatentActionPlan, PlannedTrajectory, SensorFrame
from latentvla_ros.ros.conversions import stamp_to_ns
from latentvla_ros.ros.nodes.bev_features import BevFeaturesNode
from latentvla_ros.ros.nodes.latent_reasoner import LatentReasonerNode
from latentvla_ros.ros.nodes.trajectory_planner import TrajectoryPlannerNode
from latentvla_ros.runtime import ModelOutputError

QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
UNTRAINED = [Parameter("checkpoint", value="")]


def _frame(sequence=1, stamp_offset_ns=0):
    msg = samples()["SensorFrame"]
    msg.sequence = sequence
    msg.header.stamp.nanosec = (msg.header.stamp.nanosec + stamp_offset_ns) % 1_000_000_000
    return msg


def _io(context, pub_type, pub_topic, sub_type, sub_topic):
    io = rclpy.create_node(f"io_{abs(hash(pub_topic)) % 10**6}", context=context)
    pub = io.create_publisher(pub_type, pub_topic, QOS)
    got = []
    io.create_subscription(sub_type, sub_topic, got.append, QOS)
    return io, pub, got


@pytest.mark.parametrize("node_cls,out_type", [(BevFeaturesNode, BevFeatures), (LatentReasonerNode, LatentActionPlan)])
def test_model_node_processes_frames_and_drops_bad_ones(ros_context, spin, node_cls, out_type):
    out_name = "bev" if out_type is BevFeatures else "plan"
    node = node_cls(context=ros_context, parameter_overrides=UNTRAINED,
                    cli_args=["--ros-args", "-r", "~/input/frame:=/t/frame", "-r", f"~/output/{out_name}:=/t/out"])
    io, pub, got = _io(ros_context, SensorFrame, "/t/frame", out_type, "/t/out")
    spin(node, io)
    assert wait_for(lambda: pub.get_subscription_count() > 0 and io.count_publishers("/t/out") > 0)
    pub.publish(_frame(1))
    assert wait_for(lambda: len(got) == 1, 30)
    out = got[0]
    assert stamp_to_ns(out.header.stamp) == STAMP_NS and out.header.frame_id == "base_link"
    assert "untrained" in out.model_id  # loud: no checkpoint given
    if out_type is BevFeatures:
        assert out.num_tokens == out.grid_rows * out.grid_cols and len(out.tokens) == out.num_tokens * out.channels
        assert out.sequence == 1  # the SensorFrame's: the planner counts BEV frames that never reach it
    else:
        assert out.num_tokens == 12 and out.codebook_size == 16 and max(out.token_ids) < 16
        probs = np.frombuffer(out.token_probabilities, np.float32).reshape(12, 16)
        np.testing.assert_allclose(probs.sum(1), 1, atol=1e-4)
    bad = _frame(2)
    bad.odometry.twist.twist.linear.x = math.nan
    pub.publish(bad)  # one at a time: of a burst, a busy node takes the newest (latest-frame policy)
    assert wait_for(lambda: node.stats.snapshot()["dropped"].get("bad_message", 0) == 1, 10)
    empty = _frame(3)
    empty.lidar.width = 0
    empty.lidar.data = []
    pub.publish(empty)
    assert wait_for(lambda: node.stats.snapshot()["dropped"].get("bad_message", 0) == 2, 10)
    pub.publish(_frame(6))  # sequences 4 and 5 never arrived: counted
    assert wait_for(lambda: len(got) == 2, 30)
    assert node.stats.snapshot()["dropped"]["frame_lost_upstream"] == 2


def test_reasoner_token_markers_carry_the_lam_code_names(ros_context, spin, tmp_path):
    """The latent_reasoner's ~/debug/markers label its tokens with the LAM's code names (issue 13)."""
    from visualization_msgs.msg import MarkerArray

    names = [f"code {k} straight {k} m/s" for k in range(16)]
    lam = tmp_path / "lam"
    lam.mkdir()
    (lam / "config.json").write_text(json.dumps({"model_type": "lam", "config": {"code_names": names}, "meta": {}}))
    node = LatentReasonerNode(context=ros_context, parameter_overrides=UNTRAINED + [Parameter("lam_checkpoint", value=str(lam))],
                              cli_args=["--ros-args", "-r", "~/input/frame:=/m/frame", "-r", "~/debug/markers:=/m/markers"])
    io, pub, got = _io(ros_context, SensorFrame, "/m/frame", MarkerArray, "/m/markers")
    spin(node, io)
    assert node.code_names == tuple(names)
    assert wait_for(lambda: pub.get_subscription_count() > 0 and io.count_publishers("/m/markers") > 0)
    pub.publish(_frame(1))
    assert wait_for(lambda: len(got) >= 1, 30)
    labels = [m.text for m in got[0].markers if m.text]
    assert len(labels) == 1 and labels[0].startswith("latent tokens: code ")
    assert all(m.ns == "latentvla/reasoner/latent_tokens" for m in got[0].markers)
    # a LAM checkpoint without names (or none at all): the ids are shown, nothing fails
    bare = LatentReasonerNode(context=ros_context,
                              parameter_overrides=UNTRAINED + [Parameter("lam_checkpoint", value=str(tmp_path / "none"))])
    assert bare.code_names == ()
    bare.destroy_node()


@pytest.fixture
def planner_rig(ros_context, spin):
    node = TrajectoryPlannerNode(context=ros_context, parameter_overrides=[*UNTRAINED, Parameter("plan_timeout_s", value=0.3),
                                                                            Parameter("input_timeout_s", value=5.0),
                                                                            Parameter("allow_untrained", value=True)],
                                 cli_args=["--ros-args", "-r", "~/input/bev:=/p/bev", "-r", "~/input/plan:=/p/plan",
                                           "-r", "~/output/trajectory:=/p/traj"])
    io = rclpy.create_node("planner_io", context=ros_context)
    bev_pub = io.create_publisher(BevFeatures, "/p/bev", QOS)
    plan_pub = io.create_publisher(LatentActionPlan, "/p/plan", QOS)
    got = []
    io.create_subscription(PlannedTrajectory, "/p/traj", got.append, QOS)
    spin(node, io)
    assert wait_for(lambda: bev_pub.get_subscription_count() > 0 and plan_pub.get_subscription_count() > 0
                    and io.count_publishers("/p/traj") > 0)
    return node, bev_pub, plan_pub, got


def _bev_and_plan(node, stamp_offset_ns=0):
    """A BEV message shaped for the planner's config and a plan for the student context."""
    from latentvla_ros.core.types import BevTokens, LatentPlan
    from latentvla_ros.ros.conversions import bev_to_msg, plan_to_msg

    cfg = node.planner.config
    stamp = STAMP_NS + stamp_offset_ns
    rng = np.random.default_rng(0)
    bev = BevTokens(stamp, rng.normal(size=(cfg.num_bev_tokens, cfg.bev_token_dim)).astype(np.float32), 8, 8, 8.0, -32, -32,
                    np.array([0, 1, 0, 0, 10, 0, 0, 0], np.float32))
    probs = np.full((12, 16), 1 / 16, np.float32)
    n_visual = cfg.num_context_tokens - 12
    plan = LatentPlan(stamp, np.zeros(12, int), probs, rng.normal(size=(12, cfg.context_dim)).astype(np.float32),
                      rng.normal(size=(n_visual, cfg.context_dim)).astype(np.float32))
    return bev_to_msg(bev, "base_link"), plan_to_msg(plan, "base_link")


def test_planner_pairs_bev_with_plan_by_stamp(planner_rig):
    node, bev_pub, plan_pub, got = planner_rig
    bev, plan = _bev_and_plan(node)
    plan_pub.publish(plan)  # the plan may come first
    time.sleep(0.1)
    bev_pub.publish(bev)
    assert wait_for(lambda: any(stamp_to_ns(t.header.stamp) == STAMP_NS for t in got), 20)
    traj = [t for t in got if stamp_to_ns(t.header.stamp) == STAMP_NS]
    assert len(traj) == 1 and not traj[0].is_fallback and len(traj[0].points) == 8
    assert traj[0].model_id and "untrained" in traj[0].model_id


def test_planner_counts_bev_frames_that_never_arrived(planner_rig):
    node, bev_pub, plan_pub, got = planner_rig
    for k, sequence in enumerate((1, 2, 5)):  # 3 and 4 dropped upstream or lost in a full queue
        bev, plan = _bev_and_plan(node, 5000 + k)
        bev.sequence = sequence
        plan_pub.publish(plan)
        bev_pub.publish(bev)
    assert wait_for(lambda: sum(stamp_to_ns(t.header.stamp) >= STAMP_NS + 5000 for t in got) == 3, 20)
    assert node.stats.snapshot()["dropped"]["frame_lost_upstream"] == 2


def test_planner_publishes_path_and_markers_only_while_subscribed(planner_rig, ros_context, spin):
    from nav_msgs.msg import Path
    from visualization_msgs.msg import MarkerArray

    node, bev_pub, plan_pub, got = planner_rig
    bev, plan = _bev_and_plan(node, 3000)
    plan_pub.publish(plan)
    bev_pub.publish(bev)
    assert wait_for(lambda: any(stamp_to_ns(t.header.stamp) == STAMP_NS + 3000 for t in got), 20)
    assert node._path_pub.get_subscription_count() == 0
    viewer = rclpy.create_node("rviz_standin", context=ros_context)
    paths, markers = [], []
    viewer.create_subscription(Path, "/trajectory_planner/output/path", paths.append, QOS)
    viewer.create_subscription(MarkerArray, "/trajectory_planner/debug/markers", markers.append, QOS)
    spin(viewer)
    assert wait_for(lambda: node._path_pub.get_subscription_count() > 0 and node._marker_pub.get_subscription_count() > 0)
    bev, plan = _bev_and_plan(node, 4000)
    plan_pub.publish(plan)
    bev_pub.publish(bev)
    assert wait_for(lambda: paths and markers, 20)
    assert [stamp_to_ns(p.header.stamp) for p in paths] == [STAMP_NS + 4000]  # nothing of the unwatched frame
    assert len(paths[0].poses) == 9 and paths[0].header.frame_id == "base_link"  # ego origin + 8 poses
    ns = {m.ns for m in markers[0].markers}
    assert {"latentvla/poses", "latentvla/latent_tokens", "latentvla/fallback_state"} <= ns


def test_planner_falls_back_when_plan_is_late_or_model_fails(planner_rig, monkeypatch):
    node, bev_pub, plan_pub, got = planner_rig
    if not node.planner.needs_plan:
        pytest.skip("planner without fusion does not wait for plans")
    bev, _ = _bev_and_plan(node, 1000)
    bev_pub.publish(bev)  # its plan never comes
    assert wait_for(lambda: any(t.is_fallback and stamp_to_ns(t.header.stamp) == STAMP_NS + 1000 for t in got), 10)
    fb = [t for t in got if stamp_to_ns(t.header.stamp) == STAMP_NS + 1000][0]
    assert fb.fallback_reason == "latent plan timeout"
    assert fb.points[-1].pose.position.x == pytest.approx(24.0, abs=0.1)  # 10 m/s braking at 2 m/s^2 for 4 s
    assert node.stats.snapshot()["dropped"]["plan_timeout"] == 1

    def explode(*_a, **_k):
        raise ModelOutputError("non-finite values in output 'poses'")

    monkeypatch.setattr(node.planner, "plan", explode)
    bev, plan = _bev_and_plan(node, 2000)
    bev_pub.publish(bev)
    plan_pub.publish(plan)
    assert wait_for(lambda: any(stamp_to_ns(t.header.stamp) == STAMP_NS + 2000 for t in got), 10)
    fb = [t for t in got if stamp_to_ns(t.header.stamp) == STAMP_NS + 2000][0]
    assert fb.is_fallback and "non-finite" in fb.fallback_reason


def test_drops_log_at_any_severity_in_any_order(planner_rig):
    node, *_ = planner_rig
    node.drop("first_kind", "a warning", throttle_s=0.0)
    node.drop("second_kind", "an error", throttle_s=0.0, level="error")  # rclpy forbids one line at two severities
    node.drop("first_kind", "a warning again", throttle_s=0.0)
    dropped = node.stats.snapshot()["dropped"]
    assert dropped["first_kind"] == 2 and dropped["second_kind"] == 1


def test_planner_runtime_parameters(planner_rig):
    node, *_ = planner_rig
    assert node.set_parameters([Parameter("plan_timeout_s", value=0.2)])[0].successful
    assert node.params.plan_timeout_s == 0.2
    result = node.set_parameters([Parameter("plan_timeout_s", value=-1.0)])[0]
    assert not result.successful and "plan_timeout_s" in result.reason
    assert not node.set_parameters([Parameter("checkpoint", value="x")])[0].successful  # read-only


def test_teacher_labeler_labels_frames_and_writes_dataset(ros_context, spin, tmp_path):
    from latentvla_ros.models.configuration_teacher import TeacherConfig
    from latentvla_ros.models.modeling_teacher import LatentTeacher
    from latentvla_ros.ros.nodes.teacher_labeler import TeacherLabelerNode

    LatentTeacher.build(TeacherConfig(preset="tiny")).save(tmp_path / "teacher")
    node = TeacherLabelerNode(context=ros_context, parameter_overrides=[
        Parameter("model_path", value=str(tmp_path / "teacher")), Parameter("output_file", value=str(tmp_path / "labels.npz"))],
        cli_args=["--ros-args", "-r", "~/input/frame:=/l/frame", "-r", "~/output/plan:=/l/plan"])
    io, pub, got = _io(ros_context, SensorFrame, "/l/frame", LatentActionPlan, "/l/plan")
    spin(io)
    from latentvla_ros.ros.executors import GraphExecutor

    ex = GraphExecutor(ros_context).add(node).start()
    try:
        assert wait_for(lambda: pub.get_subscription_count() > 0 and io.count_publishers("/l/plan") > 0)
        pub.publish(_frame(1))
        pub.publish(_frame(2, 100_000_000))
        assert wait_for(lambda: len(got) == 2, 30)
        assert got[0].model_id == "teacher:teacher" and got[0].num_tokens == 12
    finally:
        ex.stop()
        node.destroy_node()  # writes the dataset
    data = np.load(tmp_path / "labels.npz")
    assert data["probs"].shape == (2, 12, 16) and data["stamps_ns"][0] == STAMP_NS
    np.testing.assert_allclose(data["probs"].sum(-1), 1, atol=1e-4)
