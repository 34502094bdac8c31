"""Runtime: the model stages the ROS nodes, the evaluation, the training reports and the
benchmark call (no rclpy). Above ``core/`` and ``models/``, below ``ros/`` and ``apps``.

- ``threads``: intra-op thread counts (no torch import);
- ``registry``: model kinds -> model/config classes, ONNX names, loading, example inputs;
- ``backends``: torch and onnxruntime runners, ONNX export;
- ``stages``: ``BevFeatureExtractor``, ``LatentReasoner``, ``TrajectoryPlanner`` and their errors;
- ``agent``: ``LatentVLAAgent`` chaining them, ``build_pipeline_from_dir``.

The names below are the public API: ``from latentvla_ros.runtime import LatentVLAAgent``.
"""
from latentvla_ros.runtime.agent import AgentTimings, LatentVLAAgent, build_pipeline_from_dir
from latentvla_ros.runtime.backends import BACKENDS, export_onnx, onnx_model_id
from latentvla_ros.runtime.registry import MODEL_SPECS, STUDENT_SUBDIR, example_inputs, load_model, model_spec
from latentvla_ros.runtime.stages import (
    BevFeatureExtractor,
    LatentReasoner,
    MissingInputError,
    ModelOutputError,
    PipelineInputError,
    TrajectoryPlanner,
)
from latentvla_ros.runtime.threads import resolve_intra_op_threads, usable_cores

__all__ = [
    "AgentTimings", "BACKENDS", "BevFeatureExtractor", "LatentReasoner", "LatentVLAAgent", "MODEL_SPECS",
    "MissingInputError", "ModelOutputError", "PipelineInputError", "STUDENT_SUBDIR", "TrajectoryPlanner",
    "build_pipeline_from_dir", "example_inputs", "export_onnx", "load_model", "model_spec", "onnx_model_id",
    "resolve_intra_op_threads", "usable_cores",
]
