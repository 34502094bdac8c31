"""TransFuser-style camera + LiDAR backbone producing a grid of BEV tokens.

Two ResNet-like convolutional encoders (one on the stitched camera image, one
on the LiDAR BEV histogram; stride-4 stem, 'resnet' = conv + max-pool as
ResNet34 or 'patch' = one 4x4/4 conv, then residual stages) run stage by
stage; after the stages listed in
``config.fuse_at`` a transformer mixes the two: each feature map is
average-pooled to a small anchor grid, the two token sets are concatenated
(+ learned positions), passed through self-attention blocks, split, bilinearly
upsampled back to the feature-map sizes and added to the features (residual).
The final LiDAR feature map (ego-up, row 0 = far front) is pooled to the
``grid_rows x grid_cols`` BEV grid and projected to ``token_dim`` channels.

This module also holds the small transformer layers the student and the
planner share (``TransformerBlock``, ``CrossAttentionBlock``): plain
``torch.nn`` + ``scaled_dot_product_attention``, no data-dependent Python
control flow, so every model exports to ONNX and runs under bf16 autocast.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from latentvla_ros.core.types import EGO_STATUS_DIM
from latentvla_ros.models.base import PretrainedModel
from latentvla_ros.models.configuration_bev import BevBackboneConfig


# ---------------------------------------------------------------- shared layers
class MultiHeadAttention(nn.Module):
    """Multi-head attention (queries ``x``, keys/values ``context``) via SDPA."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0, kv_dim: int | None = None):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} not divisible by heads {heads}")
        self.heads = heads
        self.head_dim = dim // heads
        self.dropout = dropout
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(kv_dim or dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``mask``: bool (Lq, Lk), True where attention is allowed."""
        context = x if context is None else context
        b, lq, d = x.shape
        q = self.q(x).reshape(b, lq, self.heads, self.head_dim).transpose(1, 2)
        k, v = self.kv(context).reshape(b, -1, 2, self.heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(b, lq, d))


class FeedForward(nn.Sequential):
    def __init__(self, dim: int, hidden: int, dropout: float = 0.0):
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim), nn.Dropout(dropout))


class TransformerBlock(nn.Module):
    """Pre-norm self-attention block: x + Attn(LN x); x + FFN(LN x)."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = MultiHeadAttention(dim, heads, dropout)
        self.drop = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, ffn_dim, dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x), mask=mask))
        return x + self.ffn(self.norm2(x))


