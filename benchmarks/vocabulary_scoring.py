"""What it costs to score a trajectory vocabulary with our PDMS on training scenes (Hydra-MDP's targets).

docs/evaluation.md ("A multi-modal planner head") leaves the open-loop gap to a planner that learns the PDMS
sub-scores of a fixed set of candidate trajectories, as Hydra-MDP distils them from the rule-based scorer. The
targets are the scorer's verdicts on every (scene, candidate) pair of the training set; this measures the
scorer's cost per scene for vocabularies of several sizes, on scenes built from driving logs exactly as the
open-loop evaluation builds them (``evaluation.scenes.scene_from_log``, ``evaluation.pdms.score_trajectories``,
one process), and extrapolates it to the training set.

    python benchmarks/vocabulary_scoring.py --logs artifacts/train/data --sizes 16,64,256 --scenes 8

The candidates are the logged expert's 8 poses moved along their own path at 0 .. 1.5 x its speed and to the
side by up to 2 m (the size is speeds x offsets), so they meet the scene's agents and road edges as a real
vocabulary would; their scores are not the point here, their cost is.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def vocabulary(expert: np.ndarray, size: int) -> np.ndarray:
    """``size`` candidates (size, 8, 3) from the expert's poses (8, 3): speed scales x lateral offsets."""
    offsets = np.array([-2.0, -1.0, 0.0, 1.0, 2.0]) if size >= 20 else np.array([0.0])
    speeds = np.linspace(0.0, 1.5, max(1, size // len(offsets)))
    pts = np.vstack([np.zeros(2), expert[:, :2]])
    arc = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(pts, axis=0).T))])
    heading = np.concatenate([[0.0], expert[:, 2]])
    out = []
    for s in speeds:
        at = s * arc[1:]
        x, y, h = (np.interp(at, arc, pts[:, 0]), np.interp(at, arc, pts[:, 1]), np.interp(at, arc, heading))
        for o in offsets:
            out.append(np.stack([x - o * np.sin(h), y + o * np.cos(h), h], axis=1))
    return np.asarray(out[:size])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--logs", required=True, help="a directory of driving logs (e.g. `latentvla train data`'s)")
    ap.add_argument("--sizes", default="16,64,256", help="vocabulary sizes")
    ap.add_argument("--scenes", type=int, default=8, help="scenes per scenario (a scene every 20 frames)")
    args = ap.parse_args(argv)

    from latentvla_ros.data.log_format import DrivingLog
    from latentvla_ros.evaluation.pdms import compute_reference_progress, score_trajectories
    from latentvla_ros.evaluation.scenes import scene_from_log

    logs = sorted(p for p in Path(args.logs).iterdir() if p.is_dir() and (p / "meta.json").exists())
    if not logs:
        print(f"no driving logs in {args.logs}", file=sys.stderr)
        return 2
    by_scenario: dict[str, list[Path]] = {}
    for p in logs:
        by_scenario.setdefault(p.name.split("_")[0], []).append(p)
    sizes = [int(v) for v in args.sizes.split(",")]
    per_size: dict[int, list[float]] = {n: [] for n in sizes}
    reference_s: list[float] = []
    frames = 0
    for scenario, paths in sorted(by_scenario.items()):
        done = 0
        for path in paths:
            log = DrivingLog(path)
            frames += int(log.num_frames)
            for t in range(0, int(log.num_frames) - 45, 20):
                if done >= args.scenes:
                    break
                scene = scene_from_log(log, t)
                expert = np.asarray(scene.expert_trajectory, dtype=np.float64)
                if expert.shape != (8, 3) or not np.isfinite(expert).all():
                    continue
                t0 = time.perf_counter()
                ref = compute_reference_progress(scene)
                reference_s.append(time.perf_counter() - t0)
                for n in sizes:
                    cands = vocabulary(expert, n)
                    t0 = time.perf_counter()
                    score_trajectories(scene, list(cands), reference_progress=ref)
                    per_size[n].append((time.perf_counter() - t0) / len(cands))
                done += 1
        print(f"{scenario}: {done} scenes")
    total_frames = sum(int(DrivingLog(p).num_frames) for p in logs)
    print(f"\n{len(logs)} logs, {total_frames} frames; reference planner per scene: "
          f"median {1e3 * statistics.median(reference_s):.0f} ms")
    print(f"{'vocabulary':>10s} {'ms / candidate':>15s} {'ms / scene':>11s} {'all frames, 1 core [h]':>23s}")
    for n in sizes:
        each = statistics.median(per_size[n])
        scene_s = each * n + statistics.median(reference_s)
        print(f"{n:10d} {1e3 * each:15.2f} {1e3 * scene_s:11.0f} {scene_s * total_frames / 3600:23.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
