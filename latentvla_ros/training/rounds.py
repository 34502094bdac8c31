"""Stage ``dart``: closed-loop data aggregation rounds for the planners (issue 12, item 4).

Imitation on the expert's own logs never shows the planner a state off the expert's
path, so its errors compound in closed loop. Each round here:

1. generates recovery logs (``data/presets.py`` preset ``recovery``: the expert drives
   with short bursts of steering noise and steers back; only frames whose whole 4 s
   horizon is noise-free carry a trajectory label, so every label is the clean expert's
   recovery, as DART (Laskey et al. 2017) prescribes), on seeds of their own;
2. labels them with the teacher (the teacher-fused planner reads ``teacher_context``);
3. fine-tunes every planner variant from the previous round's weights on all logs so far
   (the balanced logs + every round's recovery logs);
4. scores the round's planners in closed loop on the validation seeds
   (``data/splits.py``: ``VALIDATION_CLOSED_LOOP_SEEDS``, disjoint from training and test)
   when the caller passes an evaluator (the CLI does: ``apps/round_eval.py``; the
   training layer never imports the evaluation apps).

Round 0 is the planner stage's result (``planner_<fusion>``); round k writes
``planner_<fusion>_r<k>``; ``rounds.json`` holds each round's closed-loop score and
``latest_round`` gives the round the export uses.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROUNDS_FILE = "rounds.json"
#: fine-tuning per round: all logs so far at a lower learning rate (epochs: ``--dart-epochs``)
ROUND_TRAIN = {"edge": dict(batch_size=32, lr=2e-4, warmup_steps=20),
               "paper": dict(batch_size=64, lr=5e-5, warmup_steps=200)}

RoundEvaluator = Callable[[Path, Path, int], dict[str, Any]]
"""``evaluate(out, work_dir, round) -> summary``: closed-loop scores of round ``round``'s planners."""


def planner_dir(out: Path, fusion: str, round_index: int) -> Path:
    return Path(out) / (f"planner_{fusion}" if round_index == 0 else f"planner_{fusion}_r{round_index}")


def latest_round(out: Path, fusion: str) -> int:
    """The last round whose ``fusion`` planner finished (0: the planner stage's)."""
    k = 0
    while (planner_dir(out, fusion, k + 1) / "eval.json").is_file():
        k += 1
    return k


def recovery_root(args) -> Path:
    return Path(args.recovery_data) if getattr(args, "recovery_data", "") else Path(args.data).parent / "recovery"


def generate_recovery(args, round_index: int, seeds_per_cell: int, frames: int, scenarios: tuple[str, ...]) -> list[Path]:
    """Round ``round_index``'s recovery logs under ``<recovery root>/r<k>`` (existing logs are kept)."""
    from latentvla_ros.data.highway import run_generation_jobs
    from latentvla_ros.data.log_format import list_logs
    from latentvla_ros.data.presets import preset_jobs

    root = recovery_root(args) / f"r{round_index}"
    jobs = preset_jobs("recovery", root, seeds_per_cell, frames, seed_start=int(getattr(args, "seed", 0)) * 1000,
                       scenarios=scenarios, round_index=round_index)
    todo = [j for j in jobs if not (Path(j["out_dir"]) / "meta.json").is_file()]
    if todo:
        run_generation_jobs(todo, workers=1)
    return [Path(p) for p in list_logs(root)]


