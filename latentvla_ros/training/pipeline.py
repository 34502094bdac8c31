"""`latentvla train <stage>`: the LatentVLA learning pipeline, stage by stage or all at once.

    data     driving logs from highway-env (training seeds only; evaluation seeds are reserved)
    lam      latent action model (environmental then ego stage); labels every log with ego codes
    teacher  Qwen2.5-VL fine-tuned with NLL on the 12 latent ego tokens; soft labels for every frame
    student  decision transformer distilled from the teacher (KL + hard labels)
    planner  TransFuser-style E2E planner, three variants: no fusion / fused student / fused teacher
    ego_mlp  the ego-status MLP baseline of NAVSIM (for `latentvla evaluate`)
    all      the whole chain, skipping stages already finished (``<out>/<stage>/DONE.json``)

Every stage is seeded, resumable, logs CSV + TensorBoard and writes safetensors checkpoints
with a JSON config beside them. Under ``torchrun --nproc_per_node N`` the training stages use
DDP; data generation and labeling run on rank 0 while the others wait.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import time
from pathlib import Path
from typing import Any

from latentvla_ros.training.common import TrainConfig
from latentvla_ros.training.lam_report import fmt_value as _fmt

FUSIONS = ("none", "student", "teacher")
# Whole logs held out for the student and planner reports: every 5th log, which with
# logs sorted by scenario holds out one log of each scenario.
HOLDOUT_FRACTION = 0.2


# Stage sizes for the shipped edge models: the whole chain trains on 2 CPU cores in well
# under an hour. The paper preset keeps the same structure with the paper's model sizes.
EDGE_DATA = {"scenarios": ("highway", "merge", "roundabout", "intersection"), "seeds": 5, "frames": 160, "densities": (1.0,)}
PAPER_DATA = {"scenarios": ("highway", "merge", "roundabout", "intersection"), "seeds": 64, "frames": 400, "densities": (0.7, 1.0, 1.4)}


# The tiny teacher trains on CPU; the 3B one needs a GPU (bf16, small batches).
TEACHER_TRAIN = {
    "tiny": TrainConfig(epochs=8, batch_size=32, lr=2e-3, warmup_steps=50),
    "qwen2.5-vl-3b": TrainConfig(epochs=3, batch_size=4, lr=2e-5, warmup_steps=100),
}


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _done_marker(out: Path, stage: str) -> Path:
    return out / stage / "DONE.json"


def _finished(out: Path, stage: str, resume: bool) -> bool:
    return resume and _done_marker(out, stage).is_file()


def _mark_done(out: Path, stage: str, info: dict[str, Any]) -> None:
    if _rank() == 0:
        _done_marker(out, stage).parent.mkdir(parents=True, exist_ok=True)
        _done_marker(out, stage).write_text(json.dumps(info, indent=2, default=str))


def _scaled(cfg: TrainConfig, args) -> TrainConfig:
    data = cfg.to_dict()
    data["epochs"] = max(1, round(cfg.epochs * args.epochs_scale))
    if args.max_steps:
        data["max_steps"] = args.max_steps
    if args.batch_size:
        data["batch_size"] = args.batch_size
    if args.threads:
        data["torch_threads"] = args.threads
    data["seed"] = args.seed
    return TrainConfig.from_dict(data)


def _logs(data_dir: Path) -> list[Path]:
    from latentvla_ros.data.log_format import list_logs

    logs = [Path(p) for p in list_logs(data_dir)]
    if not logs:
        raise SystemExit(f"no driving logs under {data_dir}: run `latentvla train data` first")
    return logs


def stage_data(args, out: Path) -> dict[str, Any]:
    from latentvla_ros.data.highway import generate_dataset
    from latentvla_ros.data.splits import check_training_seeds

    spec = EDGE_DATA if args.preset == "edge" else PAPER_DATA
    seeds = list(range(args.seed * 1000, args.seed * 1000 + (args.data_seeds or spec["seeds"])))
    check_training_seeds(seeds)
    if _rank() == 0 and getattr(args, "data_preset", ""):
        from latentvla_ros.data.highway import run_generation_jobs
        from latentvla_ros.data.presets import preset_jobs

        run_generation_jobs(preset_jobs(args.data_preset, args.data, len(seeds), args.data_frames or spec["frames"],
                                        seed_start=seeds[0], scenarios=spec["scenarios"]), workers=1)
    elif _rank() == 0:
        generate_dataset(args.data, scenarios=spec["scenarios"], seeds=seeds, densities=spec["densities"],
                         frames_per_log=args.data_frames or spec["frames"], workers=1)
    _barrier()
    logs = _logs(Path(args.data))
    return {"logs": len(logs), "seeds": seeds}


def stage_lam(args, out: Path) -> dict[str, Any]:
    from latentvla_ros.training.lam import default_train_configs, label_logs_with_lam, train_lam

    s1, s2 = default_train_configs(args.preset)
    result = train_lam(_logs(Path(args.data)), out / "lam_run", preset=args.preset, train_cfg_stage1=_scaled(s1, args),
                       train_cfg_stage2=_scaled(s2, args), resume=not args.no_resume, label=False)
    if _rank() == 0:
        label_logs_with_lam(out / "lam_run" / "lam", _logs(Path(args.data)))
        write_lam_report(args, out)
    _barrier()
    return {key: value for key, value in result.items() if key != "eval"}


def write_lam_report(args, out: Path) -> None:
    """``<out>/lam_report.md``: the LAM section (probes, reconstruction, codebooks, atlas); with
    ``--write-docs`` also docs/training.md's LAM section, docs/training.json and the atlas image."""
    from latentvla_ros.core.resources import share_path
    from latentvla_ros.training.lam_report import write_lam_docs

    command = (f"latentvla train {args.stage} --out {args.out} --data {args.data}"
               + (f" --threads {args.threads}" if args.threads else "")
               + (f" --epochs-scale {args.epochs_scale}" if args.epochs_scale != 1.0 else "")
               + (f" --max-steps {args.max_steps}" if args.max_steps else "")
               + (" --write-docs" if args.write_docs else ""))
    note = ("" if args.stage == "all" else "This section comes from the LAM stage alone: the teacher, student and "
            "planner figures elsewhere on this page were not retrained on its codes.")
    lines = write_lam_docs(out / "lam_run" / "lam", out, command, share_path("docs") if args.write_docs else None, note)
    print("\n".join(lines), flush=True)


