"""Runtime stages: the objects the ROS nodes, the offline agent and the benchmarks call.

Pure core (no rclpy). Three stages, each usable on its own:

- ``BevFeatureExtractor.extract(SensorFrame) -> BevTokens`` (camera + LiDAR backbone),
- ``LatentReasoner.reason(SensorFrame) -> LatentPlan`` (the distilled student),
- ``TrajectoryPlanner.plan(BevTokens, LatentPlan | None, route | None) -> Trajectory`` (fusion +
  head; ``route``: the mission route ahead in the ego frame, (K, 2), resampled here with the
  checkpoint's ``route_points`` / ``route_spacing_m``; a missing or invalid one is counted in
  ``route_invalid_count`` and fed to the model as "no route"),

and ``runtime.agent.LatentVLAAgent`` chaining them NAVSIM-style (``compute_trajectory``);
``build_pipeline_from_dir`` there loads ``<root>/{bev_backbone,student,planner}``.

Every stage loads ``<dir>/model.safetensors`` + ``config.json`` through
``core.checkpoint`` (the checkpoint's config wins over a passed one); without a
checkpoint the weights are random and ``model_id`` says ``untrained``. Two
backends: ``'torch'`` (eager, ``torch.inference_mode``) and ``'onnx'``
(onnxruntime; the model is exported once with ``export_onnx``).

Errors: bad inputs raise ``ValueError`` subclasses (``FeatureError`` from the
feature builders, ``PipelineInputError`` / ``MissingInputError`` here); a
non-finite model output raises ``ModelOutputError`` (a ``RuntimeError``) so the
caller can publish a fallback instead.
"""
from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from latentvla_ros.core.config_base import ConfigBase, ConfigError
from latentvla_ros.core.features import FeatureError, lidar_bev_histogram, stitched_cameras
from latentvla_ros.core.route import resample_route
from latentvla_ros.core.types import BevTokens, LatentPlan, SensorFrame, Trajectory
from latentvla_ros.models.configuration_bev import BevBackboneConfig
from latentvla_ros.models.configuration_planner import PlannerConfig
from latentvla_ros.models.configuration_student import StudentConfig
from latentvla_ros.runtime.backends import BACKENDS, OnnxRunner, TorchRunner, export_onnx, onnx_model_id
from latentvla_ros.runtime.registry import load_model, model_spec

log = logging.getLogger(__name__)


class PipelineInputError(ValueError):
    """An input to a pipeline stage has the wrong shape or non-finite values."""


class MissingInputError(PipelineInputError):
    """A stage needs an input that was not given (e.g. a fused planner without a LatentPlan)."""


class ModelOutputError(RuntimeError):
    """The model produced a non-finite or malformed output; the caller should fall back."""


class _Stage:
    """Shared loading / backend logic of the three pipeline stages."""

    KIND = ""

    def __init__(
        self,
        config: ConfigBase | None = None,
        checkpoint_dir: str | Path | None = None,
        device: str = "cpu",
        torch_threads: int | None = None,
        backend: str = "torch",
        onnx_path: str | Path | None = None,
        preset: str = "edge",
        channels_last: bool = False,
        bf16: bool = False,
    ):
        if backend not in BACKENDS:
            raise ConfigError(f"backend: must be one of {BACKENDS}, got {backend!r}")
        if torch_threads:
            torch.set_num_threads(int(torch_threads))
            # OpenCV's pool (the cameras' resize in the features, the obstacle guard's clustering)
            # follows the intra-op threads: its workers stay awake after each call, on the cores the
            # other nodes need (edge, 1 thread: no pool; measured in docs/performance.md)
            cv2.setNumThreads(int(torch_threads))
        self.model, self.config, self.model_id = load_model(self.KIND, checkpoint_dir, config, preset)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.untrained = self.checkpoint_dir is None
        self.backend = backend
        self.device = device
        self.last_inference_ms = float("nan")
        if self.untrained:
            log.warning("%s: no checkpoint, running UNTRAINED random weights (model_id %s)", self.KIND, self.model_id)
        if backend == "torch":
            self._run: Any = TorchRunner(self.model, device, channels_last, bf16)
        else:
            path = Path(onnx_path) if onnx_path else Path(tempfile.mkdtemp(prefix="latentvla_onnx_")) / f"{self.KIND}.onnx"
            reuse = path.is_file() and not self.untrained and onnx_model_id(path) == self.model_id
            if not reuse:
                export_onnx(self.KIND, self.model, path, model_id=self.model_id)
            self.onnx_path = path
            self._run = OnnxRunner(path, device, torch_threads)

    def _infer(self, **arrays: np.ndarray) -> list[np.ndarray]:
        start = time.perf_counter()
        out = self._run(**arrays)
        self.last_inference_ms = (time.perf_counter() - start) * 1e3
        for name, value in zip(model_spec(self.KIND).outputs, out):
            if not np.all(np.isfinite(value)):
                raise ModelOutputError(f"{self.KIND} ({self.model_id}): non-finite values in output {name!r}")
        return out


