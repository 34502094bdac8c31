"""Latent-action student: a decision-transformer-style model distilled from the VLM teacher.

Token sequence (one frame)::

    [ego-status token | Nv visual tokens | 12 action slots]
      Linear(8, d)      conv patch stem     learned slot embeddings
      + type embedding  + learned positions + fixed sinusoidal step positions

Attention mask: the prefix (ego + visual tokens) attends to the whole prefix
and never to the action slots; action slot k attends to the prefix and to
slots 0..k (causal over the slots). The slots are learned queries, not the
previously *sampled* tokens, so **one forward pass produces all 12 tokens**:
there is no autoregressive decoding loop, which keeps latency at a single
pass (the causal mask still lets slot k condition on the hidden states of the
earlier slots, i.e. on the plan so far).

Outputs (``StudentOutput``): ``logits`` (B, 12, 16) over the latent codebook;
``action_embeddings`` (B, 12, D), the final hidden states of the slots; and
``visual_embeddings`` (B, Nv', D), the final hidden states of the visual tokens
average-pooled to ``visual_embedding_grid``. The planner's fusion module
attends to ``concat(visual_embeddings, action_embeddings)``.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from latentvla_ros.models.base import PretrainedModel
from latentvla_ros.models.configuration_student import StudentConfig
from latentvla_ros.models.modeling_bev import TransformerBlock


class StudentOutput(NamedTuple):
    logits: torch.Tensor  # (B, num_action_tokens, codebook_size)
    action_embeddings: torch.Tensor  # (B, num_action_tokens, d_model)
    visual_embeddings: torch.Tensor  # (B, num_visual_embeddings, d_model)


def sinusoidal_positions(n: int, dim: int) -> torch.Tensor:
    pos = torch.arange(n, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    out = torch.zeros(n, dim)
    out[:, 0::2] = torch.sin(pos * freq)
    out[:, 1::2] = torch.cos(pos * freq)[:, : dim // 2]
    return out


def student_attention_mask(num_prefix: int, num_slots: int) -> torch.Tensor:
    """Bool (L, L), True = may attend: prefix <-> prefix, slot k -> prefix + slots <= k."""
    n = num_prefix + num_slots
    mask = torch.zeros(n, n, dtype=torch.bool)
    mask[:, :num_prefix] = True
    mask[num_prefix:, num_prefix:] = torch.tril(torch.ones(num_slots, num_slots, dtype=torch.bool))
    return mask


class PatchStem(nn.Sequential):
    """4x4/4 patch conv, then 2x2/2 patch-merging convs (BN + GELU between); the last one -> d_model."""

    def __init__(self, cfg: StudentConfig):
        layers: list[nn.Module] = []
        cin = 3
        for i, cout in enumerate(cfg.stem_channels):
            k = 4 if i == 0 else 2
            layers += [nn.Conv2d(cin, cout, k, k, bias=False), nn.BatchNorm2d(cout), nn.GELU()]
            cin = cout
        layers.append(nn.Conv2d(cin, cfg.d_model, 2, 2))
        super().__init__(*layers)


class LatentStudent(PretrainedModel):
    """Camera image + ego status -> 12 latent action tokens (logits) and embeddings."""

    CONFIG_CLASS = StudentConfig
    MODEL_TYPE = "student"

    def __init__(self, config: StudentConfig | None = None):
        super().__init__()
        self.config = cfg = config or StudentConfig.preset("edge")
        d = cfg.d_model
        self.stem = PatchStem(cfg)
        self.visual_grid = tuple(cfg.visual_grid)
        stem_hw = (cfg.image_size[0] // cfg.stem_stride, cfg.image_size[1] // cfg.stem_stride)
        # static pooling kernels (the config fixes the input size): ONNX-friendly
        self.visual_kernel = (stem_hw[0] // cfg.visual_grid[0], stem_hw[1] // cfg.visual_grid[1])
        self.embedding_kernel = (cfg.visual_grid[0] // cfg.visual_embedding_grid[0],
                                 cfg.visual_grid[1] // cfg.visual_embedding_grid[1])
        self.visual_pos = nn.Parameter(torch.zeros(1, cfg.num_visual_tokens, d))
        self.ego_proj = nn.Linear(cfg.ego_status_dim, d)
        self.ego_type = nn.Parameter(torch.zeros(1, 1, d))
        self.action_queries = nn.Parameter(torch.zeros(1, cfg.num_action_tokens, d))
        self.register_buffer("action_pos", sinusoidal_positions(cfg.num_action_tokens, d).unsqueeze(0), persistent=False)
        self.num_prefix = 1 + cfg.num_visual_tokens
        self.register_buffer("attn_mask", student_attention_mask(self.num_prefix, cfg.num_action_tokens), persistent=False)
        self.blocks = nn.ModuleList(TransformerBlock(d, cfg.num_heads, cfg.ffn_dim, cfg.dropout) for _ in range(cfg.num_layers))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, cfg.codebook_size)
        self.register_buffer("pixel_mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)
        for p in (self.visual_pos, self.ego_type, self.action_queries):
            nn.init.trunc_normal_(p, std=0.02)
        self.apply(self._init_linear)

    @staticmethod
    def _init_linear(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, image: torch.Tensor, ego_status: torch.Tensor) -> StudentOutput:
        """image (B,3,H,W) in [0,1], ego_status (B,8) -> StudentOutput (all 12 tokens in one pass)."""
        cfg = self.config
        b = image.shape[0]
        feat = self.stem((image - self.pixel_mean) / self.pixel_std)
        vis = F.avg_pool2d(feat, self.visual_kernel).flatten(2).transpose(1, 2) + self.visual_pos
        ego = self.ego_proj(ego_status).unsqueeze(1) + self.ego_type
        slots = (self.action_queries + self.action_pos).expand(b, -1, -1)
        x = torch.cat([ego, vis, slots], dim=1)
        for block in self.blocks:
            x = block(x, mask=self.attn_mask)
        x = self.norm(x)
        actions = x[:, self.num_prefix:]
        visual = x[:, 1:self.num_prefix].transpose(1, 2).reshape(b, cfg.d_model, self.visual_grid[0], self.visual_grid[1])
        visual = F.avg_pool2d(visual, self.embedding_kernel).flatten(2).transpose(1, 2)
        return StudentOutput(self.head(actions), actions, visual)

