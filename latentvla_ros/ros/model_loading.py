"""Loading a node's model runtime from its parameters (checkpoint, preset, device, backend)."""
from __future__ import annotations

from typing import Any

from diagnostic_msgs.msg import DiagnosticStatus


def load_model_runtime(node: Any, runtime_cls, config_cls):
    """Build a core runtime (BevFeatureExtractor, LatentReasoner, TrajectoryPlanner) from the
    node's checkpoint/preset/device parameters. A missing or corrupt checkpoint is reported
    loudly and the node runs with untrained weights, flagged in model_id and diagnostics.
    Checkpoints are safetensors only (core/checkpoint.py never unpickles)."""
    from latentvla_ros.core.checkpoint import CheckpointError
    from latentvla_ros.core.resources import resolve_path
    from latentvla_ros.runtime import resolve_intra_op_threads

    p = node.params
    kwargs = dict(device=p.device, torch_threads=resolve_intra_op_threads(p.torch_threads), backend=p.backend)
    path = resolve_path(p.checkpoint) if p.checkpoint else None
    problem = ""
    if path is not None and not path.is_dir():
        problem = f"checkpoint {path} does not exist"
        path = None
    if path is not None and p.backend == "onnx" and (path / "model.onnx").is_file():
        kwargs["onnx_path"] = path / "model.onnx"  # shipped export; re-exported if it does not match the weights
    try:
        runtime = runtime_cls(config=config_cls.preset(p.preset), checkpoint_dir=path, **kwargs)
    except CheckpointError as exc:
        kwargs.pop("onnx_path", None)
        problem = f"checkpoint rejected: {exc}"
        runtime = runtime_cls(config=config_cls.preset(p.preset), checkpoint_dir=None, **kwargs)
    node.model_status = runtime.model_id
    if runtime.untrained:
        node.model_level = DiagnosticStatus.WARN
        node.model_status = f"{runtime.model_id} ({problem or 'no checkpoint given'})"
        node.get_logger().error(
            "*** RUNNING WITH UNTRAINED WEIGHTS *** "
            f"{problem or 'no checkpoint given'}; outputs are published with model_id {runtime.model_id!r}")
    else:
        node.get_logger().info(f"loaded {runtime.model_id} from {path}")
    node.publish_node_info()
    return runtime
