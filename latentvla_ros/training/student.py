"""Student stage: distil the VLM teacher's latent-action distribution into ``LatentStudent``.

Loss per frame (12 token slots, codebook 16)::

    kl_weight * KL(teacher_T || student_T) * T^2  +  hard_weight * CE(student, latent_tokens)

where ``teacher_T = softmax(log(teacher_probs) / T)`` and ``student_T =
softmax(logits / T)`` (Hinton-style distillation; the T^2 keeps gradient scales
comparable across temperatures) and ``latent_tokens`` are the LAM's hard codes
(-1 = no label, ignored). Slots whose teacher row is not a distribution are
left out of the KL term.

Outputs (``out_dir`` is the stage's run directory, as in the other stages):

- ``<out_dir>/student/``: the checkpoint (``model.safetensors`` + ``config.json``);
- ``<out_dir>/eval.json``: held-out top-1 agreement with the teacher, KL at T=1,
  accuracy against the LAM codes, and the same on a training subset;
- ``<out_dir>/metrics.csv``, ``train_state.*`` (resume), TensorBoard events.

Data: ``log_dirs`` is a list of driving-log directories (read with
``FrameDataset(require=('teacher_probs',))``) or any ``torch.utils.data.Dataset``
yielding dicts with ``image`` (3,H,W), ``ego_status`` (8,), ``teacher_probs``
(12,16) and optionally ``latent_tokens`` (12,) int64.
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset

from latentvla_ros.models.configuration_student import StudentConfig
from latentvla_ros.models.modeling_student import LatentStudent
from latentvla_ros.training.common import TrainConfig, train_loop

STUDENT_SUBDIR = "student"
EVAL_FILE = "eval.json"
JITTER_SHIFT_PX = 1
"""The largest image shift [px of the student's input], per axis."""
JITTER_VELOCITY_STD_MPS = 0.1
JITTER_ACCELERATION_STD_MPS2 = 0.3
"""The ego status noise of a jittered sample (velocity and acceleration, ``core.types.ego_status_vectors``
layout: command one-hot (4), velocity (2), acceleration (2)); the closed-loop estimate of the
acceleration is the noisier input."""


def jitter_inputs(image: torch.Tensor, ego_status: torch.Tensor, generator: torch.Generator | None = None, *,
                  shift_px: int = JITTER_SHIFT_PX, velocity_std_mps: float = JITTER_VELOCITY_STD_MPS,
                  acceleration_std_mps2: float = JITTER_ACCELERATION_STD_MPS2) -> tuple[torch.Tensor, torch.Tensor]:
    """A jittered copy of a batch of student inputs: each image shifted by its own (dy, dx) in
    [-shift_px, shift_px] with the border pixels repeated, and Gaussian noise on the ego velocity and
    acceleration (the command untouched). The defaults are what ``StudentConfig.shift_consistency``
    and ``PlannerConfig.action_jitter`` train with."""
    b, _, h, w = image.shape
    k = int(shift_px)
    padded = torch.nn.functional.pad(image, (k, k, k, k), mode="replicate")
    shifts = torch.randint(0, 2 * k + 1, (b, 2), generator=generator)
    out = torch.stack([padded[i, :, int(dy):int(dy) + h, int(dx):int(dx) + w]
                       for i, (dy, dx) in enumerate(shifts.tolist())])
    noise = torch.zeros_like(ego_status)
    noise[:, 4:6] = velocity_std_mps * torch.randn(b, 2, generator=generator).to(ego_status)
    noise[:, 6:8] = acceleration_std_mps2 * torch.randn(b, 2, generator=generator).to(ego_status)
    return out, ego_status + noise


def relative_mse(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of ``x`` from ``target``, relative to the target's mean square (no gradient
    through the normaliser): the shift-consistency distance of two sets of embeddings."""
    return ((x - target) ** 2).mean() / (target.detach() ** 2).mean().clamp_min(1e-8)


class StudentDataError(ValueError):
    """The training data cannot be used (empty, missing keys, wrong shapes)."""


# ------------------------------------------------------------------ defaults
def default_train_config(preset: str, stage: str = "student") -> TrainConfig:
    """Stage defaults: edge fits a 2-core CPU; paper follows TransFuser (Adam 1e-4, batch 64)."""
    table = {
        ("student", "edge"): dict(epochs=10, batch_size=64, lr=1e-3, warmup_steps=50),
        ("student", "paper"): dict(epochs=30, batch_size=64, lr=3e-4, warmup_steps=500),
        ("planner", "edge"): dict(epochs=6, batch_size=32, lr=5e-4, warmup_steps=50),
        ("planner", "paper"): dict(epochs=100, batch_size=64, lr=1e-4, warmup_steps=500),
    }
    if (stage, preset) not in table:
        raise ValueError(f"no default train config for stage {stage!r} preset {preset!r}")
    return TrainConfig(**table[(stage, preset)])


# ------------------------------------------------------------------ data
def split_holdout(
    source: Sequence[str | Path] | Dataset,
    holdout_fraction: float,
    make_dataset,
) -> tuple[Dataset, Dataset | None]:
    """(train, holdout) datasets.

    With >= 2 log directories whole logs are held out (no frame of a held-out log is
    trained on): every ``round(1 / fraction)``-th log of the sorted list, starting in
    the middle of the first stride, so that with logs named by scenario every
    scenario is represented; otherwise (one log, or a ready Dataset) the last
    ``fraction`` of the samples, a contiguous block, is held out.
    """
    if not 0.0 <= holdout_fraction < 1.0:
        raise ValueError("holdout_fraction must be in [0, 1)")
    if isinstance(source, Dataset):
        dataset = source
    else:
        dirs = resolve_log_dirs(source)
        if len(dirs) >= 2 and holdout_fraction > 0:
            step = max(2, round(1.0 / holdout_fraction))
            held = set(range(min(step // 2, len(dirs) - 1), len(dirs), step))
            train = make_dataset([d for i, d in enumerate(dirs) if i not in held])
            hold = make_dataset([d for i, d in enumerate(dirs) if i in held])
            if len(train) == 0:
                raise StudentDataError("no usable training frames in the given logs")
            return train, (hold if len(hold) else None)
        dataset = make_dataset(dirs)
    n = len(dataset)
    if n == 0:
        raise StudentDataError("the dataset is empty")
    n_hold = int(round(holdout_fraction * n)) if n > 1 else 0
    if holdout_fraction > 0 and n_hold == 0 and n > 1:
        n_hold = 1
    if n_hold == 0:
        return dataset, None
    return Subset(dataset, range(n - n_hold)), Subset(dataset, range(n - n_hold, n))


def resolve_log_dirs(source: str | Path | Sequence[str | Path]) -> list[Path]:
    """A root directory (searched with ``list_logs``) or a list of log directories."""
    if isinstance(source, (str, Path)):
        from latentvla_ros.data.log_format import list_logs

        dirs = list_logs(source)
        if not dirs:
            raise StudentDataError(f"no driving logs at or below {source}")
        return dirs
    return [Path(p) for p in source]


def resize_image(image: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
    """Resize a (B,3,H,W) batch to ``size_hw`` when it differs (area-like, antialiased)."""
    if tuple(image.shape[-2:]) == tuple(size_hw):
        return image
    return F.interpolate(image, size=tuple(size_hw), mode="bilinear", align_corners=False, antialias=True)


def check_run_config(out_dir: Path, run_config: dict[str, Any], resume: bool) -> None:
    """Record the model configs of a run in ``run_config.json``; refuse to resume a different run.

    ``train_loop`` resumes from ``train_state.*`` in ``out_dir``; resuming a run whose
    model differs (another preset or fusion mode) would fail deep inside
    ``load_state_dict``, so it is caught here with a clear message.
    """
    path = Path(out_dir) / "run_config.json"
    if resume and path.is_file() and (Path(out_dir) / "train_state.json").is_file():
        previous = json.loads(path.read_text())
        if previous != json.loads(json.dumps(run_config)):
            raise ValueError(
                f"{out_dir} holds a run with a different model config ({path}); "
                "use another out_dir or resume=False")
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(run_config, indent=2, sort_keys=True))


# ------------------------------------------------------------------ loss
def distillation_terms(
    logits: torch.Tensor,
    teacher_probs: torch.Tensor,
    hard_labels: torch.Tensor | None,
    temperature: float,
) -> dict[str, torch.Tensor]:
    """Per-batch KL(teacher_T || student_T) * T^2 and CE(hard labels); masks invalid slots."""
    t = float(temperature)
    teacher_probs = teacher_probs.float()
    valid_t = torch.isfinite(teacher_probs).all(-1) & (teacher_probs.sum(-1) > 0.5)
    log_teacher = torch.log(torch.nan_to_num(teacher_probs, nan=0.0).clamp_min(1e-8))
    log_pt = F.log_softmax(log_teacher / t, dim=-1)
    log_ps = F.log_softmax(logits.float() / t, dim=-1)
    kl_slot = (log_pt.exp() * (log_pt - log_ps)).sum(-1)
    weight = valid_t.float()
    kl = (kl_slot * weight).sum() / weight.sum().clamp_min(1.0) * (t * t)
    out = {"kl": kl}
    if hard_labels is not None:
        labels = hard_labels.long()
        valid_h = (labels >= 0) & (labels < logits.shape[-1])
        ce_slot = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.clamp_min(0).reshape(-1),
                                  reduction="none").reshape(labels.shape)
        wh = valid_h.float()
        out["ce"] = (ce_slot * wh).sum() / wh.sum().clamp_min(1.0)
    with torch.no_grad():
        agree = (logits.argmax(-1) == teacher_probs.argmax(-1)).float()
        out["top1_agreement"] = (agree * weight).sum() / weight.sum().clamp_min(1.0)
    return out


def make_student_loss(image_size: tuple[int, int], temperature: float, kl_weight: float, hard_weight: float,
                      shift_consistency: float = 0.0):
    """The distillation loss; with ``shift_consistency`` > 0 (``StudentConfig.shift_consistency``) each batch
    also runs on ``jitter_inputs`` of itself, distilled from the same labels (the two halves averaged), plus
    that weight times the action embeddings' mean squared difference between the two, relative to their
    mean square."""

    def distil(out, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        terms = distillation_terms(out.logits, batch["teacher_probs"], batch.get("latent_tokens"), temperature)
        loss = kl_weight * terms["kl"]
        if "ce" in terms and hard_weight:
            loss = loss + hard_weight * terms["ce"]
        return loss, terms

    def loss_fn(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        image, ego = resize_image(batch["image"].float(), image_size), batch["ego_status"].float()
        out = model(image, ego)
        loss, terms = distil(out, batch)
        if shift_consistency > 0:
            jittered = model(*jitter_inputs(image, ego))
            loss_j, _ = distil(jittered, batch)
            shift = relative_mse(jittered.action_embeddings.float(), out.action_embeddings.float())
            loss = 0.5 * (loss + loss_j) + shift_consistency * shift
            terms["shift"] = shift
        return loss, {k: float(v.detach()) for k, v in terms.items()}

    return loss_fn


# ------------------------------------------------------------------ evaluation
@torch.no_grad()
def evaluate_student(
    model: LatentStudent,
    dataset: Dataset | None,
    batch_size: int = 64,
    max_samples: int | None = None,
) -> dict[str, float]:
    """Top-1 agreement with the teacher, KL(teacher || student) at T=1, accuracy vs LAM codes."""
    if dataset is None or len(dataset) == 0:
        return {"num_frames": 0}
    if max_samples is not None and len(dataset) > max_samples:
        dataset = Subset(dataset, range(max_samples))
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    sums = {"kl": 0.0, "agree": 0.0, "slots": 0.0, "hard_correct": 0.0, "hard_slots": 0.0, "teacher_hard": 0.0}
    frames = 0
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        image = resize_image(batch["image"].float().to(device), model.config.image_size)
        logits = model(image, batch["ego_status"].float().to(device)).logits.float()
        probs_t = batch["teacher_probs"].float().to(device)
        valid = torch.isfinite(probs_t).all(-1) & (probs_t.sum(-1) > 0.5)
        log_pt = torch.log(torch.nan_to_num(probs_t, nan=0.0).clamp_min(1e-8))
        log_pt = log_pt - torch.logsumexp(log_pt, dim=-1, keepdim=True)
        kl = (log_pt.exp() * (log_pt - F.log_softmax(logits, -1))).sum(-1)
        pred = logits.argmax(-1)
        sums["kl"] += float((kl * valid).sum())
        sums["agree"] += float(((pred == probs_t.argmax(-1)) & valid).sum())
        sums["slots"] += float(valid.sum())
        if "latent_tokens" in batch:
            labels = batch["latent_tokens"].long().to(device)
            vh = (labels >= 0) & (labels < logits.shape[-1])
            sums["hard_correct"] += float(((pred == labels) & vh).sum())
            sums["teacher_hard"] += float(((probs_t.argmax(-1) == labels) & vh & valid).sum())
            sums["hard_slots"] += float(vh.sum())
        frames += len(image)
    model.train(was_training)
    out = {
        "num_frames": frames,
        "top1_agreement": sums["agree"] / max(1.0, sums["slots"]),
        "kl_teacher_student": sums["kl"] / max(1.0, sums["slots"]),
    }
    if sums["hard_slots"]:
        out["accuracy_vs_lam"] = sums["hard_correct"] / sums["hard_slots"]
        out["teacher_accuracy_vs_lam"] = sums["teacher_hard"] / sums["hard_slots"]
    return out


# ------------------------------------------------------------------ entry point
def train_student(
    log_dirs: Sequence[str | Path] | Dataset,
    out_dir: str | Path,
    preset: str = "edge",
    train_cfg: TrainConfig | None = None,
    temperature: float = 2.0,
    kl_weight: float = 1.0,
    hard_weight: float = 0.5,
    holdout_fraction: float = 0.1,
    *,
    config: StudentConfig | None = None,
    eval_every_epoch: bool = True,
    eval_batch_size: int = 64,
    resume: bool = True,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Distil the teacher into a student; returns train_loop's summary + 'eval' + 'checkpoint'.

    ``config`` overrides ``preset``. Writes ``<out_dir>/student/`` and ``<out_dir>/eval.json``.
    """
    if temperature <= 0 or not math.isfinite(temperature):
        raise ValueError("temperature must be a positive number")
    if kl_weight < 0 or hard_weight < 0 or kl_weight + hard_weight == 0:
        raise ValueError("kl_weight and hard_weight must be >= 0 and not both 0")
    out_dir = Path(out_dir)
    cfg = config or StudentConfig.preset(preset)
    train_cfg = train_cfg or default_train_config(preset, "student")

    def make_dataset(dirs):
        from latentvla_ros.data.torch_datasets import FrameDataset

        return FrameDataset(dirs, image_size=cfg.image_size, with_lidar=False, require=("teacher_probs",),
                            action_space=cfg.action_space)

    train_ds, hold_ds = split_holdout(log_dirs, holdout_fraction, make_dataset)
    _check_sample(train_ds[0], cfg)
    if train_cfg.torch_threads:
        torch.set_num_threads(train_cfg.torch_threads)
    check_run_config(out_dir, {"student": cfg.to_dict()}, resume)
    torch.manual_seed(train_cfg.seed)
    model = LatentStudent(cfg)
    meta = {
        "stage": "student",
        "preset": preset,
        "temperature": temperature,
        "kl_weight": kl_weight,
        "hard_weight": hard_weight,
        "holdout_fraction": holdout_fraction,
        "train_cfg": train_cfg.to_dict(),
        "log_dirs": [] if isinstance(log_dirs, Dataset) else [str(p) for p in resolve_log_dirs(log_dirs)],
    }

    def on_epoch_end(epoch: int, m: torch.nn.Module) -> dict[str, float]:
        if not eval_every_epoch or hold_ds is None:
            return {}
        metrics = evaluate_student(m, hold_ds, eval_batch_size)
        return {f"val/{k}": float(v) for k, v in metrics.items() if k != "num_frames"}

    def save_fn(m: torch.nn.Module, directory: Path) -> None:
        m.save_pretrained(directory / STUDENT_SUBDIR, meta)

    summary = train_loop(
        name="student",
        model=model,
        dataset=train_ds,
        loss_fn=make_student_loss(cfg.image_size, temperature, kl_weight, hard_weight, cfg.shift_consistency),
        cfg=train_cfg,
        out_dir=out_dir,
        save_fn=save_fn,
        on_epoch_end=on_epoch_end,
        resume=resume,
        show_progress=show_progress,
    )
    summary["checkpoint"] = str(out_dir / STUDENT_SUBDIR)
    if summary.get("rank", 0) != 0:
        return summary
    t0 = time.time()
    report = {
        "preset": preset,
        "config": cfg.to_dict(),
        "num_train": len(train_ds),
        "num_holdout": 0 if hold_ds is None else len(hold_ds),
        "steps": summary["steps"],
        "train_seconds": summary["seconds"],
        "temperature": temperature,
        "holdout": evaluate_student(model, hold_ds, eval_batch_size),
        "train_subset": evaluate_student(model, train_ds, eval_batch_size, max_samples=512),
    }
    report["eval_seconds"] = time.time() - t0
    (out_dir / EVAL_FILE).write_text(json.dumps(report, indent=2))
    summary["eval"] = report
    return summary


def _check_sample(sample: dict[str, Any], cfg: StudentConfig) -> None:
    for key in ("image", "ego_status", "teacher_probs"):
        if key not in sample:
            raise StudentDataError(f"training samples lack {key!r} (have {sorted(sample)})")
    if tuple(sample["teacher_probs"].shape) != (cfg.num_action_tokens, cfg.codebook_size):
        raise StudentDataError(
            f"teacher_probs shape {tuple(sample['teacher_probs'].shape)}, expected {(cfg.num_action_tokens, cfg.codebook_size)}")
    if sample["image"].ndim != 3 or sample["image"].shape[0] != 3:
        raise StudentDataError(f"image must be (3, H, W), got {tuple(sample['image'].shape)}")
