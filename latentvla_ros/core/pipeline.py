"""Runtime pipeline: the objects the ROS nodes, the offline agent and the benchmarks call.

Pure core (no rclpy). Three stages, each usable on its own:

- ``BevFeatureExtractor.extract(SensorFrame) -> BevTokens`` (camera + LiDAR backbone),
- ``LatentReasoner.reason(SensorFrame) -> LatentPlan`` (the distilled student),
- ``TrajectoryPlanner.plan(BevTokens, LatentPlan | None) -> Trajectory`` (fusion + head),

and ``LatentVLAAgent`` chaining them NAVSIM-style (``compute_trajectory``).
``build_pipeline_from_dir`` loads ``<root>/{bev_backbone,student,planner}``.

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

import copy
import logging
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from latentvla_ros.core import checkpoint as ckpt
from latentvla_ros.core.config_base import ConfigBase, ConfigError
from latentvla_ros.core.features import FeatureError, lidar_bev_histogram, stitch_cameras
from latentvla_ros.core.types import BevTokens, LatentPlan, SensorFrame, Trajectory
from latentvla_ros.models.configuration_bev import BevBackboneConfig
from latentvla_ros.models.configuration_planner import PlannerConfig
from latentvla_ros.models.configuration_student import StudentConfig
from latentvla_ros.models.modeling_bev import BevBackbone
from latentvla_ros.models.modeling_planner import BEV_SUBDIR, PLANNER_SUBDIR, FusedPlanner, check_compatible
from latentvla_ros.models.modeling_student import LatentStudent

log = logging.getLogger(__name__)

STUDENT_SUBDIR = "student"
BACKENDS = ("torch", "onnx")


class PipelineInputError(ValueError):
    """An input to a pipeline stage has the wrong shape or non-finite values."""


class MissingInputError(PipelineInputError):
    """A stage needs an input that was not given (e.g. a fused planner without a LatentPlan)."""


class ModelOutputError(RuntimeError):
    """The model produced a non-finite or malformed output; the caller should fall back."""


@dataclass(frozen=True)
class _ModelSpec:
    model_cls: type[nn.Module]
    config_cls: type[ConfigBase]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


MODEL_SPECS: dict[str, _ModelSpec] = {
    "bev_backbone": _ModelSpec(BevBackbone, BevBackboneConfig, ("image", "lidar_bev", "ego_status"), ("tokens",)),
    "student": _ModelSpec(LatentStudent, StudentConfig, ("image", "ego_status"),
                          ("logits", "action_embeddings", "visual_embeddings")),
    "planner": _ModelSpec(FusedPlanner, PlannerConfig, ("bev_tokens", "ego_status", "context"), ("poses",)),
}


# ------------------------------------------------------------------ threads
def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity: containers and taskset count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def resolve_intra_op_threads(threads: int | None) -> int:
    """Intra-op threads of a model stage: ``threads`` when > 0, else the automatic count,
    half the usable cores (at least 1): the BEV backbone and the student run side by side
    on every frame (in the graph and in ``LatentVLAAgent(concurrent=True)``), and two
    stages that each claim every core only fight over them. Measured on 2 cores with
    ``latentvla bench --threads 1`` and ``--threads 2``: for the edge models one thread
    per stage is also the fastest sequential setting (torch's OpenMP team costs more than
    it gives on models this small); the paper-size BEV backbone gains from more."""
    if threads is not None and int(threads) > 0:
        return int(threads)
    return max(1, usable_cores() // 2)


# ------------------------------------------------------------------ loading
def load_model(
    model_kind: str,
    checkpoint_dir: str | Path | None = None,
    config: ConfigBase | None = None,
    preset: str = "edge",
) -> tuple[nn.Module, ConfigBase, str]:
    """Build a model (eval mode, CPU) from a checkpoint, or untrained from ``config``/``preset``.

    Returns (model, config, model_id). With a checkpoint, the config stored in its
    ``config.json`` is used (a differing ``config`` argument is ignored with a warning).
    """
    spec = _spec(model_kind)
    if checkpoint_dir:
        model = spec.model_cls.from_pretrained(checkpoint_dir)
        if config is not None and config != model.config:
            log.warning("%s: config argument differs from checkpoint %s; using the checkpoint's", model_kind, checkpoint_dir)
        return model.eval(), model.config, ckpt.checkpoint_id(checkpoint_dir, model_kind)
    config = config if config is not None else spec.config_cls.preset(preset)
    if not isinstance(config, spec.config_cls):
        raise ConfigError(f"{model_kind}: expected a {spec.config_cls.__name__}, got {type(config).__name__}")
    return spec.model_cls(config).eval(), config, ckpt.checkpoint_id(None, model_kind)


def _spec(model_kind: str) -> _ModelSpec:
    if model_kind not in MODEL_SPECS:
        raise ValueError(f"unknown model kind {model_kind!r}, expected one of {sorted(MODEL_SPECS)}")
    return MODEL_SPECS[model_kind]


def example_inputs(model_kind: str, config: ConfigBase, batch_size: int = 1) -> dict[str, torch.Tensor]:
    """Random inputs of the right shapes (ONNX export, benchmarks, tests)."""
    g = torch.Generator().manual_seed(0)
    if model_kind == "bev_backbone":
        assert isinstance(config, BevBackboneConfig)
        h, w = config.image_size
        lidar = (torch.rand(batch_size, 1, config.lidar_grid, config.lidar_grid, generator=g) > 0.9).float()
        return {"image": torch.rand(batch_size, 3, h, w, generator=g), "lidar_bev": lidar,
                "ego_status": torch.randn(batch_size, 8, generator=g)}
    if model_kind == "student":
        assert isinstance(config, StudentConfig)
        h, w = config.image_size
        return {"image": torch.rand(batch_size, 3, h, w, generator=g), "ego_status": torch.randn(batch_size, 8, generator=g)}
    if model_kind == "planner":
        assert isinstance(config, PlannerConfig)
        out = {"bev_tokens": torch.randn(batch_size, config.num_bev_tokens, config.bev_token_dim, generator=g),
               "ego_status": torch.randn(batch_size, config.ego_status_dim, generator=g)}
        if config.uses_context:
            out["context"] = torch.randn(batch_size, config.num_context_tokens, config.context_dim, generator=g)
        return out
    raise ValueError(f"unknown model kind {model_kind!r}")


# --------------------------------------------------------------------- ONNX
def export_onnx(
    model_kind: str,
    checkpoint_or_model: str | Path | nn.Module,
    path: str | Path,
    opset: int = 17,
    dynamic_batch: bool = True,
    model_id: str | None = None,
) -> Path:
    """Export a model (a checkpoint directory or an ``nn.Module``) to ONNX at ``path``.

    Input/output names follow ``MODEL_SPECS`` (the planner has no ``context``
    input when ``fusion='none'``). ``model_id`` is stored in the ONNX metadata.
    Uses the TorchScript-based exporter (``dynamo=False``): the dynamo exporter
    needs ``onnxscript``, which the project does not install.
    """
    spec = _spec(model_kind)
    if isinstance(checkpoint_or_model, nn.Module):
        model = checkpoint_or_model
        mid = model_id or ckpt.checkpoint_id(None, model_kind)
    else:
        model = spec.model_cls.from_pretrained(checkpoint_or_model)
        mid = model_id or ckpt.checkpoint_id(checkpoint_or_model, model_kind)
    if not isinstance(model, spec.model_cls):
        raise ValueError(f"export_onnx({model_kind!r}) got a {type(model).__name__}")
    model = copy.deepcopy(model).eval().cpu().float()  # leave the caller's model (device, mode) alone
    inputs = example_inputs(model_kind, model.config)
    names = list(inputs)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dynamic_axes = {n: {0: "batch"} for n in [*names, *spec.outputs]} if dynamic_batch else None
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # legacy-exporter deprecation + tracer notes
        with torch.no_grad():
            torch.onnx.export(
                model, tuple(inputs.values()), str(path), dynamo=False, input_names=names,
                output_names=list(spec.outputs), opset_version=opset, dynamic_axes=dynamic_axes,
                do_constant_folding=True,
            )
    import onnx

    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = "model_id", mid
    entry = proto.metadata_props.add()
    entry.key, entry.value = "model_kind", model_kind
    onnx.save(proto, str(path))
    return path


def onnx_model_id(path: str | Path) -> str | None:
    """The ``model_id`` stored by ``export_onnx``; None for unreadable files or other exports."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - any unreadable file just means "export again"
        return None
    return {p.key: p.value for p in proto.metadata_props}.get("model_id")


