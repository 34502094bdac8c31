"""The closed-loop score of one data-aggregation round (``training/rounds.py``), for ``latentvla train``.

The training layer cannot import the evaluation apps, so the CLI hands this evaluator to
the ``dart`` stage. It exports round k's checkpoints (no ONNX) into ``work_dir`` and runs the
same closed-loop suite as ``latentvla evaluate`` on the validation seeds
(``data/splits.py``: ``VALIDATION_CLOSED_LOOP_SEEDS``; never the test seeds) for the learned
planners and the expert (whose progress is EP's reference).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROUND_METHODS = ("latentvla_none", "latentvla_student", "latentvla_teacher", "expert")
KEYS = ("score", "collision_rate", "off_road_rate", "route_completion")


def evaluate_round(out: Path, work_dir: Path, round_index: int, workers: int = 2) -> dict[str, Any]:
    """``{"seeds": [...], "episodes": n, "summary": {method: {score, rates, per_scenario}}}``."""
    from latentvla_ros.apps.evaluate import EvalPlan, run_evaluation
    from latentvla_ros.data.splits import VALIDATION_CLOSED_LOOP_SEEDS
    from latentvla_ros.training.pipeline import export_checkpoints

    work_dir = Path(work_dir)
    ckpts = work_dir / "checkpoints"
    export_checkpoints(Path(out), ckpts, round_index=round_index, onnx=False)
    plan = EvalPlan(run_open_loop=False, closed_loop_seeds=VALIDATION_CLOSED_LOOP_SEEDS,
                    closed_loop_methods=ROUND_METHODS, ros_subset_seeds=(), failure_pictures=False,
                    bootstrap_samples=500)
    run_evaluation(plan, work_dir, ckpts, workers, train_data=None,
                   command=f"latentvla train dart (round {round_index} closed-loop validation)")
    from latentvla_ros.evaluation.results_json import PUBLIC_NAMES

    headline = json.loads((work_dir / "results.json").read_text())["closed_loop"]
    names = [PUBLIC_NAMES[m] for m in ROUND_METHODS]
    summary = {m: {k: headline[m].get(k) for k in KEYS} | {
        "per_scenario": {sc: {k: v.get(k) for k in KEYS} for sc, v in headline[m].get("per_scenario", {}).items()}}
        for m in names if m in headline}
    return {"seeds": list(VALIDATION_CLOSED_LOOP_SEEDS), "episodes": sum(h.get("episodes", 0) for h in headline.values()),
            "summary": summary}
