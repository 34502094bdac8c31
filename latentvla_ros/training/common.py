"""Shared training loop: seeded, resumable, DDP (torchrun) aware, logs CSV + TensorBoard.

Every stage (lam, teacher, student, planner) calls ``train_loop`` with its model,
dataset and a loss function. Under ``torchrun --nproc_per_node N`` the loop uses
DistributedDataParallel (gloo on CPU, nccl on CUDA) and a DistributedSampler; the
same code runs single-process without torchrun.

Resume state is written without pickle: tensors of the model/optimizer state go
to ``train_state.safetensors`` and scalars to ``train_state.json``.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from latentvla_ros.core.checkpoint import detached_state
from latentvla_ros.core.config_base import ConfigBase, require

try:  # progress bars are optional at run time
    from tqdm.auto import tqdm
except ImportError:  # pragma: no cover
    tqdm = None


@dataclasses.dataclass
class TrainConfig(ConfigBase):
    """Optimisation settings shared by every stage."""

    epochs: int = 10
    """Passes over the training set."""
    batch_size: int = 32
    """Per-process batch size."""
    lr: float = 3e-4
    """Peak learning rate (AdamW)."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    warmup_steps: int = 50
    """Linear warm-up steps before cosine decay."""
    grad_clip: float = 2.0
    """Max gradient norm (0 disables)."""
    seed: int = 0
    """Seed for python, numpy and torch."""
    num_workers: int = 0
    """DataLoader workers per process."""
    max_steps: int = 0
    """Stop after this many optimizer steps in total (0: no limit); used by tests."""
    torch_threads: int = 0
    """torch intra-op threads per process (0: leave torch's default)."""

    def validate(self) -> None:
        require(self.epochs >= 1, "epochs", "must be >= 1")
        require(self.batch_size >= 1, "batch_size", "must be >= 1")
        require(self.lr > 0 and math.isfinite(self.lr), "lr", "must be a positive number")
        require(self.weight_decay >= 0, "weight_decay", "must be >= 0")
        require(self.warmup_steps >= 0, "warmup_steps", "must be >= 0")
        require(self.grad_clip >= 0, "grad_clip", "must be >= 0")
        require(self.num_workers >= 0, "num_workers", "must be >= 0")
        require(self.max_steps >= 0, "max_steps", "must be >= 0")
        require(self.torch_threads >= 0, "torch_threads", "must be >= 0")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclasses.dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = dataclasses.field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup_distributed() -> DistInfo:
    """Initialise torch.distributed when launched by torchrun (env:// rendezvous)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
        return DistInfo(device=device)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
        backend = "nccl"
    else:
        device = torch.device("cpu")
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, device=device)


class MetricsLogger:
    """Appends rows to ``metrics.csv`` and, when tensorboard is installed, event files."""

    def __init__(self, out_dir: Path, enabled: bool = True):
        self.enabled = enabled
        self.path = out_dir / "metrics.csv"
        self._fields: list[str] | None = None
        self._tb = None
        if not enabled:
            return
        out_dir.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            with self.path.open() as fh:
                header = fh.readline().strip()
            self._fields = header.split(",") if header else None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(out_dir / "tensorboard"))
        except Exception:  # noqa: BLE001 - tensorboard missing or broken in any way: the CSV log is enough
            self._tb = None

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        row = {"step": step, "time": round(time.time(), 3), **{k: float(v) for k, v in metrics.items()}}
        if self._fields is None:
            self._fields = list(row)
            with self.path.open("w", newline="") as fh:
                csv.writer(fh).writerow(self._fields)
        missing = [k for k in row if k not in self._fields]
        if missing:  # a new metric: rewrite the header, keep old rows
            self._fields += missing
            rows = list(csv.DictReader(self.path.open()))
            with self.path.open("w", newline="") as fh:
                w = csv.DictWriter(fh, self._fields)
                w.writeheader()
                w.writerows(rows)
        with self.path.open("a", newline="") as fh:
            csv.DictWriter(fh, self._fields).writerow(row)
        if self._tb is not None:
            for k, v in metrics.items():
                self._tb.add_scalar(k, float(v), step)
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def _flatten_optimizer_state(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {"param_groups": state["param_groups"], "state": {}}
    for pid, pstate in state["state"].items():
        entry = {}
        for key, value in pstate.items():
            if torch.is_tensor(value):
                tensors[f"opt.{pid}.{key}"] = value.detach().cpu().contiguous()
                entry[key] = "__tensor__"
            else:
                entry[key] = value
        scalars["state"][str(pid)] = entry
    return tensors, scalars


def _restore_optimizer_state(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], scalars: dict[str, Any]) -> None:
    state = {}
    for pid, entry in scalars["state"].items():
        state[int(pid)] = {
            key: (tensors[f"opt.{pid}.{key}"] if value == "__tensor__" else value) for key, value in entry.items()
        }
    opt.load_state_dict({"state": state, "param_groups": scalars["param_groups"]})


def save_train_state(out_dir: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, progress: dict[str, Any]) -> None:
    tensors = {f"model.{k}": v for k, v in detached_state(model.state_dict()).items()}
    opt_tensors, opt_scalars = _flatten_optimizer_state(opt)
    tensors.update(opt_tensors)
    tmp = out_dir / "train_state.safetensors.tmp"
    save_file(tensors, str(tmp))
    tmp.replace(out_dir / "train_state.safetensors")
    rng = {"torch": torch.get_rng_state().tolist(), "numpy": np.random.get_state()[1].tolist(), "python": random.getstate()[1]}
    payload = {"progress": progress, "optimizer": opt_scalars, "rng": rng}
    (out_dir / "train_state.json").write_text(json.dumps(payload))


def load_train_state(out_dir: Path, model: torch.nn.Module, opt: torch.optim.Optimizer) -> dict[str, Any] | None:
    tensor_path, json_path = out_dir / "train_state.safetensors", out_dir / "train_state.json"
    if not (tensor_path.exists() and json_path.exists()):
        return None
    tensors = load_file(str(tensor_path))
    payload = json.loads(json_path.read_text())
    model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    _restore_optimizer_state(opt, tensors, payload["optimizer"])
    rng = payload.get("rng")
    if rng:
        torch.set_rng_state(torch.tensor(rng["torch"], dtype=torch.uint8))
        np_state = np.random.get_state()
        np.random.set_state((np_state[0], np.array(rng["numpy"], dtype=np.uint32), *np_state[2:]))
        random.setstate((3, tuple(rng["python"]), None))
    return payload["progress"]


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


LossFn = Callable[[torch.nn.Module, dict[str, torch.Tensor]], tuple[torch.Tensor, dict[str, float]]]


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}


def train_loop(
    *,
    name: str,
    model: torch.nn.Module,
    dataset: Dataset,
    loss_fn: LossFn,
    cfg: TrainConfig,
    out_dir: str | Path,
    save_fn: Callable[[torch.nn.Module, Path], None],
    on_epoch_end: Callable[[int, torch.nn.Module], dict[str, float]] | None = None,
    parameters: list[torch.nn.Parameter] | None = None,
    resume: bool = True,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Train ``model`` on ``dataset``; returns {'steps', 'epochs', 'last_metrics', 'seconds'}.

    ``loss_fn(model, batch)`` returns (loss, metrics). ``save_fn(model, out_dir)`` writes
    the final safetensors checkpoint (rank 0 only). ``on_epoch_end`` may return extra
    metrics (e.g. codebook usage) and may modify the model (dead-code restart). With
    ``resume`` the loop continues from ``train_state.*`` in ``out_dir`` if present.
    """
    out_dir = Path(out_dir)
    info = setup_distributed()
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    seed_everything(cfg.seed + info.rank)
    model.to(info.device)
    params = parameters if parameters is not None else [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    progress = {"epoch": 0, "step": 0}
    if resume and info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    if resume:
        loaded = load_train_state(out_dir, model, opt)
        if loaded:
            progress = loaded
    wrapped: torch.nn.Module = model
    if info.distributed:
        wrapped = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[info.local_rank] if info.device.type == "cuda" else None, find_unused_parameters=True
        )
    sampler = (DistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank, seed=cfg.seed, shuffle=True)
               if info.distributed else None)
    generator = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        num_workers=cfg.num_workers,
        drop_last=len(dataset) > cfg.batch_size,
        generator=generator,
        persistent_workers=cfg.num_workers > 0,
    )
    steps_per_epoch = max(1, len(loader))
    total_steps = cfg.epochs * steps_per_epoch
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)
    logger = MetricsLogger(out_dir, enabled=info.is_main)
    start = time.time()
    last: dict[str, float] = {}
    step = int(progress["step"])
    for epoch in range(int(progress["epoch"]), cfg.epochs):
        if step >= total_steps:
            break
        if sampler is not None:
            sampler.set_epoch(epoch)
        wrapped.train()
        bar = None
        if show_progress and info.is_main and tqdm is not None:
            bar = tqdm(total=steps_per_epoch, desc=f"{name} epoch {epoch + 1}/{cfg.epochs}", leave=False, dynamic_ncols=True)
        sums: dict[str, float] = {}
        count = 0
        for batch in loader:
            if step >= total_steps:
                break
            for group in opt.param_groups:
                group["lr"] = lr_at(step, total_steps, cfg)
            batch = _to_device(batch, info.device)
            loss, metrics = loss_fn(wrapped, batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{name}: non-finite loss at step {step}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            step += 1
            count += 1
            metrics = {"loss": float(loss.detach()), **metrics}
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{metrics['loss']:.4f}")
        if bar is not None:
            bar.close()
        last = {f"train/{k}": v / max(1, count) for k, v in sums.items()}
        last["lr"] = lr_at(max(0, step - 1), total_steps, cfg)
        if on_epoch_end is not None:
            last.update(on_epoch_end(epoch, model))
        if info.is_main:
            logger.log(step, {"epoch": epoch + 1, **last})
            save_train_state(out_dir, model, opt, {"epoch": epoch + 1, "step": step})
            print(f"[{name}] epoch {epoch + 1}/{cfg.epochs} step {step} " + " ".join(f"{k}={v:.4g}" for k, v in last.items()), flush=True)
    if info.is_main:
        save_fn(model, out_dir)
    logger.close()
    if info.distributed:
        dist.barrier()
    return {"steps": step, "epochs": cfg.epochs, "last_metrics": last, "seconds": time.time() - start, "rank": info.rank}
