"""Configuration of the latent-action student (a small decision transformer).

Presets:

- ``edge``: 128x128 camera input, d_model 192, 4 layers, 6 heads (~1.5M
  parameters), fast on 2 CPU threads.
- ``paper``: 256x1024 stitched cameras, d_model 768, 8 layers, 12 heads, FFN
  2560 (~53M parameters, the paper's "~50M" student).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

from latentvla_ros.core.config_base import ConfigBase, ConfigError, require
from latentvla_ros.core.sizes import DEFAULT_ACTION_SPACE, ActionSpace
from latentvla_ros.core.types import EGO_STATUS_DIM


@dataclasses.dataclass
class StudentConfig(ConfigBase):
    """Decision transformer predicting 12 latent ego-action tokens from one camera frame."""

    image_size: tuple[int, int] = (128, 128)
    """(height, width) of the stitched camera image."""
    stem_channels: tuple[int, ...] = (64, 128)
    """Channels of the patch-stem convolutions before the last one (which outputs
    ``d_model``). The first conv is 4x4 stride 4, the others 2x2 stride 2, so the
    stem downsamples by ``4 * 2 ** len(stem_channels)``."""
    visual_grid: tuple[int, int] = (4, 4)
    """Grid (rows, cols) the stem output is average-pooled to: the visual tokens
    entering the transformer (rows * cols of them)."""
    visual_embedding_grid: tuple[int, int] = (4, 4)
    """Grid the final visual hidden states are pooled to for the planner's
    fusion module; ``num_visual_embeddings`` = rows * cols."""
    d_model: int = 192
    """Transformer width (also the width of the embeddings handed to the planner)."""
    num_layers: int = 4
    """Transformer blocks."""
    num_heads: int = 6
    """Attention heads (must divide d_model)."""
    ffn_dim: int = 512
    """Hidden size of the feed-forward layers."""
    dropout: float = 0.0
    """Dropout in attention and feed-forward layers."""
    num_action_tokens: int = DEFAULT_ACTION_SPACE.tokens_per_frame
    """Latent action slots predicted per frame (12)."""
    codebook_size: int = DEFAULT_ACTION_SPACE.codebook_size
    """Size of the latent action codebook (16)."""
    ego_status_dim: int = EGO_STATUS_DIM
    """Size of the ego-status vector (command one-hot 4, velocity 2, acceleration 2)."""
    shift_consistency: float = 0.0
    """Training only: weight of the shift-consistency term of the distillation. Each batch also runs on a
    jittered copy of its input (``training.student.jitter_inputs``: the image shifted by up to one pixel,
    ego velocity and acceleration noise), distilled from the same teacher labels, and the action embeddings
    of the two are pulled together (mean squared difference relative to their mean square), so that the
    tokens do not jump with the sub-lane changes of where the ego sits in its image that closed loop
    produces every step (docs/evaluation.md, "Action jitter"). 0: the student of before."""

    @property
    def action_space(self) -> ActionSpace:
        """The latent actions this student predicts (``core.sizes.ActionSpace``)."""
        return ActionSpace(self.codebook_size, self.num_action_tokens)

    @property
    def stem_stride(self) -> int:
        return 4 * 2 ** len(self.stem_channels)

    @property
    def num_visual_tokens(self) -> int:
        return self.visual_grid[0] * self.visual_grid[1]

    @property
    def num_visual_embeddings(self) -> int:
        return self.visual_embedding_grid[0] * self.visual_embedding_grid[1]

    @property
    def context_tokens(self) -> int:
        """Embeddings handed to the planner: visual + action."""
        return self.num_visual_embeddings + self.num_action_tokens

    def validate(self) -> None:
        require(len(self.image_size) == 2 and all(isinstance(v, int) and v > 0 for v in self.image_size),
                "image_size", "must be two positive ints (height, width)")
        require(len(self.stem_channels) >= 1 and all(c > 0 for c in self.stem_channels), "stem_channels",
                "must be non-empty and positive")
        s = self.stem_stride
        require(self.image_size[0] % s == 0 and self.image_size[1] % s == 0, "image_size",
                f"must be divisible by the stem stride {s}")
        stem_hw = (self.image_size[0] // s, self.image_size[1] // s)
        require(len(self.visual_grid) == 2 and all(v >= 1 for v in self.visual_grid), "visual_grid",
                "must be two positive ints")
        require(stem_hw[0] % self.visual_grid[0] == 0 and stem_hw[1] % self.visual_grid[1] == 0, "visual_grid",
                f"must divide the stem output {stem_hw}")
        g = self.visual_embedding_grid
        require(len(g) == 2 and all(v >= 1 for v in g), "visual_embedding_grid", "must be two positive ints")
        require(self.visual_grid[0] % g[0] == 0 and self.visual_grid[1] % g[1] == 0, "visual_embedding_grid",
                f"must divide visual_grid {self.visual_grid}")
        require(self.d_model > 0, "d_model", "must be > 0")
        require(self.num_heads >= 1 and self.d_model % self.num_heads == 0, "num_heads", "must divide d_model")
        require(self.num_layers >= 1, "num_layers", "must be >= 1")
        require(self.ffn_dim >= 1, "ffn_dim", "must be >= 1")
        require(0.0 <= self.dropout < 1.0, "dropout", "must be in [0, 1)")
        require(self.num_action_tokens >= 1, "num_action_tokens", "must be >= 1")
        require(self.codebook_size >= 2, "codebook_size", "must be >= 2")
        require(self.ego_status_dim >= 1, "ego_status_dim", "must be >= 1")
        require(self.shift_consistency >= 0.0 and math.isfinite(self.shift_consistency), "shift_consistency",
                "must be a finite number >= 0")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> StudentConfig:
        """``'edge'`` (~1.5M params) or ``'paper'`` (~53M params); ``overrides`` replace fields."""
        presets: dict[str, dict[str, Any]] = {
            "edge": {},
            "paper": dict(
                image_size=(256, 1024),
                stem_channels=(128, 256, 512),
                visual_grid=(4, 16),
                visual_embedding_grid=(2, 8),
                d_model=768,
                num_layers=8,
                num_heads=12,
                ffn_dim=2560,
                dropout=0.1,
            ),
        }
        if name not in presets:
            raise ConfigError(f"preset: unknown {name!r}, expected one of {sorted(presets)}")
        return cls(**{**presets[name], **overrides})
