"""Fast coverage of `train all`'s last step: the exported checkpoints load in the running nodes.

The slow test (test_training_pipeline.py) trains every stage; here the training run's output
directory is built from a 1-step planner run (student fusion) and a student checkpoint, exported
with the same ``export_checkpoints`` that ``train all --export-to`` calls, and the three model
nodes are started on the export with the ONNX backend, as config/*.param.yaml configures them.
"""
from __future__ import annotations

import json

import torch
from rclpy.parameter import Parameter
from test_models import make_frame
from test_training_student_planner import SyntheticFrames

from latentvla_ros.core.agent import agent_input_of
from latentvla_ros.models.modeling_student import LatentStudent
from latentvla_ros.runtime import build_pipeline_from_dir, onnx_model_id
from latentvla_ros.training.common import TrainConfig
from latentvla_ros.training.pipeline import export_checkpoints
from latentvla_ros.training.planner import train_planner


def test_exported_chain_loads_in_the_nodes_without_reexport(ros_context, tmp_path):
    from latentvla_ros.ros.nodes.bev_features import BevFeaturesNode
    from latentvla_ros.ros.nodes.latent_reasoner import LatentReasonerNode
    from latentvla_ros.ros.nodes.trajectory_planner import TrajectoryPlannerNode

    torch.manual_seed(0)
    out, dest = tmp_path / "train", tmp_path / "edge"
    LatentStudent().save_pretrained(out / "student_run" / "student")
    cfg = TrainConfig(epochs=1, batch_size=8, max_steps=1, warmup_steps=0)
    train_planner(SyntheticFrames(n=8), out / "planner_student", "edge", "student", cfg,
                  student_checkpoint=out / "student_run" / "student", holdout_fraction=0.0, show_progress=False)
    export_checkpoints(out, dest)

    for sub in ("bev_backbone", "student", "planner", "variants/student/planner"):
        assert (dest / sub / "model.safetensors").is_file(), sub
    assert not (dest / "planner" / "train_state.safetensors").exists()
    ids = {sub: onnx_model_id(dest / sub / "model.onnx") for sub in ("bev_backbone", "student", "planner")}
    mtimes = {sub: (dest / sub / "model.onnx").stat().st_mtime_ns for sub in ids}
    assert json.loads((dest / "planner" / "config.json").read_text())["model_type"] == "planner"

    agent = build_pipeline_from_dir(dest)
    assert not agent.untrained and agent.compute_trajectory(agent_input_of(make_frame())).is_finite()

    nodes = {}
    for name, cls, sub in (("bev_features", BevFeaturesNode, "bev_backbone"),
                           ("latent_reasoner", LatentReasonerNode, "student"),
                           ("trajectory_planner", TrajectoryPlannerNode, "planner")):
        nodes[name] = cls(context=ros_context, parameter_overrides=[
            Parameter("checkpoint", value=str(dest / sub)), Parameter("backend", value="onnx"),
            Parameter("preset", value="edge")])
    try:
        runtimes = {"bev_backbone": nodes["bev_features"].extractor, "student": nodes["latent_reasoner"].reasoner,
                    "planner": nodes["trajectory_planner"].planner}
        for sub, runtime in runtimes.items():
            assert not runtime.untrained and runtime.backend == "onnx", sub
            assert runtime.model_id == ids[sub] and "untrained" not in runtime.model_id, sub
            assert runtime.onnx_path == dest / sub / "model.onnx", sub
            assert (dest / sub / "model.onnx").stat().st_mtime_ns == mtimes[sub], f"{sub} was exported again"
        for node in nodes.values():
            assert node.model_status == runtimes[{"bev_features": "bev_backbone", "latent_reasoner": "student",
                                                  "trajectory_planner": "planner"}[node.get_name()]].model_id
        # and they compute: one frame through the three loaded runtimes
        frame = make_frame(seed=1)
        tokens = runtimes["bev_backbone"].extract(frame)
        plan = runtimes["student"].reason(frame)
        traj = runtimes["planner"].plan(tokens, plan)
        assert traj.is_finite() and traj.model_id == ids["planner"]
    finally:
        for node in nodes.values():
            node.destroy_node()
