"""The evaluation's report: markdown tables, summary plots, machine info and
``docs/results.md`` (split out of ``apps/evaluate.py``)."""
from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from latentvla_ros.data import splits

METHOD_LABELS = {
    "constant_velocity": "Constant velocity",
    "ego_mlp": "Ego-status MLP",
    "pdm_closed": "Reference planner (PDM-Closed-style)",
    "latentvla_none": "E2E planner, no fusion",
    "latentvla_student": "LatentVLA, fused with distilled student",
    "latentvla_teacher": "LatentVLA, fused with teacher",
    "latentvla_student_shuffled": "Fused student, tokens shuffled across frames",
    "latentvla_student_zeroed": "Fused student, action embeddings zeroed",
    "latentvla_student_unguarded": "Fused student without the obstacle guard (the model alone)",
    "latentvla_student_ros": "Fused student through the ROS 2 graph (subset)",
    "expert": "Expert (ceiling)",
}


def _fmt(stat: dict, scale: float = 100.0, digits: int = 1) -> str:
    if not stat or not np.isfinite(stat.get("mean", float("nan"))):
        return "-"
    return f"{stat['mean'] * scale:.{digits}f}"


def _fmt_ci(stat: dict, scale: float = 100.0, digits: int = 1) -> str:
    if not stat or not np.isfinite(stat.get("mean", float("nan"))):
        return "-"
    return f"{stat['mean'] * scale:.{digits}f} [{stat['ci_low'] * scale:.{digits}f}, {stat['ci_high'] * scale:.{digits}f}]"


