"""How much recovery a set of (DART-perturbed) logs holds, per scenario.

``python -m latentvla_ros.data.recovery_report ROOT [ROOT ...]`` prints, per scenario: logs,
how many ended early (off_road / crashed), the share of perturbed steps, frames with a clean
(expert) future, the executed steering offsets, and the lateral deviation from the nearest
lane centre line: its maximum per burst (from the burst's start until 2 s after its end)
against the same statistic over the log's clean stretches. ``--json`` writes it as JSON.
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from latentvla_ros.data.log_format import DrivingLog, list_logs
from latentvla_ros.data.perturbation import read_perturbation

AFTER_BURST_S = 2.0


def lateral_deviation(points_xy: np.ndarray, centerlines: Sequence[np.ndarray]) -> np.ndarray:
    """(N,) distance [m] of each point to the nearest lane centre-line segment."""
    pts = np.asarray(points_xy, dtype=np.float64)[:, :2]
    best = np.full(len(pts), np.inf)
    for line in centerlines:
        a, b = np.asarray(line[:-1], dtype=np.float64), np.asarray(line[1:], dtype=np.float64)
        ab = b - a
        denom = np.maximum(np.sum(ab * ab, axis=1), 1e-12)
        rel = pts[:, None, :] - a[None]
        u = np.clip(np.sum(rel * ab[None], axis=2) / denom[None], 0.0, 1.0)
        d = np.linalg.norm(rel - u[..., None] * ab[None], axis=2)
        best = np.minimum(best, d.min(axis=1))
    return best


def bursts(active: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) step ranges of the runs of True in ``active``."""
    edges = np.diff(np.concatenate([[0], active.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def log_summary(log: DrivingLog) -> dict:
    pert = read_perturbation(log)
    n = log.num_frames
    active = np.zeros(n, bool) if pert is None else np.any(pert != 0.0, axis=1)
    dev = lateral_deviation(np.asarray(log.ego_pose_array), log.map.lane_centerlines)
    after = int(round(AFTER_BURST_S / log.dt_s))
    burst_max, near = [], np.zeros(n, bool)
    for s, e in bursts(active):
        # the state after step e-1 is frame e: the burst's drift shows in frames s+1 .. e + after
        near[s:min(e + after + 1, n)] = True
        burst_max.append(float(dev[s:min(e + after + 1, n)].max()))
    return {
        "scenario": str(log.meta.get("scenario", "?")), "frames": n, "reason": str(log.meta.get("terminated_reason", "")),
        "perturbed_steps": int(active.sum()), "clean_future": int(np.asarray(log.future_valid).sum()),
        "steer_abs": np.abs(pert[active, 0]).tolist() if pert is not None else [],
        "burst_max_dev": burst_max, "clean_dev": dev[~near].tolist(),
    }


def _pct(values: Sequence[float]) -> dict:
    if not len(values):
        return {}
    v = np.asarray(values, dtype=np.float64)
    return {k: round(float(np.percentile(v, q)), 3) for k, q in (("p10", 10), ("p50", 50), ("p90", 90), ("max", 100))}


def recovery_report(log_dirs: Sequence[str | Path]) -> dict:
    """Per scenario (and 'all'): the numbers the module docstring lists."""
    rows = [log_summary(DrivingLog(d)) for d in log_dirs]
    out = {}
    for sc in sorted({r["scenario"] for r in rows}) + ["all"]:
        sel = [r for r in rows if sc in ("all", r["scenario"])]
        frames = sum(r["frames"] for r in sel)
        out[sc] = {
            "logs": len(sel), "frames": frames,
            "ended": {k: sum(r["reason"] == k for r in sel) for k in ("off_road", "crashed")},
            "perturbed_step_share": round(sum(r["perturbed_steps"] for r in sel) / max(frames, 1), 3),
            "clean_future_frames": sum(r["clean_future"] for r in sel),
            "clean_future_share": round(sum(r["clean_future"] for r in sel) / max(frames, 1), 3),
            "bursts": sum(len(r["burst_max_dev"]) for r in sel),
            "steering_offset_rad": _pct([x for r in sel for x in r["steer_abs"]]),
            "burst_max_lateral_dev_m": _pct([x for r in sel for x in r["burst_max_dev"]]),
            "clean_lateral_dev_m": _pct([x for r in sel for x in r["clean_dev"]]),
        }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+", type=Path)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    logs = [p for root in args.roots for p in list_logs(root)]
    if not logs:
        raise SystemExit(f"no driving logs under {[str(r) for r in args.roots]}")
    report = recovery_report(logs)
    for sc, row in report.items():
        print(f"{sc}: {json.dumps(row)}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
