"""Atlas of the ego codes: what motion each of the 16 codes stands for.

``write_atlas`` encodes every transition of the logs with a trained LAM and writes,
beside the checkpoint:

- ``atlas.json``: per ego code its share of the transitions, mean and standard
  deviation of the ego motion (dx, dy in the ego frame at t, dyaw) over one
  transition, and a short name (``code_name``: "straight 24 m/s", "left 8 m/s",
  "stopped", ...);
- the names into the checkpoint's ``config.json`` (``config.code_names``), where the
  latent_reasoner node reads them for its markers;
- ``lam_atlas.png``: 16 panels (4 x 4), each a typical ego-up frame of the code (the
  transition nearest its mean motion) in metres around the ego, with the motion of
  the code's transitions drawn (dots: where the ego went; arrow: the mean).
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from latentvla_ros.core.checkpoint import CONFIG_NAME, read_checkpoint_config
from latentvla_ros.data.log_files import LogFormatError, read_meta
from latentvla_ros.models.modeling_lam import load_lam
from latentvla_ros.training.lam_data import ego_motion, encode_log, load_log_arrays, resolve_log_dirs

ATLAS_JSON = "atlas.json"
ATLAS_PNG = "lam_atlas.png"
STOPPED_MPS = 1.0
TURN_RAD_S = 0.08
DRIFT_MPS = 0.4


def code_name(mean_motion: Sequence[float], seconds: float) -> str:
    """Short name of a mean transition motion (dx, dy [m], dyaw [rad] over ``seconds``)."""
    dx, dy, dyaw = (float(v) for v in mean_motion)
    speed = math.hypot(dx, dy) / seconds
    if speed < STOPPED_MPS:
        return "stopped"
    yaw_rate = dyaw / seconds
    if abs(yaw_rate) >= TURN_RAD_S:
        kind = "left" if yaw_rate > 0 else "right"
        return f"{kind} {speed:.0f} m/s {abs(math.degrees(yaw_rate)):.0f} deg/s"
    if abs(dy / seconds) >= DRIFT_MPS:
        return f"drift {'left' if dy > 0 else 'right'} {speed:.0f} m/s"
    return f"straight {speed:.0f} m/s"


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} #{seen[name]}")
    return out


def _dt_s(path: Path) -> float:
    try:
        return float(read_meta(path).get("dt_s", 0.1))
    except (LogFormatError, ValueError, TypeError):
        return 0.1


def atlas_table(checkpoint: str | Path, log_dirs: str | Path | Sequence[str | Path]) -> dict[str, Any]:
    """Codes and motions of every transition of the logs, and the per-code statistics."""
    model = load_lam(checkpoint)
    cfg = model.config
    s, k = cfg.frame_stride, cfg.codebook_size
    codes, motions, where = [], [], []
    logs = [load_log_arrays(p, cfg) for p in resolve_log_dirs(log_dirs)]
    dt = _dt_s(logs[0].path) if logs else 0.1
    for li, log in enumerate(logs):
        if log.ego_pose is None:
            continue
        t = np.arange(max(0, log.num_frames - s))
        codes.append(encode_log(model, log, t_indices=t)[1])
        motions.append(ego_motion(log.ego_pose, t, s))
        where.append(np.stack([np.full(len(t), li), t], axis=1))
    if not codes:
        raise ValueError("no transitions with ego_pose to build an atlas from")
    code, motion, where = np.concatenate(codes), np.concatenate(motions), np.concatenate(where)
    seconds = s * dt
    scale = np.maximum(motion.std(axis=0), 1e-9)
    entries = []
    for c in range(k):
        sel = np.flatnonzero(code == c)
        if len(sel) == 0:
            entries.append({"code": c, "count": 0, "share": 0.0, "mean": [0.0, 0.0, 0.0], "std": [0.0, 0.0, 0.0],
                            "name": "unused", "example": None})
            continue
        mean, std = motion[sel].mean(axis=0), motion[sel].std(axis=0)
        nearest = sel[np.argmin((((motion[sel] - mean) / scale) ** 2).sum(axis=1))]
        entries.append({"code": c, "count": int(len(sel)), "share": len(sel) / len(code), "mean": mean.tolist(),
                        "std": std.tolist(), "name": code_name(mean, seconds),
                        "example": [int(v) for v in where[nearest]]})
    for entry, name in zip(entries, _unique([e["name"] for e in entries])):
        entry["name"] = name
    return {"num_transitions": int(len(code)), "seconds_per_transition": seconds, "codes": entries,
            "_logs": logs, "_code": code, "_motion": motion, "_where": where}


def store_code_names(checkpoint: str | Path, names: Sequence[str]) -> None:
    """Write ``code_names`` into the checkpoint's config.json (atomically)."""
    path = Path(checkpoint) / CONFIG_NAME
    payload = read_checkpoint_config(checkpoint)
    payload["config"]["code_names"] = list(names)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True))
    tmp.replace(path)