def stage_teacher(args, out: Path) -> dict[str, Any]:
    from latentvla_ros.training.teacher import label_logs, train_teacher

    teacher_cfg = None
    if args.teacher_model_path:
        from latentvla_ros.models.configuration_teacher import TeacherConfig

        teacher_cfg = TeacherConfig(preset=args.teacher_preset, model_path=args.teacher_model_path)
    result = train_teacher(_logs(Path(args.data)), out / "teacher_run", preset=args.teacher_preset,
                           train_cfg=_scaled(TEACHER_TRAIN[args.teacher_preset], args), teacher_cfg=teacher_cfg,
                           resume=not args.no_resume)
    if _rank() == 0:
        label_logs(out / "teacher_run" / "teacher", _logs(Path(args.data)))
    _barrier()
    return result


def stage_student(args, out: Path) -> dict[str, Any]:
    from latentvla_ros.models.configuration_student import StudentConfig
    from latentvla_ros.training.student import default_train_config, train_student

    config = StudentConfig.preset(args.preset, shift_consistency=getattr(args, "student_shift_consistency", 0.0))
    return train_student(_logs(Path(args.data)), out / "student_run", preset=args.preset, holdout_fraction=HOLDOUT_FRACTION,
                         train_cfg=_scaled(default_train_config(args.preset, "student"), args), resume=not args.no_resume,
                         config=config)


def stage_planner(args, out: Path) -> dict[str, Any]:
    from latentvla_ros.training.planner import train_planner
    from latentvla_ros.training.student import default_train_config

    fusions = FUSIONS if args.fusion == "all" else tuple(args.fusion.split(","))
    results = {}
    for fusion in fusions:
        student = out / "student_run" / "student" if fusion == "student" else None
        results[fusion] = train_planner(_logs(Path(args.data)), out / f"planner_{fusion}", preset=args.preset, fusion=fusion,
                                        train_cfg=_scaled(default_train_config(args.preset, "planner"), args),
                                        student_checkpoint=student, resume=not args.no_resume,
                                        holdout_fraction=HOLDOUT_FRACTION)
    return results