def _ego_status(frame: SensorFrame) -> np.ndarray:
    if not frame.ego.is_finite():
        raise FeatureError("ego state has non-finite velocity/acceleration/yaw rate")
    return frame.ego.status_vector()


# ------------------------------------------------------------------- stages
class BevFeatureExtractor(_Stage):
    """SensorFrame -> BevTokens with the camera + LiDAR backbone."""

    KIND = "bev_backbone"
    config: BevBackboneConfig

    def features(self, frame: SensorFrame) -> dict[str, np.ndarray]:
        """Model inputs for one frame (batch dimension included)."""
        cfg = self.config
        image = stitched_cameras(frame.cameras, cfg.image_size)
        lidar = lidar_bev_histogram(frame.lidar_points, cfg.lidar_grid, cfg.lidar_range_m,
                                    cfg.lidar_min_height_m, cfg.lidar_max_points_per_pixel)
        return {"image": image[None], "lidar_bev": lidar[None], "ego_status": _ego_status(frame)[None]}

    def extract(self, frame: SensorFrame) -> BevTokens:
        cfg = self.config
        feats = self.features(frame)
        (tokens,) = self._infer(**feats)
        return BevTokens(
            stamp_ns=frame.stamp_ns,
            tokens=tokens[0].astype(np.float32, copy=False),
            grid_rows=cfg.grid_rows,
            grid_cols=cfg.grid_cols,
            cell_size_m=cfg.cell_size_m,
            origin_x_m=cfg.origin_x_m,
            origin_y_m=cfg.origin_y_m,
            ego_status=feats["ego_status"][0],
            model_id=self.model_id,
        )


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


class LatentReasoner(_Stage):
    """SensorFrame -> LatentPlan with the distilled student (one forward pass, 12 tokens)."""

    KIND = "student"
    config: StudentConfig

    def features(self, frame: SensorFrame) -> dict[str, np.ndarray]:
        image = stitched_cameras(frame.cameras, self.config.image_size)
        return {"image": image[None], "ego_status": _ego_status(frame)[None]}

    def reason(self, frame: SensorFrame) -> LatentPlan:
        logits, actions, visual = self._infer(**self.features(frame))
        return LatentPlan(
            stamp_ns=frame.stamp_ns,
            token_ids=logits[0].argmax(axis=-1).astype(np.int64),
            token_probabilities=_softmax(logits[0]),
            action_embeddings=actions[0].astype(np.float32, copy=False),
            visual_embeddings=visual[0].astype(np.float32, copy=False),
            model_id=self.model_id,
        )


