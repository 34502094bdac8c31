"""Student distillation and planner imitation stages on small synthetic in-memory datasets."""
from __future__ import annotations

import csv
import json

import pytest
import torch
from torch.utils.data import Dataset

from latentvla_ros.core.agent import agent_input_of
from latentvla_ros.core.config_base import ConfigError
from latentvla_ros.models.modeling_planner import E2EPlanner
from latentvla_ros.models.modeling_student import LatentStudent
from latentvla_ros.training.common import TrainConfig
from latentvla_ros.training.planner import FrozenStudentContext, evaluate_planner, train_planner
from latentvla_ros.training.student import distillation_terms, evaluate_student, split_holdout, train_student

torch.set_num_threads(1)


class SyntheticFrames(Dataset):
    """Random frames with learnable targets: the teacher's codes and the trajectory follow the ego status."""

    def __init__(self, n: int = 24, image_hw=(128, 128), lidar_grid: int = 256, context=(6, 32), seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.image = torch.rand(n, 3, *image_hw, generator=g)
        self.lidar = (torch.rand(n, 1, lidar_grid, lidar_grid, generator=g) > 0.97).float()
        cmd = torch.randint(0, 4, (n,), generator=g)
        ego = torch.zeros(n, 8)
        ego[torch.arange(n), cmd] = 1.0
        ego[:, 4] = torch.rand(n, generator=g) * 10 + 5
        ego[:, 5:] = torch.randn(n, 3, generator=g) * 0.3
        self.ego = ego
        t = torch.arange(1, 9).float() * 0.5
        lateral = (cmd.float() - 1.0).clamp(-1, 1).unsqueeze(1)
        self.traj = torch.stack([ego[:, 4:5] * t, lateral * 0.3 * t**2, lateral * 0.05 * t], -1)
        codes = (cmd.unsqueeze(1) * 3 + torch.arange(12).unsqueeze(0)) % 16
        self.tokens = codes
        self.probs = torch.full((n, 12, 16), 0.02)
        self.probs.scatter_(2, codes.unsqueeze(-1), 0.7)
        self.probs /= self.probs.sum(-1, keepdim=True)
        self.context = torch.randn(n, *context, generator=g)

    def __len__(self) -> int:
        return len(self.image)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.image[i], "lidar_bev": self.lidar[i], "ego_status": self.ego[i],
                "trajectory": self.traj[i], "trajectory_valid": torch.tensor(True),
                "latent_tokens": self.tokens[i], "teacher_probs": self.probs[i], "teacher_context": self.context[i]}