class _TorchRunner:
    def __init__(self, model: nn.Module, device: str, channels_last: bool, bf16: bool):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.channels_last = channels_last
        self.bf16 = bf16
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)

    def __call__(self, **arrays: np.ndarray) -> list[np.ndarray]:
        with torch.inference_mode():
            args = []
            for value in arrays.values():
                value = np.ascontiguousarray(value)
                if not value.flags.writeable:  # a view into a shared message buffer: torch wants its own
                    value = value.copy()
                t = torch.from_numpy(value).to(self.device)
                if self.channels_last and t.ndim == 4:
                    t = t.contiguous(memory_format=torch.channels_last)
                args.append(t)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                out = self.model(*args)
            outs = out if isinstance(out, tuple) else (out,)
            return [o.float().cpu().numpy() for o in outs]


class _OnnxRunner:
    def __init__(self, path: Path, device: str, threads: int | None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        # the graph runs several sessions side by side (and torch beside them): idle
        # intra-op threads must sleep, not spin on the cores the other nodes need
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = ["CPUExecutionProvider"]
        if str(device).startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(str(path), opts, providers=providers)
        self.input_names = {i.name for i in self.session.get_inputs()}
        self.path = path

    def __call__(self, **arrays: np.ndarray) -> list[np.ndarray]:
        feed = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in arrays.items() if k in self.input_names}
        return self.session.run(None, feed)


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
        self.model, self.config, self.model_id = load_model(self.KIND, checkpoint_dir, config, preset)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.untrained = self.checkpoint_dir is None
        self.backend = backend
        self.device = device
        self.last_inference_ms = float("nan")
        if self.untrained:
            log.warning("%s: no checkpoint, running UNTRAINED random weights (model_id %s)", self.KIND, self.model_id)
        if backend == "torch":
            self._run: Any = _TorchRunner(self.model, device, channels_last, bf16)
        else:
            path = Path(onnx_path) if onnx_path else Path(tempfile.mkdtemp(prefix="latentvla_onnx_")) / f"{self.KIND}.onnx"
            reuse = path.is_file() and not self.untrained and onnx_model_id(path) == self.model_id
            if not reuse:
                export_onnx(self.KIND, self.model, path, model_id=self.model_id)
            self.onnx_path = path
            self._run = _OnnxRunner(path, device, torch_threads)

    def _infer(self, **arrays: np.ndarray) -> list[np.ndarray]:
        start = time.perf_counter()
        out = self._run(**arrays)
        self.last_inference_ms = (time.perf_counter() - start) * 1e3
        for name, value in zip(_spec(self.KIND).outputs, out):
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
        image = stitch_cameras(frame.cameras, cfg.image_size)
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
        image = stitch_cameras(frame.cameras, self.config.image_size)
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
    """BevTokens (+ LatentPlan for fused planners) -> Trajectory."""

    KIND = "planner"
    config: PlannerConfig

    @property
    def needs_plan(self) -> bool:
        return self.config.uses_context

    @property
    def fusion(self) -> str:
        return self.config.fusion

    def plan(self, bev: BevTokens, plan: LatentPlan | None = None) -> Trajectory:
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
        (poses,) = self._infer(**inputs)
        poses = poses[0].astype(np.float64)
        if poses.shape != (cfg.num_poses, 3):
            raise ModelOutputError(f"planner output shape {poses.shape}, expected ({cfg.num_poses}, 3)")
        return Trajectory(poses=poses, stamp_ns=bev.stamp_ns, model_id=self.model_id)


