"""bev_features: SensorFrame -> BevFeatures (TransFuser-style camera+LiDAR backbone)."""
from __future__ import annotations

import sys

from latentvla_ros.core.features import FeatureError
from latentvla_ros.core.pipeline import BevFeatureExtractor
from latentvla_ros.models.configuration_bev import BevBackboneConfig
from latentvla_ros.msg import BevFeatures, SensorFrame
from latentvla_ros.ros.conversions import ConversionError, bev_to_msg, sensor_frame_to_core
from latentvla_ros.ros.node_base import LatentVlaNode, load_model_runtime
from latentvla_ros.ros.node_main import run_node


class BevFeaturesNode(LatentVlaNode):
    schema_name = "bev_features"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.extractor = load_model_runtime(self, BevFeatureExtractor, BevBackboneConfig)
        self._pub = self.create_publisher(BevFeatures, "~/output/bev", self.output_qos())
        self.create_subscription(SensorFrame, "~/input/frame", self._on_frame, self.input_qos())

    def _on_frame(self, msg: SensorFrame) -> None:
        self.stats.on_receive("frame")
        self.count_lost_frames(msg.sequence)
        try:
            frame = sensor_frame_to_core(msg)
        except (ConversionError, FeatureError) as exc:
            self.drop("bad_message", str(exc))
            return
        with self.processing(frame.stamp_ns):
            try:
                bev = self.extractor.extract(frame)
            except (FeatureError, ValueError, RuntimeError) as exc:
                self.drop("model_error", str(exc))
                return
            self._pub.publish(bev_to_msg(bev, self.params["frame_id"]))
            self.stats.on_publish("bev")


def main(argv: list[str] | None = None) -> int:
    return run_node(BevFeaturesNode, argv if argv is not None else sys.argv)


if __name__ == "__main__":
    sys.exit(main())