def read_metrics(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def data():
    return SyntheticFrames()


def test_distillation_terms_zero_when_student_matches_teacher():
    probs = torch.softmax(torch.randn(2, 12, 16), -1)
    logits = torch.log(probs)
    terms = distillation_terms(logits, probs, torch.argmax(probs, -1), temperature=2.0)
    assert abs(float(terms["kl"])) < 1e-5 and float(terms["top1_agreement"]) == 1.0
    # invalid teacher rows and -1 hard labels are ignored
    bad = probs.clone()
    bad[0] = 0.0
    labels = torch.full((2, 12), -1)
    terms = distillation_terms(logits, bad, labels, temperature=1.0)
    assert torch.isfinite(terms["kl"]) and float(terms["ce"]) == 0.0


def test_split_holdout_keeps_logs_apart(data):
    train, hold = split_holdout(data, 0.25, None)
    assert len(train) == 18 and len(hold) == 6
    made = []

    def make(dirs):
        made.append([str(d) for d in dirs])
        return data

    split_holdout(["a", "b", "c", "d", "e"], 0.2, make)
    assert made == [["a", "b", "d", "e"], ["c"]]
    made.clear()
    # logs sorted by scenario: every 5th log, one of each scenario, is held out
    logs = [f"{sc}_s{i}" for sc in ("highway", "intersection", "merge", "roundabout") for i in range(5)]
    split_holdout(logs, 0.2, make)
    assert made[1] == ["highway_s2", "intersection_s2", "merge_s2", "roundabout_s2"]
    assert not set(made[0]) & set(made[1]) and len(made[0]) == 16
    assert split_holdout(data, 0.0, None)[1] is None


def test_student_training_loss_falls_reloads_and_resumes(tmp_path):
    data = SyntheticFrames(n=40, seed=1)
    cfg = TrainConfig(epochs=8, batch_size=6, lr=2e-3, warmup_steps=3, seed=0)
    out = tmp_path / "student_run"
    summary = train_student(data, out, "edge", cfg, temperature=2.0, kl_weight=1.0, hard_weight=0.5,
                            holdout_fraction=0.25, show_progress=False)
    rows = read_metrics(out / "metrics.csv")
    assert len(rows) == 8
    assert float(rows[-1]["train/loss"]) < 0.8 * float(rows[0]["train/loss"])
    assert float(rows[-1]["train/top1_agreement"]) > 0.2  # chance: 1/16; the codes follow the command
    report = json.loads((out / "eval.json").read_text())
    assert report["num_train"] == 30 and report["num_holdout"] == 10
    for key in ("top1_agreement", "kl_teacher_student", "accuracy_vs_lam"):
        assert key in report["holdout"]
    assert summary["steps"] == 8 * 5  # 30 samples, batch 6
    # the checkpoint is the final model: re-evaluating it gives the reported numbers
    loaded = LatentStudent.from_pretrained(out / "student")
    again = evaluate_student(loaded, torch.utils.data.Subset(data, range(30, 40)))
    assert again == pytest.approx(report["holdout"], rel=1e-5)
    # resume: more epochs continue from train_state (step count and metrics rows continue)
    cfg2 = TrainConfig(**{**cfg.to_dict(), "epochs": 9})
    summary2 = train_student(data, out, "edge", cfg2, holdout_fraction=0.25, show_progress=False)
    assert summary2["steps"] == 9 * 5
    rows = read_metrics(out / "metrics.csv")
    assert [int(float(r["epoch"])) for r in rows] == list(range(1, 10))


def test_shift_consistency_steadies_the_action_embeddings_under_a_one_pixel_shift(tmp_path):
    """StudentConfig.shift_consistency: the same distillation with the consistency term leaves a student whose
    action embeddings move far less under jitter_inputs (one-pixel shift, ego noise) than without it, while it
    still learns the teacher's codes; the term is logged; a negative weight is refused. The images are
    thin lines whose place follows the command (the codes' cue), detail that a one-pixel shift moves."""
    from latentvla_ros.models.configuration_student import StudentConfig
    from latentvla_ros.training.student import jitter_inputs

    data = SyntheticFrames(n=40, seed=1)
    g = torch.Generator().manual_seed(3)
    command = data.ego[:, :4].argmax(1)
    data.image = torch.zeros_like(data.image)
    for i in range(len(data.image)):
        for k in range(4):
            data.image[i, :, :, int(8 + 28 * int(command[i]) + 6 * k + torch.randint(0, 3, (1,), generator=g))] = 1.0
    cfg = TrainConfig(epochs=6, batch_size=8, lr=2e-3, warmup_steps=3, seed=0)
    image, ego = data.image[:16], data.ego[:16]
    j_image, j_ego = jitter_inputs(image, ego, torch.Generator().manual_seed(5))

    def trained(weight: float) -> tuple[float, list[dict]]:
        out = tmp_path / f"student_{weight:g}"
        train_student(data, out, "edge", cfg, holdout_fraction=0.25, show_progress=False,
                      config=StudentConfig.preset("edge", shift_consistency=weight))
        model = LatentStudent.from_pretrained(out / "student").eval()
        assert model.config.shift_consistency == weight  # carried in the checkpoint's config
        with torch.no_grad():
            clean, moved = model(image, ego).action_embeddings, model(j_image, j_ego).action_embeddings
        change = (moved - clean).flatten(1).norm(dim=1) / clean.flatten(1).norm(dim=1)
        return float(change.median()), read_metrics(out / "metrics.csv")

    plain, plain_rows = trained(0.0)
    steady, steady_rows = trained(4.0)
    assert "train/shift" in steady_rows[0] and "train/shift" not in plain_rows[0]
    assert plain > 0.05 and steady < 0.5 * plain, (steady, plain)  # measured: 0.149 -> 0.051
    assert float(steady_rows[-1]["train/top1_agreement"]) > 0.15  # chance: 1/16
    with pytest.raises(ConfigError, match="shift_consistency"):
        StudentConfig.preset("edge", shift_consistency=-1.0)


def test_planner_training_none_fusion_loss_falls_and_reloads(data, tmp_path):
    cfg = TrainConfig(epochs=5, batch_size=8, lr=2e-3, warmup_steps=2, seed=0)
    out = tmp_path / "planner_none"
    summary = train_planner(data, out, "edge", "none", cfg, holdout_fraction=0.25, show_progress=False)
    rows = read_metrics(out / "metrics.csv")
    assert float(rows[-1]["train/loss"]) < 0.7 * float(rows[0]["train/loss"])
    report = json.loads((out / "eval.json").read_text())
    assert set(report["holdout"]) >= {"l1", "ade", "fde", "heading_error", "num_frames"}
    assert summary["checkpoints"]["planner"].endswith("planner")
    model = E2EPlanner.from_pretrained(out)
    assert model.planner.config.fusion == "none"
    again = evaluate_planner(model, torch.utils.data.Subset(data, range(18, 24)), "none")
    assert again == pytest.approx(report["holdout"], rel=1e-5)
    # resume continues from train_state
    cfg2 = TrainConfig(**{**cfg.to_dict(), "epochs": 6})
    assert train_planner(data, out, "edge", "none", cfg2, holdout_fraction=0.25, show_progress=False)["steps"] == 6 * 2
    # resuming that run as another model is refused clearly
    with pytest.raises(ValueError, match="different model config"):
        train_planner(data, out, "edge", "teacher", cfg2, holdout_fraction=0.25, show_progress=False)


def test_planner_student_and_teacher_fusion(data, tmp_path):
    student_dir = tmp_path / "student"
    torch.manual_seed(0)
    LatentStudent().save_pretrained(student_dir)
    cfg = TrainConfig(epochs=1, batch_size=8, lr=1e-3, warmup_steps=1, max_steps=2)
    with pytest.raises(ConfigError, match="student_checkpoint"):
        train_planner(data, tmp_path / "x", "edge", "student", cfg)
    out = tmp_path / "planner_student"
    train_planner(data, out, "edge", "student", cfg, student_checkpoint=student_dir, holdout_fraction=0.25,
                  show_progress=False)
    model = E2EPlanner.from_pretrained(out)
    pcfg = model.planner.config
    assert (pcfg.fusion, pcfg.context_dim, pcfg.num_context_tokens) == ("student", 192, 28)
    student = LatentStudent.from_pretrained(student_dir)
    before = {k: v.clone() for k, v in student.state_dict().items()}
    report = json.loads((out / "eval.json").read_text())
    again = evaluate_planner(model, torch.utils.data.Subset(data, range(18, 24)), "student", FrozenStudentContext(student))
    assert again == pytest.approx(report["holdout"], rel=1e-5)
    assert all(torch.equal(before[k], v) for k, v in student.state_dict().items())  # student stays frozen

    out_t = tmp_path / "planner_teacher"
    train_planner(data, out_t, "edge", "teacher", cfg, holdout_fraction=0.25, show_progress=False)
    tcfg = E2EPlanner.from_pretrained(out_t).planner.config
    assert (tcfg.fusion, tcfg.context_dim, tcfg.num_context_tokens) == ("teacher", 32, 6)


def test_trained_checkpoints_feed_the_pipeline(data, tmp_path):
    """A planner run's output directory plus a student checkpoint is a pipeline root."""
    import shutil

    from test_models import make_frame

    from latentvla_ros.runtime import build_pipeline_from_dir

    root = tmp_path / "root"
    torch.manual_seed(0)
    LatentStudent().save_pretrained(root / "student")
    cfg = TrainConfig(epochs=1, batch_size=8, max_steps=1, warmup_steps=0)
    train_planner(data, tmp_path / "run", "edge", "student", cfg, student_checkpoint=root / "student",
                  holdout_fraction=0.0, show_progress=False)
    for sub in ("bev_backbone", "planner"):
        shutil.copytree(tmp_path / "run" / sub, root / sub)
    agent = build_pipeline_from_dir(root)
    assert not agent.untrained
    assert agent.compute_trajectory(agent_input_of(make_frame())).is_finite()


def write_labelled_log(directory, frames: int = 70, seed: int = 0):
    """A small driving log (LogWriter) with LAM codes, teacher soft labels and teacher context."""
    import numpy as np

    from latentvla_ros.data.log_format import LogWriter

    rng = np.random.default_rng(seed)
    writer = LogWriter(directory, {"source": "synthetic", "scenario": "test", "seed": seed})
    for t in range(frames):
        pts = np.concatenate([rng.uniform(-30, 30, (300, 2)), rng.uniform(0, 2, (300, 1)), rng.uniform(0, 1, (300, 1))], 1)
        writer.append(camera=rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), lidar_points=pts,
                      ego_pose=(2.0 * t, 0.0, 0.0), ego_status=(20.0, 0.0, 0.0, 0.0, 0.0), command=1)
    path = writer.close()
    np.save(path / "latent_ego_codes.npy", rng.integers(0, 16, frames).astype(np.int16))
    probs = rng.dirichlet(np.ones(16), size=(frames, 12)).astype(np.float32)
    np.save(path / "teacher_probs.npy", probs)
    np.save(path / "teacher_context.npy", rng.standard_normal((frames, 5, 24)).astype(np.float16))
    return path


