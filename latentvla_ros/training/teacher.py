"""Teacher stage: fine-tune the Qwen2.5-VL teacher on latent ego tokens, then label logs.

- ``train_teacher``: NLL (teacher forcing) on the 12 latent ego tokens of each frame; token
  k of frame t is ``latent_ego_codes[t + k * stride]`` (stride 3 frames); frames without 12
  valid codes are skipped. Uses the shared ``train_loop`` (progress bars, CSV logs, resume,
  torchrun). Writes ``<out_dir>/teacher/`` (HF folder, see ``LatentTeacher.save``) and
  ``<out_dir>/eval.json`` (held-out token accuracy and NLL).
- ``label_logs``: writes ``teacher_probs.npy`` float32 (T, 12, 16) and
  ``teacher_context.npy`` float16 (T, M, D) into each log directory.

Log arrays are read with ``data.log_files.load_array`` (format table in docs/architecture.md).
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from latentvla_ros.core.types import CODEBOOK_SIZE, NUM_LATENT_TOKENS, ego_status_vectors
from latentvla_ros.data.label_sizes import check_latent_codes, record_label_sizes, teacher_labels_meta
from latentvla_ros.data.log_files import LogFormatError, load_array, read_meta
from latentvla_ros.models.configuration_teacher import TeacherConfig
from latentvla_ros.models.modeling_teacher import TEACHER_CONFIG_NAME, LatentTeacher
from latentvla_ros.runtime.sizes import TEACHER_SUBDIR
from latentvla_ros.training.common import TrainConfig, train_loop

try:  # progress bars are optional at run time
    from tqdm.auto import tqdm
except ImportError:  # pragma: no cover
    tqdm = None

DEFAULT_STRIDE = 3


# ------------------------------------------------------------------------ log reading


def log_status_vectors(log_dir: Path, ego_status: np.ndarray, command: np.ndarray) -> np.ndarray:
    """(T, 8) rows of ``core.types.ego_status_vectors`` (the one builder); a mismatch is a LogFormatError."""
    try:
        return ego_status_vectors(ego_status, command)
    except ValueError as exc:
        raise LogFormatError(f"{log_dir}: {exc}") from exc


def latent_targets(codes: np.ndarray, num_tokens: int = NUM_LATENT_TOKENS, stride: int = DEFAULT_STRIDE,
                   codebook_size: int = CODEBOOK_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Targets (T, K) int64 with token k of frame t = ``codes[t + k*stride]``, and valid (T,).

    A frame is valid when all K indices exist and hold codes in [0, codebook_size).
    """
    codes = np.asarray(codes).astype(np.int64)
    t_count = len(codes)
    idx = np.arange(t_count)[:, None] + stride * np.arange(num_tokens)[None, :]
    inside = idx < t_count
    gathered = np.where(inside, codes[np.minimum(idx, max(t_count - 1, 0))], -1) if t_count else idx
    valid = np.all(inside & (gathered >= 0) & (gathered < codebook_size), axis=1)
    return np.where(valid[:, None], gathered, 0), valid


def read_log(log_dir: str | Path, camera_index: int = 0, need_codes: bool = True) -> dict[str, Any]:
    """The arrays the teacher needs from one log (camera memory-mapped)."""
    log_dir = Path(log_dir)
    camera = load_array(log_dir, "camera.npy", mmap=True)
    if camera.ndim != 5 or camera.shape[-1] != 3 or camera.dtype != np.uint8:
        raise LogFormatError(f"{log_dir}/camera.npy must be uint8 (T, Ncam, H, W, 3), got {camera.dtype} {camera.shape}")
    if not 0 <= camera_index < camera.shape[1]:
        raise LogFormatError(f"{log_dir}: camera_index {camera_index} outside {camera.shape[1]} cameras")
    t_count = camera.shape[0]
    status = log_status_vectors(log_dir, load_array(log_dir, "ego_status.npy"), load_array(log_dir, "command.npy"))
    if status.shape[0] != t_count:
        raise LogFormatError(f"{log_dir}: {t_count} camera frames but {status.shape[0]} ego states")
    out = {"dir": log_dir, "camera": camera, "status": status, "num_frames": t_count}
    if need_codes:
        codes = load_array(log_dir, "latent_ego_codes.npy")
        if codes.shape != (t_count,):
            raise LogFormatError(f"{log_dir}/latent_ego_codes.npy must be ({t_count},), got {codes.shape}")
        out["codes"] = codes
    return out


def frame_image(camera: np.ndarray, t: int, camera_index: int) -> torch.Tensor:
    """(3, H, W) float32 in [0, 1] from a uint8 (T, Ncam, H, W, 3) array."""
    return torch.from_numpy(np.array(camera[t, camera_index])).permute(2, 0, 1).float().div_(255.0)