# -------------------------------------------------------------------- agent
@dataclass
class AgentTimings:
    bev_ms: float = float("nan")
    reason_ms: float = float("nan")
    plan_ms: float = float("nan")
    total_ms: float = float("nan")


@dataclass
class LatentVLAAgent:
    """NAVSIM-style agent: ``compute_trajectory(frame)`` runs BEV -> (student) -> planner.

    ``concurrent=True`` runs the student in a worker thread while the BEV backbone runs
    in the caller's (both only read the frame; torch and onnxruntime release the GIL
    inside kernels), as the node graph does; the default runs them one after the other.
    ``close()`` ends the worker thread.
    """

    bev: BevFeatureExtractor
    reasoner: LatentReasoner | None
    planner: TrajectoryPlanner
    timings: AgentTimings = field(default_factory=AgentTimings)
    last_bev: BevTokens | None = None
    last_plan: LatentPlan | None = None
    concurrent: bool = False
    _worker: ThreadPoolExecutor | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        check_compatible(self.bev.config, self.planner.config)
        pcfg = self.planner.config
        if pcfg.uses_context:
            if self.reasoner is None:
                raise ConfigError(f"planner fusion={pcfg.fusion!r} needs a reasoner")
            scfg = getattr(self.reasoner, "config", None)
            if isinstance(scfg, StudentConfig) and (scfg.d_model != pcfg.context_dim or scfg.context_tokens != pcfg.num_context_tokens):
                raise ConfigError(
                    f"student gives {scfg.context_tokens} x {scfg.d_model} embeddings, planner expects "
                    f"{pcfg.num_context_tokens} x {pcfg.context_dim}")

    @property
    def name(self) -> str:
        return f"latentvla[{self.planner.config.fusion}]"

    @property
    def model_id(self) -> str:
        parts = [self.bev.model_id, self.planner.model_id]
        if self.reasoner is not None and self.planner.needs_plan:
            parts.insert(1, self.reasoner.model_id)
        return "|".join(parts)

    @property
    def untrained(self) -> bool:
        return self.bev.untrained or self.planner.untrained or (
            self.planner.needs_plan and self.reasoner is not None and self.reasoner.untrained)

    def compute_trajectory(self, frame: SensorFrame) -> Trajectory:
        use_reasoner = self.reasoner is not None and self.planner.needs_plan
        t0 = time.perf_counter()
        if use_reasoner and self.concurrent:
            if self._worker is None:
                self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agent_student")
            pending = self._worker.submit(_timed, self.reasoner.reason, frame)
            bev = self.bev.extract(frame)
            t1 = time.perf_counter()
            plan, reason_ms = pending.result()
            t2 = time.perf_counter()
            bev_ms = (t1 - t0) * 1e3
        else:
            bev = self.bev.extract(frame)
            t1 = time.perf_counter()
            plan = self.reasoner.reason(frame) if use_reasoner else None
            t2 = time.perf_counter()
            bev_ms, reason_ms = (t1 - t0) * 1e3, (t2 - t1) * 1e3
        traj = self.planner.plan(bev, plan)
        t3 = time.perf_counter()
        self.last_bev, self.last_plan = bev, plan
        self.timings = AgentTimings(bev_ms, reason_ms, (t3 - t2) * 1e3, (t3 - t0) * 1e3)
        return traj

    def close(self) -> None:
        if self._worker is not None:
            self._worker.shutdown(wait=True)
            self._worker = None


