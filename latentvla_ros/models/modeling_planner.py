"""Fused trajectory planner (LatentVLA fusion module + TransFuser trajectory head).

``FusedPlanner.forward(bev_tokens (B,N,C), ego_status (B,8), context (B,M,Dc) | None,
route (B,R,2) | None, route_valid (B,) | None) -> poses (B, num_poses, 3)``:

1. BEV tokens are projected to ``d_model`` and get learned positions.
2. ``FusionModule`` (skipped for ``fusion='none'``): the BEV tokens are the
   queries of a cross-attention whose keys/values are the context embeddings
   (projected from ``context_dim`` to ``d_model``, + learned positions);
   pre-norm residual + LayerNorm + FFN. The residual branches' output layers
   start at zero, so an untrained fusion module is the identity and the fused
   planner starts exactly as the unfused one.
3. Trajectory decoder (TransFuser): one learned trajectory query attends to the
   fused BEV tokens + a status token (Linear(8, d); the acceleration zeroed unless
   ``status_acceleration``) + (``route_points`` > 0) a route token: MLP([route / xy_scale_m,
   route_valid]) -> d, the mission route ahead in the ego frame (``core.route``; an invalid
   route is zeroed and flagged by route_valid = 0); an MLP maps it to
   ``num_poses x 3``; x, y are scaled by ``xy_scale_m`` and added to an anchor
   (``constant_velocity_prior``, ``anchor_xy``): with a route (``anchor='route_speed'``, the
   presets) along the route at the ego's speed, else straight ahead along the heading at the
   ego's speed; heading = tanh * pi. With ``num_modes`` K > 1 the head gives K such trajectories
   and a linear layer K mode logits; ``forward`` returns the most likely mode's trajectory
   (``select_mode``), ``forward_modes`` all of them (training: winner takes all).

``E2EPlanner`` = ``BevBackbone`` + ``FusedPlanner`` for end-to-end imitation.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from latentvla_ros.models.base import PretrainedModel
from latentvla_ros.models.configuration_bev import BevBackboneConfig
from latentvla_ros.models.configuration_planner import PlannerConfig
from latentvla_ros.models.modeling_bev import BevBackbone, CrossAttentionBlock

BEV_SUBDIR = "bev_backbone"
PLANNER_SUBDIR = "planner"


def anchor_xy(ego_status: torch.Tensor, times: torch.Tensor, anchor: str = "heading_speed",
              route: torch.Tensor | None = None, route_valid: torch.Tensor | None = None) -> torch.Tensor:
    """Anchor positions (B, P, 2) at ``times`` (1, P, 1) [s]: what the planner predicts offsets from.

    Ego status [4:6] is the ego-frame velocity (vx, vy). ``'heading_speed'``: straight
    ahead along the heading at the speed |(vx, vy)|; ``'velocity'``: (vx, vy) t (the
    slip angle's vy makes the anchor turn with the ego's own steering); ``'route_speed'``:
    along the route input at the speed |(vx, vy)| (``route_anchor_xy``), where the sample has a
    valid route, else ``'heading_speed'``.
    """
    velocity = ego_status[:, None, 4:6]
    if anchor == "velocity":
        return velocity * times
    speed = torch.sqrt((velocity * velocity).sum(-1, keepdim=True) + 1e-12)
    straight = torch.cat([speed * times, torch.zeros_like(speed * times)], dim=-1)
    if anchor != "route_speed" or route is None:
        return straight
    along = route_anchor_xy(route.to(straight.dtype), (speed * times)[..., 0])
    valid = (route_valid if route_valid is not None else route.new_ones(route.shape[0])).reshape(-1, 1, 1)
    valid = valid.to(straight.dtype)
    return valid * along + (1.0 - valid) * straight


def route_anchor_xy(route: torch.Tensor, arc: torch.Tensor) -> torch.Tensor:
    """Points (B, P, 2) at arc lengths ``arc`` (B, P) [m] along the polyline ego origin -> route
    points (B, R, 2) (the route input: ahead of the ego's projection onto the route, so the first
    segment also brings a laterally offset ego back onto the route); past the last point the
    polyline continues along its last segment.

    Segment j contributes clamp((arc - c_j) / len_j, 0, 1) of itself (the last segment unclamped
    above), c_j the arc length at its start: for an increasing arc length that is exactly linear
    interpolation along the polyline, with element-wise ops only (ONNX-exportable, no gather)."""
    knots = torch.cat([route.new_zeros(route.shape[0], 1, 2), route], dim=1)  # (B, R+1, 2)
    seg = knots[:, 1:] - knots[:, :-1]  # (B, R, 2)
    length = torch.sqrt((seg * seg).sum(-1) + 1e-12)  # (B, R)
    start = torch.cumsum(length, dim=1) - length  # (B, R) arc length at each segment's start
    frac = (arc[:, :, None] - start[:, None, :]) / length[:, None, :]  # (B, P, R)
    upper = torch.cat([torch.ones_like(frac[..., :-1]), torch.full_like(frac[..., -1:], float("inf"))], dim=-1)
    frac = torch.minimum(torch.clamp(frac, min=0.0), upper)  # the last segment extrapolates
    return torch.einsum("bpr,brc->bpc", frac, seg)


class FusionModule(nn.Module):
    """BEV queries cross-attend to context embeddings (VLM/student visual + action)."""

    def __init__(self, cfg: PlannerConfig):
        super().__init__()
        d = cfg.d_model
        self.context_proj = nn.Linear(cfg.context_dim, d)
        self.context_pos = nn.Parameter(torch.zeros(1, cfg.num_context_tokens, d))
        nn.init.trunc_normal_(self.context_pos, std=0.02)
        self.blocks = nn.ModuleList(
            CrossAttentionBlock(d, cfg.num_heads, cfg.ffn_dim, cfg.dropout, self_attention=False)
            for _ in range(cfg.fusion_layers)
        )
        self.norm = nn.LayerNorm(d)
        for block in self.blocks:  # start as the identity map
            nn.init.zeros_(block.ca.out.weight)
            nn.init.zeros_(block.ca.out.bias)
            nn.init.zeros_(block.ffn[3].weight)
            nn.init.zeros_(block.ffn[3].bias)

    def forward(self, bev: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """bev (B,N,d) queries, context (B,M,context_dim) keys/values -> (B,N,d)."""
        memory = self.context_proj(context) + self.context_pos
        for block in self.blocks:
            bev = block(bev, memory)
        return bev


class FusedPlanner(PretrainedModel):
    """BEV tokens (+ fused context) + ego status -> (B, num_poses, 3) trajectory."""

    CONFIG_CLASS = PlannerConfig
    MODEL_TYPE = "planner"

    def __init__(self, config: PlannerConfig | None = None):
        super().__init__()
        self.config = cfg = config or PlannerConfig.preset("edge")
        d = cfg.d_model
        self.bev_proj = nn.Linear(cfg.bev_token_dim, d)
        self.bev_pos = nn.Parameter(torch.zeros(1, cfg.num_bev_tokens, d))
        nn.init.trunc_normal_(self.bev_pos, std=0.02)
        self.fusion = FusionModule(cfg) if cfg.uses_context else None
        self.status = nn.Linear(cfg.ego_status_dim, d)
        self.query = nn.Parameter(torch.zeros(1, 1, d))
        nn.init.trunc_normal_(self.query, std=0.02)
        # one query: self-attention among queries would be a no-op, so it is left out
        self.decoder = nn.ModuleList(
            CrossAttentionBlock(d, cfg.num_heads, cfg.ffn_dim, cfg.dropout, self_attention=False) for _ in range(cfg.num_layers)
        )
        self.norm = nn.LayerNorm(d)
        self.head = nn.Sequential(nn.Linear(d, cfg.ffn_dim), nn.ReLU(inplace=True),
                                  nn.Linear(cfg.ffn_dim, cfg.num_modes * cfg.num_poses * 3))
        times = cfg.pose_interval_s * torch.arange(1, cfg.num_poses + 1, dtype=torch.float32)
        self.register_buffer("pose_times", times.view(1, -1, 1), persistent=False)
        # created last, and only with a route input: a route_points=0 planner has exactly the
        # parameters (and the same random initialisation) of the planner before the route input
        self.route = nn.Sequential(nn.Linear(2 * cfg.route_points + 1, d), nn.ReLU(inplace=True),
                                   nn.Linear(d, d)) if cfg.uses_route else None
        # likewise only with several modes: a num_modes=1 planner is the single-trajectory planner of before
        self.mode_head = nn.Linear(d, cfg.num_modes) if cfg.num_modes > 1 else None
        if self.mode_head is not None:
            with torch.no_grad():
                self.head[2].bias.add_(mode_offsets(cfg).flatten())

    def route_token(self, route: torch.Tensor | None, route_valid: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
        """(B, 1, d) from route (B, R, 2) [m] and route_valid (B,); None = no route (all invalid)."""
        cfg = self.config
        b = like.shape[0]
        if route is None:
            route = like.new_zeros(b, cfg.route_points, 2)
            route_valid = like.new_zeros(b)
        elif route_valid is None:
            route_valid = like.new_ones(b)
        valid = route_valid.reshape(-1, 1).to(like.dtype)
        flat = route.flatten(1).to(like.dtype) / cfg.xy_scale_m * valid
        return self.route(torch.cat([flat, valid], dim=1)).unsqueeze(1)

    def forward_modes(self, bev_tokens: torch.Tensor, ego_status: torch.Tensor, context: torch.Tensor | None = None,
                      route: torch.Tensor | None = None,
                      route_valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(poses (B, K, num_poses, 3), mode logits (B, K)); K = ``num_modes`` (logits all 0 for K = 1)."""
        cfg = self.config
        bev = self.bev_proj(bev_tokens) + self.bev_pos
        if self.fusion is not None:
            if context is None:
                raise ValueError(f"planner with fusion={cfg.fusion!r} needs a context tensor")
            bev = self.fusion(bev, context)
        status = ego_status if cfg.status_acceleration else torch.cat(
            [ego_status[:, :6], torch.zeros_like(ego_status[:, 6:])], dim=1)  # no acceleration (config doc)
        tokens = [bev, self.status(status).unsqueeze(1)]
        if self.route is not None:
            tokens.append(self.route_token(route, route_valid, bev))
        memory = torch.cat(tokens, dim=1)
        q = self.query.expand(bev_tokens.shape[0], -1, -1)
        for block in self.decoder:
            q = block(q, memory)
        hidden = self.norm(q[:, 0])
        raw = self.head(hidden).reshape(-1, cfg.num_modes, cfg.num_poses, 3)
        xy = raw[..., :2] * cfg.xy_scale_m
        if cfg.constant_velocity_prior:
            if self.route is not None and route is not None and route_valid is None:
                route_valid = route.new_ones(route.shape[0])
            xy = xy + anchor_xy(ego_status, self.pose_times, cfg.anchor, route, route_valid).unsqueeze(1)
        heading = torch.tanh(raw[..., 2:]) * math.pi
        logits = self.mode_head(hidden) if self.mode_head is not None else hidden.new_zeros(hidden.shape[0], 1)
        return torch.cat([xy, heading], dim=-1), logits

    def forward(self, bev_tokens: torch.Tensor, ego_status: torch.Tensor, context: torch.Tensor | None = None,
                route: torch.Tensor | None = None, route_valid: torch.Tensor | None = None) -> torch.Tensor:
        """(B, num_poses, 3): the most likely mode's trajectory."""
        poses, logits = self.forward_modes(bev_tokens, ego_status, context, route, route_valid)
        return poses[:, 0] if self.mode_head is None else select_mode(poses, logits)


