"""Which methods ``latentvla evaluate`` runs and with which checkpoints: ``MethodSpec`` per method, the planner
variants' checkpoint layout (``resolve_agent_spec``), the ego-status MLP's checkpoint or training, and the agents
built from them (the evaluation's workers, and scripts through ``variant_agent``)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any


# ----------------------------------------------------------------------------- methods
@dataclass
class MethodSpec:
    """A method and the checkpoints it runs with (picklable)."""

    name: str
    kind: str  # constant_velocity | ego_mlp | pdm_closed | agent | expert
    available: bool = True
    reason: str = ""
    untrained: bool = False
    fusion: str = ""
    bev: str = ""
    planner: str = ""
    student: str = ""
    teacher: str = ""
    ego_mlp: str = ""
    preset: str = "edge"
    ablation: str = ""  # fusion ablation of the student variant (evaluation/agents.py)
    guard: bool = True  # plans checked by the LiDAR obstacle guard (core/obstacle_guard.py), as the node does

    def status(self) -> str:
        if not self.available:
            return f"not available ({self.reason})"
        return "UNTRAINED" if self.untrained else "ok"


def _has_ckpt(path: Path) -> bool:
    return (path / "config.json").is_file() and (path / "model.safetensors").is_file()


def _has_teacher(path: Path) -> bool:
    return (path / "teacher_config.json").is_file()


def resolve_agent_spec(name: str, fusion: str, root: Path, allow_untrained: bool) -> MethodSpec:
    """Checkpoints of one planner variant: ``<root>/variants/<fusion>/{bev_backbone,planner}``,
    the student ``<root>/student``, the teacher ``<root>/teacher``. For 'student' the default
    graph's ``<root>/{bev_backbone,planner}`` are used when no variant directory exists (the
    same model: the default graph is the student-fused planner)."""
    var = root / "variants" / fusion
    bev, planner = var / "bev_backbone", var / "planner"
    if fusion == "student" and not var.exists() and _has_ckpt(root / "planner"):
        bev, planner = root / "bev_backbone", root / "planner"
    need: dict[str, Path] = {"bev": bev, "planner": planner}
    if fusion == "student":
        need["student"] = root / "student"
    if fusion == "teacher":
        need["teacher"] = root / "teacher"
    missing = [str(p) for k, p in need.items() if not (_has_teacher(p) if k == "teacher" else _has_ckpt(p))]
    spec = MethodSpec(name=name, kind="agent", fusion=fusion)
    if not missing:
        spec.bev, spec.planner = str(bev), str(planner)
        spec.student = str(need.get("student", "") or "")
        spec.teacher = str(need.get("teacher", "") or "")
        from latentvla_ros.core.checkpoint import read_checkpoint_config

        actual = read_checkpoint_config(planner)["config"].get("fusion")
        if actual != fusion:
            spec.available, spec.reason = False, f"checkpoint {planner} has fusion={actual!r}, expected {fusion!r}"
        return spec
    if allow_untrained:
        spec.untrained = True
        for key, path in need.items():  # keep what exists; the rest is random
            ok = _has_teacher(path) if key == "teacher" else _has_ckpt(path)
            setattr(spec, key, str(path) if ok else "")
        if spec.planner and spec.fusion:
            from latentvla_ros.core.checkpoint import read_checkpoint_config

            if read_checkpoint_config(spec.planner)["config"].get("fusion") != fusion:
                spec.planner = ""
        return spec
    spec.available, spec.reason = False, "no checkpoint: " + ", ".join(missing)
    return spec


def resolve_methods(checkpoints: str | Path, allow_untrained: bool, ego_mlp_dir: str | None,
                    ego_mlp_reason: str = "") -> dict[str, MethodSpec]:
    root = Path(checkpoints)
    out = {
        "constant_velocity": MethodSpec("constant_velocity", "constant_velocity"),
        "ego_mlp": MethodSpec("ego_mlp", "ego_mlp", ego_mlp=ego_mlp_dir or ""),
        "pdm_closed": MethodSpec("pdm_closed", "pdm_closed"),
        "latentvla_none": resolve_agent_spec("latentvla_none", "none", root, allow_untrained),
        "latentvla_student": resolve_agent_spec("latentvla_student", "student", root, allow_untrained),
        "latentvla_teacher": resolve_agent_spec("latentvla_teacher", "teacher", root, allow_untrained),
        "expert": MethodSpec("expert", "expert"),
    }
    for ablation in ("shuffled", "zeroed"):
        out[f"latentvla_student_{ablation}"] = replace(out["latentvla_student"], name=f"latentvla_student_{ablation}",
                                                       ablation=ablation)
    out["latentvla_student_unguarded"] = replace(out["latentvla_student"], name="latentvla_student_unguarded",
                                                 guard=False)
    if not ego_mlp_dir:
        if allow_untrained:
            out["ego_mlp"].untrained = True
        else:
            out["ego_mlp"].available, out["ego_mlp"].reason = False, ego_mlp_reason or "no checkpoint"
    return out


def prepare_ego_mlp(checkpoints: Path, train_data: Path | None, out: Path, epochs: int) -> tuple[str | None, str, dict]:
    """``<checkpoints>/ego_mlp`` if present, else train one on ``train_data`` into ``<out>/ego_mlp``."""
    existing = checkpoints / "ego_mlp"
    if _has_ckpt(existing):
        return str(existing), "", {"source": str(existing)}
    from latentvla_ros.data.log_format import list_logs

    logs = list_logs(train_data) if train_data is not None and Path(train_data).exists() else []
    if not logs:
        return None, f"no checkpoint ({existing}) and no training logs ({train_data})", {}
    from latentvla_ros.data.splits import SplitLeakError
    from latentvla_ros.models.configuration_ego_mlp import EgoMLPConfig
    from latentvla_ros.training.ego_mlp import train_ego_mlp

    try:
        info = train_ego_mlp(logs, out / "ego_mlp", EgoMLPConfig(epochs=epochs))
    except (SplitLeakError, ValueError) as exc:
        return None, f"cannot train: {exc}", {}
    info = {k: v for k, v in info.items() if k != "losses"} | {"first_loss": info["losses"][0],
                                                              "final_loss": info["losses"][-1],
                                                              "source": f"trained on {len(logs)} logs in {train_data}"}
    return str(out / "ego_mlp"), "", info


# ----------------------------------------------------------------------------- learned agents
def build_open_loop_agent(spec: MethodSpec) -> Any:
    from latentvla_ros.evaluation.agents import build_agent

    return build_agent(spec.fusion, bev=spec.bev, planner=spec.planner, student=spec.student, teacher=spec.teacher,
                       preset=spec.preset, ablation=spec.ablation, guard=spec.guard)


def variant_agent(fusion: str, root: Path) -> tuple[MethodSpec, Any]:
    """(spec, agent) of the guarded planner variant ``latentvla_<fusion>`` from the checkpoints under ``root``, as
    the evaluation builds it (for scripts); agent None when its checkpoints are missing (``spec.reason``)."""
    spec = resolve_agent_spec(f"latentvla_{fusion}", fusion, Path(root), False)
    return spec, (build_open_loop_agent(spec) if spec.available else None)