def stage_ego_mlp(args, out: Path) -> dict[str, Any]:
    """NAVSIM's ego-status MLP baseline (ego status -> 8 poses), trained on the same logs."""
    from latentvla_ros.training.ego_mlp import train_ego_mlp

    if _rank() == 0:
        info = train_ego_mlp(_logs(Path(args.data)), out / "ego_mlp_run" / "ego_mlp")
    _barrier()
    return info if _rank() == 0 else {}


def stage_dart(args, out: Path) -> dict[str, Any]:
    """Closed-loop data aggregation rounds (``training/rounds.py``): recovery logs, fine-tuning."""
    from latentvla_ros.training.rounds import run_rounds

    fusions = FUSIONS if args.fusion == "all" else tuple(args.fusion.split(","))
    spec = EDGE_DATA if args.preset == "edge" else PAPER_DATA

    def train_cfg_for(base: dict) -> TrainConfig:  # --dart-epochs as given: --epochs-scale is for the base stages
        cfg = _scaled(TrainConfig(**base), args)
        return TrainConfig.from_dict({**cfg.to_dict(), "epochs": int(base["epochs"])})

    if _rank() != 0 or not (args.dart_rounds or getattr(args, "dart_action_jitter", 0.0)):
        return {}
    record = run_rounds(args, out, _logs(Path(args.data)), fusions, spec["scenarios"], train_cfg_for,
                        evaluate=getattr(args, "round_evaluator", None), holdout_fraction=HOLDOUT_FRACTION)
    return {"rounds": {k: v.get("closed_loop", {}).get("summary", {}) for k, v in record["rounds"].items()}}


STAGES = {"data": stage_data, "lam": stage_lam, "teacher": stage_teacher, "student": stage_student,
          "planner": stage_planner, "dart": stage_dart, "ego_mlp": stage_ego_mlp}


def export_checkpoints(out: Path, dest: Path, round_index: int | None = None, onnx: bool = True) -> None:
    """Copy the final checkpoints into the layout the nodes load (``checkpoints/edge``).

    The planners come from the last finished data-aggregation round (``training/rounds.py``;
    round 0 is the planner stage's), or from round ``round_index`` when given."""
    from latentvla_ros.training.rounds import latest_round, planner_dir

    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    def run(fusion: str) -> Path:  # a fusion without round ``round_index`` (the jitter round) keeps its last one
        last = latest_round(out, fusion)
        return planner_dir(out, fusion, last if round_index is None else min(int(round_index), last))

    copies = {
        "lam": out / "lam_run" / "lam",
        "teacher": out / "teacher_run" / "teacher",
        "student": out / "student_run" / "student",
        "bev_backbone": run("student") / "bev_backbone",
        "planner": run("student") / "planner",
        "ego_mlp": out / "ego_mlp_run" / "ego_mlp",
    }
    for fusion in FUSIONS:
        for part in ("bev_backbone", "planner"):
            copies[f"variants/{fusion}/{part}"] = run(fusion) / part
    for name, src in copies.items():
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("train_state*", "tensorboard", "*.tmp"))
    if not onnx:
        return
    # ONNX exports beside the weights the nodes load with backend=onnx (no export at start-up)
    from latentvla_ros.runtime import export_onnx

    for kind, name in (("bev_backbone", "bev_backbone"), ("student", "student"), ("planner", "planner")):
        if (dest / name / "model.safetensors").is_file():
            export_onnx(kind, dest / name, dest / name / "model.onnx")


def _load_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}



def _loading_rate(data_dir: Path) -> tuple[float, float] | None:
    """(frames/s loaded by the planner's dataset, frames/s the planner stage trained): loading
    must be far faster than training for training to be compute-bound."""
    from latentvla_ros.data.torch_datasets import FrameDataset, measure_loading

    try:
        logs = _logs(data_dir)
        loaded = measure_loading(FrameDataset(logs), n=300)
    except (SystemExit, ValueError, OSError):
        return None
    run = _load_json(data_dir.parent / "planner_none" / "eval.json")
    from latentvla_ros.training.student import default_train_config

    batch = default_train_config(run.get("preset", "edge"), "planner").batch_size
    trained = run.get("steps", 0) * batch / max(1e-9, run.get("train_seconds", 0)) if run else 0.0
    return loaded, trained


