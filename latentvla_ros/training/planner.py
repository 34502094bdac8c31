"""Planner stage: end-to-end imitation of the logged trajectory (BEV backbone + fused planner).

Loss: L1 over the 8 poses (x, y, heading) x 10, as TransFuser weights its
trajectory term; a multi-modal planner (``num_modes`` > 1) takes that L1 of the mode closest to
the logged trajectory (winner takes all) plus ``mode_loss_weight`` x the cross-entropy of its mode
logits against that mode (``mode_losses``); ``init_from`` a single-mode run grows the modes from
its one trajectory (``modeling_planner.expand_modes``). Context for the fusion module:

- ``fusion='none'``: none (the TransFuser-style E2E baseline);
- ``fusion='student'``: the frozen student (``student_checkpoint``) runs on the
  fly on each batch; its ``concat(visual_embeddings, action_embeddings)`` are
  the keys/values (the student's weights are neither trained nor saved here);
- ``fusion='teacher'``: ``teacher_context`` read from the dataset (precomputed
  by the teacher stage).

Route input (``PlannerConfig.route_points`` > 0, the ``edge`` / ``paper`` presets): every sample
carries the log's mission route ahead in the ego frame (``route`` (N, 2), ``route_valid``;
``data.route.log_route_samples``, resampled as the planner stage resamples at run time); in
training a ``route_dropout`` share of the samples gets "no route" (valid 0) so that the planner
also learns to plan without one. A dataset without ``route`` trains with "no route" throughout.

Outputs (``out_dir`` is the stage's run directory):

- ``<out_dir>/bev_backbone/`` and ``<out_dir>/planner/``: checkpoints;
- ``<out_dir>/eval.json``: held-out L1 (mean |error| over x, y, heading), ADE
  and FDE (L2 over x, y) and heading error, plus the same on a training subset;
- ``<out_dir>/metrics.csv``, ``train_state.*`` (resume), TensorBoard events.

Data: driving-log directories (``FrameDataset(require=('future', ...))``) or any
Dataset yielding ``image``, ``lidar_bev``, ``ego_status``, ``trajectory`` (8,3),
optionally ``trajectory_valid`` and (for 'teacher') ``teacher_context`` (M, D).
"""
from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from latentvla_ros.core.config_base import ConfigError
from latentvla_ros.models.configuration_bev import BevBackboneConfig
from latentvla_ros.models.configuration_planner import FUSION_MODES, PlannerConfig
from latentvla_ros.models.modeling_planner import BEV_SUBDIR, PLANNER_SUBDIR, E2EPlanner, expand_modes, select_mode
from latentvla_ros.models.modeling_student import LatentStudent
from latentvla_ros.training.common import TrainConfig, train_loop
from latentvla_ros.training.student import (
    EVAL_FILE,
    StudentDataError,
    check_run_config,
    default_train_config,
    jitter_inputs,
    resize_image,
    resolve_log_dirs,
    split_holdout,
)

TRAJECTORY_LOSS_WEIGHT = 10.0


class FrozenStudentContext:
    """Runs a frozen student and returns its fused context (B, Nv + 12, D); kept out of the trained module."""

    def __init__(self, student: LatentStudent):
        self.student = student.eval()
        for p in self.student.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def __call__(self, image: torch.Tensor, ego_status: torch.Tensor, action_dropout: float = 0.0,
                 action_jitter: float = 0.0) -> torch.Tensor:
        """``action_dropout``: that share of the samples (drawn per sample) gets zero action embeddings;
        ``action_jitter``: that share gets the action embeddings of the student run on ``jitter_inputs``."""
        if next(self.student.parameters()).device != image.device:
            self.student.to(image.device)
        self.student.eval()
        small = resize_image(image, self.student.config.image_size)
        out = self.student(small, ego_status)
        actions = out.action_embeddings
        if action_jitter > 0:
            pick = torch.nonzero(torch.rand(actions.shape[0]) < action_jitter).flatten().to(actions.device)
            if len(pick):
                j_image, j_status = jitter_inputs(small[pick], ego_status[pick])
                actions = actions.clone()
                actions[pick] = self.student(j_image, j_status).action_embeddings
        if action_dropout > 0:
            keep = (torch.rand(actions.shape[0], device=actions.device) >= action_dropout).to(actions.dtype)
            actions = actions * keep.view(-1, 1, 1)
        return torch.cat([out.visual_embeddings, actions], dim=1)


