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
``latest_round`` gives the round the export uses (per fusion).

With ``--dart-action-jitter J`` one more round follows, for the student-fused planner alone: recovery
logs of its own as in any round, then fine-tuned from its last round on all logs so far with
``PlannerConfig.action_jitter = J``
(``training/planner.py``: a share J of the samples sees the student's action embeddings of a jittered
input, so the planner learns to ignore the frame-to-frame flicker of the student's tokens in closed
loop). The other planners keep their last round. When the rounds are scored, the jitter round is
kept only if the fused student's validation score is not lower than the round before's
(``rejected.json`` beside a rejected planner; ``latest_round`` skips it).
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


REJECTED_FILE = "rejected.json"


def latest_round(out: Path, fusion: str) -> int:
    """The last round whose ``fusion`` planner finished and was not rejected (0: the planner stage's)."""
    k = 0
    while (planner_dir(out, fusion, k + 1) / "eval.json").is_file() \
            and not (planner_dir(out, fusion, k + 1) / REJECTED_FILE).is_file():
        k += 1
    return k


def student_score(record: dict[str, Any], k: int) -> float | None:
    """The fused student's closed-loop validation score of round ``k`` (None: not scored)."""
    summary = record["rounds"].get(str(k), {}).get("closed_loop", {}).get("summary", {})
    score = summary.get("e2e_student", {}).get("score")
    return None if score is None else float(score)


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

    def start_round(k: int, round_fusions: tuple[str, ...]) -> tuple[dict[str, Any], float]:
        """Round k's recovery logs (teacher-labelled when the teacher planner trains), added to ``logs``."""
        t0 = time.time()
        recovery = generate_recovery(args, k, args.dart_seeds, args.dart_frames, scenarios)
        if "teacher" in round_fusions and recovery:
            label_logs(teacher, recovery)
        logs.extend(recovery)
        entry = record["rounds"].setdefault(str(k), {})
        entry["recovery_logs"] = len(recovery)
        entry.setdefault("data_seconds", time.time() - t0)  # a resumed round keeps its first measurement
        return entry, t0

    def finetune(entry: dict[str, Any], fusion: str, k: int, epochs: int, planner_config=None) -> None:
        """Round k's ``fusion`` planner from its round k - 1 on all logs so far (skipped when finished)."""
        if (planner_dir(out, fusion, k) / "eval.json").is_file():
            return
        student = out / "student_run" / "student" if fusion == "student" else None
        cfg = train_cfg_for({**ROUND_TRAIN[args.preset], "epochs": int(epochs)})
        result = train_planner(logs, planner_dir(out, fusion, k), preset=args.preset, fusion=fusion,
                               train_cfg=cfg, student_checkpoint=student, planner_config=planner_config,
                               resume=not args.no_resume, holdout_fraction=holdout_fraction,
                               init_from=planner_dir(out, fusion, k - 1))
        entry.setdefault("planners", {})[fusion] = {"steps": result["steps"], "seconds": result["seconds"],
                                                    "num_train": result.get("eval", {}).get("num_train")}

    for k in range(1, int(args.dart_rounds) + 1):
        entry, t0 = start_round(k, fusions)
        for fusion in fusions:
            finetune(entry, fusion, k, args.dart_epochs)
        entry.setdefault("train_seconds", time.time() - t0 - entry["data_seconds"])
        save()
        score(k)
    jitter = float(getattr(args, "dart_action_jitter", 0.0) or 0.0)
    if jitter > 0 and "student" in fusions:
        from latentvla_ros.models.configuration_planner import PlannerConfig

        k = int(args.dart_rounds) + 1
        entry, t0 = start_round(k, ("student",))
        entry.update(action_jitter=jitter, fusions=["student"])
        finetune(entry, "student", k, args.dart_jitter_epochs, PlannerConfig.preset(args.preset, action_jitter=jitter))
        entry.setdefault("train_seconds", time.time() - t0 - entry["data_seconds"])
        save()
        score(k)
        before, after = student_score(record, k - 1), student_score(record, k)
        if before is not None and after is not None and after < before:
            # closed loop is chaotic in the weights: one fine-tune can lose what the round before had
            # (docs/evaluation.md, "Action jitter"); the export keeps the better, scored planner
            (planner_dir(out, "student", k) / REJECTED_FILE).write_text(json.dumps(
                {"score": after, "previous_round_score": before}))
            entry["rejected"] = True
            save()
            print(f"[train] dart action-jitter round {k}: validation score {after:.1f} < round {k - 1}'s "
                  f"{before:.1f}; the export keeps round {k - 1}", flush=True)
        elif after is None:
            print(f"[train] dart action-jitter round {k}: not scored (--no-round-eval); exported unjudged", flush=True)
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
             "from training and test), every scenario; rates in [0, 1]. The shipped planners are the last round's. A round "
             "with an action jitter (`--dart-action-jitter`) fine-tunes the student-fused planner alone "
             "(the other rows of that round are the planners of the round before).", "",
             "| round | method | recovery logs | score | off-road | collisions | route completion | off-road per scenario |",
             "|---|---|---|---|---|---|---|---|"]
    for k in sorted(rounds, key=int):
        entry = rounds[k]
        for method, s in entry.get("closed_loop", {}).get("summary", {}).items():
            per = ", ".join(f"{sc} {v.get('off_road_rate', float('nan')):.2f}" for sc, v in s.get("per_scenario", {}).items())
            logs = str(entry.get("recovery_logs", 0))
            if entry.get("action_jitter"):
                logs += f" (action jitter {entry['action_jitter']:g}{', rejected' if entry.get('rejected') else ''})"
            lines.append(f"| {k} | {method} | {logs} | {s.get('score', float('nan')):.1f} | "
                         f"{s.get('off_road_rate', float('nan')):.2f} | {s.get('collision_rate', float('nan')):.2f} | "
                         f"{s.get('route_completion', float('nan')):.2f} | {per} |")
    return lines + [""]