class CrossAttentionBlock(nn.Module):
    """Pre-norm decoder block: optional self-attention, cross-attention to ``memory``, FFN."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float = 0.0, kv_dim: int | None = None,
                 self_attention: bool = True):
        super().__init__()
        self.self_attention = self_attention
        if self_attention:
            self.norm_sa = nn.LayerNorm(dim)
            self.sa = MultiHeadAttention(dim, heads, dropout)
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(kv_dim or dim)
        self.ca = MultiHeadAttention(dim, heads, dropout, kv_dim=kv_dim)
        self.drop = nn.Dropout(dropout)
        self.norm_ffn = nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, ffn_dim, dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        if self.self_attention:
            x = x + self.drop(self.sa(self.norm_sa(x)))
        x = x + self.drop(self.ca(self.norm_q(x), self.norm_kv(memory)))
        return x + self.ffn(self.norm_ffn(x))


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


# ------------------------------------------------------------------ encoders
class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 conv + BN, identity or 1x1 projection shortcut."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.shortcut(x), inplace=True)


class ConvEncoder(nn.Module):
    """ResNet-shaped encoder: stem (stride 4, 'resnet' or 'patch') then residual stages."""

    def __init__(self, in_channels: int, cfg: BevBackboneConfig, depths: tuple[int, ...]):
        super().__init__()
        c = cfg.stem_channels
        if cfg.stem_type == "resnet":
            k = cfg.stem_kernel
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, c, k, 2, k // 2, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                nn.MaxPool2d(3, 2, 1),
            )
        else:
            self.stem = nn.Sequential(nn.Conv2d(in_channels, c, 4, 4, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True))
        stages = []
        cin = c
        for width, depth, stride in zip(cfg.widths, depths, cfg.stage_strides):
            blocks = [BasicBlock(cin, width, stride=stride)]
            blocks += [BasicBlock(width, width) for _ in range(depth - 1)]
            stages.append(nn.Sequential(*blocks))
            cin = width
        self.stages = nn.ModuleList(stages)


class FusionTransformer(nn.Module):
    """One fusion scale: pool both maps to anchors, self-attention, upsample, add back."""

    def __init__(self, stage: int, cfg: BevBackboneConfig):
        super().__init__()
        width = cfg.widths[stage]
        self.image_anchors = tuple(cfg.image_anchors)
        self.lidar_anchors = tuple(cfg.lidar_anchors)
        # static sizes (the config fixes the input size): plain avg-pool / resize, ONNX-friendly
        self.image_hw = cfg.stage_hw(stage, cfg.image_size)
        self.lidar_hw = cfg.stage_hw(stage, (cfg.lidar_grid, cfg.lidar_grid))
        self.image_kernel = (self.image_hw[0] // self.image_anchors[0], self.image_hw[1] // self.image_anchors[1])
        self.lidar_kernel = (self.lidar_hw[0] // self.lidar_anchors[0], self.lidar_hw[1] // self.lidar_anchors[1])
        self.num_image = cfg.image_anchors[0] * cfg.image_anchors[1]
        num = self.num_image + cfg.lidar_anchors[0] * cfg.lidar_anchors[1]
        self.pos = nn.Parameter(torch.zeros(1, num, width))
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.ego = nn.Linear(EGO_STATUS_DIM, width) if cfg.use_ego_status else None
        ffn = max(1, int(round(width * cfg.fusion_mlp_ratio)))
        self.blocks = nn.ModuleList(TransformerBlock(width, cfg.fusion_heads, ffn, cfg.dropout) for _ in range(cfg.fusion_layers))
        self.norm = nn.LayerNorm(width)

    def forward(self, img: torch.Tensor, lid: torch.Tensor, ego_status: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, c = img.shape[0], img.shape[1]
        ti = F.avg_pool2d(img, self.image_kernel).flatten(2)
        tl = F.avg_pool2d(lid, self.lidar_kernel).flatten(2)
        tokens = torch.cat([ti, tl], dim=2).transpose(1, 2) + self.pos
        if self.ego is not None:
            tokens = tokens + self.ego(ego_status).unsqueeze(1)
        for block in self.blocks:
            tokens = block(tokens)
        tokens = self.norm(tokens).transpose(1, 2)
        gi = tokens[:, :, : self.num_image].reshape(b, c, self.image_anchors[0], self.image_anchors[1])
        gl = tokens[:, :, self.num_image:].reshape(b, c, self.lidar_anchors[0], self.lidar_anchors[1])
        img = img + F.interpolate(gi, size=self.image_hw, mode="bilinear", align_corners=False)
        lid = lid + F.interpolate(gl, size=self.lidar_hw, mode="bilinear", align_corners=False)
        return img, lid


# ------------------------------------------------------------------- backbone
class BevBackbone(PretrainedModel):
    """Camera + LiDAR -> ``(B, grid_rows * grid_cols, token_dim)`` BEV tokens (row-major, row 0 front)."""

    CONFIG_CLASS = BevBackboneConfig
    MODEL_TYPE = "bev_backbone"

    def __init__(self, config: BevBackboneConfig | None = None):
        super().__init__()
        self.config = config = config or BevBackboneConfig.preset("edge")
        self.image_encoder = ConvEncoder(3, config, config.image_depths)
        self.lidar_encoder = ConvEncoder(1, config, config.lidar_depths)
        self.fusion = nn.ModuleDict({str(s): FusionTransformer(s, config) for s in sorted(config.fuse_at)})
        last_hw = config.stage_hw(config.num_stages - 1, (config.lidar_grid, config.lidar_grid))
        self.grid_kernel = (last_hw[0] // config.grid_rows, last_hw[1] // config.grid_cols)
        self.proj = nn.Conv2d(config.widths[-1], config.token_dim, 1)
        self.norm = nn.LayerNorm(config.token_dim)
        # ImageNet-like normalisation of the [0, 1] camera input, a fixed affine map.
        self.register_buffer("pixel_mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor, lidar_bev: torch.Tensor, ego_status: torch.Tensor) -> torch.Tensor:
        """image (B,3,H,W) in [0,1], lidar_bev (B,1,G,G) in [0,1], ego_status (B,8) -> (B, N, token_dim)."""
        img = self.image_encoder.stem((image - self.pixel_mean) / self.pixel_std)
        lid = self.lidar_encoder.stem(lidar_bev)
        for i in range(len(self.image_encoder.stages)):
            img = self.image_encoder.stages[i](img)
            lid = self.lidar_encoder.stages[i](lid)
            key = str(i)
            if key in self.fusion:
                img, lid = self.fusion[key](img, lid, ego_status)
        bev = self.proj(F.avg_pool2d(lid, self.grid_kernel))
        return self.norm(bev.flatten(2).transpose(1, 2))