def _data_lines(data_dir: Path | None, timings: dict[str, float]) -> list[str]:
    """How much data the models saw: logs, frames, frames per driving command per scenario."""
    from latentvla_ros.data.log_format import list_logs
    from latentvla_ros.data.presets import command_counts

    logs = list_logs(data_dir) if data_dir is not None and Path(data_dir).exists() else []
    if not logs:
        return []
    counts = command_counts(logs)
    total = sum(sum(c.values()) for c in counts.values())
    lines = ["## Data", "", f"{len(logs)} logs, {total} frames"
             + (f"; generated in {timings['data'] / 60:.1f} min (stage data)." if "data" in timings else "."), "",
             "| scenario | LEFT | STRAIGHT | RIGHT | UNKNOWN |", "|---|---|---|---|---|"]
    for sc, c in counts.items():
        lines.append(f"| {sc} | " + " | ".join(str(c.get(k, 0)) for k in ("LEFT", "STRAIGHT", "RIGHT", "UNKNOWN")) + " |")
    return lines + [""]


HAND_WRITTEN_SECTIONS = "## Ablations"
"""The report's sections from the first heading that starts so are written by hand (ablations run apart from the
chain), not by the stages: a new report carries them over from the one it replaces (``write_report(keep_from=)``)."""


def hand_written_sections(report: str) -> str:
    """The hand-written tail of a training report (from ``HAND_WRITTEN_SECTIONS`` on), '' when it has none."""
    i = report.find("\n" + HAND_WRITTEN_SECTIONS)
    return "" if i < 0 else report[i + 1:]


def write_report(out: Path, timings: dict[str, float], path: Path, command: str, data_dir: Path | None = None,
                 keep_from: Path | None = None) -> None:
    """The training report: every figure read from the eval.json files the stages wrote, then the hand-written
    sections of ``keep_from`` (the report it will replace), if any."""
    lam = _load_json(out / "lam_run" / "lam" / "eval.json")
    teacher = _load_json(out / "teacher_run" / "eval.json")
    student = _load_json(out / "student_run" / "eval.json")
    from latentvla_ros.training.rounds import latest_round, planner_dir

    last = {f: latest_round(out, f) for f in FUSIONS}  # the action-jitter round has the student-fused planner only
    planners = {(f if k == 0 else f"{f} (round {k})"): _load_json(planner_dir(out, f, k) / "eval.json")
                for k in range(max(last.values()) + 1) for f in FUSIONS if k <= last[f]}
    lines = ["# Training report", "",
             f"Produced by `{command}` on {time.strftime('%Y-%m-%d')} ({platform.machine()}, {os.cpu_count()} CPU cores, no GPU).",
             "Every number below is read from the `eval.json` files that command writes (under its `--out`); rerun it to reproduce.",
             "", "## Wall-clock time per stage", "", "| stage | minutes |", "|---|---|"]
    lines += [f"| {k} | {v / 60:.1f} |" for k, v in timings.items()]
    lines += [f"| **total** | **{sum(timings.values()) / 60:.1f}** |", ""]
    lines += _data_lines(data_dir, timings)
    rates = _loading_rate(data_dir) if data_dir is not None else None
    if rates:
        lines += [f"Data loading: {rates[0]:.0f} frames/s (camera + cached LiDAR BEV + targets, one process), "
                  f"while the planner stage trained {rates[1]:.0f} frames/s: training is compute-bound.", ""]
    from latentvla_ros.training.lam_report import lam_report_lines

    lines += lam_report_lines(lam, _load_json(out / "lam_run" / "lam" / "atlas.json"))
    tv = teacher.get("val", {})
    sh = student.get("holdout", {})
    lines += ["", "## Teacher and distilled student (held-out frames)", "",
              "| metric | value |", "|---|---|",
              f"| teacher token accuracy vs. LAM labels | {_fmt(tv.get('token_accuracy'))} |",
              f"| teacher NLL (action tokens) | {_fmt(tv.get('nll_action'))} |",
              f"| student top-1 agreement with the teacher | {_fmt(sh.get('top1_agreement'))} |",
              f"| KL(teacher, student) | {_fmt(sh.get('kl_teacher_student'))} |",
              f"| student accuracy vs. LAM labels | {_fmt(sh.get('accuracy_vs_lam'))} |",
              f"| teacher accuracy vs. LAM labels (same frames) | {_fmt(sh.get('teacher_accuracy_vs_lam'))} |", "",
              "## Planners: imitation error on held-out frames", "",
              "| variant | L1 [m] | ADE [m] | FDE [m] | heading error [rad] | frames |", "|---|---|---|---|---|---|"]
    for fusion, data in planners.items():
        h = data.get("holdout", {})
        lines.append(f"| {fusion} | {_fmt(h.get('l1'))} | {_fmt(h.get('ade'))} | {_fmt(h.get('fde'))} | "
                     f"{_fmt(h.get('heading_error'))} | {_fmt(h.get('num_frames'))} |")
    from latentvla_ros.training.rounds import rounds_report_lines

    lines += [""] + rounds_report_lines(out)
    kept = hand_written_sections(keep_from.read_text()) if keep_from is not None and keep_from.is_file() else ""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n" + ("\n" + kept if kept else ""))


