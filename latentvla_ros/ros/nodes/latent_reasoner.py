"""latent_reasoner: SensorFrame -> LatentActionPlan (the distilled student).

A failing model call (exception, NaN output) is counted as ``model_error``; the frame
gets no plan and the planner publishes a fallback for it (plan timeout). Three failures
in a row turn the model status in /diagnostics to ERROR until a call succeeds again.
"""
from __future__ import annotations

import sys

from latentvla_ros.core.features import FeatureError
from latentvla_ros.models.configuration_student import StudentConfig
from latentvla_ros.msg import LatentActionPlan, SensorFrame
from latentvla_ros.ros.conversions import ConversionError, plan_to_msg, sensor_frame_to_core
from latentvla_ros.ros.node_base import LatentVlaNode, load_model_runtime
from latentvla_ros.ros.node_main import run_node
from latentvla_ros.runtime import LatentReasoner


class LatentReasonerNode(LatentVlaNode):
    schema_name = "latent_reasoner"
    executor_group = "student"  # beside the BEV backbone, on the same frame (ros/executors.py)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.reasoner = load_model_runtime(self, LatentReasoner, StudentConfig)
        self._pub = self.create_publisher(LatentActionPlan, "~/output/plan", self.output_qos())
        self.create_subscription(SensorFrame, "~/input/frame", self._on_frame, self.input_qos())

    def _on_frame(self, msg: SensorFrame) -> None:
        self.count_lost_frames(msg.sequence)
        try:
            frame = sensor_frame_to_core(msg)
        except (ConversionError, FeatureError) as exc:
            self.drop("bad_message", str(exc))
            return
        with self.processing(frame.stamp_ns):
            try:
                plan = self.reasoner.reason(frame)
            except (FeatureError, ValueError) as exc:  # the input, not the model
                self.drop("bad_message", str(exc))
                return
            except Exception as exc:  # noqa: BLE001 - ModelOutputError (NaN), runtime errors
                self.model_failed(exc)
                self.drop("model_error", f"{type(exc).__name__}: {exc}")
                return
            self.model_succeeded()
            self._pub.publish(plan_to_msg(plan, self.params["frame_id"]))
            self.stats.on_publish("plan")


def main(argv: list[str] | None = None) -> int:
    return run_node(LatentReasonerNode, argv if argv is not None else sys.argv)


if __name__ == "__main__":
    sys.exit(main())