def test_stages_read_driving_logs(tmp_path):
    """End to end on real log directories through FrameDataset (split by log)."""
    logs = [write_labelled_log(tmp_path / "logs" / f"log{i}", seed=i) for i in range(2)]
    cfg = TrainConfig(epochs=1, batch_size=8, max_steps=2, warmup_steps=0)
    s = train_student(logs, tmp_path / "student_run", "edge", cfg, holdout_fraction=0.5, show_progress=False)
    assert s["eval"]["num_holdout"] > 0 and s["eval"]["holdout"]["num_frames"] > 0
    assert "accuracy_vs_lam" in s["eval"]["holdout"]
    p = train_planner(tmp_path / "logs", tmp_path / "planner_run", "edge", "teacher", cfg, holdout_fraction=0.5,
                      show_progress=False)
    assert p["eval"]["holdout"]["num_frames"] > 0
    assert (p["eval"]["num_train"], p["eval"]["num_holdout"]) != (0, 0)
    assert E2EPlanner.from_pretrained(tmp_path / "planner_run").planner.config.context_dim == 24


def test_planner_training_refuses_logs_of_another_trajectory_sampling(tmp_path):
    """The planner's poses are spaced as its config says: logs sampled otherwise (here 8 poses at
    0.5 s for a planner of 8 at 0.25 s, same shapes) are a clear error, not silently learned."""
    from latentvla_ros.core.sizes import SizeMismatchError
    from latentvla_ros.models.configuration_planner import PlannerConfig

    logs = [write_labelled_log(tmp_path / "logs" / f"log{i}", seed=i) for i in range(2)]
    cfg = TrainConfig(epochs=1, batch_size=8, max_steps=1, warmup_steps=0)
    with pytest.raises(SizeMismatchError, match="trajectory sampling mismatch: the model has .*0.25"):
        train_planner(logs, tmp_path / "run", "edge", "none", cfg, holdout_fraction=0.5, show_progress=False,
                      planner_config=PlannerConfig.preset("edge", pose_interval_s=0.25))