def main(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stages = list(STAGES) if args.stage == "all" else [args.stage]
    timings: dict[str, float] = {}
    timing_file = out / "timings.json"
    if timing_file.exists():
        timings.update(json.loads(timing_file.read_text()))
    resume = not args.no_resume
    for stage in stages:
        if args.stage == "all" and _finished(out, stage, resume):
            print(f"[train] {stage}: already done ({_done_marker(out, stage)})", flush=True)
            continue
        print(f"[train] {stage}: starting", flush=True)
        start = time.time()
        info = STAGES[stage](args, out)
        timings[stage] = time.time() - start
        _mark_done(out, stage, {"seconds": timings[stage], "result": info})
        if _rank() == 0:
            timing_file.write_text(json.dumps(timings, indent=2))
        print(f"[train] {stage}: done in {timings[stage] / 60:.1f} min", flush=True)
    if _rank() == 0:
        if args.export_to and args.stage == "all":
            export_checkpoints(out, Path(args.export_to))
            print(f"[train] exported checkpoints to {args.export_to}", flush=True)
        if args.stage == "all":
            command = (f"latentvla train all --out {args.out} --data {args.data}"
                       + (f" --export-to {args.export_to}" if args.export_to else "")
                       + (f" --threads {args.threads}" if args.threads else "")
                       + (f" --epochs-scale {args.epochs_scale}" if args.epochs_scale != 1.0 else "")
                       + (f" --max-steps {args.max_steps}" if args.max_steps else "")
                       + (f" --data-preset {args.data_preset}" if getattr(args, "data_preset", "") else "")
                       + (f" --data-seeds {args.data_seeds}" if args.data_seeds else "")
                       + (f" --student-shift-consistency {args.student_shift_consistency:g}"
                          if getattr(args, "student_shift_consistency", 0.0) else "")
                       + (f" --dart-rounds {args.dart_rounds}" if args.dart_rounds != 1 else "")
                       + (f" --dart-seeds {args.dart_seeds}" if args.dart_seeds != 6 else "")
                       + (f" --dart-epochs {args.dart_epochs}" if args.dart_epochs != 4 else "")
                       + (f" --dart-action-jitter {args.dart_action_jitter:g}" if args.dart_action_jitter else "")
                       + (f" --dart-jitter-epochs {args.dart_jitter_epochs}" if args.dart_jitter_epochs != 2 else "")
                       + (" --write-docs" if args.write_docs else ""))
            from latentvla_ros.core.resources import share_path

            write_report(out, timings, out / "training.md", command, Path(args.data),
                         keep_from=share_path("docs", "training.md") if args.write_docs else None)
            if args.write_docs:
                shutil.copyfile(out / "training.md", share_path("docs", "training.md"))
            print(f"[train] report: {out / 'training.md'}; total {sum(timings.values()) / 60:.1f} min", flush=True)
    return 0
