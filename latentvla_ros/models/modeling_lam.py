"""Latent action model (LAPO-style IDM + FDM, two VQ stages as in LatentVLA).

Modules:

- ``EmaVectorQuantizer``: EMA codebook, straight-through estimator, commitment
  loss, per-epoch code usage counts, perplexity and dead-code restart from a
  ring buffer of recent encoder outputs (DDP aware: statistics are all-reduced
  and restarted codes broadcast from rank 0).
- ``ImpalaEncoder`` / ``ForwardDynamicsModel`` (models/lam_networks.py): the
  inverse-dynamics encoder and the forward model (a UNet from the current frame).
- ``LatentActionModel``: stage 1 trains ``idm_env`` + ``vq_env`` + FDM, the FDM
  also given the ego's own motion (``conditioning``: the true motion of the
  transition, the ground-truth trajectory and the ego status), which the IDM never
  sees; ``set_stage(2)`` freezes ``idm_env``/``vq_env`` (``requires_grad_(False)``,
  no EMA updates, no restarts) and trains ``idm_ego`` + ``vq_ego`` + FDM from both
  codes without any ego motion, so the ego code has to carry it.

Frames go in as uint8 (B, 3, H, W) tensors (scaled to [-0.5, 0.5] inside) or as
floats already in [-0.5, 0.5].
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from latentvla_ros.core.config_base import ConfigError
from latentvla_ros.core.types import EGO_STATUS_DIM, NUM_POSES
from latentvla_ros.models.configuration_lam import LamConfig
from latentvla_ros.models.lam_networks import ForwardDynamicsModel, ImpalaEncoder, mlp
from latentvla_ros.models.lam_odometry import register_rigid, warp_by_ego_motion

MODEL_TYPE = "lam"


def _dist_active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def perplexity_from_counts(counts: torch.Tensor) -> float:
    """exp(entropy) of a code histogram: 1 = one code used, K = uniform use of K codes."""
    total = float(counts.sum())
    if total <= 0:
        return 0.0
    p = counts.double() / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


@dataclass
class VQOutput:
    quantized: torch.Tensor  # (B, D) straight-through quantised latents
    codes: torch.Tensor  # (B,) long
    commitment_loss: torch.Tensor  # scalar
    perplexity: torch.Tensor  # scalar, of this batch
    latents: torch.Tensor  # (B, D) continuous encoder outputs


class EmaVectorQuantizer(nn.Module):
    """Vector quantiser with an EMA-updated codebook and dead-code restart.

    Persistent buffers (in checkpoints): ``codebook``, ``ema_count``, ``ema_sum``,
    ``initialized``. The usage histogram of the running epoch and the ring
    buffer of recent encoder outputs are plain attributes (not in checkpoints,
    not broadcast by DDP); both are reset by ``reset_usage``/restart.
    """

    def __init__(self, num_codes: int, dim: int, decay: float, commitment: float, eps: float = 1e-5,
                 buffer_size: int = 2048, restart_noise: float = 0.01):
        super().__init__()
        self.num_codes = num_codes
        self.dim = dim
        self.decay = decay
        self.commitment = commitment
        self.eps = eps
        self.buffer_size = buffer_size
        self.restart_noise = restart_noise
        codebook = torch.randn(num_codes, dim) * 0.1
        self.register_buffer("codebook", codebook)
        self.register_buffer("ema_count", torch.ones(num_codes))
        self.register_buffer("ema_sum", codebook.clone())
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))
        self.frozen = False
        self._usage: torch.Tensor | None = None
        self._recent: torch.Tensor | None = None
        self._recent_pos = 0
        self._recent_filled = 0
        # restarts within an epoch (``schedule_window_restarts``); off by default
        self.window_steps = 0
        self.window_min_count = 0
        self.window_until = 0
        self._window_usage: torch.Tensor | None = None
        self._window_count = 0
        self._update_steps = 0
        self.window_restarted = 0  # codes restarted within epochs so far (logged by training)

    def schedule_window_restarts(self, every: int, min_count: int, until_step: int) -> None:
        """Every ``every`` codebook updates, restart the codes picked fewer than ``min_count`` times in that
        window, up to update ``until_step`` (counted from this call; later updates let the decoder learn
        the last restarted codes). ``every`` = 0 disables."""
        self.window_steps, self.window_min_count, self.window_until = int(every), int(min_count), int(until_step)
        self._window_usage, self._window_count, self._update_steps = None, 0, 0

    def _window_step(self, counts: torch.Tensor) -> None:
        self._update_steps += 1
        if self.window_steps <= 0:
            return
        self._window_usage = counts.clone() if self._window_usage is None else self._window_usage + counts
        self._window_count += 1
        if self._window_count >= self.window_steps:
            if self._update_steps <= self.window_until and self.window_min_count > 0:
                self.window_restarted += self._restart((self._window_usage < self.window_min_count)
                                                       .to(self.codebook.device))
            self._window_usage, self._window_count = None, 0

    # ---- usage bookkeeping --------------------------------------------------
    def usage_counts(self) -> torch.Tensor:
        """Codes picked (in training mode) since the last reset, summed over DDP ranks."""
        usage = self._usage.clone() if self._usage is not None else torch.zeros(self.num_codes, device=self.codebook.device)
        if _dist_active():
            usage = usage.to(self.codebook.device)
            dist.all_reduce(usage)
        return usage.cpu()

    def reset_usage(self) -> None:
        self._usage = None

    def _push_recent(self, z: torch.Tensor) -> None:
        if self._recent is None or self._recent.device != z.device:
            self._recent = torch.zeros(self.buffer_size, self.dim, device=z.device)
            self._recent_pos = 0
            self._recent_filled = 0
        z = z[-self.buffer_size:]
        n = z.shape[0]
        end = self._recent_pos + n
        if end <= self.buffer_size:
            self._recent[self._recent_pos:end] = z
        else:
            first = self.buffer_size - self._recent_pos
            self._recent[self._recent_pos:] = z[:first]
            self._recent[: n - first] = z[first:]
        self._recent_pos = end % self.buffer_size
        self._recent_filled = min(self.buffer_size, self._recent_filled + n)

    @torch.no_grad()
    def _init_from(self, z: torch.Tensor) -> None:
        """Data-dependent initialisation: codes = random encoder outputs of the first batch."""
        idx = torch.randint(0, z.shape[0], (self.num_codes,), device=z.device)
        if z.shape[0] >= self.num_codes:
            idx = torch.randperm(z.shape[0], device=z.device)[: self.num_codes]
        init = z[idx].detach().clone()
        init = init + torch.randn_like(init) * (z.std() * 0.01 + 1e-6)
        if _dist_active():
            dist.broadcast(init, src=0)
        self.codebook.copy_(init)
        self.ema_sum.copy_(init)
        self.ema_count.fill_(1.0)
        self.initialized.fill_(True)

    # ---- forward ------------------------------------------------------------
    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        return F.embedding(codes, self.codebook)

    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        """Nearest code index per row of ``z`` (B, D)."""
        with torch.no_grad():
            d = (z.pow(2).sum(1, keepdim=True) - 2.0 * z @ self.codebook.t() + self.codebook.pow(2).sum(1)[None])
            return d.argmin(dim=1)

    def forward(self, z: torch.Tensor) -> VQOutput:
        update = self.training and not self.frozen
        if update and not bool(self.initialized):
            self._init_from(z.detach())
        codes = self.quantize(z.detach())
        onehot = F.one_hot(codes, self.num_codes).to(z.dtype)
        counts = onehot.sum(0).detach()
        if self.training:
            self._usage = counts.clone() if self._usage is None else self._usage + counts
        if update:
            with torch.no_grad():
                sums = onehot.t() @ z.detach()
                n_counts, n_sums = counts.clone(), sums
                if _dist_active():
                    dist.all_reduce(n_counts)
                    dist.all_reduce(n_sums)
                self.ema_count.mul_(self.decay).add_(n_counts, alpha=1.0 - self.decay)
                self.ema_sum.mul_(self.decay).add_(n_sums, alpha=1.0 - self.decay)
                total = self.ema_count.sum()
                smoothed = (self.ema_count + self.eps) / (total + self.num_codes * self.eps) * total
                self.codebook.copy_(self.ema_sum / smoothed[:, None])
                self._push_recent(z.detach())
                self._window_step(n_counts)
        q = self.lookup(codes)
        commitment = self.commitment * F.mse_loss(z, q.detach())
        quantized = z + (q - z).detach()
        p = counts / counts.sum().clamp_min(1.0)
        perplexity = torch.exp(-(p * torch.log(p + 1e-10)).sum())
        return VQOutput(quantized, codes, commitment, perplexity, z)

    # ---- dead-code restart --------------------------------------------------
    @torch.no_grad()
    def restart_dead_codes(self, min_count: int) -> int:
        """Re-initialise codes picked fewer than ``min_count`` times since the last reset
        from recent encoder outputs; returns how many were restarted. Resets usage.

        No-op when frozen, when ``min_count`` is 0, or before any training forward.
        Must be called on every DDP rank (collectives inside).
        """
        usage = self.usage_counts()
        self.reset_usage()
        if self.frozen or min_count <= 0:
            return 0
        return self._restart((usage < min_count).to(self.codebook.device))

    @torch.no_grad()
    def _restart(self, dead: torch.Tensor) -> int:
        """Re-initialise the codes marked in ``dead`` (K,) bool from recent encoder outputs (collectives inside)."""
        n_dead = int(dead.sum())
        have = torch.tensor([float(self._recent_filled)], device=self.codebook.device)
        if _dist_active():
            dist.broadcast(have, src=0)
        if n_dead == 0 or float(have) <= 0:
            return 0
        if self._recent is not None and self._recent_filled > 0:
            pool = self._recent[: self._recent_filled]
            idx = torch.randint(0, pool.shape[0], (n_dead,), device=pool.device)
            fresh = pool[idx].clone()
            scale = float(pool.std()) if pool.shape[0] > 1 else 1.0
            fresh += torch.randn_like(fresh) * (self.restart_noise * scale + 1e-6)
            fresh = fresh.to(self.codebook.device)
        else:  # non-zero ranks without a buffer: overwritten by the broadcast below
            fresh = torch.zeros(n_dead, self.dim, device=self.codebook.device)
        self.codebook[dead] = fresh
        self.ema_sum[dead] = fresh
        self.ema_count[dead] = 1.0
        self.initialized.fill_(True)
        if _dist_active():
            for t in (self.codebook, self.ema_sum, self.ema_count):
                dist.broadcast(t, src=0)
        return n_dead


# ---------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------
class LatentActionModel(nn.Module):
    """Two-stage latent action model; see the module docstring."""

    model_type = MODEL_TYPE

    def __init__(self, config: LamConfig):
        super().__init__()
        config.validate()
        self.config = config
        c = config
        # stage 1: environmental action (IDM from frames only)
        self.idm_env_cnn = ImpalaEncoder(6, c.encoder_channels, c.encoder_res_blocks, c.image_size, c.idm_hidden_dim,
                                         c.stem_downsample)
        self.idm_env_head = mlp(c.idm_hidden_dim, c.idm_hidden_dim, c.latent_dim)
        self.vq_env = self._make_vq()
        # FDM side input: stage 1 the ego's own motion (ground truth), stage 2 the ego action
        self.fdm_cond = mlp(c.cond_dim, c.cond_hidden_dim, c.action_embed_dim)
        # stage 2: ego action
        self.idm_ego_cnn = ImpalaEncoder(6, c.encoder_channels, c.encoder_res_blocks, c.image_size, c.idm_hidden_dim,
                                         c.stem_downsample)
        self.idm_ego_head = mlp(c.idm_hidden_dim + c.latent_dim + 3, c.idm_hidden_dim, c.latent_dim - 3)
        self.vq_ego = self._make_vq()
        self.fdm_ego = nn.Linear(c.latent_dim, c.action_embed_dim)
        self.ego_motion_head = nn.Linear(c.latent_dim, 3)  # weak supervision only (ego_supervision_fraction)
        # decoder
        self.fdm_env = nn.Linear(c.latent_dim, c.action_embed_dim)
        self.fdm = ForwardDynamicsModel(c.fdm_channels, 2 * c.action_embed_dim, c.fdm_input_action_channels,
                                        c.stem_downsample, c.fdm_convs_per_block)
        self._stage = 1
        self.set_stage(1)

    def _make_vq(self) -> EmaVectorQuantizer:
        c = self.config
        return EmaVectorQuantizer(c.codebook_size, c.latent_dim, c.vq_decay, c.vq_commitment, c.vq_eps,
                                  c.restart_buffer_size, c.restart_noise)

    # ---- stages -------------------------------------------------------------
    @property
    def stage(self) -> int:
        return self._stage

    def env_modules(self) -> list[nn.Module]:
        """Modules frozen in stage 2 (stage-1 IDM and codebook)."""
        return [self.idm_env_cnn, self.idm_env_head, self.vq_env]

    def ego_modules(self) -> list[nn.Module]:
        return [self.idm_ego_cnn, self.idm_ego_head, self.vq_ego, self.fdm_ego, self.ego_motion_head]

    def set_stage(self, stage: int) -> None:
        """1: train the environmental IDM/codebook + FDM (ego parts idle).
        2: freeze the environmental IDM/codebook (``requires_grad_(False)``, EMA and
        restarts off) and train the ego IDM/codebook + FDM."""
        if stage not in (1, 2):
            raise ValueError(f"stage must be 1 or 2, got {stage!r}")
        self._stage = stage
        for m in self.env_modules():
            m.requires_grad_(stage == 1)
        self.fdm_cond.requires_grad_(stage == 1)
        for m in self.ego_modules():
            m.requires_grad_(stage == 2)
        self.vq_env.frozen = stage == 2
        self.vq_ego.frozen = stage == 1

    def active_quantizer(self) -> EmaVectorQuantizer:
        return self.vq_env if self._stage == 1 else self.vq_ego

    # ---- inputs -------------------------------------------------------------
    @staticmethod
    def prepare_frames(x: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, H, W) -> float in [-0.5, 0.5]; floats are passed through."""
        if x.dtype == torch.uint8:
            return x.float() * (1.0 / 255.0) - 0.5
        return x.float()

    def normalised_motion(self, ego_motion: torch.Tensor) -> torch.Tensor:
        """(B, 3) dx, dy [m], dyaw [rad] of the transition -> the scale the networks see."""
        c = self.config
        scale = torch.tensor([c.motion_scale_m, c.motion_scale_m, c.motion_scale_rad], device=ego_motion.device)
        return torch.nan_to_num(ego_motion.float() / scale)

    def conditioning(self, ego_motion: torch.Tensor | None, motion_valid: torch.Tensor | None,
                     trajectory: torch.Tensor | None, ego_status: torch.Tensor | None,
                     future_valid: torch.Tensor | None, batch: int, device: torch.device) -> torch.Tensor:
        """The ego's own motion as the stage-1 FDM sees it (B, cond_dim): transition motion (3)
        + valid flag, trajectory (8x3), ego status (8), future-valid flag. Missing parts are zeros."""
        c = self.config
        if ego_motion is None:
            motion = torch.zeros(batch, 3, device=device)
            m_valid = torch.zeros(batch, device=device)
        else:
            m_valid = torch.ones(batch, device=device) if motion_valid is None else motion_valid.float().reshape(batch)
            motion = self.normalised_motion(ego_motion.reshape(batch, 3)) * m_valid[:, None]
        if trajectory is None:
            traj = torch.zeros(batch, NUM_POSES, 3, device=device)
            valid = torch.zeros(batch, device=device)
        else:
            traj = trajectory.float().reshape(batch, NUM_POSES, 3)
            valid = torch.ones(batch, device=device) if future_valid is None else future_valid.float().reshape(batch)
        scale = torch.tensor([c.trajectory_scale_m, c.trajectory_scale_m, c.heading_scale_rad], device=device)
        traj = torch.nan_to_num(traj / scale) * valid[:, None, None]
        if ego_status is None:
            status = torch.zeros(batch, EGO_STATUS_DIM, device=device)
        else:
            status = ego_status.float().reshape(batch, EGO_STATUS_DIM)
            sscale = torch.tensor([1.0] * 4 + [c.speed_scale_mps] * 2 + [c.accel_scale_mps2] * 2, device=device)
            status = torch.nan_to_num(status / sscale)
        return torch.cat([motion, m_valid[:, None], traj.flatten(1), status, valid[:, None]], dim=1)

    # ---- encoders -----------------------------------------------------------
    def _env_latent(self, cur: torch.Tensor, nxt: torch.Tensor, odometry: torch.Tensor) -> torch.Tensor:
        """From frame t moved by the frames' own registered motion (never the true ego motion) and
        frame t + s: what is left to explain is mostly the other road users."""
        c = self.config
        aligned = warp_by_ego_motion(cur, odometry, c.meters_per_pixel, c.ego_row_px) if c.ego_warp else cur
        return self.idm_env_head(self.idm_env_cnn(self._stack(aligned, nxt)))

    def _odometry_scale(self, device: torch.device) -> torch.Tensor:
        return torch.tensor(self.config.odometry_scale, device=device, dtype=torch.float32)

    def odometry(self, cur: torch.Tensor, nxt: torch.Tensor, odometry: torch.Tensor | None) -> torch.Tensor:
        """The transition's rigid view motion estimated from the frames (B, 3): ``odometry`` when the
        caller registered the single frame steps (``lam_data``), else one registration t -> t + s."""
        if odometry is not None:
            return torch.nan_to_num(odometry.float().reshape(-1, 3))
        return register_rigid(cur, nxt, self.config.meters_per_pixel, self.config.ego_row_px)

    def _ego_latent(self, stack: torch.Tensor, env_q: torch.Tensor, odometry: torch.Tensor) -> torch.Tensor:
        """[odometry / odometry_scale (3), learned features (latent_dim - 3, bounded)]: the code's
        first three entries are a rigid motion (``code_motion``)."""
        odo = odometry / self._odometry_scale(stack.device)
        h = self.idm_ego_cnn(stack)
        feats = torch.tanh(self.idm_ego_head(torch.cat([h, env_q, odo], dim=1))) * self.config.ego_feature_scale
        return torch.cat([odo, feats], dim=1)

    def _stack(self, cur: torch.Tensor, nxt: torch.Tensor) -> torch.Tensor:
        return torch.cat([cur, nxt], dim=1)

    @torch.no_grad()
    def encode(self, frames_t: torch.Tensor, frames_next: torch.Tensor,
               odometry: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(env_codes, ego_codes), each (B,) long, of the transitions frames_t -> frames_next, from
        the frames alone (``odometry``: see ``odometry``); usage statistics are not touched."""
        was_training = self.training
        self.eval()
        try:
            cur, nxt = self.prepare_frames(frames_t), self.prepare_frames(frames_next)
            stack, odo = self._stack(cur, nxt), self.odometry(cur, nxt, odometry)
            env_codes = self.vq_env.quantize(self._env_latent(cur, nxt, odo))
            env_q = self.vq_env.lookup(env_codes)
            ego_codes = self.vq_ego.quantize(self._ego_latent(stack, env_q, odo))
        finally:
            self.train(was_training)
        return env_codes, ego_codes

    def encode_ego(self, frames_t: torch.Tensor, frames_next: torch.Tensor,
                   odometry: torch.Tensor | None = None) -> torch.Tensor:
        """Ego-action codes (B,) of the transitions frames_t -> frames_next."""
        return self.encode(frames_t, frames_next, odometry)[1]

    def encode_env(self, frames_t: torch.Tensor, frames_next: torch.Tensor,
                   odometry: torch.Tensor | None = None) -> torch.Tensor:
        """Environmental-action codes (B,)."""
        return self.encode(frames_t, frames_next, odometry)[0]

    def code_motion(self, ego_q: torch.Tensor) -> torch.Tensor:
        """(B, 3) rigid ego motion (dx, dy [m], dyaw [rad]) the forward model applies for ego latents."""
        return ego_q[:, :3] * self._odometry_scale(ego_q.device)

    def _predict(self, cur: torch.Tensor, action: torch.Tensor, motion: torch.Tensor | None) -> torch.Tensor:
        c = self.config
        base = cur
        if c.ego_warp and motion is not None:
            base = warp_by_ego_motion(cur, motion, c.meters_per_pixel, c.ego_row_px)
        return self.fdm(base, action)

    @torch.no_grad()
    def decode(self, frames_t: torch.Tensor, env_codes: torch.Tensor, ego_codes: torch.Tensor) -> torch.Tensor:
        """Stage-2 prediction of the next frame (float, [-0.5, 0.5] scale) from frame t and both codes."""
        ego_q = self.vq_ego.lookup(ego_codes)
        action = torch.cat([self.fdm_env(self.vq_env.lookup(env_codes)), self.fdm_ego(ego_q)], dim=1)
        return self._predict(self.prepare_frames(frames_t), action, self.code_motion(ego_q))

    # ---- training forward ---------------------------------------------------
    def forward(self, frames_t: torch.Tensor, frames_next: torch.Tensor, *, ego_motion: torch.Tensor | None = None,
                motion_valid: torch.Tensor | None = None, trajectory: torch.Tensor | None = None,
                ego_status: torch.Tensor | None = None, future_valid: torch.Tensor | None = None,
                supervised: torch.Tensor | None = None, odometry: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Loss of the current stage. Returns ``loss``, ``recon_mse``, ``recon_fit`` (the reconstruction term of
        the loss: stage 1 weighted, see ``_stage1_pixel_weights``, stage 2 ``recon_mse``), ``commitment``,
        ``perplexity`` (batch, active codebook), ``prediction``, ``env_codes``, ``usage_loss``
        (anti-collapse term), ``ego_supervision`` (0 unless weak supervision is on: ``supervised``
        (B,) marks the transitions whose true ``ego_motion`` may be used) and, in stage 2, ``ego_codes``."""
        cur, nxt = self.prepare_frames(frames_t), self.prepare_frames(frames_next)
        b = cur.shape[0]
        stack, odo = self._stack(cur, nxt), self.odometry(cur, nxt, odometry)
        out: dict[str, torch.Tensor] = {}
        usage = supervision = torch.zeros((), device=cur.device)
        if self._stage == 1:
            env = self.vq_env(self._env_latent(cur, nxt, odo))  # frames only: no ego motion, no shortcut
            cond = self.conditioning(ego_motion, motion_valid, trajectory, ego_status, future_valid, b, cur.device)
            action = torch.cat([self.fdm_env(env.quantized), self.fdm_cond(cond)], dim=1)
            motion = None
            if ego_motion is not None:  # the true motion warps the view (the ego's own motion, given)
                valid = torch.ones(b, device=cur.device) if motion_valid is None else motion_valid.float().reshape(b)
                motion = torch.nan_to_num(ego_motion.float().reshape(b, 3)) * valid[:, None]
            commitment, perplexity = env.commitment_loss, env.perplexity
            usage = self.usage_loss(env.latents, self.vq_env)
        else:
            with torch.no_grad():
                env = self.vq_env(self._env_latent(cur, nxt, odo))
            env_q = env.quantized.detach()
            ego = self.vq_ego(self._ego_latent(stack, env_q, odo))
            action = torch.cat([self.fdm_env(env_q), self.fdm_ego(ego.quantized)], dim=1)
            motion = self.code_motion(ego.quantized)
            commitment, perplexity = ego.commitment_loss, ego.perplexity
            usage = self.usage_loss(ego.latents, self.vq_ego)
            out["ego_codes"] = ego.codes
            if self.config.ego_supervision_fraction > 0 and supervised is not None and ego_motion is not None:
                mask = supervised.float().reshape(b)
                if motion_valid is not None:
                    mask = mask * motion_valid.float().reshape(b)
                err = (self.ego_motion_head(ego.latents) - self.normalised_motion(ego_motion)).pow(2).mean(1)
                supervision = self.config.ego_supervision_weight * (err * mask).sum() / mask.sum().clamp_min(1.0)
        pred = self._predict(cur, action, motion)
        recon = F.mse_loss(pred, nxt)
        fit = recon
        weights = self._stage1_pixel_weights(cur, nxt, motion) if self._stage == 1 else None
        if weights is not None:
            fit = (weights * (pred - nxt).pow(2)).mean()
        out.update(loss=fit + commitment + usage + supervision, recon_mse=recon.detach(), recon_fit=fit.detach(),
                   commitment=commitment.detach(), perplexity=perplexity.detach(), prediction=pred,
                   env_codes=env.codes, usage_loss=usage.detach(), ego_supervision=supervision.detach())
        return out

    @torch.no_grad()
    def _stage1_pixel_weights(self, cur: torch.Tensor, nxt: torch.Tensor,
                              motion: torch.Tensor | None) -> torch.Tensor | None:
        """Per-pixel weights (B, 1, S, S), mean 1, of the stage-1 reconstruction loss, or None (plain MSE).

        ``env_mask_unseen``: pixels that the warp by the true ego motion brings in from outside frame t
        (new road at the view's edge, which no action can predict) weigh 0. ``env_residual_weight`` = a:
        weight 1 + a r / mean(r), r = what the ego-motion warp leaves unexplained at that pixel
        (|warped frame t - frame t+s|^2, label-free): mostly the other road users' own motion."""
        c = self.config
        if motion is None or not c.ego_warp or (not c.env_mask_unseen and c.env_residual_weight <= 0):
            return None
        b, _, h, w = cur.shape
        weights = torch.ones(b, 1, h, w, device=cur.device)
        if c.env_mask_unseen:
            seen = warp_by_ego_motion(weights, motion, c.meters_per_pixel, c.ego_row_px, padding_mode="zeros")
            weights = (seen > 0.999).float()
        if c.env_residual_weight > 0:
            residual = (warp_by_ego_motion(cur, motion, c.meters_per_pixel, c.ego_row_px) - nxt).pow(2).sum(1, True)
            residual = residual * weights
            weights = weights * (1.0 + c.env_residual_weight * residual / residual.mean().clamp_min(1e-12))
        return weights / weights.mean().clamp_min(1e-12)

    def usage_loss(self, z: torch.Tensor, vq: EmaVectorQuantizer) -> torch.Tensor:
        """Anti-collapse term (``usage_entropy_weight``): soft assignments of the latents to the codes
        (temperature: a tenth of the batch's mean squared distance); pushes the batch's mean assignment towards uniform use
        of the codebook and each latent towards one code (log K - H(mean p) + mean H(p))."""
        w = self.config.usage_entropy_weight
        if w <= 0 or not self.training:
            return torch.zeros((), device=z.device)
        d = torch.cdist(z, vq.codebook.detach()).pow(2)
        p = torch.softmax(-d / (0.1 * d.mean().detach()).clamp_min(1e-12), dim=1)
        mean_p = p.mean(0)
        h_mean = -(mean_p * mean_p.clamp_min(1e-12).log()).sum()
        h_each = -(p * p.clamp_min(1e-12).log()).sum(1).mean()
        return w * (math.log(vq.num_codes) - h_mean + h_each)

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)