def test_planner_init_from_starts_at_the_previous_round(data, tmp_path):
    """A data-aggregation round fine-tunes the previous round's planner: with lr ~0 the new run's
    weights are the previous run's (a fresh init's are not), and a previous run of another
    configuration is refused."""
    cfg = TrainConfig(epochs=1, batch_size=8, lr=2e-3, warmup_steps=1, seed=0)
    first = tmp_path / "planner_none"
    train_planner(data, first, "edge", "none", cfg, holdout_fraction=0.25, show_progress=False)
    frozen = TrainConfig(epochs=1, batch_size=8, lr=1e-12, warmup_steps=0, seed=7)  # lr must be > 0
    second, fresh = tmp_path / "planner_none_r1", tmp_path / "fresh"
    train_planner(data, second, "edge", "none", frozen, holdout_fraction=0.25, show_progress=False, init_from=first)
    train_planner(data, fresh, "edge", "none", frozen, holdout_fraction=0.25, show_progress=False)

    def weights(run):  # parameters only: BatchNorm statistics move with every training forward pass
        model = E2EPlanner.from_pretrained(run)
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    a, b, c = weights(first), weights(second), weights(fresh)
    assert (a - b).abs().max() < 1e-6
    assert (a - c).abs().max() > 1e-2
    assert json.loads((second / "planner" / "config.json").read_text())["meta"]["init_from"] == str(first)
    with pytest.raises(ConfigError, match="init_from"):
        train_planner(data, tmp_path / "other", "edge", "teacher", cfg, holdout_fraction=0.25, show_progress=False,
                      init_from=first)


