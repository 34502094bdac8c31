"""Configuration of the TransFuser-style camera + LiDAR BEV backbone.

Presets:

- ``paper``: NAVSIM TransFuser sizes: stitched cameras 256x1024, ResNet34-shaped
  image and LiDAR encoders (widths 64/128/256/512, blocks 3/4/6/3), fusion
  transformers at all 4 scales (image anchors 8x32, LiDAR anchors 8x8, 2 layers
  each), 8x8 grid of 256-d BEV tokens.
- ``edge``: a tiny version for 2-core CPUs: 128x128 camera input, a 4x4/4
  patch stem (no 128x128 feature maps, no max-pool), 3 narrow stride-2 stages
  of one block each, fusion at all 3 scales, 64-d tokens.

Grid geometry (published with every ``BevTokens``): the LiDAR histogram covers
``+-lidar_range_m`` around the ego; token ``(r, c)`` of the ``grid_rows x
grid_cols`` grid covers the cell whose centre is ``x = origin_x_m + (grid_rows
- 1 - r + 0.5) * cell_size_m`` (forward) and ``y = origin_y_m + (grid_cols - 1 -
c + 0.5) * cell_size_m`` (left); row 0 is the far front, column 0 the far left,
as in ``core.features.lidar_bev_histogram``.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from latentvla_ros.core.config_base import ConfigBase, ConfigError, require
from latentvla_ros.core.types import EGO_STATUS_DIM

#: downsampling of the stem: conv stride 2 + max-pool stride 2 ('resnet') or a
#: 4x4 stride-4 patch convolution ('patch'); the stages then apply ``stage_strides``.
STEM_STRIDE = 4
STEM_TYPES = ("resnet", "patch")


@dataclasses.dataclass
class BevBackboneConfig(ConfigBase):
    """Camera + LiDAR backbone producing a grid of BEV tokens."""

    image_size: tuple[int, int] = (128, 128)
    """(height, width) of the stitched camera image fed to the image encoder."""
    lidar_grid: int = 256
    """Side of the LiDAR BEV histogram in pixels (TransFuser: 256)."""
    lidar_range_m: float = 32.0
    """Half-extent of the LiDAR histogram and of the BEV token grid [m]."""
    lidar_min_height_m: float = 0.2
    """Points at or below this height are dropped from the histogram (ground)."""
    lidar_max_points_per_pixel: int = 5
    """Histogram counts are capped at this value, then scaled to [0, 1]."""
    widths: tuple[int, ...] = (32, 64, 96)
    """Channels of each encoder stage (shared by the image and LiDAR branches)."""
    stage_strides: tuple[int, ...] = (2, 2, 2)
    """Stride (1 or 2) of the first block of each stage (ResNet: 1, 2, 2, 2)."""
    image_depths: tuple[int, ...] = (1, 1, 1)
    """Residual blocks per stage of the image encoder."""
    lidar_depths: tuple[int, ...] = (1, 1, 1)
    """Residual blocks per stage of the LiDAR encoder."""
    stem_type: str = "patch"
    """'resnet' (conv stride 2 + BN + ReLU + 3x3 max-pool stride 2, as ResNet34) or
    'patch' (one 4x4 stride-4 conv + BN + ReLU: much cheaper on a CPU). Both downsample by 4."""
    stem_channels: int = 16
    """Channels of the stem convolution of both encoders."""
    stem_kernel: int = 7
    """Kernel of the stride-2 convolution of the 'resnet' stem (ResNet: 7); unused by 'patch'."""
    fuse_at: tuple[int, ...] = (0, 1, 2)
    """Stage indices after which a fusion transformer mixes image and LiDAR features."""
    image_anchors: tuple[int, int] = (4, 4)
    """Grid (rows, cols) the image feature map is average-pooled to for fusion."""
    lidar_anchors: tuple[int, int] = (4, 4)
    """Grid (rows, cols) the LiDAR feature map is average-pooled to for fusion."""
    fusion_layers: int = 1
    """Transformer blocks per fusion scale."""
    fusion_heads: int = 4
    """Attention heads of the fusion transformers (must divide every fused width)."""
    fusion_mlp_ratio: float = 4.0
    """Hidden size of the fusion feed-forward layers, as a multiple of the width."""
    use_ego_status: bool = False
    """Add an embedding of the 8-d ego status to the fusion tokens (TransFuser's
    optional velocity input). Off by default: the planner already sees the ego
    status, and feeding it to the perception backbone invites shortcut learning."""
    token_dim: int = 64
    """Channels of each output BEV token."""
    grid_rows: int = 8
    """Rows of the output BEV token grid (the grid is square: rows == cols)."""
    grid_cols: int = 8
    """Columns of the output BEV token grid."""
    dropout: float = 0.0
    """Dropout in the fusion transformers."""

    # ---------------------------------------------------------------- geometry
    @property
    def num_stages(self) -> int:
        return len(self.widths)

    @property
    def num_tokens(self) -> int:
        return self.grid_rows * self.grid_cols

    @property
    def cell_size_m(self) -> float:
        """Side of one BEV token cell [m] (64 m / 8 = 8 m for the defaults)."""
        return 2.0 * self.lidar_range_m / self.grid_rows

    @property
    def origin_x_m(self) -> float:
        """Ego-frame x of the rear edge of the grid [m]."""
        return -self.lidar_range_m

    @property
    def origin_y_m(self) -> float:
        """Ego-frame y of the right edge of the grid [m]."""
        return -self.lidar_range_m

    def stage_stride(self, stage: int) -> int:
        """Total downsampling after ``stage`` (stem included)."""
        stride = STEM_STRIDE
        for s in self.stage_strides[: stage + 1]:
            stride *= s
        return stride

    def stage_hw(self, stage: int, input_hw: tuple[int, int]) -> tuple[int, int]:
        """Feature-map size after ``stage`` for an input of ``input_hw``."""
        stride = self.stage_stride(stage)
        return input_hw[0] // stride, input_hw[1] // stride

    def cell_center(self, row: int, col: int) -> tuple[float, float]:
        """Ego-frame (x, y) of the centre of token (row, col)."""
        return (
            self.origin_x_m + (self.grid_rows - 1 - row + 0.5) * self.cell_size_m,
            self.origin_y_m + (self.grid_cols - 1 - col + 0.5) * self.cell_size_m,
        )

    # -------------------------------------------------------------- validation
    def validate(self) -> None:
        require(len(self.image_size) == 2 and all(isinstance(v, int) and v > 0 for v in self.image_size),
                "image_size", "must be two positive ints (height, width)")
        require(len(self.widths) >= 1 and all(w > 0 for w in self.widths), "widths", "must be non-empty and positive")
        require(len(self.stage_strides) == len(self.widths) and all(v in (1, 2) for v in self.stage_strides),
                "stage_strides", "needs one stride (1 or 2) per stage (len(widths))")
        final_stride = self.stage_stride(len(self.widths) - 1)
        require(self.image_size[0] % final_stride == 0 and self.image_size[1] % final_stride == 0,
                "image_size", f"must be divisible by the encoder stride {final_stride}")
        require(isinstance(self.lidar_grid, int) and self.lidar_grid > 0 and self.lidar_grid % final_stride == 0,
                "lidar_grid", f"must be a positive multiple of the encoder stride {final_stride}")
        require(self.lidar_range_m > 0, "lidar_range_m", "must be > 0")
        require(self.lidar_max_points_per_pixel >= 1, "lidar_max_points_per_pixel", "must be >= 1")
        for name in ("image_depths", "lidar_depths"):
            depths = getattr(self, name)
            require(len(depths) == len(self.widths), name, "must have one entry per stage (len(widths))")
            require(all(d >= 1 for d in depths), name, "every stage needs >= 1 block")
        require(self.stem_type in STEM_TYPES, "stem_type", f"must be one of {STEM_TYPES}")
        require(self.stem_channels > 0, "stem_channels", "must be > 0")
        require(self.stem_kernel in (3, 5, 7), "stem_kernel", "must be 3, 5 or 7")
        require(len(set(self.fuse_at)) == len(self.fuse_at), "fuse_at", "has duplicates")
        require(all(0 <= s < len(self.widths) for s in self.fuse_at), "fuse_at", "stage index out of range")
        for name in ("image_anchors", "lidar_anchors"):
            anchors = getattr(self, name)
            require(len(anchors) == 2 and all(a >= 1 for a in anchors), name, "must be two positive ints")
        require(self.fusion_layers >= 1, "fusion_layers", "must be >= 1")
        require(self.fusion_heads >= 1, "fusion_heads", "must be >= 1")
        require(self.fusion_mlp_ratio > 0, "fusion_mlp_ratio", "must be > 0")
        for s in self.fuse_at:
            require(self.widths[s] % self.fusion_heads == 0, "fusion_heads",
                    f"must divide the width {self.widths[s]} of fused stage {s}")
            for name, anchors, hw in (
                ("image_anchors", self.image_anchors, self.stage_hw(s, self.image_size)),
                ("lidar_anchors", self.lidar_anchors, self.stage_hw(s, (self.lidar_grid, self.lidar_grid))),
            ):
                require(hw[0] % anchors[0] == 0 and hw[1] % anchors[1] == 0, name,
                        f"{anchors} must divide the stage-{s} feature map {hw}")
        require(self.token_dim > 0, "token_dim", "must be > 0")
        require(self.grid_rows >= 1 and self.grid_rows == self.grid_cols, "grid_rows",
                "must be >= 1 and equal grid_cols (square cells)")
        last_hw = self.stage_hw(len(self.widths) - 1, (self.lidar_grid, self.lidar_grid))
        require(last_hw[0] % self.grid_rows == 0, "grid_rows",
                f"must divide the final LiDAR feature map {last_hw}")
        require(0.0 <= self.dropout < 1.0, "dropout", "must be in [0, 1)")

    @property
    def ego_status_dim(self) -> int:
        return EGO_STATUS_DIM

    # ----------------------------------------------------------------- presets
    @classmethod
    def preset(cls, name: str, **overrides: Any) -> BevBackboneConfig:
        """``'edge'`` (tiny, CPU) or ``'paper'`` (TransFuser-sized); ``overrides`` replace fields."""
        presets: dict[str, dict[str, Any]] = {
            "edge": {},
            "paper": dict(
                image_size=(256, 1024),
                widths=(64, 128, 256, 512),
                stage_strides=(1, 2, 2, 2),
                image_depths=(3, 4, 6, 3),
                lidar_depths=(3, 4, 6, 3),
                stem_type="resnet",
                stem_channels=64,
                stem_kernel=7,
                fuse_at=(0, 1, 2, 3),
                image_anchors=(8, 32),
                lidar_anchors=(8, 8),
                fusion_layers=2,
                fusion_heads=4,
                token_dim=256,
                dropout=0.1,
            ),
        }
        if name not in presets:
            raise ConfigError(f"preset: unknown {name!r}, expected one of {sorted(presets)}")
        return cls(**{**presets[name], **overrides})
