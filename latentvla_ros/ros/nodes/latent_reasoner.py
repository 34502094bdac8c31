"""latent_reasoner: SensorFrame -> LatentActionPlan (the distilled student).

A failing model call (exception, NaN output) is counted as ``model_error``; the frame
gets no plan and the planner publishes a fallback for it (plan timeout). Three failures
in a row turn the model status in /diagnostics to ERROR until a call succeeds again.

``~/debug/markers`` (only while subscribed): the plan's tokens as bars with the LAM's
short code names ("straight 24 m/s x5 > left 8 m/s ..."), read from the ``code_names``
of the ``lam_checkpoint`` config (JSON only; ids are shown when it has none).
"""
from __future__ import annotations

import sys

from visualization_msgs.msg import MarkerArray

from latentvla_ros.core.checkpoint import CheckpointError, read_checkpoint_config
from latentvla_ros.core.features import FeatureError
from latentvla_ros.models.configuration_student import StudentConfig
from latentvla_ros.msg import LatentActionPlan, SensorFrame
from latentvla_ros.ros.conversions import (
    ConversionError,
    make_header,
    plan_to_msg,
    share_plan,
    shared_sensor_frame_to_core,
)
from latentvla_ros.ros.markers import latent_token_markers
from latentvla_ros.ros.model_loading import load_model_runtime
from latentvla_ros.ros.node_base import LatentVlaNode
from latentvla_ros.ros.node_main import run_node
from latentvla_ros.runtime import LatentReasoner


class LatentReasonerNode(LatentVlaNode):
    schema_name = "latent_reasoner"
    executor_group = "student"  # beside the BEV backbone, on the same frame (ros/executors.py)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.reasoner = load_model_runtime(self, LatentReasoner, StudentConfig)
        self._pub = self.create_publisher(LatentActionPlan, "~/output/plan", self.output_qos())
        self._marker_pub = self.create_publisher(MarkerArray, "~/debug/markers", self.output_qos())
        self.code_names = self._code_names(self.params.lam_checkpoint)
        # latest-frame policy (ros/latest_frame.py): a slow model skips to the newest frame
        self.latest_frame = self.create_latest_subscription(SensorFrame, "~/input/frame", self._on_frame, self.input_qos(),
                                                            on_arrival=lambda msg: self.count_lost_frames(msg.sequence))

    def _on_frame(self, msg: SensorFrame) -> None:
        try:
            frame = shared_sensor_frame_to_core(msg)
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
            # the planner in this process gets ``plan`` itself (no conversion back: ros/conversions.py)
            self._pub.publish(share_plan(plan_to_msg(plan, self.params.frame_id), plan))
            self.stats.on_publish("plan")
            if self._marker_pub.get_subscription_count() > 0:
                header = make_header(plan.stamp_ns, self.params.frame_id)
                self._marker_pub.publish(MarkerArray(markers=latent_token_markers(
                    header, plan, "latentvla/reasoner", self.code_names, label_z=4.6)))

    def _code_names(self, lam_checkpoint: str) -> tuple[str, ...]:
        """The LAM's code names for the markers; () (ids shown) when absent or unreadable."""
        if not lam_checkpoint:
            return ()
        from latentvla_ros.core.resources import resolve_path

        try:
            names = read_checkpoint_config(resolve_path(lam_checkpoint))["config"].get("code_names") or ()
        except (CheckpointError, KeyError, TypeError, AttributeError, OSError) as exc:
            self.get_logger().warning(f"no LAM code names for the token markers ({exc}); showing code ids")
            return ()
        if not (isinstance(names, (list, tuple)) and all(isinstance(n, str) for n in names)):
            self.get_logger().warning(f"{lam_checkpoint}: code_names is not a list of strings; showing code ids")
            return ()
        return tuple(names)


def main(argv: list[str] | None = None) -> int:
    return run_node(LatentReasonerNode, argv if argv is not None else sys.argv)


if __name__ == "__main__":
    sys.exit(main())