class TeacherFrameDataset(Dataset):
    """(log, frame) samples -> {'images', 'ego_status', 'target_tokens'}."""

    def __init__(self, logs: list[dict[str, Any]], samples: list[tuple[int, int]], targets: list[np.ndarray],
                 camera_index: int = 0):
        self.logs = logs
        self.samples = samples
        self.targets = targets
        self.camera_index = camera_index

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        li, t = self.samples[i]
        log = self.logs[li]
        return {
            "images": frame_image(log["camera"], t, self.camera_index),
            "ego_status": torch.from_numpy(log["status"][t].copy()),
            "target_tokens": torch.from_numpy(self.targets[li][t].copy()),
        }


def build_datasets(log_dirs: Sequence[str | Path], cfg: TeacherConfig, stride: int = DEFAULT_STRIDE,
                   val_fraction: float = 0.1) -> tuple[TeacherFrameDataset, TeacherFrameDataset]:
    """Train / held-out datasets. The last ``val_fraction`` of each log's valid frames is
    held out; train frames whose targets would reach into it are dropped (no overlap)."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError("val_fraction must be in [0, 1)")
    logs, targets, train, val = [], [], [], []
    for li, d in enumerate(log_dirs):
        log = read_log(d, cfg.camera_index, need_codes=True)
        # the LAM that labelled the log must have the teacher's codebook (no code silently dropped)
        check_latent_codes(d, read_meta(d), log["codes"], cfg.codebook_size, "the teacher config")
        tgt, valid = latent_targets(log["codes"], cfg.num_latent_tokens, stride, cfg.codebook_size)
        logs.append(log)
        targets.append(tgt)
        frames = np.flatnonzero(valid)
        n_val = int(round(len(frames) * val_fraction))
        if n_val == 0:
            train += [(li, int(t)) for t in frames]
            continue
        t_cut = int(frames[len(frames) - n_val])
        last_target = (cfg.num_latent_tokens - 1) * stride  # frame t's targets reach t + this
        train += [(li, int(t)) for t in frames if t + last_target < t_cut]
        val += [(li, int(t)) for t in frames if t >= t_cut]
    if not train:
        raise LogFormatError(f"no frame with {cfg.num_latent_tokens} valid latent codes in {list(map(str, log_dirs))}")
    return (TeacherFrameDataset(logs, train, targets, cfg.camera_index),
            TeacherFrameDataset(logs, val, targets, cfg.camera_index))


# --------------------------------------------------------------------------- training


def teacher_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    out = model(batch["images"], batch["ego_status"], batch["target_tokens"])
    with torch.no_grad():
        acc = (out.logits.argmax(-1) == batch["target_tokens"]).float().mean()
    return out.loss, {"token_accuracy": float(acc)}


@torch.no_grad()
def evaluate_teacher(model: LatentTeacher, dataset: Dataset, batch_size: int = 16,
                     max_samples: int | None = None) -> dict[str, float]:
    """Teacher-forced token accuracy, NLL (as trained) and NLL over the action tokens."""
    n = len(dataset) if max_samples is None else min(len(dataset), max_samples)
    if n == 0:
        return {"num_samples": 0}
    was_training = model.training
    model.eval()
    loader = DataLoader(torch.utils.data.Subset(dataset, range(n)), batch_size=batch_size, shuffle=False)
    correct = nll = nll_action = seq_ok = 0.0
    tokens = 0
    for batch in loader:
        tg = batch["target_tokens"].to(model.device)
        out = model(batch["images"], batch["ego_status"], tg)
        logp = out.logits.log_softmax(-1)
        hit = out.logits.argmax(-1) == tg
        correct += float(hit.sum())
        seq_ok += float(hit.all(-1).sum())
        nll += float(out.loss) * tg.numel()
        nll_action += float(-logp.gather(-1, tg[..., None]).sum())
        tokens += tg.numel()
    model.train(was_training)
    return {
        "num_samples": n,
        "token_accuracy": correct / tokens,
        "sequence_accuracy": seq_ok / n,
        "nll": nll / tokens,
        "nll_action": nll_action / tokens,
    }


def train_teacher(
    log_dirs: Sequence[str | Path],
    out_dir: str | Path,
    preset: str = "tiny",
    train_cfg: TrainConfig | None = None,
    image_size: tuple[int, int] = (112, 112),
    *,
    teacher_cfg: TeacherConfig | None = None,
    stride: int = DEFAULT_STRIDE,
    val_fraction: float = 0.1,
    eval_every_epoch: bool = True,
    eval_batch_size: int = 16,
    show_progress: bool = True,
    resume: bool = True,
) -> dict[str, Any]:
    """Fine-tune the teacher; returns the train_loop summary plus the held-out metrics.

    ``teacher_cfg`` (optional) overrides ``preset`` / ``image_size`` (e.g. to give a
    ``model_path`` to the real Qwen2.5-VL-3B weights).
    """
    out_dir = Path(out_dir)
    cfg = teacher_cfg or TeacherConfig(preset=preset, image_size=tuple(image_size))
    train_cfg = train_cfg or TrainConfig()
    if stride < 1:
        raise ValueError("stride must be >= 1")
    train_ds, val_ds = build_datasets(log_dirs, cfg, stride, val_fraction)
    model = LatentTeacher.build(cfg)

    def on_epoch_end(epoch: int, m: torch.nn.Module) -> dict[str, float]:
        if not eval_every_epoch or len(val_ds) == 0:
            return {}
        metrics = evaluate_teacher(m, val_ds, eval_batch_size)
        return {f"val/{k}": v for k, v in metrics.items() if k != "num_samples"}

    def save_fn(m: torch.nn.Module, directory: Path) -> None:
        m.save(directory / TEACHER_SUBDIR)

    summary = train_loop(
        name="teacher",
        model=model,
        dataset=train_ds,
        loss_fn=teacher_loss,
        cfg=train_cfg,
        out_dir=out_dir,
        save_fn=save_fn,
        on_epoch_end=on_epoch_end,
        resume=resume,
        show_progress=show_progress,
    )
    if summary.get("rank", 0) != 0:
        return summary
    t0 = time.time()
    report = {
        "preset": cfg.preset,
        "image_size": list(cfg.image_size),
        "stride": stride,
        "num_train": len(train_ds),
        "num_val": len(val_ds),
        "steps": summary["steps"],
        "train_seconds": summary["seconds"],
        "val": evaluate_teacher(model, val_ds, eval_batch_size),
        "train_subset": evaluate_teacher(model, train_ds, eval_batch_size, max_samples=256),
        "log_dirs": [str(d) for d in log_dirs],
    }
    report["eval_seconds"] = time.time() - t0
    (out_dir / "eval.json").write_text(json.dumps(report, indent=2))
    summary["eval"] = report
    return summary


# --------------------------------------------------------------------------- labelling


def _default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def resolve_teacher_dir(path: str | Path) -> Path:
    """Accept the teacher folder itself or a ``train_teacher`` out_dir holding ``teacher/``."""
    path = Path(path)
    if not (path / TEACHER_CONFIG_NAME).is_file() and (path / TEACHER_SUBDIR / TEACHER_CONFIG_NAME).is_file():
        return path / TEACHER_SUBDIR
    return path


@torch.no_grad()
def label_logs(
    teacher_dir: str | Path,
    log_dirs: Sequence[str | Path],
    batch_size: int = 16,
    *,
    device: str | torch.device | None = None,
    show_progress: bool = True,
) -> list[dict[str, Any]]:
    """Write ``teacher_probs.npy`` (T, K, C) float32 and ``teacher_context.npy`` (T, M, D)
    float16 into every log dir (atomically: temp file then rename). Every frame is labelled.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    teacher_dir = resolve_teacher_dir(teacher_dir)
    model = LatentTeacher.load(teacher_dir, device=device or _default_device())
    cfg = model.cfg
    logs = [read_log(d, cfg.camera_index, need_codes=False) for d in log_dirs]
    total = sum(log["num_frames"] for log in logs)
    bar = tqdm(total=total, desc="teacher labels", dynamic_ncols=True) if show_progress and tqdm else None
    results = []
    for log in logs:
        t_count, d = log["num_frames"], log["dir"]
        probs_tmp, ctx_tmp = d / "teacher_probs.npy.tmp", d / "teacher_context.npy.tmp"
        probs_mm = np.lib.format.open_memmap(probs_tmp, mode="w+", dtype=np.float32,
                                             shape=(t_count, cfg.num_latent_tokens, cfg.codebook_size))
        ctx_mm = np.lib.format.open_memmap(ctx_tmp, mode="w+", dtype=np.float16,
                                           shape=(t_count, cfg.context_tokens, model.hidden_size))
        start = time.time()
        for s in range(0, t_count, batch_size):
            e = min(t_count, s + batch_size)
            images = torch.stack([frame_image(log["camera"], t, cfg.camera_index) for t in range(s, e)])
            status = torch.from_numpy(log["status"][s:e])
            probs, context = model.predict(images, status)
            probs_mm[s:e] = probs.float().cpu().numpy()
            ctx_mm[s:e] = context.float().cpu().numpy().astype(np.float16)
            if bar is not None:
                bar.update(e - s)
        probs_mm.flush()
        ctx_mm.flush()
        del probs_mm, ctx_mm
        os.replace(probs_tmp, d / "teacher_probs.npy")
        os.replace(ctx_tmp, d / "teacher_context.npy")
        record_label_sizes(d, teacher_labels_meta(cfg.action_space))
        results.append({"log_dir": str(d), "frames": t_count, "seconds": time.time() - start})
    if bar is not None:
        bar.close()
    return results