def _timed(fn, *args) -> tuple[Any, float]:
    start = time.perf_counter()
    value = fn(*args)
    return value, (time.perf_counter() - start) * 1e3


def build_pipeline_from_dir(
    checkpoints_root: str | Path | None,
    preset: str = "edge",
    device: str = "cpu",
    torch_threads: int | None = None,
    backend: str = "torch",
    onnx_dir: str | Path | None = None,
) -> LatentVLAAgent:
    """Load ``<root>/bev_backbone``, ``<root>/student``, ``<root>/planner`` where present.

    Missing stages are built untrained from ``preset`` (``model_id`` says
    ``untrained`` and a warning is logged). The student is loaded only when the
    planner fuses it. A ``fusion='teacher'`` planner needs the VLM teacher at run
    time, which this function does not build: ConfigError.
    """
    root = Path(checkpoints_root) if checkpoints_root else None

    def ckdir(sub: str) -> Path | None:
        if root is not None and (root / sub / ckpt.CONFIG_NAME).is_file():
            return root / sub
        if root is not None:
            log.warning("no checkpoint %s: %s will be UNTRAINED", root / sub, sub)
        return None

    def onnx_path(kind: str) -> Path | None:
        return Path(onnx_dir) / f"{kind}.onnx" if onnx_dir else None

    common = dict(device=device, torch_threads=torch_threads, backend=backend, preset=preset)
    planner = TrajectoryPlanner(checkpoint_dir=ckdir(PLANNER_SUBDIR), onnx_path=onnx_path("planner"), **common)
    if planner.config.fusion == "teacher":
        raise ConfigError("planner fusion='teacher' needs teacher embeddings at run time; build that agent with the teacher")
    bev = BevFeatureExtractor(checkpoint_dir=ckdir(BEV_SUBDIR), onnx_path=onnx_path("bev_backbone"), **common)
    reasoner = None
    if planner.needs_plan:
        reasoner = LatentReasoner(checkpoint_dir=ckdir(STUDENT_SUBDIR), onnx_path=onnx_path("student"), **common)
    return LatentVLAAgent(bev, reasoner, planner)
