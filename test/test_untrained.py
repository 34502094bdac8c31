"""Untrained or corrupt weights never drive unflagged: a model node whose checkpoint is missing
or corrupt (a truncated safetensors) publishes its outputs with 'untrained' in model_id, and
the planner then publishes flagged fallbacks, unless allow_untrained says otherwise."""
from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
import rclpy
from conftest import wait_for
from fixtures.message_samples import STAMP_NS, samples
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy

from latentvla_ros.core.resources import share_path
from latentvla_ros.msg import BevFeatures, LatentActionPlan, PlannedTrajectory, SensorFrame
from latentvla_ros.ros.conversions import stamp_to_ns
from latentvla_ros.ros.nodes.bev_features import BevFeaturesNode
from latentvla_ros.ros.nodes.trajectory_planner import TrajectoryPlannerNode

QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
EDGE = share_path("checkpoints", "edge")


def _truncated(tmp_path, sub: str):
    """A copy of a shipped checkpoint whose model.safetensors lost its second half."""
    if not (EDGE / sub / "model.safetensors").is_file():
        pytest.skip(f"no shipped checkpoint {EDGE / sub}")
    dst = tmp_path / sub
    shutil.copytree(EDGE / sub, dst)
    weights = dst / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    (dst / "model.onnx").unlink(missing_ok=True)
    return dst


def _bev_and_plan(node, stamp_ns: int, bev_id: str = "bev_backbone:bev_backbone:0123456789ab",
                  plan_id: str = "student:student:0123456789ab"):
    from latentvla_ros.core.types import BevTokens, LatentPlan
    from latentvla_ros.ros.conversions import bev_to_msg, plan_to_msg

    cfg = node.planner.config
    rng = np.random.default_rng(0)
    bev = BevTokens(stamp_ns, rng.normal(size=(cfg.num_bev_tokens, cfg.bev_token_dim)).astype(np.float32), 8, 8, 8.0,
                    -32, -32, np.array([0, 1, 0, 0, 10, 0, 0, 0], np.float32), model_id=bev_id)
    n_visual = cfg.num_context_tokens - 12
    plan = LatentPlan(stamp_ns, np.zeros(12, int), np.full((12, 16), 1 / 16, np.float32),
                      rng.normal(size=(12, cfg.context_dim)).astype(np.float32),
                      rng.normal(size=(n_visual, cfg.context_dim)).astype(np.float32), model_id=plan_id)
    return bev_to_msg(bev, "base_link"), plan_to_msg(plan, "base_link")


class PlannerRig:
    def __init__(self, context, spin, *params: Parameter):
        self.node = TrajectoryPlannerNode(context=context, parameter_overrides=[Parameter("plan_timeout_s", value=2.0),
                                                                               Parameter("input_timeout_s", value=10.0),
                                                                               *params],
                                          cli_args=["--ros-args", "-r", "~/input/bev:=/u/bev", "-r",
                                                    "~/input/plan:=/u/plan", "-r", "~/output/trajectory:=/u/traj"])
        self.io = rclpy.create_node("untrained_io", context=context)
        self.bev_pub = self.io.create_publisher(BevFeatures, "/u/bev", QOS)
        self.plan_pub = self.io.create_publisher(LatentActionPlan, "/u/plan", QOS)
        self.got: list[PlannedTrajectory] = []
        self.io.create_subscription(PlannedTrajectory, "/u/traj", self.got.append, QOS)
        spin(self.node, self.io)
        assert wait_for(lambda: self.bev_pub.get_subscription_count() > 0 and self.plan_pub.get_subscription_count() > 0
                        and self.io.count_publishers("/u/traj") > 0)

    def plan(self, k: int, **ids) -> PlannedTrajectory:
        stamp = STAMP_NS + k * 100_000_000
        bev, plan = _bev_and_plan(self.node, stamp, **ids)
        self.plan_pub.publish(plan)
        self.bev_pub.publish(bev)
        assert wait_for(lambda: any(stamp_to_ns(t.header.stamp) == stamp for t in self.got), 20)
        return [t for t in self.got if stamp_to_ns(t.header.stamp) == stamp][0]