def test_action_dropout_zeroes_only_the_action_embeddings_of_the_drawn_samples(data):
    """PlannerConfig.action_dropout: the fused context of a dropped sample keeps the student's visual
    embeddings and has zero action embeddings (what the 'zeroed' ablation feeds at run time); 0 changes
    nothing; the share dropped follows the setting."""
    from latentvla_ros.models.configuration_student import StudentConfig

    torch.manual_seed(0)
    student = FrozenStudentContext(LatentStudent(StudentConfig.preset("edge")))
    image, ego = data.image[:16], data.ego[:16]
    full = student(image, ego)
    n_act = student.student(image[:1], ego[:1]).action_embeddings.shape[1]
    assert torch.equal(student(image, ego, 0.0), full)
    none = student(image, ego, 1.0)
    assert torch.equal(none[:, :-n_act], full[:, :-n_act]) and not none[:, -n_act:].any()
    assert full[:, -n_act:].abs().sum() > 0
    torch.manual_seed(1)
    half = student(image.repeat(4, 1, 1, 1), ego.repeat(4, 1), 0.5)
    dropped = (half[:, -n_act:].abs().flatten(1).sum(1) == 0).float().mean()
    assert 0.25 < float(dropped) < 0.75
    with pytest.raises(ConfigError, match="action_dropout"):
        from latentvla_ros.models.configuration_planner import PlannerConfig

        PlannerConfig.preset("edge", action_dropout=1.5)