def run_rounds(args, out: Path, base_logs: list[Path], fusions: tuple[str, ...], scenarios: tuple[str, ...],
               train_cfg_for: Callable[[dict], Any], evaluate: RoundEvaluator | None = None,
               holdout_fraction: float = 0.2) -> dict[str, Any]:
    """Rounds 1..``args.dart_rounds`` (see the module doc); returns the ``rounds.json`` content.

    The logs are passed in order (``base_logs`` first, then each round's recovery logs), so
    the whole-log hold-out (``split_holdout``: every 1/fraction-th log) keeps the same
    balanced logs out of training in every round and adds some recovery logs to them."""
    from latentvla_ros.training.planner import train_planner
    from latentvla_ros.training.teacher import label_logs

    out = Path(out)
    path = out / ROUNDS_FILE
    record: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {"rounds": {}}

    def save() -> None:
        path.write_text(json.dumps(record, indent=2))

    def score(k: int) -> None:
        if evaluate is None or str(k) in record["rounds"] and "closed_loop" in record["rounds"][str(k)]:
            return
        t0 = time.time()
        entry = record["rounds"].setdefault(str(k), {})
        entry["closed_loop"] = evaluate(out, out / "round_eval" / f"r{k}", k)
        entry["eval_seconds"] = time.time() - t0
        save()
        print(f"[train] dart round {k}: closed loop {json.dumps(entry['closed_loop'].get('summary', {}))}", flush=True)

    score(0)
    logs = list(base_logs)
    teacher = out / "teacher_run" / "teacher"
    for k in range(1, int(args.dart_rounds) + 1):
        t0 = time.time()
        recovery = generate_recovery(args, k, args.dart_seeds, args.dart_frames, scenarios)
        if "teacher" in fusions and recovery:
            label_logs(teacher, recovery)
        logs += recovery
        entry = record["rounds"].setdefault(str(k), {})
        entry["recovery_logs"] = len(recovery)
        entry.setdefault("data_seconds", time.time() - t0)  # a resumed round keeps its first measurement
        for fusion in fusions:
            if (planner_dir(out, fusion, k) / "eval.json").is_file():
                continue
            student = out / "student_run" / "student" if fusion == "student" else None
            cfg = train_cfg_for({**ROUND_TRAIN[args.preset], "epochs": int(args.dart_epochs)})
            result = train_planner(logs, planner_dir(out, fusion, k), preset=args.preset, fusion=fusion,
                                   train_cfg=cfg, student_checkpoint=student,
                                   resume=not args.no_resume, holdout_fraction=holdout_fraction,
                                   init_from=planner_dir(out, fusion, k - 1))
            entry.setdefault("planners", {})[fusion] = {"steps": result["steps"], "seconds": result["seconds"],
                                                        "num_train": result.get("eval", {}).get("num_train")}
        entry.setdefault("train_seconds", time.time() - t0 - entry["data_seconds"])
        save()
        score(k)
    return record


def rounds_report_lines(out: Path) -> list[str]:
    """docs/training.md section: each round's data and closed-loop score on the validation seeds."""
    path = Path(out) / ROUNDS_FILE
    if not path.is_file():
        return []
    rounds = json.loads(path.read_text()).get("rounds", {})
    lines = ["## Closed-loop data aggregation (stage dart)", "",
             "Round 0 is the planner stage; each further round adds recovery logs (the expert with bursts of steering "
             "noise, labelled only where the 4 s horizon is noise-free) and fine-tunes every planner from the previous "
             "round. Scores: closed loop on the validation seeds (data/splits.py VALIDATION_CLOSED_LOOP_SEEDS, disjoint "
             "from training and test), every scenario; rates in [0, 1]. The shipped planners are the last round's.", "",
             "| round | method | recovery logs | score | off-road | collisions | route completion | off-road per scenario |",
             "|---|---|---|---|---|---|---|---|"]
    for k in sorted(rounds, key=int):
        entry = rounds[k]
        for method, s in entry.get("closed_loop", {}).get("summary", {}).items():
            per = ", ".join(f"{sc} {v.get('off_road_rate', float('nan')):.2f}" for sc, v in s.get("per_scenario", {}).items())
            lines.append(f"| {k} | {method} | {entry.get('recovery_logs', 0)} | {s.get('score', float('nan')):.1f} | "
                         f"{s.get('off_road_rate', float('nan')):.2f} | {s.get('collision_rate', float('nan')):.2f} | "
                         f"{s.get('route_completion', float('nan')):.2f} | {per} |")
    return lines + [""]
