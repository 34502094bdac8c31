"""Configuration of the latent action model (LAM, LAPO-style, two stages).

The LAM learns, from camera video alone plus the logged ego trajectory, a discrete
"latent action" for every transition ``t -> t + frame_stride``:

- stage 1 ("environmental" action): an inverse dynamics model (IDM) sees the
  current and the next frame only (never the ego's motion: no shortcut) and emits
  one code of a 16-entry codebook; a forward dynamics model (FDM) rebuilds the
  next frame from the current frame, that code and the ego's own motion (the
  true motion of the transition, the ground-truth future trajectory and the ego
  status). Because the FDM already knows the ego motion, the code only needs to
  explain the rest of the scene (other road users). Its loss leaves out the pixels that the
  ego motion brings into view (``env_mask_unseen``) and weighs the pixels that the ego motion
  leaves unexplained more (``env_residual_weight``, label-free: in the logs 77% of that residual
  sits in the 2% of pixels that change most, mostly the other vehicles). With plain MSE the code used
  11 of 16 codes and told less about the other agents' motion than the ego code. Dead codes are
  also restarted within epochs (``dead_code_window_steps``). The codebook is then frozen.
- stage 2 ("ego" action): the stage-1 IDM and codebook are frozen; a new IDM
  sees the two frames plus the environmental action and emits one code of a
  new 16-entry codebook; the FDM rebuilds the next frame from the current frame
  and both codes, without any ego motion, so the ego code must carry it.

The FDM sees one frame only (no previous frame): steady motion cannot be
extrapolated, every change must come from the actions. Frames are an ego-centred
crop of the log camera (``crop_px``, see training/lam_data.py) resized to
``image_size`` squared, RGB scaled to [-0.5, 0.5]. ``code_names`` holds a short
name per ego code (what motion it stands for), written after training by the
atlas (training/lam_atlas.py) and shown by the latent_reasoner's markers.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

from latentvla_ros.core.config_base import ConfigBase, ConfigError, require
from latentvla_ros.core.sizes import DEFAULT_ACTION_SPACE


def _finite_positive(value: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@dataclasses.dataclass
class LamConfig(ConfigBase):
    """Latent action model settings; presets ``edge()`` and ``paper()``."""

    # ---- data -------------------------------------------------------------
    image_size: int = 64
    """Side of the square model input in pixels (the crop is area-resampled to it). Multiple of 8, 16..256."""
    crop_px: int = 64
    """Side of the square cut from the camera around the ego pixel, in camera pixels (0: whole frame).
    64 px of the 0.5 m/px highway-env camera = 32 m x 32 m at the native scale."""
    crop_ego_row_fraction: float = 0.625
    """Row of the ego inside the crop as a fraction of its height (0.5: centred; larger: more road ahead). In (0, 1)."""
    meters_per_pixel: float = 0.5
    """Scale of the model input [m/px] (camera scale x crop_px / image_size); logs at another scale are rejected."""
    ego_warp: bool = True
    """The forward model first moves the view rigidly about the ego pixel by an ego motion (stage 1: the true
    one, stage 2: the ego code's, ``LatentActionModel.code_motion``), then predicts the rest."""
    env_mask_unseen: bool = True
    """Stage 1: pixels that the warp by the true ego motion brings in from outside frame t (new road at the
    view's edge: no action predicts it) do not count in the reconstruction loss
    (``LatentActionModel._stage1_pixel_weights``)."""
    env_residual_weight: float = 3.0
    """Stage 1: the loss weight of a pixel is 1 + this x (what the ego-motion warp leaves unexplained there)
    / (its batch mean), then normalised to mean 1: the other road users' own motion, found label-free,
    counts for more than the road that the given ego motion already explains (0: plain MSE). In [0, 100]."""
    odometry_scale: tuple[float, float, float] = (5.0, 0.2, 0.04)
    """The ego IDM's registration estimate (dx, dy [m], dyaw [rad], models/lam_odometry.py) is divided by this:
    the first three entries of an ego latent, and so of every ego code, are that motion in these units."""
    ego_feature_scale: float = 0.1
    """Bound of the ego latent's learned entries (tanh x this), in the same units as the motion entries."""
    camera_index: int = 0
    """Which camera of ``camera.npy`` (T, Ncam, H, W, 3) feeds the LAM."""
    frame_stride: int = 3
    """Frames between the current and the next frame of a transition (3 at 10 Hz = 0.3 s); also the gap to the previous frame."""

    # ---- latent actions ---------------------------------------------------
    codebook_size: int = DEFAULT_ACTION_SPACE.codebook_size
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
    code_names: tuple[str, ...] = ()
    """Short name per ego code (``codebook_size`` entries, e.g. "straight 24 m/s"), from the atlas; empty before."""

    ego_supervision_fraction: float = 0.0
    """Optional weak supervision of stage 2 (off by default, reported separately): this share of the
    training transitions (fixed by a hash of log and frame) also regress the true ego motion from the
    ego latent. In [0, 1)."""
    ego_supervision_weight: float = 1.0
    """Weight of that regression loss (standardised dx, dy, dyaw)."""

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
    usage_entropy_weight: float = 1e-2
    """Weight of the anti-collapse term on soft code assignments (``LatentActionModel.usage_loss``); 0 disables."""
    dead_code_threshold: int = 20
    """A code picked fewer than this many times during an epoch is re-initialised from a recent
    encoder output at the end of the epoch (0 disables the restart)."""
    dead_code_window_steps: int = 25
    """Also within an epoch: every this many steps, a code picked fewer than ``dead_code_threshold`` times
    in those steps is re-initialised (0: only at epoch ends; the env codebook lost codes within its last epoch)."""
    dead_code_window_until: float = 0.75
    """Share of a stage's steps during which those restarts happen (the rest lets the decoder learn the
    last restarted codes). In [0, 1]."""
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
    motion_scale_m: float = 5.0
    """The transition's ego displacement (dx, dy) is divided by this [m] (conditioning and weak supervision)."""
    motion_scale_rad: float = 0.1
    """The transition's ego yaw change is divided by this [rad]."""

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
        require(isinstance(self.crop_px, int) and (self.crop_px == 0 or self.crop_px >= 8), "crop_px",
                "must be 0 (whole frame) or >= 8")
        require(isinstance(self.crop_ego_row_fraction, (int, float)) and 0.0 < self.crop_ego_row_fraction < 1.0,
                "crop_ego_row_fraction", "must be in (0, 1)")
        require(_finite_positive(self.meters_per_pixel), "meters_per_pixel", "must be a positive number")
        require(isinstance(self.ego_warp, bool), "ego_warp", "must be true or false")
        require(isinstance(self.env_mask_unseen, bool), "env_mask_unseen", "must be true or false")
        require(isinstance(self.env_residual_weight, (int, float)) and math.isfinite(self.env_residual_weight)
                and 0.0 <= self.env_residual_weight <= 100.0, "env_residual_weight", "must be in [0, 100]")
        require(len(self.odometry_scale) == 3 and all(_finite_positive(v) for v in self.odometry_scale),
                "odometry_scale", "must be three positive numbers")
        require(_finite_positive(self.ego_feature_scale), "ego_feature_scale", "must be a positive number")
        require(self.latent_dim >= 4, "latent_dim", "must be >= 4 (3 motion entries + features)")
        require(isinstance(self.code_names, tuple) and all(isinstance(n, str) for n in self.code_names)
                and len(self.code_names) in (0, self.codebook_size), "code_names",
                "must be empty or one string per code")
        require(isinstance(self.ego_supervision_fraction, (int, float)) and 0.0 <= self.ego_supervision_fraction < 1.0,
                "ego_supervision_fraction", "must be in [0, 1)")
        require(_finite_positive(self.ego_supervision_weight), "ego_supervision_weight", "must be a positive number")
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
        require(isinstance(self.usage_entropy_weight, (int, float)) and 0.0 <= self.usage_entropy_weight < 1.0,
                "usage_entropy_weight", "must be in [0, 1)")
        require(isinstance(self.dead_code_threshold, int) and self.dead_code_threshold >= 0,
                "dead_code_threshold", "must be an int >= 0")
        require(isinstance(self.dead_code_window_steps, int) and self.dead_code_window_steps >= 0,
                "dead_code_window_steps", "must be an int >= 0")
        require(isinstance(self.dead_code_window_until, (int, float)) and 0.0 <= self.dead_code_window_until <= 1.0,
                "dead_code_window_until", "must be in [0, 1]")
        require(isinstance(self.restart_buffer_size, int) and self.restart_buffer_size >= 1,
                "restart_buffer_size", "must be >= 1")
        require(isinstance(self.restart_noise, (int, float)) and 0.0 <= self.restart_noise <= 1.0,
                "restart_noise", "must be in [0, 1]")
        for name in ("trajectory_scale_m", "heading_scale_rad", "speed_scale_mps", "accel_scale_mps2",
                     "motion_scale_m", "motion_scale_rad"):
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
    def preset(cls, name: str, **overrides: Any) -> LamConfig:
        """``'edge'`` or ``'paper'`` with field overrides."""
        presets = {"edge": cls.edge, "paper": cls.paper}
        if name not in presets:
            raise ConfigError(f"preset: unknown LAM preset {name!r} (expected one of {sorted(presets)})")
        return presets[name](**overrides)

    @property
    def ego_row_px(self) -> float:
        """Row (pixel-centre index) of the ego in the model input."""
        if self.crop_px:
            return (self.crop_ego_row_fraction * self.crop_px + 0.5) * self.image_size / self.crop_px - 0.5
        return self.crop_ego_row_fraction * self.image_size - 0.5

    @property
    def cond_dim(self) -> int:
        """Size of the stage-1 FDM conditioning (the ego's own motion): transition motion (dx, dy, dyaw)
        + its valid flag + trajectory (8x3) + ego status (8) + future-valid flag."""
        from latentvla_ros.core.types import EGO_STATUS_DIM, NUM_POSES

        return 4 + NUM_POSES * 3 + EGO_STATUS_DIM + 1