def markdown_tables(result: dict) -> str:
    methods = result["methods"]
    lines = []
    ol = result.get("open_loop", {})
    if ol:
        lines += ["### Open loop (PDMS on held-out logs, x100, mean [95% CI])", "",
                  "| Method | Status | Scenes | PDMS | NC | DAC | TTC | EP | C |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for name in ol.get("methods", []):
            s = ol["summary"].get(name, {})
            status = methods[name]["status"]
            label = METHOD_LABELS.get(name, name)
            if not s:
                lines.append(f"| {label} | {status} | 0 | - | - | - | - | - | - |")
                continue
            lines.append(f"| {label} | {status} | {s['n']} | {_fmt_ci(s['pdms'])} | {_fmt(s['nc'])} | {_fmt(s['dac'])} | "
                         f"{_fmt(s['ttc'])} | {_fmt(s['ep'])} | {_fmt(s['c'])} |")
        lines.append("")
    cl = result.get("closed_loop", {})
    if cl:
        lines += ["### Closed loop (highway-env episodes, mean [95% CI])", "",
                  "| Method | Status | Episodes | Score x100 | Collision % (at fault) | Any contact % | Off-road % | Route done % | "
                  "Route completion % | Progress m | Speed m/s | Comfort % | Planner ms |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for name in cl.get("methods", []):
            s = cl["summary"].get(name, {})
            status = cl.get("status", {}).get(name) or methods.get(name, {}).get("status", "")
            label = METHOD_LABELS.get(name, name)
            if not s:
                lines.append(f"| {label} | {status} | 0 | - | - | - | - | - | - | - | - | - | - |")
                continue
            lines.append(
                f"| {label} | {status} | {s['n']} | {_fmt_ci(s['score'])} | {_fmt(s.get('at_fault_collision', {}))} | "
                f"{_fmt(s['collision'])} | {_fmt(s['off_road'])} | "
                f"{_fmt(s['route_completed'])} | {_fmt(s.get('route_completion', {}))} | "
                f"{_fmt_ci(s['progress_m'], 1.0)} | {_fmt(s['mean_speed_mps'], 1.0)} | "
                f"{_fmt(s['comfort'])} | {_fmt(s.get('plan_ms', {}), 1.0, 0)} |")
        lines.append("")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- plots
def plot_bars(summary: dict, metric: str, methods: Sequence[str], path: Path, title: str, scale: float = 100.0,
              untrained: Sequence[str] = ()) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [m for m in methods if m in summary]
    fig, ax = plt.subplots(figsize=(8, 0.55 * max(len(names), 1) + 1.2))
    if names:
        means = np.array([summary[m][metric]["mean"] for m in names]) * scale
        lo = np.array([summary[m][metric]["ci_low"] for m in names]) * scale
        hi = np.array([summary[m][metric]["ci_high"] for m in names]) * scale
        err = np.vstack([np.nan_to_num(means - lo), np.nan_to_num(hi - means)])
        y = np.arange(len(names))
        colors = ["tab:gray" if m in ("expert", "constant_velocity", "ego_mlp", "pdm_closed") else "tab:blue" for m in names]
        ax.barh(y, np.nan_to_num(means), xerr=err, color=colors, capsize=4)
        ax.set_yticks(y, [METHOD_LABELS.get(m, m) + (" (UNTRAINED)" if m in untrained else "") for m in names])
        ax.invert_yaxis()
        for yi, m in zip(y, means):
            ax.text(max(np.nan_to_num(m), 0) + 1, yi, f"{m:.1f}", va="center", fontsize=8)
    ax.set_xlim(0, 112)
    ax.set_xlabel(f"{metric} x{scale:g} (mean, 95% bootstrap CI)")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_examples(examples: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(len(examples), 1)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 4.6), squeeze=False)
    colors = {"expert": "white", "constant_velocity": "tab:gray", "ego_mlp": "tab:olive", "pdm_closed": "tab:orange",
              "latentvla_none": "tab:cyan", "latentvla_student": "tab:red", "latentvla_teacher": "tab:purple"}
    for ax, ex in zip(axes[0], examples):
        img = np.asarray(ex["image"], dtype=np.uint8)
        ax.imshow(img)
        c0, r0 = ex["ego_pixel_xy"]
        mpp = ex["meters_per_pixel"]
        for name, poses in ex["trajectories"].items():
            p = np.vstack([[0.0, 0.0, 0.0], np.asarray(poses)])
            cols, rows = c0 - p[:, 1] / mpp, r0 - p[:, 0] / mpp
            style = dict(lw=2.5, ls="--") if name == "expert" else dict(lw=1.5)
            label = f"{name} ({ex['pdms'].get(name, float('nan')) * 100:.0f})"
            ax.plot(cols, rows, marker="o", ms=2.5, color=colors.get(name, "tab:green"), label=label, **style)
        ax.set_xlim(0, img.shape[1] - 1)
        ax.set_ylim(img.shape[0] - 1, 0)
        ax.set_title(f"{ex['scenario']} seed {ex['seed']} frame {ex['frame']}", fontsize=9)
        ax.axis("off")
        ax.legend(fontsize=6, loc="lower left", framealpha=0.7)
    fig.suptitle("Ego-up camera, planned trajectories\n(PDMS x100; dashed white = expert log)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_paths(episodes: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first: dict[str, tuple[str, int]] = {}
    for sc, sd in sorted({(e["scenario"], e["seed"]) for e in episodes}):
        first.setdefault(sc, (sc, sd))  # first seed of each scenario
    keys = list(first.values())
    n = max(len(keys), 1)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 4.2), squeeze=False)
    for ax, (sc, sd) in zip(axes[0], keys):
        for e in episodes:
            if (e["scenario"], e["seed"]) != (sc, sd) or not e.get("path"):
                continue
            p = np.asarray(e["path"])
            ax.plot(p[:, 0], p[:, 1], lw=2.0 if e["method"] == "expert" else 1.2, label=f"{e['method']} ({e['termination']})")
            ax.plot(p[-1, 0], p[-1, 1], "x", color="k", ms=4)
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_title(f"{sc} seed {sd}", fontsize=9)
        ax.legend(fontsize=6)
    fig.suptitle("Closed-loop driven paths (world frame)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------- docs
def write_results_doc(path: Path, result: dict, out: Path, extra_tables: str = "") -> None:
    meta = result["meta"]
    m = meta["machine"]
    # the plots go next to the doc (docs/images/), so the committed doc shows them
    images = path.parent / "images"
    images.mkdir(parents=True, exist_ok=True)
    for name in ("open_loop_pdms.png", "closed_loop_score.png", "examples.png", "closed_loop_paths.png"):
        if (out / name).is_file():
            shutil.copyfile(out / name, images / f"results_{name}")
    rel_out = "images/results_"
    lines = [
        "# Results",
        "",
        "Generated by `latentvla evaluate` (`latentvla_ros/apps/evaluate.py`); do not edit by hand.",
        "",
        f"- Date: {meta['date']}",
        f"- Command: `{meta['command']}`",
        f"- Machine: {m.get('cpu', '?')}, {m.get('cores', m.get('cpu_count'))} CPUs, {m.get('platform')}, torch {m.get('torch', '?')}"
        f"{' (CUDA)' if m.get('cuda') else ' (CPU only)'}; load average at the end {m.get('load_average')}",
        f"- Wall time: {meta['wall_s']:.0f} s with {meta['workers']} worker process(es)"
        f"{' (--quick)' if meta['quick'] else ''}",
        f"- Checkpoints: `{meta['checkpoints']}`",
        "",
        "## Splits",
        "",
        f"- Open loop: held-out highway-env logs, scenarios {', '.join(meta['plan']['scenarios'])}, seeds "
        f"{meta['plan']['open_loop_seeds']} (density {meta['plan']['density']}), {meta['plan']['open_loop_frames']} "
        f"frames each, a scene every {meta['plan']['scene_stride']} frames with 4 s of logged future.",
        f"- Closed loop: {len(meta['plan']['closed_loop_seeds'])} seeds per scenario "
        f"({meta['plan']['closed_loop_seeds'][0]}..{meta['plan']['closed_loop_seeds'][-1]}), each a mission "
        "(`data/missions.py`: highway 300 m, merge 350 m, roundabout and intersection to the exit the seed asks for, "
        "left / straight / right in turn), time limit "
        f"{meta['plan']['closed_loop_steps'] or 'per mission'} (steps of 0.1 s); every method on the same seeds, our "
        "variants through the core stages the nodes run, and the fused student also through the ROS 2 graph on seeds "
        f"{meta['plan']['ros_subset_seeds']}.",
        f"- Seeds >= {splits.RESERVED_SEED_START} are reserved for evaluation; training data uses smaller seeds.",
        "",
        "## Tables",
        "",
        markdown_tables(result),
        extra_tables,
        "Every number above is also in `results.json` beside this page (`evaluation/results_json.py` documents its "
        "shape); failure pictures of every failed closed-loop episode are written to `<out>/failures/`.",
        "",
        "## Plots",
        "",
        f"![open-loop PDMS]({rel_out}open_loop_pdms.png)",
        "",
        f"![closed-loop score]({rel_out}closed_loop_score.png)",
        "",
        f"![examples]({rel_out}examples.png)",
        "",
        f"![closed-loop paths]({rel_out}closed_loop_paths.png)",
        "",
        "## How to read this",
        "",
        "- Open-loop PDMS follows NAVSIM v1.1 (`evaluation/pdms.py`): NC x DAC x (5 TTC + 5 EP + 2 C) / 12 after a 4 s "
        "LQR-tracked simulation, agents replayed from the log; EP relative to the reference planner.",
        "- Closed-loop score: NC x DAC x (5 EP + 2 C) / 7 on the driven path: NC = 0 after an at-fault collision "
        "(NAVSIM's rules, `evaluation/collisions.py`, the open-loop scorer's function: not at fault when the ego is "
        "stopped, is hit from behind, or is hit from the side inside its own lane; 0.5 for a static object), DAC = 0 "
        "after leaving the road (every episode still ends at its first contact: 'Any contact'), EP = progress / "
        "max(progress, expert progress on the same seed), C = share of 4 s windows meeting NAVSIM's comfort bounds. "
        "Route done = share of episodes reaching the mission's goal; route completion (results.json) = mean share "
        "of the route driven. Our variants drive through the same core stages "
        "the ROS nodes run (frames built as sensor_sync builds them); the '... through the ROS 2 graph' row drives "
        "through the node graph itself (sim bridge -> sensor topics -> graph -> PlannedTrajectory with the frame's "
        "stamp -> pure pursuit -> highway-env); baselines use the same env loop, sensors and tracker. Paired "
        "differences: same (scenario, seed), score points, bootstrap over episodes.",
        "- 'not available' = the checkpoint is missing (never substituted); 'UNTRAINED' = random weights "
        "(`--allow-untrained`), meaningless as a score.",
        "",
    ]
    if meta.get("errors"):
        lines += ["## Errors during the run", ""] + [f"- `{e.splitlines()[0][:300]}`" for e in meta["errors"][:20]] + [""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
