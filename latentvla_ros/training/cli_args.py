"""Arguments of `latentvla train` (kept apart so the CLI starts without importing torch)."""
from __future__ import annotations

STAGES = ("data", "lam", "teacher", "student", "planner", "dart", "ego_mlp", "all")


def add_train_parser(sub, func) -> None:
    train = sub.add_parser("train", help="run a stage of the learning pipeline (or all of them)")
    train.add_argument("stage", choices=STAGES)
    train.add_argument("--data", default="artifacts/train/data", help="directory of driving logs (created by stage data/all)")
    train.add_argument("--out", default="artifacts/train", help="output directory (checkpoints, metrics, reports)")
    train.add_argument("--preset", choices=["edge", "paper"], default="edge")
    train.add_argument("--teacher-preset", default="tiny",
                       help="teacher size: tiny (CPU) or qwen2.5-vl-3b (GPU, local --teacher-model-path)")
    train.add_argument("--teacher-model-path", default="", help="local folder with Qwen2.5-VL weights (never downloaded)")
    train.add_argument("--fusion", default="all", help="planner variants: none, student, teacher or all")
    train.add_argument("--epochs-scale", type=float, default=1.0, help="multiply every stage's epochs (tests use < 1)")
    train.add_argument("--max-steps", type=int, default=0, help="cap optimizer steps per stage (0: none)")
    train.add_argument("--batch-size", type=int, default=0, help="override every stage's batch size (0: stage default)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--threads", type=int, default=0, help="torch threads per process (0: default)")
    train.add_argument("--no-resume", action="store_true", help="start from scratch even if train_state exists")
    train.add_argument("--export-to", default="", help="copy the final edge checkpoints here (e.g. checkpoints/edge)")
    train.add_argument("--data-seeds", type=int, default=0, help="stage data: seeds per scenario (0: preset default)")
    train.add_argument("--data-frames", type=int, default=0, help="stage data: frames per log (0: preset default)")
    train.add_argument("--data-preset", choices=["", "balanced", "recovery"], default="",
                       help="stage data: 'balanced' (data/presets.py: every turn and both lane-change directions "
                            "equally often per scenario, densities 0.6/1.0/1.5; --data-seeds = seeds per scenario and "
                            "density, a multiple of 12 balances all); 'recovery': the same cells, every log perturbed "
                            "(DART: noise bursts on the expert's steering, its recoveries logged; seeds +500); "
                            "default: the model preset's data")
    train.add_argument("--dart-rounds", type=int, default=1,
                       help="stage dart: data-aggregation rounds (recovery logs + fine-tuning; 0: none)")
    train.add_argument("--dart-seeds", type=int, default=6,
                       help="stage dart: recovery-log seeds per scenario and density per round (a multiple of 6 balances the turns)")
    train.add_argument("--dart-epochs", type=int, default=4,
                       help="stage dart: fine-tuning epochs per round over all logs so far (not scaled by --epochs-scale)")
    train.add_argument("--dart-frames", type=int, default=200, help="stage dart: frames per recovery log")
    train.add_argument("--student-shift-consistency", type=float, default=0.0,
                       help="stage student: weight of the shift-consistency term (StudentConfig.shift_consistency: "
                            "the student also distilled on a one-pixel-shifted, ego-noised copy of each batch, its "
                            "action embeddings pulled to the clean ones; 0: plain distillation)")
    train.add_argument("--dart-action-jitter", type=float, default=0.0,
                       help="stage dart: after the rounds, one more round for the student-fused planner alone, fine-tuned "
                            "from the last round on all logs so far with PlannerConfig.action_jitter at this share "
                            "(the student's action embeddings from jittered inputs; 0: no such round)")
    train.add_argument("--dart-jitter-epochs", type=int, default=2,
                       help="stage dart: epochs of the action-jitter round (--dart-action-jitter)")
    train.add_argument("--recovery-data", default="",
                       help="stage dart: directory of the recovery logs (default: beside --data, named 'recovery')")
    train.add_argument("--no-round-eval", action="store_true",
                       help="stage dart: skip the closed-loop score of each round on the validation seeds")
    train.add_argument("--write-docs", action="store_true",
                       help="stage all: also write the report to docs/training.md; "
                            "stage lam: its section there, docs/training.json and docs/images/lam_atlas.png")
    train.set_defaults(func=func)