def codebook_stats(quantizer: EmaVectorQuantizer, counts: torch.Tensor | None = None) -> dict[str, float]:
    """codes_used, usage (used / K) and perplexity of a usage histogram (default: the running epoch)."""
    counts = quantizer.usage_counts() if counts is None else counts
    used = int((counts > 0).sum())
    return {"codes_used": float(used), "usage": used / quantizer.num_codes,
            "perplexity": perplexity_from_counts(counts)}


def build_lam(config: LamConfig, stage: int = 1) -> LatentActionModel:
    model = LatentActionModel(config)
    model.set_stage(stage)
    return model


def load_lam(directory, device: str | torch.device = "cpu") -> LatentActionModel:
    """Load a LAM checkpoint written by ``training.lam`` (safetensors only) in eval mode."""
    from latentvla_ros.core.checkpoint import CheckpointError, load_weights_into, read_checkpoint_config

    payload = read_checkpoint_config(directory)
    if payload.get("model_type") != MODEL_TYPE:
        raise CheckpointError(f"checkpoint {directory} holds a {payload.get('model_type')!r}, expected {MODEL_TYPE!r}")
    try:
        config = LamConfig.from_dict(payload["config"])
    except ConfigError as exc:
        raise CheckpointError(f"checkpoint {directory}: not a LAM of this version ({exc}); "
                              "retrain it with `latentvla train lam`") from exc
    model = LatentActionModel(config)
    load_weights_into(model, directory, MODEL_TYPE)
    stage = int(payload.get("meta", {}).get("stage", 2))
    model.set_stage(stage)
    model.to(device)
    model.eval()
    return model


__all__ = [
    "EmaVectorQuantizer",
    "LatentActionModel",
    "VQOutput",
    "build_lam",
    "codebook_stats",
    "load_lam",
    "perplexity_from_counts",
    "MODEL_TYPE",
]