def test_action_jitter_replaces_only_the_action_embeddings_of_the_drawn_samples(data):
    """PlannerConfig.action_jitter: a jittered sample keeps the student's visual embeddings and gets the action
    embeddings of the student run on a shifted image and noisy ego motion (changed, not zeroed); the command
    one-hot is never perturbed; 0 changes nothing; the share jittered follows the setting."""
    from latentvla_ros.models.configuration_student import StudentConfig
    from latentvla_ros.training.student import JITTER_SHIFT_PX, jitter_inputs

    torch.manual_seed(0)
    student = FrozenStudentContext(LatentStudent(StudentConfig.preset("edge")))
    image, ego = data.image[:16], data.ego[:16]
    full = student(image, ego)
    n_act = student.student(image[:1], ego[:1]).action_embeddings.shape[1]
    assert torch.equal(student(image, ego, 0.0, 0.0), full)
    all_j = student(image, ego, 0.0, 1.0)
    assert torch.equal(all_j[:, :-n_act], full[:, :-n_act])
    moved = (all_j[:, -n_act:] - full[:, -n_act:]).flatten(1).norm(dim=1)
    assert (moved > 0).float().mean() > 0.5 and all_j[:, -n_act:].abs().sum() > 0
    torch.manual_seed(1)
    big = image.repeat(4, 1, 1, 1)
    half = student(big, ego.repeat(4, 1), 0.0, 0.5)
    changed = ((half[:, -n_act:] - student(big, ego.repeat(4, 1))[:, -n_act:]).flatten(1).abs().sum(1) > 0).float().mean()
    assert 0.25 < float(changed) < 0.75
    j_img, j_ego = jitter_inputs(image, ego)
    assert j_img.shape == image.shape and torch.equal(j_ego[:, :4], ego[:, :4])
    k = JITTER_SHIFT_PX
    h, w = image.shape[-2:]
    for i in range(len(image)):  # each copy is the image moved by at most k px per axis (interior compared)
        assert any(torch.equal(j_img[i, :, k:h - k, k:w - k], image[i, :, k + dy:h - k + dy, k + dx:w - k + dx])
                   for dy in range(-k, k + 1) for dx in range(-k, k + 1))
    assert not all(torch.equal(j_img[i], image[i]) for i in range(len(image)))  # some moved
    with pytest.raises(ConfigError, match="action_jitter"):
        from latentvla_ros.models.configuration_planner import PlannerConfig

        PlannerConfig.preset("edge", action_jitter=-0.1)


def test_init_from_accepts_a_run_with_other_training_only_dropouts(data, tmp_path):
    """A fine-tune may change route_dropout / action_dropout (training-only fields): the weights load."""
    from latentvla_ros.models.configuration_planner import PlannerConfig

    cfg = TrainConfig(epochs=1, batch_size=8, lr=2e-3, warmup_steps=1, seed=0)
    first = tmp_path / "planner_student"
    train_planner(data, first, "edge", "none", cfg, holdout_fraction=0.25, show_progress=False)
    tuned = PlannerConfig.preset("edge", action_dropout=0.3, route_dropout=0.2)
    train_planner(data, tmp_path / "tuned", "edge", "none", cfg, holdout_fraction=0.25, show_progress=False,
                  planner_config=tuned, init_from=first)
    saved = json.loads((tmp_path / "tuned" / "planner" / "config.json").read_text())
    assert saved["config"]["action_dropout"] == 0.3 and saved["meta"]["init_from"] == str(first)


