"""Held-out evaluation of the latent action model: does it separate ego from environment?

``evaluate_lam`` writes ``<checkpoint>/eval.json``:

- ``next_frame``: MSE of the stage-2 prediction (frame t + both codes) against the
  next frame, with the true codes, with random ego codes, with the ego codes of
  other transitions (swapped), and the copy-the-last-frame baseline.
- ``codebooks``: codes used / K, perplexity and counts of the env and ego codes;
  ``h_ego_bits`` and ``h_ego_given_env_bits`` (conditional entropy of the ego code
  given the env code: 0 when the ego code is a function of the env code).
- ``probe`` (ego motion dx, dy, dyaw of the transition) and ``probe_agents`` (the
  mean own motion of the other agents in view, training/lam_data.py
  ``agent_motion``): a per-code lookup probe (the best predictor from a code alone),
  fitted on the training transitions, maps ego codes, env codes, both, or nothing to
  the standardised targets of the held-out transitions; R^2 is the mean over the
  three targets.

training/lam_report.py turns it into docs/training.md and docs/training.json.
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from latentvla_ros.models.modeling_lam import load_lam, perplexity_from_counts
from latentvla_ros.training.lam_data import (
    LamDataError,
    agent_motion,
    ego_motion,
    encode_log,
    load_log_arrays,
    resolve_log_dirs,
    split_transitions,
)

EVAL_FILE = "eval.json"
MOTION_TARGETS = ["dx", "dy", "dyaw"]


def _r2(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float, list[float | None]]:
    """Mean R^2 over output dimensions with non-zero variance, and the per-dimension values."""
    per: list[float | None] = []
    for d in range(y_true.shape[1]):
        var = float(np.var(y_true[:, d]))
        if var < 1e-12:
            per.append(None)
            continue
        per.append(1.0 - float(np.mean((y_true[:, d] - y_pred[:, d]) ** 2)) / var)
    valid = [v for v in per if v is not None]
    return (float(np.mean(valid)) if valid else float("nan")), per


def code_probe(codes_fit: np.ndarray, y_fit: np.ndarray, codes_test: np.ndarray, y_test: np.ndarray,
               num_codes: int) -> dict[str, Any]:
    """Lookup-table probe (the optimal regressor of a one-hot code input): per-code mean of
    ``y`` (R^2 on the test part); unseen codes fall back to the global mean."""
    table = np.tile(y_fit.mean(axis=0), (num_codes, 1))
    for c in range(num_codes):
        sel = codes_fit == c
        if sel.any():
            table[c] = y_fit[sel].mean(axis=0)
    r2, per = _r2(y_test, table[codes_test])
    return {"r2": r2, "r2_per_dim": per}


def _standardise(y: np.ndarray, ref: np.ndarray) -> np.ndarray:
    return (y - ref.mean(axis=0)) / np.maximum(ref.std(axis=0), 1e-9)


def _probe(fit: tuple[np.ndarray, np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray, np.ndarray],
           k: int) -> dict[str, Any]:
    """Lookup probes fitted on ``fit`` = (env codes, ego codes, target) of the training transitions and
    scored on ``test`` (the held-out ones); targets standardised with the training statistics."""
    (env_f, ego_f, y_f), (env_t, ego_t, y_t) = fit, test
    ok_f, ok_t = np.all(np.isfinite(y_f), axis=1), np.all(np.isfinite(y_t), axis=1)
    if ok_f.sum() < 20 or ok_t.sum() < 20:
        return {"skipped": f"only {int(ok_f.sum())} / {int(ok_t.sum())} transitions with this target"}
    env_f, ego_f, y_f, env_t, ego_t, y_t = env_f[ok_f], ego_f[ok_f], y_f[ok_f], env_t[ok_t], ego_t[ok_t], y_t[ok_t]
    yf, yt = _standardise(y_f, y_f), _standardise(y_t, y_f)
    return {
        "targets": MOTION_TARGETS,
        "num_fit": int(len(yf)),
        "num_test": int(len(yt)),
        "ego": code_probe(ego_f, yf, ego_t, yt, k),
        "env": code_probe(env_f, yf, env_t, yt, k),
        "ego_env": code_probe(ego_f * k + env_f, yf, ego_t * k + env_t, yt, k * k),
        "baseline": code_probe(np.zeros(len(yf), np.int64), yf, np.zeros(len(yt), np.int64), yt, 1),
    }


def entropy_bits(counts: np.ndarray) -> float:
    p = counts[counts > 0].astype(np.float64) / max(1, counts.sum())
    return float(-(p * np.log2(p)).sum())


def conditional_entropy_bits(ego: np.ndarray, env: np.ndarray, k: int) -> float:
    """H(ego | env) in bits from the empirical joint histogram."""
    joint = np.bincount(env * k + ego, minlength=k * k).reshape(k, k)
    return entropy_bits(joint.ravel()) - entropy_bits(joint.sum(axis=1))


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (np.floating, np.integer)):
        return _json_safe(obj.item())
    return obj


def _motion_targets(log, t_idx: np.ndarray, s: int) -> tuple[np.ndarray, np.ndarray]:
    motion = np.full((len(t_idx), 3), np.nan) if log.ego_pose is None else ego_motion(log.ego_pose, t_idx, s)
    return motion, agent_motion(log, t_idx, s)


def _codes_and_targets(model, logs, parts, batch_size: int) -> tuple[np.ndarray, ...]:
    """(env codes, ego codes, ego motion, agents' motion) of the transitions ``parts`` of ``logs``."""
    out: list[list[np.ndarray]] = [[], [], [], []]
    for log, t_idx in zip(logs, parts):
        if len(t_idx) == 0:
            continue
        env, ego = encode_log(model, log, batch_size, t_idx)
        motion, agents = _motion_targets(log, t_idx, model.config.frame_stride)
        for bucket, value in zip(out, (env, ego, motion, agents)):
            bucket.append(value)
    if not out[0]:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 3)), np.zeros((0, 3))
    return tuple(np.concatenate(b) for b in out)