def select_mode(poses: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """The trajectory (B, P, 3) of the highest logit among poses (B, K, P, 3); ties average. Element-wise
    ops only (ONNX-exportable, no gather)."""
    best = (logits >= logits.max(dim=1, keepdim=True).values).to(poses.dtype)
    best = best / best.sum(dim=1, keepdim=True)
    return (best[:, :, None, None] * poses).sum(dim=1)


MODE_SPEED_SPREAD_MPS = 4.0
"""Initial spread of the modes' speeds (``mode_offsets``)."""


def mode_offsets(cfg: PlannerConfig) -> torch.Tensor:
    """Initial offsets (K, num_poses, 3) of the modes' raw head outputs: mode k starts moving
    ``MODE_SPEED_SPREAD_MPS`` x (k - (K - 1) / 2) m/s faster along x than the anchor, so that winner-takes-all
    training has distinct modes to assign the logged trajectories to (identical modes would all go to
    mode 0); the learned weights take over from there."""
    k = cfg.num_modes
    speed = MODE_SPEED_SPREAD_MPS * (torch.arange(k, dtype=torch.float32) - (k - 1) / 2.0)
    times = cfg.pose_interval_s * torch.arange(1, cfg.num_poses + 1, dtype=torch.float32)
    out = torch.zeros(k, cfg.num_poses, 3)
    out[:, :, 0] = speed[:, None] * times[None, :] / cfg.xy_scale_m
    return out


def expand_modes(state: dict[str, torch.Tensor], cfg: PlannerConfig, fresh: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A single-mode planner's ``state`` (its ``state_dict``) for the ``num_modes`` = K planner ``cfg``: every
    mode starts as the single trajectory plus ``mode_offsets``; the mode logits start from ``fresh`` (the new
    planner's own initialisation). Used to fine-tune a shipped single-mode planner into a multi-modal one."""
    out = dict(state)
    w, b = state["head.2.weight"], state["head.2.bias"]
    out["head.2.weight"] = w.repeat(cfg.num_modes, 1)
    out["head.2.bias"] = b.repeat(cfg.num_modes) + mode_offsets(cfg).flatten().to(b.dtype)
    out["mode_head.weight"], out["mode_head.bias"] = fresh["mode_head.weight"], fresh["mode_head.bias"]
    return out


def check_compatible(bev: BevBackboneConfig, planner: PlannerConfig) -> None:
    """Raise ConfigError when the planner cannot consume the backbone's tokens."""
    from latentvla_ros.core.config_base import ConfigError

    if bev.token_dim != planner.bev_token_dim or bev.num_tokens != planner.num_bev_tokens:
        raise ConfigError(
            f"planner expects {planner.num_bev_tokens} BEV tokens of {planner.bev_token_dim} channels, "
            f"backbone gives {bev.num_tokens} x {bev.token_dim}"
        )


class E2EPlanner(nn.Module):
    """BevBackbone + FusedPlanner, trained end to end by imitation."""

    def __init__(self, bev_config: BevBackboneConfig | None = None, planner_config: PlannerConfig | None = None):
        super().__init__()
        bev_config = bev_config or BevBackboneConfig.preset("edge")
        planner_config = planner_config or PlannerConfig.preset("edge")
        check_compatible(bev_config, planner_config)
        self.backbone = BevBackbone(bev_config)
        self.planner = FusedPlanner(planner_config)

    def forward(self, image: torch.Tensor, lidar_bev: torch.Tensor, ego_status: torch.Tensor,
                context: torch.Tensor | None = None, route: torch.Tensor | None = None,
                route_valid: torch.Tensor | None = None, all_modes: bool = False):
        """(B, num_poses, 3); ``all_modes``: ``FusedPlanner.forward_modes``'s (poses (B, K, P, 3), logits (B, K))
        (a keyword of forward, not a method, so that a DistributedDataParallel wrapper syncs its gradients)."""
        tokens = self.backbone(image, lidar_bev, ego_status)
        if all_modes:
            return self.planner.forward_modes(tokens, ego_status, context, route, route_valid)
        return self.planner(tokens, ego_status, context, route, route_valid)

    def save_pretrained(self, root: str | Path, meta: dict[str, Any] | None = None) -> Path:
        """Writes ``<root>/bev_backbone/`` and ``<root>/planner/``."""
        root = Path(root)
        self.backbone.save_pretrained(root / BEV_SUBDIR, meta)
        self.planner.save_pretrained(root / PLANNER_SUBDIR, meta)
        return root

    @classmethod
    def from_pretrained(cls, root: str | Path, map_location: str | torch.device = "cpu") -> E2EPlanner:
        root = Path(root)
        backbone = BevBackbone.from_pretrained(root / BEV_SUBDIR, map_location)
        planner = FusedPlanner.from_pretrained(root / PLANNER_SUBDIR, map_location)
        model = cls(backbone.config, planner.config)
        model.backbone, model.planner = backbone, planner
        return model.to(map_location).eval()