def render_atlas(table: dict[str, Any], out_png: str | Path) -> None:
    """One PNG, 4 x 4 panels: a typical frame per code with its motion drawn, axes in metres."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    logs, code, motion = table["_logs"], table["_code"], table["_motion"]
    fig, axes = plt.subplots(4, 4, figsize=(13, 14))
    for ax, entry in zip(axes.ravel(), table["codes"]):
        ax.set_title(f"{entry['code']}: {entry['name']}\n{entry['share']:.1%} (n={entry['count']})", fontsize=9)
        if entry["example"] is None:
            ax.axis("off")
            continue
        log = logs[entry["example"][0]]
        frame = log.frames[entry["example"][1]].permute(1, 2, 0).numpy()
        ahead, behind, side = log.view_m or (frame.shape[0] * 0.625, frame.shape[0] * 0.375, frame.shape[1] / 2)
        # x axis: metres to the right of the ego; y axis: metres ahead (ego-up image)
        ax.imshow(frame, extent=(-side, side, -behind, ahead), origin="upper", interpolation="nearest")
        members = motion[code == entry["code"]]
        ax.scatter(-members[:, 1], members[:, 0], s=4, c="yellow", alpha=0.5, linewidths=0)
        mx, my = entry["mean"][0], entry["mean"][1]
        ax.annotate("", xy=(-my, mx), xytext=(0.0, 0.0),
                    arrowprops={"arrowstyle": "->", "color": "red", "lw": 2})
        ax.set_xlim(-side, side)
        ax.set_ylim(-behind, ahead)
        ax.tick_params(labelsize=7)
        ax.set_xlabel(f"right [m]   dx {mx:.1f}±{entry['std'][0]:.1f} m, dyaw "
                      f"{math.degrees(entry['mean'][2]):.1f}±{math.degrees(entry['std'][2]):.1f} deg", fontsize=7)
        ax.set_ylabel("ahead [m]", fontsize=7)
    fig.suptitle(f"Ego codes of the LAM: motion over one transition ({table['seconds_per_transition']:.1f} s); "
                 "dots = where the ego went, arrow = mean", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=80)
    plt.close(fig)


def write_atlas(checkpoint: str | Path, log_dirs: str | Path | Sequence[str | Path], *,
                holdout_fraction: float | None = None, png: str | Path | None = None) -> dict[str, Any]:
    """Atlas of the ego codes over all transitions of the logs (see the module docstring);
    returns the atlas.json content. ``holdout_fraction`` is recorded only."""
    checkpoint = Path(checkpoint)
    table = atlas_table(checkpoint, log_dirs)
    store_code_names(checkpoint, [e["name"] for e in table["codes"]])
    render_atlas(table, Path(png) if png else checkpoint / ATLAS_PNG)
    atlas = {key: value for key, value in table.items() if not key.startswith("_")}
    atlas["holdout_fraction"] = holdout_fraction
    (checkpoint / ATLAS_JSON).write_text(json.dumps(atlas, indent=2))
    return atlas


__all__ = ["ATLAS_JSON", "ATLAS_PNG", "atlas_table", "code_name", "render_atlas", "store_code_names", "write_atlas"]
