"""Training of the ego-status MLP baseline (``models/modeling_ego_mlp.py``): an L1 loss on the
logged future trajectories; it shows how much of a benchmark is solved by extrapolating the ego's
own motion.

``train_ego_mlp(log_dirs, out_dir)`` trains it in well under a minute on a CPU and writes
``<out_dir>/model.safetensors`` + ``config.json`` (``core.checkpoint``);
``evaluation.ego_mlp.EgoMLPPlanner.from_checkpoint(out_dir)`` is the planner the benchmarks use.
"""
from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentvla_ros.core import checkpoint as ckpt
from latentvla_ros.core.types import ego_status_vectors
from latentvla_ros.data.log_files import LogFormatError, read_meta
from latentvla_ros.models.configuration_ego_mlp import MODEL_TYPE, EgoMLPConfig
from latentvla_ros.models.modeling_ego_mlp import EgoStatusMLP


# ----------------------------------------------------------------------------- data
def ego_mlp_samples(log_dirs: Sequence[str | Path]) -> tuple[np.ndarray, np.ndarray]:
    """(status (N, 8), future poses (N, P, 3)) from every frame with a valid future."""
    from latentvla_ros.data.log_format import DrivingLog

    xs, ys = [], []
    for d in log_dirs:
        log = DrivingLog(d)
        valid = np.asarray(log.future_valid, dtype=bool)
        if not valid.any():
            continue
        status = ego_status_vectors(np.asarray(log.ego_status_array), np.asarray(log.command_array))
        future = np.asarray(log.future_trajectory_array, dtype=np.float32)
        ok = valid & np.all(np.isfinite(future.reshape(len(future), -1)), axis=1)
        xs.append(status[ok])
        ys.append(future[ok])
    if not xs:
        raise ValueError("no frames with a valid future trajectory in the given logs")
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys).astype(np.float32)


def _log_seed(log_dir: Path) -> int | None:
    try:
        return int(read_meta(log_dir).get("seed"))
    except (LogFormatError, ValueError, TypeError):
        return None


# ----------------------------------------------------------------------------- training
class _Adam:
    """Plain Adam (the update of ``torch.optim.Adam``). ``torch.optim`` optimizers import
    ``torch._dynamo`` on construction, which costs seconds to tens of seconds on a busy
    CPU -- far more than training this model."""

    def __init__(self, params: list[torch.Tensor], lr: float, weight_decay: float = 0.0,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.params = params
        self.weight_decay, self.betas, self.eps = weight_decay, betas, eps
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.t = 0

    @torch.no_grad()
    def step(self, lr: float) -> None:
        self.t += 1
        b1, b2 = self.betas
        c1, c2 = 1.0 - b1**self.t, 1.0 - b2**self.t
        for p, m, v in zip(self.params, self.m, self.v):
            if p.grad is None:
                continue
            g = p.grad if self.weight_decay == 0 else p.grad + self.weight_decay * p
            m.mul_(b1).add_(g, alpha=1.0 - b1)
            v.mul_(b2).addcmul_(g, g, value=1.0 - b2)
            p.addcdiv_(m / c1, (v / c2).sqrt_().add_(self.eps), value=-lr)


def train_ego_mlp(log_dirs: str | Path | Sequence[str | Path], out_dir: str | Path,
                  config: EgoMLPConfig | None = None, progress: bool = False,
                  allow_reserved_seeds: bool = False) -> dict[str, Any]:
    """Train the MLP on every valid frame of ``log_dirs`` (a root or a list) and save it.

    Logs whose seed lies in the evaluation range (``data.splits``) are refused
    unless ``allow_reserved_seeds``. Returns ``{"checkpoint", "losses" (per epoch),
    "num_samples", "seconds"}``.
    """
    from latentvla_ros.data.log_format import list_logs
    from latentvla_ros.data.splits import check_training_seeds

    cfg = config or EgoMLPConfig()
    dirs = list_logs(log_dirs) if isinstance(log_dirs, (str, Path)) else [Path(d) for d in log_dirs]
    if not dirs:
        raise ValueError(f"no driving logs in {log_dirs}")
    if not allow_reserved_seeds:
        check_training_seeds(s for s in (_log_seed(d) for d in dirs) if s is not None)
    start = time.perf_counter()
    x_np, y_np = ego_mlp_samples(dirs)
    x, y = torch.from_numpy(x_np), torch.from_numpy(y_np[:, : cfg.num_poses])
    gen = torch.Generator().manual_seed(cfg.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = EgoStatusMLP(cfg)
    n = len(x)
    steps_per_epoch = max(1, math.ceil(n / cfg.batch_size))
    total = cfg.epochs * steps_per_epoch
    adam = _Adam(list(model.parameters()), cfg.lr, cfg.weight_decay)
    weights = torch.tensor([1.0, 1.0, 10.0])  # heading errors are small in radians
    losses = []
    model.train()
    step = 0
    for epoch in range(cfg.epochs):
        perm = torch.randperm(n, generator=gen)
        total_loss = 0.0
        for k in range(steps_per_epoch):
            idx = perm[k * cfg.batch_size:(k + 1) * cfg.batch_size]
            pred = model(x[idx])
            loss = ((pred - y[idx]).abs() * weights).mean()
            model.zero_grad(set_to_none=True)
            loss.backward()
            lr = cfg.lr * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total)))
            adam.step(lr)
            step += 1
            total_loss += float(loss.detach()) * len(idx)
        losses.append(total_loss / n)
        if progress:
            print(f"ego_mlp epoch {epoch + 1}/{cfg.epochs}: L1 {losses[-1]:.4f}")
    model.eval()
    meta = {"num_samples": n, "num_logs": len(dirs), "final_loss": losses[-1], "losses": losses}
    path = ckpt.save_checkpoint(out_dir, model, MODEL_TYPE, cfg.to_dict(), meta)
    return {"checkpoint": str(path), "losses": losses, "num_samples": n, "seconds": time.perf_counter() - start}