def test_finetune_script_refuses_bad_settings_before_training(tmp_path, capsys):
    """scripts/finetune_planner.py: a bad PlannerConfig value or no logs
    stop it with exit 2 and a message, before any training or copying."""
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("finetune_planner", root / "scripts" / "finetune_planner.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    ck = str(root / "checkpoints" / "edge")
    (tmp_path / "empty").mkdir()
    base = ["--checkpoints", ck, "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "run")]
    assert script.main(base + ["--planner-param", "action_dropout=1.5"]) == 2
    assert "action_dropout" in capsys.readouterr().err
    assert script.main(base) == 2 and "no logs" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_student_consistency_script_tunes_only_the_student(tmp_path, capsys):
    """scripts/finetune_student_consistency.py: no logs -> exit 2 before anything is written; otherwise the
    result folder holds the shipped checkpoints with only the student replaced, by weights that moved a little
    and keep the student's config."""
    import importlib.util
    from pathlib import Path

    from latentvla_ros.data.highway import generate_log

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("stc", root / "scripts" / "finetune_student_consistency.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    ck = root / "checkpoints" / "edge"
    (tmp_path / "empty").mkdir()
    assert script.main(["--data", str(tmp_path / "empty"), "--out", str(tmp_path / "none"), "--checkpoints", str(ck)]) == 2
    assert "no logs" in capsys.readouterr().err and not (tmp_path / "none").exists()
    generate_log(tmp_path / "logs" / "highway_0", "highway", seed=0, num_frames=48)
    assert script.main(["--data", str(tmp_path / "logs"), "--out", str(tmp_path / "run"), "--checkpoints", str(ck),
                        "--steps", "3", "--batch-size", "4", "--threads", "1"]) == 0
    out = tmp_path / "run" / "checkpoints"
    for part in ("planner", "bev_backbone", "variants/none/planner"):
        assert (out / part / "model.safetensors").read_bytes() == (ck / part / "model.safetensors").read_bytes()
    tuned, shipped = LatentStudent.from_pretrained(out / "student"), LatentStudent.from_pretrained(ck / "student")
    assert tuned.config == shipped.config and not (out / "student" / "model.onnx").exists()
    moved = max(float((a - b).abs().max()) for a, b in zip(tuned.parameters(), shipped.parameters()))
    assert 0 < moved < 1e-2


def test_init_from_a_single_mode_run_grows_modes_and_trains_them(data, tmp_path):
    """A multi-modal fine-tune of a shipped single-mode planner (scripts/finetune_planner.py
    --planner-param num_modes=3): with lr ~0 the middle mode is the old planner's trajectory; the stage
    logs the winner-takes-all terms; a multi-modal run cannot start a run of other modes."""
    from latentvla_ros.models.configuration_planner import PlannerConfig

    cfg = TrainConfig(epochs=1, batch_size=8, lr=2e-3, warmup_steps=1, seed=0)
    first = tmp_path / "single"
    train_planner(data, first, "edge", "none", cfg, holdout_fraction=0.25, show_progress=False)
    frozen = TrainConfig(epochs=1, batch_size=8, lr=1e-12, warmup_steps=0, seed=7)
    multi = tmp_path / "multi"
    three = PlannerConfig.preset("edge", num_modes=3)
    train_planner(data, multi, "edge", "none", frozen, holdout_fraction=0.25, show_progress=False, init_from=first,
                  planner_config=three)
    old, new = E2EPlanner.from_pretrained(first), E2EPlanner.from_pretrained(multi)
    assert new.planner.config.num_modes == 3
    # parameters only (BatchNorm statistics move with every training forward pass): every mode's output
    # layer is the old one, the middle mode's bias too
    w_old, w_new = old.planner.head[2].weight, new.planner.head[2].weight.reshape(3, *old.planner.head[2].weight.shape)
    assert all((w_new[k] - w_old).abs().max() < 1e-6 for k in range(3))
    b_new = new.planner.head[2].bias.reshape(3, -1)
    assert (b_new[1] - old.planner.head[2].bias).abs().max() < 1e-6
    assert (b_new[2] - b_new[1]).abs().max() > 1.0  # the fast mode starts 16 m ahead at 4 s
    with torch.no_grad():
        poses, logits = new(torch.stack([data[i]["image"] for i in range(4)]), torch.stack([data[i]["lidar_bev"] for i in range(4)]),
                            torch.stack([data[i]["ego_status"] for i in range(4)]), all_modes=True)
    assert poses.shape == (4, 3, 8, 3) and logits.shape == (4, 3)
    header = read_metrics(multi / "metrics.csv")[0]
    assert {"l1_best", "mode_ce", "mode_hit"} <= {k.split("/")[-1] for k in header}
    with pytest.raises(ConfigError, match="init_from"):
        train_planner(data, tmp_path / "two", "edge", "none", frozen, holdout_fraction=0.25, show_progress=False,
                      init_from=multi, planner_config=PlannerConfig.preset("edge", num_modes=2))