def batch_context(fusion: str, batch: dict[str, torch.Tensor], student: FrozenStudentContext | None,
                  action_dropout: float = 0.0, action_jitter: float = 0.0) -> torch.Tensor | None:
    if fusion == "none":
        return None
    if fusion == "student":
        assert student is not None
        return student(batch["image"].float(), batch["ego_status"].float(), action_dropout, action_jitter)
    return batch["teacher_context"].float()


def _valid_mask(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    traj = batch["trajectory"]
    valid = torch.isfinite(traj).flatten(1).all(1)
    if "trajectory_valid" in batch:
        valid = valid & batch["trajectory_valid"].bool().reshape(-1)
    return valid


def trajectory_errors(pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-sample L1 (mean over poses and x, y, heading), ADE, FDE [m], mean |heading error| [rad]."""
    diff = pred - target
    l2 = diff[..., :2].norm(dim=-1)
    return {
        "l1": diff.abs().mean(dim=(1, 2)),
        "ade": l2.mean(dim=1),
        "fde": l2[:, -1],
        "heading_error": diff[..., 2].abs().mean(dim=1),
    }


def batch_route(batch: dict[str, torch.Tensor], route_dropout: float = 0.0) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(route (B, N, 2), route_valid (B,) float) of a batch, None when it has none; ``route_dropout``:
    that share of the samples (drawn per sample) marked "no route"."""
    if "route" not in batch:
        return None, None
    route = batch["route"].float()
    valid = batch["route_valid"].float().reshape(-1) if "route_valid" in batch else torch.ones(len(route), device=route.device)
    if route_dropout > 0:
        valid = valid * (torch.rand(valid.shape, device=valid.device) >= route_dropout).float()
    return route, valid


def mode_losses(poses: torch.Tensor, logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-sample winner-takes-all terms of a multi-modal plan: poses (B, K, P, 3), logits (B, K), target
    (B, P, 3) -> ``l1_best`` (L1 of the mode closest to the target: the one trained), ``mode_ce``
    (cross-entropy of the logits against that mode), ``mode_hit`` (1 where the most likely mode is it)."""
    per_mode = (poses - target[:, None]).abs().mean(dim=(2, 3))  # (B, K)
    winner = per_mode.argmin(dim=1)
    return {
        "l1_best": per_mode.gather(1, winner[:, None])[:, 0],
        "mode_ce": torch.nn.functional.cross_entropy(logits, winner, reduction="none"),
        "mode_hit": (logits.argmax(dim=1) == winner).to(poses.dtype),
    }


def make_planner_loss(fusion: str, student: FrozenStudentContext | None, image_size: tuple[int, int],
                      route_dropout: float = 0.0, action_dropout: float = 0.0, action_jitter: float = 0.0,
                      num_modes: int = 1, mode_loss_weight: float = 1.0):
    """Loss of the planner stage (module doc); with ``num_modes`` > 1 winner takes all: the L1 of the mode
    closest to the logged trajectory + ``mode_loss_weight`` x the mode cross-entropy (``mode_losses``)."""
    def loss_fn(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        image = resize_image(batch["image"].float(), image_size)
        context = batch_context(fusion, {**batch, "image": image}, student, action_dropout, action_jitter)
        route, route_valid = batch_route(batch, route_dropout)
        inputs = (image, batch["lidar_bev"].float(), batch["ego_status"].float(), context, route, route_valid)
        target = torch.nan_to_num(batch["trajectory"].float())
        weight = _valid_mask(batch).float()
        denom = weight.sum().clamp_min(1.0)
        if num_modes > 1:
            poses, logits = model(*inputs, all_modes=True)
            terms = mode_losses(poses, logits, target)
            errors = {**trajectory_errors(select_mode(poses, logits), target), **terms}
            loss = TRAJECTORY_LOSS_WEIGHT * terms["l1_best"] + mode_loss_weight * terms["mode_ce"]
        else:
            errors = trajectory_errors(model(*inputs), target)
            loss = TRAJECTORY_LOSS_WEIGHT * errors["l1"]
        metrics = {k: float((v.detach() * weight).sum() / denom) for k, v in errors.items()}
        return (loss * weight).sum() / denom, metrics

    return loss_fn


@torch.no_grad()
def evaluate_planner(
    model: E2EPlanner,
    dataset: Dataset | None,
    fusion: str,
    student: FrozenStudentContext | None = None,
    batch_size: int = 32,
    max_samples: int | None = None,
) -> dict[str, float]:
    """Mean L1 / ADE / FDE / heading error over the valid samples of ``dataset``."""
    if dataset is None or len(dataset) == 0:
        return {"num_frames": 0}
    if max_samples is not None and len(dataset) > max_samples:
        dataset = Subset(dataset, range(max_samples))
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    image_size = model.backbone.config.image_size
    sums: dict[str, float] = {}
    count = 0.0
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        batch = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in batch.items()}
        image = resize_image(batch["image"].float(), image_size)
        context = batch_context(fusion, {**batch, "image": image}, student)
        route, route_valid = batch_route(batch)
        pred = model(image, batch["lidar_bev"].float(), batch["ego_status"].float(), context, route, route_valid)
        weight = _valid_mask(batch).float()
        for k, v in trajectory_errors(pred, torch.nan_to_num(batch["trajectory"].float())).items():
            sums[k] = sums.get(k, 0.0) + float((v * weight).sum())
        count += float(weight.sum())
    model.train(was_training)
    return {"num_frames": int(count), **{k: v / max(1.0, count) for k, v in sums.items()}}


def train_planner(
    log_dirs: Sequence[str | Path] | Dataset,
    out_dir: str | Path,
    preset: str = "edge",
    fusion: str = "student",
    train_cfg: TrainConfig | None = None,
    student_checkpoint: str | Path | LatentStudent | None = None,
    *,
    holdout_fraction: float = 0.1,
    bev_config: BevBackboneConfig | None = None,
    planner_config: PlannerConfig | None = None,
    eval_every_epoch: bool = True,
    eval_batch_size: int = 32,
    resume: bool = True,
    show_progress: bool = True,
    init_from: str | Path | None = None,
) -> dict[str, Any]:
    """E2E imitation of the backbone + planner; returns train_loop's summary + 'eval' + 'checkpoints'.

    ``planner_config`` (optional) replaces the preset's; its ``fusion``,
    ``context_dim`` and ``num_context_tokens`` are set from ``fusion`` and the
    student / teacher context actually used. ``init_from``: a previous run directory
    (``bev_backbone/`` + ``planner/``) whose weights start this one (a data-aggregation
    round fine-tunes the previous round's planner); its configs must equal this run's.
    """
    if fusion not in FUSION_MODES:
        raise ConfigError(f"fusion: must be one of {FUSION_MODES}, got {fusion!r}")
    out_dir = Path(out_dir)
    bev_cfg = bev_config or BevBackboneConfig.preset(preset)
    train_cfg = train_cfg or default_train_config(preset, "planner")
    if train_cfg.torch_threads:
        torch.set_num_threads(train_cfg.torch_threads)

    student: FrozenStudentContext | None = None
    student_id = None
    if fusion == "student":
        if student_checkpoint is None:
            raise ConfigError("fusion='student' needs student_checkpoint (a trained student directory or model)")
        if isinstance(student_checkpoint, LatentStudent):
            student = FrozenStudentContext(student_checkpoint)
        else:
            from latentvla_ros.core.checkpoint import checkpoint_id

            student = FrozenStudentContext(LatentStudent.from_pretrained(student_checkpoint))
            student_id = checkpoint_id(student_checkpoint, LatentStudent.MODEL_TYPE)

    require = ("future",) + (("teacher_context",) if fusion == "teacher" else ())
    base_cfg = planner_config or PlannerConfig.preset(preset)

    def make_dataset(dirs):
        from latentvla_ros.data.torch_datasets import FrameDataset

        return FrameDataset(dirs, image_size=bev_cfg.image_size, lidar_grid=bev_cfg.lidar_grid,
                            lidar_range_m=bev_cfg.lidar_range_m, with_lidar=True, require=require,
                            trajectory_sampling=base_cfg.trajectory_sampling, route_points=base_cfg.route_points,
                            route_spacing_m=base_cfg.route_spacing_m)

    train_ds, hold_ds = split_holdout(log_dirs, holdout_fraction, make_dataset)
    sample = train_ds[0]
    for key in ("image", "lidar_bev", "ego_status", "trajectory") + (("teacher_context",) if fusion == "teacher" else ()):
        if key not in sample:
            raise StudentDataError(f"training samples lack {key!r} (have {sorted(sample)})")

    overrides: dict[str, Any] = {"fusion": fusion, "bev_token_dim": bev_cfg.token_dim, "num_bev_tokens": bev_cfg.num_tokens}
    if fusion == "student":
        assert student is not None
        overrides.update(context_dim=student.student.config.d_model, num_context_tokens=student.student.config.context_tokens)
    elif fusion == "teacher":
        m, d = tuple(sample["teacher_context"].shape)
        overrides.update(context_dim=int(d), num_context_tokens=int(m))
    plan_cfg = PlannerConfig.from_dict({**base_cfg.to_dict(), **overrides})

    check_run_config(out_dir, {"bev_backbone": bev_cfg.to_dict(), "planner": plan_cfg.to_dict()}, resume)
    torch.manual_seed(train_cfg.seed)
    model = E2EPlanner(bev_cfg, plan_cfg)
    if init_from is not None:
        previous = E2EPlanner.from_pretrained(init_from)
        before = previous.planner.config
        expand = before.num_modes == 1 and plan_cfg.num_modes > 1  # a single-mode planner grows modes
        if previous.backbone.config.to_dict() != bev_cfg.to_dict() or {**before.architecture(), "num_modes": 0} != {
                **plan_cfg.architecture(), "num_modes": 0} or (before.num_modes != plan_cfg.num_modes and not expand):
            raise ConfigError(f"init_from={init_from}: its backbone/planner configs differ from this run's "
                              f"(fusion={fusion!r}, preset={preset!r})")
        model.backbone.load_state_dict(previous.backbone.state_dict())
        planner_state = previous.planner.state_dict()
        if expand:
            planner_state = expand_modes(planner_state, plan_cfg, model.planner.state_dict())
        model.planner.load_state_dict(planner_state)
    meta = {
        "stage": "planner",
        "preset": preset,
        "fusion": fusion,
        "student_checkpoint": student_id,
        "holdout_fraction": holdout_fraction,
        "train_cfg": train_cfg.to_dict(),
        "init_from": str(init_from) if init_from is not None else None,
        "log_dirs": [] if isinstance(log_dirs, Dataset) else [str(p) for p in resolve_log_dirs(log_dirs)],
    }

    def on_epoch_end(epoch: int, m: torch.nn.Module) -> dict[str, float]:
        if not eval_every_epoch or hold_ds is None:
            return {}
        metrics = evaluate_planner(m, hold_ds, fusion, student, eval_batch_size)
        return {f"val/{k}": float(v) for k, v in metrics.items() if k != "num_frames"}

    def save_fn(m: torch.nn.Module, directory: Path) -> None:
        m.save_pretrained(directory, meta)

    summary = train_loop(
        name=f"planner-{fusion}",
        model=model,
        dataset=train_ds,
        loss_fn=make_planner_loss(fusion, student, bev_cfg.image_size, plan_cfg.route_dropout if plan_cfg.uses_route else 0.0,
                                  plan_cfg.action_dropout, plan_cfg.action_jitter, plan_cfg.num_modes,
                                  plan_cfg.mode_loss_weight),
        cfg=train_cfg,
        out_dir=out_dir,
        save_fn=save_fn,
        on_epoch_end=on_epoch_end,
        resume=resume,
        show_progress=show_progress,
    )
    summary["checkpoints"] = {"bev_backbone": str(out_dir / BEV_SUBDIR), "planner": str(out_dir / PLANNER_SUBDIR)}
    if summary.get("rank", 0) != 0:
        return summary
    t0 = time.time()
    report = {
        "preset": preset,
        "fusion": fusion,
        "student_checkpoint": student_id,
        "num_train": len(train_ds),
        "num_holdout": 0 if hold_ds is None else len(hold_ds),
        "steps": summary["steps"],
        "train_seconds": summary["seconds"],
        "holdout": evaluate_planner(model, hold_ds, fusion, student, eval_batch_size),
        "train_subset": evaluate_planner(model, train_ds, fusion, student, eval_batch_size, max_samples=256),
    }
    report["eval_seconds"] = time.time() - t0
    (out_dir / EVAL_FILE).write_text(json.dumps(report, indent=2))
    summary["eval"] = report
    return summary
