"""bev_features: SensorFrame -> BevFeatures (TransFuser-style camera+LiDAR backbone).

Also ``~/debug/bev_image`` (sensor_msgs/Image rgb8, ego-up, ``frame_id`` of the BEV) for
RViz and Foxglove: green = LiDAR BEV histogram, red = per-cell norm of the BEV tokens.
It is rendered only while someone subscribes, at most every
``debug.bev_image_period_s``.

LiDAR points are moved into the ego frame (``frame_id``) before the BEV features, so the
ground filter works on heights above the road (ros/lidar_frames.py, shared with the
trajectory_planner's obstacle guard; core/extrinsics.py): a cloud already in the
ego frame passes as is; otherwise the transform comes from tf (``/tf_static``, ``/tf``)
where tf2_ros is importable and ``use_tf`` is on, else from ``lidar_extrinsics.*`` for the
frame ``lidar_extrinsics.frame_id``. A cloud in any other frame is dropped and counted
(``lidar_frame_unknown``): BEV features from points in an unknown frame are garbage.
"""
from __future__ import annotations

import sys
import time

import numpy as np
from sensor_msgs.msg import Image

from latentvla_ros.core.extrinsics import ExtrinsicsError
from latentvla_ros.core.features import FeatureError, lidar_bev_histogram
from latentvla_ros.models.configuration_bev import BevBackboneConfig
from latentvla_ros.msg import BevFeatures, SensorFrame
from latentvla_ros.ros.conversions import (
    ConversionError,
    bev_to_msg,
    numpy_to_image,
    share_bev,
    shared_sensor_frame_to_core,
)
from latentvla_ros.ros.lidar_frames import LidarToEgo
from latentvla_ros.ros.model_loading import load_model_runtime
from latentvla_ros.ros.node_base import LatentVlaNode
from latentvla_ros.ros.node_main import run_node
from latentvla_ros.runtime import BevFeatureExtractor

BEV_IMAGE_SIZE = 256


def bev_debug_image(points: np.ndarray, tokens: np.ndarray, grid_rows: int, grid_cols: int, range_m: float,
                    size: int = BEV_IMAGE_SIZE) -> np.ndarray:
    """HxWx3 uint8: LiDAR histogram in green, token activation (norm per cell) in red; ego-up."""
    hist = lidar_bev_histogram(points, grid_size=size, range_m=range_m, min_height_m=-1e9)[0]  # every point
    norms = np.linalg.norm(np.asarray(tokens, np.float32).reshape(grid_rows, grid_cols, -1), axis=-1)
    span = float(norms.max() - norms.min())
    act = (norms - norms.min()) / span if span > 0 else np.zeros_like(norms)
    act = np.kron(act, np.ones((size // grid_rows, size // grid_cols), np.float32))
    act = np.pad(act, ((0, size - act.shape[0]), (0, size - act.shape[1])))
    img = np.zeros((size, size, 3), np.uint8)
    img[..., 0] = (0.45 * act * 255).astype(np.uint8)
    img[..., 1] = (np.clip(hist * 8.0, 0, 1) * 255).astype(np.uint8)
    c = size // 2  # the ego: a small blue marker in the centre
    img[c - 2:c + 3, c - 1:c + 2, 2] = 255
    return img


class BevFeaturesNode(LatentVlaNode):
    schema_name = "bev_features"
    executor_group = "bev_features"  # model inference: its own thread (ros/executors.py)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # checked with the parameters (ros/contracts/parameters.py GROUP_CONFIGS): a bad mount
        # refuses the start before the model loads
        self.lidar_to_ego = LidarToEgo(self, self.params.frame_id, self.params.lidar_extrinsics, self.params.use_tf)
        self.lidar_extrinsics = self.lidar_to_ego.extrinsics
        self.extractor = load_model_runtime(self, BevFeatureExtractor, BevBackboneConfig)
        self._pub = self.create_publisher(BevFeatures, "~/output/bev", self.output_qos())
        self._image_pub = self.create_publisher(Image, "~/debug/bev_image", self.output_qos())
        self._last_image = -1e9
        # latest-frame policy (ros/latest_frame.py): a slow model skips to the newest frame
        self.latest_frame = self.create_latest_subscription(SensorFrame, "~/input/frame", self._on_frame, self.input_qos(),
                                                            on_arrival=lambda msg: self.count_lost_frames(msg.sequence))

    @property
    def lidar_frames(self) -> dict[str, str]:
        """LiDAR frame -> where its transform came from (ros/lidar_frames.py)."""
        return self.lidar_to_ego.frames

    def _on_frame(self, msg: SensorFrame) -> None:
        try:
            frame = shared_sensor_frame_to_core(msg)
        except (ConversionError, FeatureError) as exc:
            self.drop("bad_message", str(exc))
            return
        try:
            frame = self.lidar_to_ego.to_ego(frame, msg.lidar.header.frame_id)
        except ExtrinsicsError as exc:
            self.drop("lidar_frame_unknown", str(exc), level="error")
            return
        with self.processing(frame.stamp_ns):
            try:
                bev = self.extractor.extract(frame)
            except (FeatureError, ValueError) as exc:  # the input, not the model
                self.drop("bad_message", str(exc))
                return
            except Exception as exc:  # noqa: BLE001 - ModelOutputError (NaN), runtime errors
                self.model_failed(exc)
                self.drop("model_error", f"{type(exc).__name__}: {exc}")
                return
            self.model_succeeded()
            # the planner in this process gets ``bev`` itself (no conversion back: ros/conversions.py)
            self._pub.publish(share_bev(bev_to_msg(bev, self.params.frame_id, msg.sequence), bev))
            self.stats.on_publish("bev")
        self._maybe_publish_image(frame, bev)

    def _maybe_publish_image(self, frame, bev) -> None:
        period = self.params.debug.bev_image_period_s
        now = time.monotonic()
        if period <= 0 or now - self._last_image < period or self._image_pub.get_subscription_count() == 0:
            return
        self._last_image = now
        range_m = 0.5 * bev.cell_size_m * bev.grid_rows
        img = bev_debug_image(frame.lidar_points, bev.tokens, bev.grid_rows, bev.grid_cols, range_m)
        self._image_pub.publish(numpy_to_image(img, bev.stamp_ns, self.params.frame_id))
        self.stats.on_publish("bev_image")


    def diagnostic_values(self) -> dict[str, str]:
        values = dict(super().diagnostic_values())
        values["lidar_frames"] = self.lidar_to_ego.diagnostics()
        return values

    def diagnostic_problems(self):
        problems = list(super().diagnostic_problems())
        if self.stats.dropped.get("lidar_frame_unknown"):  # a counter: no percentiles needed
            problems.append((2, "LiDAR clouds in a frame without a transform to the ego frame (lidar_frame_unknown)"))
        return problems


def main(argv: list[str] | None = None) -> int:
    return run_node(BevFeaturesNode, argv if argv is not None else sys.argv)


if __name__ == "__main__":
    sys.exit(main())
