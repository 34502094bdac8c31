"""Configuration of the latent action model (LAM, LAPO-style, two stages).

The LAM learns, from camera video alone plus the logged ego trajectory, a discrete
"latent action" for every transition ``t -> t + frame_stride``:

- stage 1 ("environmental" action): an inverse dynamics model (IDM) sees the
  previous, current and next frame together with the ground-truth future
  trajectory and ego status, and emits one code of a 16-entry codebook; a
  forward dynamics model (FDM) rebuilds the next frame from the current and
  previous frame, that code and the same ground-truth conditioning. Because the
  FDM already knows the ego motion, the code only needs to explain the rest of
  the scene (other road users).
- stage 2 ("ego" action): the stage-1 IDM and codebook are frozen; a new IDM
  sees the three frames plus the environmental action and emits one code of a
  new 16-entry codebook; the FDM rebuilds the next frame from both codes and no
  ground truth, so the ego code must carry the ego motion.

Frames are the log camera (``camera.npy``) resized to ``image_size`` squared,
RGB scaled to [-0.5, 0.5].
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

from latentvla_ros.core.config_base import ConfigBase, ConfigError, require
from latentvla_ros.core.types import CODEBOOK_SIZE


def _finite_positive(value: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@dataclasses.dataclass
class LamConfig(ConfigBase):
    """Latent action model settings; presets ``edge()`` and ``paper()``."""

    # ---- data -------------------------------------------------------------
    image_size: int = 64
    """Side of the square model input in pixels (the 128x128 log camera is area-downsampled). Multiple of 8, 16..256."""
    camera_index: int = 0
    """Which camera of ``camera.npy`` (T, Ncam, H, W, 3) feeds the LAM."""
    frame_stride: int = 3
    """Frames between the current and the next frame of a transition (3 at 10 Hz = 0.3 s); also the gap to the previous frame."""

    # ---- latent actions ---------------------------------------------------
    codebook_size: int = CODEBOOK_SIZE
    """Codes per codebook (environmental and ego each); the project-wide token vocabulary is 16."""
    latent_dim: int = 32
    """Dimension of a continuous latent action and of each codebook entry."""

    stem_downsample: int = 2
    """Space-to-depth factor applied to the frames before the IDM CNN and the FDM UNet (1, 2 or 4);
    2 runs the networks at 32x32 with 4x the channels in/out, about 4x cheaper on a CPU."""

    # ---- inverse dynamics models (IMPALA-like CNN) -------------------------
    encoder_channels: tuple[int, ...] = (16, 32, 32)
    """Output channels of the IMPALA stages (conv + 2x max-pool + residual blocks each)."""
    encoder_res_blocks: int = 1
    """Residual blocks per IMPALA stage."""
    idm_hidden_dim: int = 128
    """Width of the fully connected layers after the IDM CNN."""
    cond_hidden_dim: int = 64
    """Width of the MLP embedding of the ground-truth conditioning (future trajectory, ego status)."""
    cond_dropout: float = 0.1
    """Stage 1: probability of hiding the conditioning from the environmental IDM (not from the FDM),
    so that ``encode_env``/``encode_ego`` also work from frames alone. In [0, 1)."""

    env_code_dropout: float = 0.5
    """Stage 1: probability of hiding the environmental code from the FDM for a sample, so the FDM
    must learn to explain the ego motion from the ground-truth conditioning and the code is left
    with what the conditioning cannot explain (disentanglement). In [0, 1)."""

    # ---- forward dynamics model (small UNet) -------------------------------
    fdm_channels: tuple[int, ...] = (16, 32, 64)
    """UNet channels per resolution level; each level after the first halves the resolution."""
    fdm_convs_per_block: int = 1
    """3x3 conv + GroupNorm + SiLU layers per UNet block (1 or 2)."""
    action_embed_dim: int = 64
    """Width of the action embedding tiled into the UNet input and bottleneck and added per decoder level."""
    fdm_input_action_channels: int = 4
    """Channels of the action embedding tiled onto the UNet input (0 disables input tiling)."""

    # ---- vector quantisation ----------------------------------------------
    vq_decay: float = 0.99
    """EMA decay of the codebook statistics, in (0, 1); LAPO uses 0.999 for long runs."""
    vq_commitment: float = 0.25
    """Weight of the commitment loss ||z - sg(q)||^2; 0.05 (LAPO) to 0.25 (UniVLA) is typical. In (0, 1]."""
    vq_eps: float = 1e-5
    """Laplace smoothing of the EMA cluster sizes."""
    dead_code_threshold: int = 1
    """A code picked fewer than this many times during an epoch is re-initialised from a recent
    encoder output at the end of the epoch (0 disables the restart)."""
    restart_buffer_size: int = 2048
    """How many recent encoder outputs are kept to re-initialise dead codes."""
    restart_noise: float = 0.01
    """Std of the noise added to a restarted code, relative to the std of the recent encoder outputs."""

    # ---- conditioning normalisation ---------------------------------------
    trajectory_scale_m: float = 20.0
    """Future-trajectory x/y are divided by this before entering the networks [m]."""
    heading_scale_rad: float = 0.5
    """Future-trajectory headings are divided by this [rad]."""
    speed_scale_mps: float = 15.0
    """Ego velocity (ego status) is divided by this [m/s]."""
    accel_scale_mps2: float = 3.0
    """Ego acceleration (ego status) is divided by this [m/s^2]."""

    def validate(self) -> None:
        require(isinstance(self.image_size, int) and 16 <= self.image_size <= 256 and self.image_size % 8 == 0,
                "image_size", "must be a multiple of 8 in [16, 256]")
        require(isinstance(self.camera_index, int) and self.camera_index >= 0, "camera_index", "must be >= 0")
        require(isinstance(self.frame_stride, int) and 1 <= self.frame_stride <= 50, "frame_stride", "must be in [1, 50]")
        require(isinstance(self.codebook_size, int) and 2 <= self.codebook_size <= 4096,
                "codebook_size", "must be in [2, 4096]")
        require(isinstance(self.latent_dim, int) and 1 <= self.latent_dim <= 1024, "latent_dim", "must be in [1, 1024]")
        require(len(self.encoder_channels) >= 1 and all(isinstance(c, int) and c >= 1 for c in self.encoder_channels),
                "encoder_channels", "must be a non-empty tuple of positive ints")
        require(self.stem_downsample in (1, 2, 4), "stem_downsample", "must be 1, 2 or 4")
        require(self.image_size // self.stem_downsample // (2 ** len(self.encoder_channels)) >= 1, "encoder_channels",
                "too many stages for image_size (each halves the resolution)")
        require(isinstance(self.encoder_res_blocks, int) and 0 <= self.encoder_res_blocks <= 8,
                "encoder_res_blocks", "must be in [0, 8]")
        require(isinstance(self.idm_hidden_dim, int) and self.idm_hidden_dim >= 1, "idm_hidden_dim", "must be >= 1")
        require(isinstance(self.cond_hidden_dim, int) and self.cond_hidden_dim >= 1, "cond_hidden_dim", "must be >= 1")
        require(isinstance(self.cond_dropout, (int, float)) and 0.0 <= self.cond_dropout < 1.0,
                "cond_dropout", "must be in [0, 1)")
        require(isinstance(self.env_code_dropout, (int, float)) and 0.0 <= self.env_code_dropout < 1.0,
                "env_code_dropout", "must be in [0, 1)")
        require(len(self.fdm_channels) >= 2 and all(isinstance(c, int) and c >= 1 for c in self.fdm_channels),
                "fdm_channels", "must be a tuple of >= 2 positive ints")
        require(self.image_size % (self.stem_downsample * 2 ** (len(self.fdm_channels) - 1)) == 0, "fdm_channels",
                "image_size must be divisible by stem_downsample * 2**(levels - 1)")
        require(self.fdm_convs_per_block in (1, 2), "fdm_convs_per_block", "must be 1 or 2")
        require(isinstance(self.action_embed_dim, int) and self.action_embed_dim >= 1, "action_embed_dim", "must be >= 1")
        require(isinstance(self.fdm_input_action_channels, int) and self.fdm_input_action_channels >= 0,
                "fdm_input_action_channels", "must be >= 0")
        require(isinstance(self.vq_decay, (int, float)) and 0.0 < self.vq_decay < 1.0, "vq_decay", "must be in (0, 1)")
        require(isinstance(self.vq_commitment, (int, float)) and 0.0 < self.vq_commitment <= 1.0,
                "vq_commitment", "must be in (0, 1] (0.05-0.25 is typical)")
        require(_finite_positive(self.vq_eps) and self.vq_eps < 1.0, "vq_eps", "must be in (0, 1)")
        require(isinstance(self.dead_code_threshold, int) and self.dead_code_threshold >= 0,
                "dead_code_threshold", "must be an int >= 0")
        require(isinstance(self.restart_buffer_size, int) and self.restart_buffer_size >= 1,
                "restart_buffer_size", "must be >= 1")
        require(isinstance(self.restart_noise, (int, float)) and 0.0 <= self.restart_noise <= 1.0,
                "restart_noise", "must be in [0, 1]")
        for name in ("trajectory_scale_m", "heading_scale_rad", "speed_scale_mps", "accel_scale_mps2"):
            require(_finite_positive(getattr(self, name)), name, "must be a positive finite number")

    # ---- presets ----------------------------------------------------------
    @classmethod
    def edge(cls, **overrides: Any) -> LamConfig:
        """Tiny model: trains on 2 CPU cores in minutes on ~10k 64x64 transitions."""
        return cls(**overrides)

    @classmethod
    def paper(cls, **overrides: Any) -> LamConfig:
        """Larger LAPO-sized model (IMPALA x4 widths, 128-d latents, EMA decay 0.999) for a GPU."""
        values: dict[str, Any] = dict(
            latent_dim=128,
            encoder_channels=(64, 128, 128),
            encoder_res_blocks=2,
            idm_hidden_dim=256,
            cond_hidden_dim=128,
            stem_downsample=1,
            fdm_channels=(64, 128, 256, 256),
            fdm_convs_per_block=2,
            action_embed_dim=256,
            fdm_input_action_channels=8,
            vq_decay=0.999,
            vq_commitment=0.25,
            restart_buffer_size=8192,
        )
        values.update(overrides)
        return cls(**values)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> LamConfig:
        """``'edge'`` or ``'paper'`` with field overrides."""
        presets = {"edge": cls.edge, "paper": cls.paper}
        if name not in presets:
            raise ConfigError(f"preset: unknown LAM preset {name!r} (expected one of {sorted(presets)})")
        return presets[name](**overrides)

    @property
    def cond_dim(self) -> int:
        """Size of the raw conditioning vector: trajectory (8x3) + ego status (8) + future-valid flag."""
        from latentvla_ros.core.types import EGO_STATUS_DIM, NUM_POSES

        return NUM_POSES * 3 + EGO_STATUS_DIM + 1