class TrajectoryPlanner(_Stage):
    """BevTokens (+ LatentPlan for fused planners, + the route ahead for planners with a route input)
    -> Trajectory."""

    KIND = "planner"
    config: PlannerConfig

    @property
    def needs_plan(self) -> bool:
        return self.config.uses_context

    @property
    def fusion(self) -> str:
        return self.config.fusion

    route_invalid_count = 0
    """Plans made without a usable route (None, non-finite, too short, ego off it) by a planner with
    a route input; the plan still runs, with ``route_valid`` 0."""
    route_missing = False
    """Whether the last plan had no usable route (``route_points`` > 0 only)."""

    def features(self, bev: BevTokens, plan: LatentPlan | None = None, route: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Model inputs for one frame (batch dimension included); see ``plan``."""
        cfg = self.config
        tokens = np.asarray(bev.tokens, dtype=np.float32)
        if tokens.shape != (cfg.num_bev_tokens, cfg.bev_token_dim):
            raise PipelineInputError(
                f"BEV tokens have shape {tokens.shape}, planner expects {(cfg.num_bev_tokens, cfg.bev_token_dim)}")
        ego = np.asarray(bev.ego_status, dtype=np.float32).reshape(-1)
        if ego.shape != (cfg.ego_status_dim,):
            raise PipelineInputError(f"ego_status has shape {ego.shape}, expected ({cfg.ego_status_dim},)")
        if not (np.all(np.isfinite(tokens)) and np.all(np.isfinite(ego))):
            raise PipelineInputError("non-finite BEV tokens or ego status")
        inputs = {"bev_tokens": tokens[None], "ego_status": ego[None]}
        if cfg.uses_context:
            if plan is None:
                raise MissingInputError(f"planner fusion={cfg.fusion!r} needs a LatentPlan, got None")
            visual = np.asarray(plan.visual_embeddings, dtype=np.float32)
            action = np.asarray(plan.action_embeddings, dtype=np.float32)
            ok = visual.ndim == 2 and action.ndim == 2 and visual.shape[1] == action.shape[1] == cfg.context_dim
            context = np.concatenate([visual, action], axis=0) if ok else None
            if context is None or context.shape != (cfg.num_context_tokens, cfg.context_dim):
                raise PipelineInputError(
                    f"plan embeddings (visual {visual.shape}, action {action.shape}) do not give the "
                    f"({cfg.num_context_tokens}, {cfg.context_dim}) context the planner expects")
            if not np.all(np.isfinite(context)):
                raise PipelineInputError("non-finite plan embeddings")
            inputs["context"] = context[None]
        if cfg.uses_route:
            points, valid = resample_route(route, cfg.route_points, cfg.route_spacing_m)
            inputs["route"] = points[None]
            inputs["route_valid"] = np.array([1.0 if valid else 0.0], dtype=np.float32)
        return inputs

    def plan(self, bev: BevTokens, plan: LatentPlan | None = None, route: np.ndarray | None = None) -> Trajectory:
        """The trajectory for ``bev`` (+ ``plan`` for fused planners, + ``route``: the mission route
        ahead in the ego frame, (K, 2) [m], for planners with a route input; others ignore it).
        A missing or unusable route is counted (``route_invalid_count``, ``route_missing``) and
        the planner runs with ``route_valid`` 0, as trained for (``route_dropout``)."""
        cfg = self.config
        inputs = self.features(bev, plan, route)
        if cfg.uses_route:
            self.route_missing = not bool(inputs["route_valid"][0])
            if self.route_missing:
                self.route_invalid_count += 1
                if self.route_invalid_count == 1 or self.route_invalid_count % 100 == 0:
                    log.warning("planner %s: no usable route (%s; %d plans so far): planning without it", self.model_id,
                                "none given" if route is None else "non-finite, too short or ego off it",
                                self.route_invalid_count)
        (poses,) = self._infer(**inputs)
        poses = poses[0].astype(np.float64)
        if poses.shape != (cfg.num_poses, 3):
            raise ModelOutputError(f"planner output shape {poses.shape}, expected ({cfg.num_poses}, 3)")
        return Trajectory(poses=poses, interval_s=cfg.pose_interval_s, stamp_ns=bev.stamp_ns, model_id=self.model_id)
