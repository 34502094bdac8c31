"""teacher_labeler (offline, optional): SensorFrame -> the teacher VLM's latent action
distribution, published as a LatentActionPlan and/or collected into a dataset file.

The teacher is Qwen2.5-VL through `transformers`, loaded from a local folder only
(never downloaded; trust_remote_code is never enabled). Far too slow for the car: this
node is for labeling replayed bags, not for driving.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from diagnostic_msgs.msg import DiagnosticStatus

from latentvla_ros.core.resources import resolve_path
from latentvla_ros.msg import LatentActionPlan, SensorFrame
from latentvla_ros.ros.conversions import ConversionError, plan_to_msg, sensor_frame_to_core
from latentvla_ros.ros.node_base import LatentVlaNode
from latentvla_ros.ros.node_main import run_node


class TeacherLabelerNode(LatentVlaNode):
    schema_name = "teacher_labeler"
    executor_group = "teacher"  # slow (a VLM): never in the way of the chain (ros/executors.py)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        from latentvla_ros.runtime.teacher import TeacherReasoner

        p = self.params
        if p.torch_threads:
            torch.set_num_threads(p.torch_threads)
        path = resolve_path(p.model_path) if p.model_path else None
        problem = ""
        if path is not None:
            try:
                self.teacher = TeacherReasoner.load(path, device=p.device)
            except Exception as exc:  # noqa: BLE001 - any load failure: report, run untrained
                problem = f"cannot load teacher from {path}: {exc}"
                path = None
        if path is None:
            self.teacher = TeacherReasoner.load(None)
        self.model_id = self.teacher.model_id
        self.model_status = self.model_id
        if path is None:
            self.model_level = DiagnosticStatus.WARN
            self.get_logger().error(f"*** TEACHER WITH UNTRAINED WEIGHTS *** {problem or 'no model_path given'}")
        self.records: dict[str, list] = {"stamps_ns": [], "probs": [], "context": []}
        self._pub = self.create_publisher(LatentActionPlan, "~/output/plan", self.output_qos()) if p.publish else None
        self.create_subscription(SensorFrame, "~/input/frame", self._on_frame, self.input_qos())

    def _on_frame(self, msg: SensorFrame) -> None:
        self.count_lost_frames(msg.sequence)
        try:
            frame = sensor_frame_to_core(msg)
        except ConversionError as exc:
            self.drop("bad_message", str(exc))
            return
        cam = self.teacher.config.camera_index
        if cam >= len(frame.cameras):
            self.drop("bad_message", f"teacher reads camera {cam}, frame has {len(frame.cameras)}")
            return
        with self.processing(frame.stamp_ns):
            try:
                plan = self.teacher.reason(frame)  # runtime/teacher.py: the one teacher inference stage
            except Exception as exc:  # noqa: BLE001 - a failing teacher call must not stop labeling
                self.model_failed(exc)
                self.drop("model_error", f"{type(exc).__name__}: {exc}")
                return
            self.model_succeeded()
            self.records["stamps_ns"].append(frame.stamp_ns)
            self.records["probs"].append(plan.token_probabilities)
            self.records["context"].append(np.concatenate([plan.visual_embeddings, plan.action_embeddings]).astype(np.float16))
            if self._pub is not None:
                self._pub.publish(plan_to_msg(plan, self.params.frame_id))
                self.stats.on_publish("plan")

    def write_dataset(self) -> Path | None:
        """Write collected labels to ``output_file`` (.npz: stamps_ns, probs, context)."""
        if not self.params.output_file or not self.records["stamps_ns"]:
            return None
        path = Path(self.params.output_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, stamps_ns=np.asarray(self.records["stamps_ns"], np.int64), probs=np.stack(self.records["probs"]),
                 context=np.stack(self.records["context"]), model_id=np.asarray(self.model_id))
        self.get_logger().info(f"wrote {len(self.records['stamps_ns'])} labels to {path}")
        return path

    def destroy_node(self):
        self.write_dataset()
        return super().destroy_node()


def main(argv: list[str] | None = None) -> int:
    return run_node(TeacherLabelerNode, argv if argv is not None else sys.argv)


if __name__ == "__main__":
    sys.exit(main())
