"""Configuration of the fused trajectory planner (fusion module + trajectory decoder).

``fusion`` selects what the BEV queries cross-attend to before decoding:

- ``'none'``: no fusion, a plain TransFuser-style planner (the E2E baseline);
- ``'student'``: the student's ``concat(visual_embeddings, action_embeddings)``
  (``context_dim`` = student ``d_model``, ``num_context_tokens`` = its
  ``num_visual_embeddings + 12``);
- ``'teacher'``: the VLM teacher's visual + action embeddings (``teacher_context``
  in the driving logs).

Presets: ``paper`` is NAVSIM TransFuser's decoder (d 256, FFN 1024, 3 layers, 8
heads) with a context of the paper student (768-d, 16 + 12 tokens); ``edge`` is
a 2-layer, 128-d version matched to the edge backbone and student.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from latentvla_ros.core.config_base import ConfigBase, ConfigError, require
from latentvla_ros.core.sizes import DEFAULT_TRAJECTORY_SAMPLING, TrajectorySampling
from latentvla_ros.core.types import EGO_STATUS_DIM
from latentvla_ros.models.configuration_bev import BevBackboneConfig
from latentvla_ros.models.configuration_student import StudentConfig

FUSION_MODES = ("none", "student", "teacher")
ANCHORS = ("heading_speed", "velocity", "route_speed")


@dataclasses.dataclass
class PlannerConfig(ConfigBase):
    """Fusion module + TransFuser-style trajectory query decoder."""

    fusion: str = "student"
    """What the BEV tokens attend to: 'none', 'student' or 'teacher' embeddings."""
    bev_token_dim: int = 64
    """Channels of the incoming BEV tokens (the backbone's ``token_dim``)."""
    num_bev_tokens: int = 64
    """Number of incoming BEV tokens (grid_rows * grid_cols of the backbone)."""
    context_dim: int = 192
    """Width of the fused context embeddings (student d_model, or the teacher's)."""
    num_context_tokens: int = 28
    """Number of context embeddings (student: num_visual_embeddings + 12)."""
    d_model: int = 128
    """Width of the fusion module and the trajectory decoder."""
    num_heads: int = 4
    """Attention heads (must divide d_model)."""
    ffn_dim: int = 256
    """Hidden size of the feed-forward layers."""
    num_layers: int = 2
    """Trajectory decoder layers (self-attention, cross-attention, FFN)."""
    fusion_layers: int = 1
    """Fusion blocks (BEV queries cross-attend to the context); unused for fusion='none'."""
    dropout: float = 0.0
    """Dropout in attention and feed-forward layers."""
    num_poses: int = DEFAULT_TRAJECTORY_SAMPLING.num_poses
    """Poses of the output trajectory (8 at 0.5 s)."""
    ego_status_dim: int = EGO_STATUS_DIM
    """Size of the ego-status vector fed as the status token."""
    xy_scale_m: float = 10.0
    """The trajectory MLP predicts x, y in units of this many metres (helps the
    output reach highway distances early in training); heading is tanh * pi."""
    constant_velocity_prior: bool = True
    """Predict x, y as offsets from the constant-velocity extrapolation of the ego
    velocity in the status vector (an anchor trajectory): the network learns the
    deviation from "keep going", which generalises far better from small data."""
    anchor: str = "heading_speed"
    """The constant-velocity anchor: ``'heading_speed'`` moves straight ahead along the ego
    heading at the ego speed |(vx, vy)| (x = v t, y = 0); ``'velocity'`` adds (vx, vy) t,
    whose lateral part vy = v sin(slip) grows with the tracker's own steering, so every
    correction makes the next plan turn harder (issue 12); ``'route_speed'`` (the presets,
    with ``route_points`` > 0) moves along the route input at the ego speed, so the network
    learns the deviation from "follow the route" (a sample without a valid route falls back to
    ``'heading_speed'``): with the route only as a token, 2 epochs of imitation left the plan
    ignoring it at the roundabout entry (off-road 100% there in the round-0 validation).
    Checkpoints written before this field existed were trained with ``'velocity'`` and load
    with it (``from_dict``)."""
    status_acceleration: bool = False
    """Whether the status token sees the ego's acceleration (ego status [6:8]). Off: it is zeroed
    before the status token, in training and at run time. With it, the closed-loop planner braked
    itself to a stop (a deceleration in the status predicts more deceleration in the logs, and the
    tracker's own braking then feeds the next plan: the inertia / causal-confusion problem of
    behaviour cloning, Codevilla et al. 2019, de Haan et al. 2019). Checkpoints written before
    this field existed saw it and load with True (``from_dict``)."""
    pose_interval_s: float = DEFAULT_TRAJECTORY_SAMPLING.interval_s
    """Time between the output poses [s] (used by the constant-velocity prior)."""
    route_points: int = 0
    """Points of the route input (issue 12): the mission route ahead in the ego frame, resampled
    to this many points every ``route_spacing_m`` (``core.route.resample_route``), enters the
    decoder as one route token beside the status token. 0: no route token, the planner of
    before (checkpoints written before this field existed load with 0 and behave exactly as
    before); the ``edge`` and ``paper`` presets use 12."""
    route_spacing_m: float = 3.0
    """Arc length between the route points [m] (12 x 3 m = 36 m ahead)."""
    route_dropout: float = 0.1
    """Training only: the share of samples whose route is replaced by "no route" (zeros,
    ``route_valid`` 0), so that a missing route at run time degrades the plan instead of
    producing garbage."""
    action_dropout: float = 0.0
    """Training only, student fusion: the share of samples whose latent action embeddings are zeroed
    (the visual embeddings kept), as ``evaluation/agents.py``'s 'zeroed' ablation does at run time,
    so that the planner cannot follow a flickering action token alone. 0: the planner of before."""
    action_jitter: float = 0.0
    """Training only, student fusion: the share of samples whose latent action embeddings come from the
    student run on a jittered copy of its input (the image shifted by up to
    ``training.student.JITTER_SHIFT_PX`` pixels, the ego velocity and acceleration perturbed), the
    trajectory target unchanged, so that the planner learns to ignore the frame-to-frame flicker of
    the student's actions that small input changes cause in closed loop, and keeps what they say
    consistently. 0: the planner of before."""

    num_modes: int = 1
    """Trajectories the decoder proposes (issue 12, "it averages yield and go"): with 1 one regression
    head, whose L1 fit to situations where the expert sometimes waits and sometimes goes is a plan in
    between; with K > 1 the head gives K trajectories and K mode logits, training fits the mode closest
    to the logged trajectory (winner takes all) and teaches the logits which mode that was
    (``mode_loss_weight``), and the planner outputs the most likely mode's trajectory (VADv2,
    Hydra-MDP and TransFuser-style multi-modal heads do the same). Checkpoints written before this
    field existed have 1."""
    mode_loss_weight: float = 1.0
    """Training only, ``num_modes`` > 1: weight of the mode classification loss (cross-entropy of the
    mode logits against the winning mode) beside the trajectory L1 (weighted 10)."""

    @property
    def trajectory_sampling(self) -> TrajectorySampling:
        """How this planner samples its output (``core.sizes.TrajectorySampling``)."""
        return TrajectorySampling(self.num_poses, float(self.pose_interval_s))

    @property
    def uses_context(self) -> bool:
        return self.fusion != "none"

    def validate(self) -> None:
        require(self.fusion in FUSION_MODES, "fusion", f"must be one of {FUSION_MODES}, got {self.fusion!r}")
        require(self.bev_token_dim >= 1, "bev_token_dim", "must be >= 1")
        require(self.num_bev_tokens >= 1, "num_bev_tokens", "must be >= 1")
        require(self.context_dim >= 1, "context_dim", "must be >= 1")
        require(self.num_context_tokens >= 1, "num_context_tokens", "must be >= 1")
        require(self.d_model >= 1, "d_model", "must be >= 1")
        require(self.num_heads >= 1 and self.d_model % self.num_heads == 0, "num_heads", "must divide d_model")
        require(self.ffn_dim >= 1, "ffn_dim", "must be >= 1")
        require(self.num_layers >= 1, "num_layers", "must be >= 1")
        require(self.fusion_layers >= 1, "fusion_layers", "must be >= 1")
        require(0.0 <= self.dropout < 1.0, "dropout", "must be in [0, 1)")
        require(self.num_poses >= 1, "num_poses", "must be >= 1")
        require(self.ego_status_dim >= 1, "ego_status_dim", "must be >= 1")
        require(self.xy_scale_m > 0, "xy_scale_m", "must be > 0")
        require(self.pose_interval_s > 0, "pose_interval_s", "must be > 0")
        require(self.anchor in ANCHORS, "anchor", f"must be one of {ANCHORS}, got {self.anchor!r}")
        require(self.route_points >= 0, "route_points", "must be >= 0 (0: no route input)")
        require(self.anchor != "route_speed" or self.route_points > 0, "anchor",
                "'route_speed' needs a route input (route_points > 0)")
        require(self.route_spacing_m > 0, "route_spacing_m", "must be > 0")
        require(0.0 <= self.route_dropout <= 1.0, "route_dropout", "must be in [0, 1]")
        require(0.0 <= self.action_dropout <= 1.0, "action_dropout", "must be in [0, 1]")
        require(0.0 <= self.action_jitter <= 1.0, "action_jitter", "must be in [0, 1]")
        require(1 <= self.num_modes <= 64, "num_modes", "must be in [1, 64]")
        require(self.mode_loss_weight >= 0.0, "mode_loss_weight", "must be >= 0")

    TRAINING_ONLY = ("route_dropout", "action_dropout", "action_jitter", "mode_loss_weight")  # (not a field) a fine-tune may change them

    def architecture(self) -> dict:
        """The config without its training-only fields: what two planners must share for weights to load."""
        return {k: v for k, v in self.to_dict().items() if k not in self.TRAINING_ONLY}

    @property
    def uses_route(self) -> bool:
        return self.route_points > 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PlannerConfig:
        """A saved config; one without ``anchor`` predates it and used the (vx, vy) anchor, one
        without ``status_acceleration`` saw the acceleration."""
        if "anchor" not in data:
            data = {**data, "anchor": "velocity"}
        if "status_acceleration" not in data:
            data = {**data, "status_acceleration": True}
        return super().from_dict(data)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> PlannerConfig:
        """``'edge'`` or ``'paper'``; matched to the same-named backbone/student presets."""
        if name not in ("edge", "paper"):
            raise ConfigError(f"preset: unknown {name!r}, expected one of ['edge', 'paper']")
        bev = BevBackboneConfig.preset(name)
        student = StudentConfig.preset(name)
        base: dict[str, Any] = dict(
            bev_token_dim=bev.token_dim,
            num_bev_tokens=bev.num_tokens,
            context_dim=student.d_model,
            num_context_tokens=student.context_tokens,
            route_points=12,
            anchor="route_speed",
        )
        if name == "paper":
            base.update(d_model=256, num_heads=8, ffn_dim=1024, num_layers=3, fusion_layers=1, dropout=0.1)
        merged = {**base, **overrides}
        if not merged["route_points"] and "anchor" not in overrides:
            merged["anchor"] = "heading_speed"  # the route anchor needs a route input
        return cls(**merged)
