"""Per-episode pictures of closed-loop failures: road, agents, route and the driven path,
in metres (world frame), one PNG per failed episode.

``plot_episode(env, result, path)`` is called in the worker right after the episode
(``drivers.run_method_episodes(on_episode=...)``), while the env still holds its map,
route and last observation. ``is_failure(result)``: a collision, leaving the road, an
error, or the time limit before the goal.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from latentvla_ros.evaluation.geometry import box_corners


def is_failure(result: Any) -> bool:
    r = result if isinstance(result, dict) else result.to_dict(with_path=False)
    return bool(r["collision"] or r["off_road"] or r["termination"] == "error" or not r["route_completed"])


def failure_name(result: Any) -> str:
    r = result if isinstance(result, dict) else result.to_dict(with_path=False)
    return f"{r['method']}_{r['scenario']}_{int(r['seed'])}_{r['termination']}.png"


def plot_episode(env: Any, result: Any, path: str | Path, margin_m: float = 35.0) -> Path:
    """Road (drivable polygons, lane centrelines), route and goal, other agents at the last
    step (boxes), the ego's driven path and final box; axes in metres."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Polygon as PolygonPatch

    r = result if isinstance(result, dict) else result.to_dict()
    ego_path = np.asarray(r["path"], dtype=np.float64).reshape(-1, 3)
    route = np.asarray(env.route.points, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(6.4, 6.4))
    for poly in env.map.drivable_polygons:
        ax.add_patch(PolygonPatch(np.asarray(poly), closed=True, facecolor="0.82", edgecolor="none", zorder=0))
    for line in env.map.lane_centerlines:
        line = np.asarray(line)
        ax.plot(line[:, 0], line[:, 1], color="white", lw=0.6, ls="--", zorder=1)
    ax.plot(route[:, 0], route[:, 1], color="tab:blue", lw=2.0, alpha=0.6, label="route", zorder=2)
    goal = env.route.interpolate(np.array([float(env._goal_s)]))[0] if hasattr(env, "_goal_s") else route[-1]
    ax.plot(goal[0], goal[1], marker="*", ms=14, color="tab:blue", zorder=5, label="goal")
    obs = getattr(env, "_obs", None)
    agents = np.asarray(obs.agents) if obs is not None else np.zeros((0, 8))
    for a in agents:
        c = box_corners(a[0], a[1], a[2], a[3], a[4])
        ax.add_patch(PolygonPatch(c, closed=True, facecolor="tab:cyan", edgecolor="k", lw=0.6, zorder=3))
    if len(ego_path):
        speeds = np.asarray(r.get("speeds") or np.zeros(len(ego_path)))[: len(ego_path)]
        sc = ax.scatter(ego_path[:, 0], ego_path[:, 1], c=speeds, cmap="viridis", s=6, zorder=4)
        bar = fig.colorbar(sc, ax=ax, fraction=0.04, pad=0.02, label="ego speed [m/s]")
        bar.formatter.set_useOffset(False)
        bar.update_ticks()
        last = ego_path[-1]
        c = box_corners(last[0], last[1], last[2], env.ego_length_m, env.ego_width_m)
        color = "tab:red" if (r["collision"] or r["off_road"]) else "tab:green"
        ax.add_patch(PolygonPatch(c, closed=True, facecolor=color, edgecolor="k", lw=0.8, zorder=6, label="ego (end)"))
        pts = np.vstack([ego_path[:, :2], goal[None, :2]])
        lo, hi = pts.min(axis=0) - margin_m, pts.max(axis=0) + margin_m
        half = 0.5 * float(np.max(hi - lo))  # a square window: equal axes without re-limiting
        mid = 0.5 * (lo + hi)
        ax.set_xlim(mid[0] - half, mid[0] + half)
        ax.set_ylim(mid[1] - half, mid[1] + half)
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel("x [m] (world)")
    ax.set_ylabel("y [m] (world)")
    ax.set_title(f"{r['method']} | {r['scenario']} seed {r['seed']} ({r.get('turn', '')})\n"
                 f"{r['termination']} after {r['steps'] / 10:.1f} s, progress {r['progress_m']:.0f} m of "
                 f"{r.get('route_length_m', float('nan')):.0f} m", fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