def test_a_truncated_planner_checkpoint_yields_flagged_fallbacks(ros_context, spin, tmp_path):
    rig = PlannerRig(ros_context, spin, Parameter("checkpoint", value=str(_truncated(tmp_path, "planner"))))
    assert "untrained" in rig.node.model_status and "rejected" in rig.node.model_status
    traj = rig.plan(0)
    assert traj.is_fallback and traj.fallback_reason.startswith("untrained weights: planner:untrained"), traj
    assert rig.node.stats.snapshot()["dropped"]["untrained_weights"] == 1
    values = rig.node.diagnostic_values()
    assert "planner:untrained" in values["untrained_weights"] and values["allow_untrained"] == "False"


def test_untrained_upstream_weights_give_flagged_fallbacks(ros_context, spin):
    """The planner's own weights are the shipped ones; the BEV features (then the plan) come
    from a node that runs untrained: fallback, flagged with the reason."""
    rig = PlannerRig(ros_context, spin)
    assert "untrained" not in rig.node.planner.model_id
    trained = rig.plan(0)
    assert not trained.is_fallback and "untrained" not in trained.model_id
    bad_bev = rig.plan(1, bev_id="bev_backbone:untrained")
    assert bad_bev.is_fallback and bad_bev.fallback_reason == "untrained weights: bev_backbone:untrained"
    bad_plan = rig.plan(2, plan_id="student:untrained")
    assert bad_plan.is_fallback and "student:untrained" in bad_plan.fallback_reason
    assert rig.node.stats.snapshot()["dropped"]["untrained_weights"] == 2
    back = rig.plan(3)  # trained inputs again: the model drives again
    assert not back.is_fallback


def test_allow_untrained_drives_flagged_in_model_id(ros_context, spin):
    rig = PlannerRig(ros_context, spin, Parameter("allow_untrained", value=True))
    allowed = rig.plan(0, bev_id="bev_backbone:untrained")
    assert not allowed.is_fallback
    assert allowed.model_id == f"{rig.node.planner.model_id}+untrained_inputs(bev_backbone:untrained)"
    assert any("UNTRAINED" in msg for _, msg in rig.node.diagnostic_problems())


def test_a_truncated_bev_checkpoint_publishes_features_flagged_untrained(ros_context, spin, tmp_path):
    node = BevFeaturesNode(context=ros_context, parameter_overrides=[
        Parameter("checkpoint", value=str(_truncated(tmp_path, "bev_backbone"))), Parameter("backend", value="torch")],
        cli_args=["--ros-args", "-r", "~/input/frame:=/u/frame", "-r", "~/output/bev:=/u/bev_out"])
    io = rclpy.create_node("bev_io", context=ros_context)
    pub = io.create_publisher(SensorFrame, "/u/frame", QOS)
    got: list[BevFeatures] = []
    io.create_subscription(BevFeatures, "/u/bev_out", got.append, QOS)
    spin(node, io)
    assert wait_for(lambda: pub.get_subscription_count() > 0 and io.count_publishers("/u/bev_out") > 0)
    assert "rejected" in node.model_status
    frame = samples()["SensorFrame"]
    frame.sequence = 1
    pub.publish(frame)
    assert wait_for(lambda: got, 30)
    assert got[0].model_id == "bev_backbone:untrained"


def test_latentvla_run_allow_untrained_reaches_the_planner():
    import os
    import signal

    proc = subprocess.Popen([sys.executable, "-m", "latentvla_ros.cli", "run", "--nodes", "trajectory_planner",
                             "--allow-untrained", "--set", "trajectory_planner.checkpoint="], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=dict(os.environ))
    lines: list[str] = []
    try:
        for line in iter(proc.stdout.readline, ""):
            lines.append(line)
            if "planner fusion=" in line or len(lines) > 200:
                break
        for line in iter(proc.stdout.readline, ""):  # the next line: the untrained weights verdict
            lines.append(line)
            break
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    text = "".join(lines)
    assert "allow_untrained: driving on the planner's UNTRAINED weights" in text, text[-3000:]