def holdout_of(checkpoint: Path) -> float:
    from latentvla_ros.core.checkpoint import read_checkpoint_config

    return float(read_checkpoint_config(checkpoint).get("meta", {}).get("holdout_fraction", 0.2))


@torch.no_grad()
def evaluate_lam(
    checkpoint: str | Path,
    log_dirs: str | Path | Sequence[str | Path],
    *,
    split: str = "holdout",
    holdout_fraction: float | None = None,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    out_path: str | Path | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Held-out evaluation (see the module docstring), written to ``<checkpoint>/eval.json``
    (or ``out_path``). ``holdout_fraction`` defaults to the one stored in the checkpoint."""
    checkpoint = Path(checkpoint)
    model = load_lam(checkpoint, device=device)
    cfg = model.config
    s, k_codes = cfg.frame_stride, cfg.codebook_size
    holdout_fraction = holdout_of(checkpoint) if holdout_fraction is None else holdout_fraction
    dirs = resolve_log_dirs(log_dirs)
    logs = [load_log_arrays(p, cfg) for p in dirs]
    parts = split_transitions([log.num_frames for log in logs], s, holdout_fraction)
    used_split = split
    if split == "holdout" and sum(len(t) for t in parts["holdout"]) == 0:
        used_split = "all"
    gen = torch.Generator().manual_seed(seed)
    sums = {"true": 0.0, "random": 0.0, "swapped": 0.0, "copy": 0.0}
    n_items = 0
    env_all, ego_all, motion_all, agents_all = [], [], [], []
    for log, t_idx in zip(logs, parts[used_split]):
        if len(t_idx) == 0:
            continue
        env, ego = encode_log(model, log, batch_size, t_idx)
        env_all.append(env)
        ego_all.append(ego)
        motion, agents = _motion_targets(log, t_idx, s)
        motion_all.append(motion)
        agents_all.append(agents)
        for start in range(0, len(t_idx), batch_size):
            t = torch.as_tensor(t_idx[start:start + batch_size], dtype=torch.long)
            cur, nxt = log.frames[t].to(device), log.frames[t + s].to(device)
            env_c = torch.as_tensor(env[start:start + batch_size], device=device)
            ego_c = torch.as_tensor(ego[start:start + batch_size], device=device)
            target = model.prepare_frames(nxt)
            rand = torch.randint(0, k_codes, ego_c.shape, generator=gen).to(device)
            swap = ego_c[torch.randperm(len(ego_c), generator=gen).to(device)]
            b = t.shape[0]
            for key, codes in (("true", ego_c), ("random", rand), ("swapped", swap)):
                sums[key] += float(F.mse_loss(model.decode(cur, env_c, codes), target)) * b
            sums["copy"] += float(F.mse_loss(model.prepare_frames(cur), target)) * b
            n_items += b
    if n_items == 0:
        raise LamDataError("no transitions to evaluate")
    env_codes, ego_codes = np.concatenate(env_all), np.concatenate(ego_all)
    mse = {k: v / n_items for k, v in sums.items()}
    report: dict[str, Any] = {
        "split": used_split,
        "holdout_fraction": holdout_fraction,
        "num_transitions": int(n_items),
        "num_logs": len(dirs),
        "frame_stride": s,
        "next_frame": {
            "mse": mse["true"],
            "mse_copy_last_frame": mse["copy"],
            "mse_ratio_to_copy": mse["true"] / mse["copy"] if mse["copy"] > 0 else float("nan"),
            "mse_random_ego_codes": mse["random"],
            "mse_swapped_ego_codes": mse["swapped"],
        },
        "codebooks": {},
        "h_ego_bits": entropy_bits(np.bincount(ego_codes, minlength=k_codes)),
        "h_ego_given_env_bits": conditional_entropy_bits(ego_codes, env_codes, k_codes),
    }
    for name, codes in (("env", env_codes), ("ego", ego_codes)):
        counts = np.bincount(codes, minlength=k_codes)
        report["codebooks"][name] = {
            "codes_used": int((counts > 0).sum()),
            "usage": float((counts > 0).sum()) / k_codes,
            "perplexity": perplexity_from_counts(torch.as_tensor(counts)),
            "counts": counts.tolist(),
        }
    fit_parts = parts["train"] if used_split == "holdout" else parts["all"]
    fit = _codes_and_targets(model, logs, fit_parts, batch_size)
    test_motion, test_agents = np.concatenate(motion_all), np.concatenate(agents_all)
    report["probe"] = _probe(fit[:3], (env_codes, ego_codes, test_motion), k_codes)
    report["probe_agents"] = _probe((fit[0], fit[1], fit[3]), (env_codes, ego_codes, test_agents), k_codes)
    out = Path(out_path) if out_path is not None else checkpoint / EVAL_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    report = _json_safe(report)
    out.write_text(json.dumps(report, indent=2, sort_keys=True))
    return report


__all__ = ["EVAL_FILE", "code_probe", "conditional_entropy_bits", "entropy_bits", "evaluate_lam", "holdout_of"]
