"""Fine-tune a shipped planner variant with changed training settings, into a checkpoint folder that
``scripts/validation_closed_loop.py --checkpoints`` (and ``latentvla evaluate --checkpoints``) reads.

The planner (and its BEV backbone) of ``--checkpoints`` start the run (``train_planner(init_from=...)``,
as a DART round does); ``--planner-param KEY=VALUE`` changes a ``PlannerConfig`` field, training-only
ones (``action_dropout``, ``action_jitter``, ``route_dropout``) included; everything else (student, teacher, the other
variants) is copied unchanged. The training logs come from ``latentvla train data`` (e.g. the balanced
preset of ``make train``). Used for the experiment of docs/evaluation.md, "Action-embedding dropout":

    latentvla train data --out /tmp/ft --data /tmp/ft/data --data-preset balanced --data-seeds 12
    python scripts/finetune_planner.py --data /tmp/ft/data --out /tmp/ft/drop05 --epochs 3 \\
        --planner-param action_dropout=0.5
    python scripts/validation_closed_loop.py --out /tmp/val --methods latentvla_student \\
        --checkpoints /tmp/ft/drop05/checkpoints --scenarios highway,merge --seeds 30000-30024 --workers 1
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from validation_closed_loop import parse_params

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoints", default="checkpoints/edge")
    ap.add_argument("--fusion", default="student", choices=["none", "student", "teacher"])
    ap.add_argument("--data", required=True, help="directory of driving logs")
    ap.add_argument("--out", required=True, help="run directory; <out>/checkpoints is the result")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=2e-4, help="a DART round's fine-tuning rate (training/rounds.py)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-steps", type=int, default=0, help="cap optimizer steps (0: none; a smoke run)")
    ap.add_argument("--planner-param", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args(argv)

    from latentvla_ros.core.config_base import ConfigError
    from latentvla_ros.models.configuration_planner import PlannerConfig
    from latentvla_ros.training.common import TrainConfig
    from latentvla_ros.training.planner import train_planner

    ck, out = Path(args.checkpoints), Path(args.out)
    variant = ck / "variants" / args.fusion
    start = variant if (variant / "planner").exists() else ck
    shipped = json.loads((start / "planner" / "config.json").read_text())["config"]
    if shipped.get("fusion") != args.fusion:
        print(f"{start / 'planner'} has fusion={shipped.get('fusion')!r}, not {args.fusion!r}", file=sys.stderr)
        return 2
    try:
        cfg = PlannerConfig.from_dict({**shipped, **dict(parse_params(args.planner_param))})
    except (TypeError, ConfigError) as exc:
        print(f"bad --planner-param: {exc}", file=sys.stderr)
        return 2
    logs = sorted(p for p in Path(args.data).iterdir() if p.is_dir())
    if not logs:
        print(f"no logs in {args.data}", file=sys.stderr)
        return 2
    train_cfg = TrainConfig(batch_size=args.batch_size, lr=args.lr, warmup_steps=20, epochs=args.epochs, seed=args.seed,
                            torch_threads=args.threads, max_steps=args.max_steps)
    result = train_planner(logs, out / "run", preset="edge", fusion=args.fusion, train_cfg=train_cfg,
                           student_checkpoint=ck / "student" if args.fusion == "student" else None,
                           planner_config=cfg, init_from=start, holdout_fraction=0.05, eval_every_epoch=False)
    dst = out / "checkpoints"
    shutil.copytree(ck, dst, dirs_exist_ok=True)
    targets = [dst / "variants" / args.fusion] if (dst / "variants" / args.fusion).exists() else []
    if args.fusion == "student":  # the default graph's planner is the student-fused one
        targets.append(dst)
    for target in targets:
        for sub in ("planner", "bev_backbone"):
            shutil.rmtree(target / sub, ignore_errors=True)
            shutil.copytree(out / "run" / sub, target / sub)
            (target / sub / "model.onnx").unlink(missing_ok=True)  # the shipped export is of the old weights
    print(f"{result['steps']} steps in {result['seconds'] / 60:.1f} min; hold-out {result.get('eval', {}).get('holdout')}")
    print(f"checkpoints: {dst}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
