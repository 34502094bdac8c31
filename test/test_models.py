"""BEV backbone, student, planner and the runtime pipeline (runtime/)."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from latentvla_ros.core.agent import agent_input_of
from latentvla_ros.core.checkpoint import CheckpointError
from latentvla_ros.core.config_base import ConfigError
from latentvla_ros.core.features import FeatureError
from latentvla_ros.core.types import CameraImage, DrivingCommand, EgoState, SensorFrame
from latentvla_ros.models.configuration_bev import BevBackboneConfig
from latentvla_ros.models.configuration_planner import PlannerConfig
from latentvla_ros.models.configuration_student import StudentConfig
from latentvla_ros.models.modeling_bev import BevBackbone, count_parameters
from latentvla_ros.models.modeling_planner import E2EPlanner, FusedPlanner
from latentvla_ros.models.modeling_student import LatentStudent

torch.set_num_threads(1)


# ----------------------------------------------------------------- helpers
def make_frame(seed: int = 0, stamp_ns: int = 1_000_000_123, cameras: int = 1) -> SensorFrame:
    rng = np.random.default_rng(seed)
    pts = np.concatenate([rng.uniform(-40, 40, (4000, 2)), rng.uniform(-0.5, 3, (4000, 1)), rng.uniform(0, 1, (4000, 1))], 1)
    return SensorFrame(
        stamp_ns=stamp_ns,
        cameras=[CameraImage(rng.integers(0, 256, (96, 160, 3), dtype=np.uint8), name=f"cam{i}") for i in range(cameras)],
        lidar_points=pts.astype(np.float32),
        ego=EgoState(np.array([12.0, 0.3]), np.array([0.5, -0.1]), 0.02, DrivingCommand.LEFT),
    )


def randomize_(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every parameter random values (zero-initialised fusion branches become active)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return module


def student_context(student: LatentStudent, image, ego):
    out = student(image, ego)
    return torch.cat([out.visual_embeddings, out.action_embeddings], 1)


# ----------------------------------------------------------------- configs
@pytest.mark.parametrize("cls", [BevBackboneConfig, StudentConfig, PlannerConfig])
def test_presets_validate_and_roundtrip(cls, tmp_path):
    for name in ("edge", "paper"):
        cfg = cls.preset(name)
        cfg.save_json(tmp_path / "c.json")
        assert cls.load_json(tmp_path / "c.json") == cfg
    with pytest.raises(ConfigError):
        cls.preset("huge")
    with pytest.raises(ConfigError):
        cls.from_dict({**cls.preset("edge").to_dict(), "bogus": 1})


def test_every_config_field_is_documented():
    import inspect

    for cls in (BevBackboneConfig, StudentConfig, PlannerConfig):
        src = inspect.getsource(cls)
        for f in dataclasses.fields(cls):
            line = next(ln for ln in src.splitlines() if ln.strip().startswith(f"{f.name}:"))
            after = src.splitlines()[src.splitlines().index(line) + 1].strip()
            assert after.startswith('"""'), f"{cls.__name__}.{f.name} lacks a docstring"


@pytest.mark.parametrize(
    "cls,field,value",
    [
        (BevBackboneConfig, "image_size", (100, 128)),  # not divisible by the stride 32
        (BevBackboneConfig, "widths", ()),
        (BevBackboneConfig, "image_depths", (1, 1)),  # wrong number of stages
        (BevBackboneConfig, "fuse_at", (4,)),
        (BevBackboneConfig, "fusion_heads", 5),  # does not divide the widths
        (BevBackboneConfig, "image_anchors", (3, 3)),  # does not divide the feature maps
        (BevBackboneConfig, "grid_cols", 4),  # non-square grid
        (BevBackboneConfig, "lidar_range_m", -1.0),
        (BevBackboneConfig, "dropout", 1.0),
        (StudentConfig, "num_heads", 5),
        (StudentConfig, "image_size", (120, 128)),
        (StudentConfig, "visual_embedding_grid", (3, 4)),
        (StudentConfig, "codebook_size", 1),
        (StudentConfig, "num_layers", 0),
        (PlannerConfig, "fusion", "vlm"),
        (PlannerConfig, "num_heads", 3),
        (PlannerConfig, "xy_scale_m", 0.0),
        (PlannerConfig, "num_poses", 0),
    ],
)
def test_config_rejects_bad_values(cls, field, value):
    with pytest.raises(ConfigError, match=field.split("_")[0]):
        cls.preset("edge", **{field: value})


def test_grid_geometry():
    cfg = BevBackboneConfig.preset("edge")
    assert cfg.num_tokens == 64 and cfg.cell_size_m == 8.0
    assert (cfg.origin_x_m, cfg.origin_y_m) == (-32.0, -32.0)
    assert cfg.cell_center(0, 0) == (28.0, 28.0)  # row 0 far front, col 0 far left
    assert cfg.cell_center(7, 7) == (-28.0, -28.0)
    assert BevBackboneConfig.preset("paper").cell_size_m == 8.0


# ----------------------------------------------------------------- models
def test_param_counts():
    counts = {
        "bev_edge": count_parameters(BevBackbone(BevBackboneConfig.preset("edge"))),
        "student_edge": count_parameters(LatentStudent(StudentConfig.preset("edge"))),
        "student_paper": count_parameters(LatentStudent(StudentConfig.preset("paper"))),
        "planner_edge": count_parameters(FusedPlanner(PlannerConfig.preset("edge"))),
        "planner_paper": count_parameters(FusedPlanner(PlannerConfig.preset("paper"))),
    }
    assert 40e6 <= counts["student_paper"] <= 60e6, counts
    assert 1e6 <= counts["student_edge"] <= 3e6, counts
    assert counts["bev_edge"] < 2e6 and counts["planner_edge"] < 1e6, counts
    assert 1e6 <= counts["planner_paper"] <= 10e6, counts


@pytest.mark.slow
def test_paper_bev_backbone_size_and_shape():
    cfg = BevBackboneConfig.preset("paper")
    model = BevBackbone(cfg).eval()
    assert 35e6 <= count_parameters(model) <= 70e6  # two ResNet34-sized encoders + fusion
    with torch.inference_mode():
        out = model(torch.rand(1, 3, 256, 1024), torch.rand(1, 1, 256, 256), torch.randn(1, 8))
    assert out.shape == (1, 64, 256)


def test_edge_shapes_and_determinism():
    bev_cfg, st_cfg = BevBackboneConfig.preset("edge"), StudentConfig.preset("edge")
    bev, student = BevBackbone(bev_cfg).eval(), LatentStudent(st_cfg).eval()
    image, lidar, ego = torch.rand(2, 3, 128, 128), torch.rand(2, 1, 256, 256), torch.randn(2, 8)
    with torch.inference_mode():
        tokens = bev(image, lidar, ego)
        out = student(image, ego)
        assert tokens.shape == (2, 64, 64)
        assert out.logits.shape == (2, 12, 16)
        assert out.action_embeddings.shape == (2, 12, 192)
        assert out.visual_embeddings.shape == (2, st_cfg.num_visual_embeddings, 192) == (2, 16, 192)
        assert torch.equal(tokens, bev(image, lidar, ego))
        for fusion in ("none", "student", "teacher"):
            planner = FusedPlanner(PlannerConfig.preset("edge", fusion=fusion)).eval()
            ctx = None if fusion == "none" else torch.randn(2, 28, 192)
            poses = planner(tokens, ego, ctx)
            assert poses.shape == (2, 8, 3)
            assert poses[..., 2].abs().max() <= np.pi
        e2e = E2EPlanner(bev_cfg, PlannerConfig.preset("edge", fusion="student")).eval()
        assert e2e(image, lidar, ego, student_context(student, image, ego)).shape == (2, 8, 3)


def test_student_mask_is_causal_over_action_slots():
    model = randomize_(LatentStudent(StudentConfig.preset("edge"))).eval()
    image, ego = torch.rand(1, 3, 128, 128), torch.randn(1, 8)
    with torch.no_grad():
        ref = model(image, ego)
        model.action_queries[0, 7] += torch.randn(model.config.d_model)  # change slot 7 only
        new = model(image, ego)
    assert torch.equal(ref.logits[:, :7], new.logits[:, :7])  # earlier slots do not see it
    assert torch.equal(ref.visual_embeddings, new.visual_embeddings)  # the prefix does not see slots
    assert not torch.allclose(ref.logits[:, 7:], new.logits[:, 7:])


def test_fusion_module_starts_as_identity_and_uses_context():
    planner = FusedPlanner(PlannerConfig.preset("edge", fusion="student")).eval()
    tokens, ego = torch.randn(1, 64, 64), torch.randn(1, 8)
    with torch.no_grad():
        a, b = planner(tokens, ego, torch.randn(1, 28, 192)), planner(tokens, ego, torch.randn(1, 28, 192))
        assert torch.allclose(a, b)  # zero-initialised residual branches
        randomize_(planner.fusion)
        a, b = planner(tokens, ego, torch.randn(1, 28, 192)), planner(tokens, ego, torch.randn(1, 28, 192))
        assert not torch.allclose(a, b)
        with pytest.raises(ValueError, match="context"):
            planner(tokens, ego, None)


def test_e2e_rejects_mismatched_token_dims():
    with pytest.raises(ConfigError):
        E2EPlanner(BevBackboneConfig.preset("edge"), PlannerConfig.preset("paper"))


# ----------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("kind", ["bev", "student", "planner", "e2e"])
def test_checkpoint_roundtrip_identical_outputs(kind, tmp_path):
    torch.manual_seed(0)
    image, lidar, ego = torch.rand(1, 3, 128, 128), torch.rand(1, 1, 256, 256), torch.randn(1, 8)
    if kind == "bev":
        model, run = BevBackbone(), lambda m: m(image, lidar, ego)
    elif kind == "student":
        model, run = LatentStudent(), lambda m: m(image, ego).logits
    elif kind == "planner":
        ctx, tok = torch.randn(1, 28, 192), torch.randn(1, 64, 64)
        model, run = randomize_(FusedPlanner()), lambda m: m(tok, ego, ctx)
    else:
        ctx = torch.randn(1, 28, 192)
        model, run = E2EPlanner(), lambda m: m(image, lidar, ego, ctx)
    model.eval()
    model.save_pretrained(tmp_path / "ck", meta={"note": "test"})
    loaded = type(model).from_pretrained(tmp_path / "ck")
    with torch.no_grad():
        assert torch.equal(run(model), run(loaded))


def test_corrupt_or_mismatched_checkpoints_raise(tmp_path):
    LatentStudent().save_pretrained(tmp_path / "st")
    # wrong model type
    with pytest.raises(CheckpointError, match="student"):
        BevBackbone.from_pretrained(tmp_path / "st")
    # corrupt weights
    bad = tmp_path / "bad"
    LatentStudent().save_pretrained(bad)
    (bad / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError):
        LatentStudent.from_pretrained(bad)
    # truncated weights
    trunc = tmp_path / "trunc"
    LatentStudent().save_pretrained(trunc)
    data = (trunc / "model.safetensors").read_bytes()
    (trunc / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        LatentStudent.from_pretrained(trunc)
    # corrupt config.json
    cj = tmp_path / "cj"
    LatentStudent().save_pretrained(cj)
    (cj / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError):
        LatentStudent.from_pretrained(cj)
    # invalid config values
    inv = tmp_path / "inv"
    LatentStudent().save_pretrained(inv)
    payload = json.loads((inv / "config.json").read_text())
    payload["config"]["num_heads"] = 7
    (inv / "config.json").write_text(json.dumps(payload))
    with pytest.raises(CheckpointError, match="num_heads"):
        LatentStudent.from_pretrained(inv)
    # weights that do not fit the config
    mis = tmp_path / "mis"
    LatentStudent().save_pretrained(mis)
    payload = json.loads((mis / "config.json").read_text())
    payload["config"]["d_model"] = 96
    (mis / "config.json").write_text(json.dumps(payload))
    with pytest.raises(CheckpointError, match="does not fit"):
        LatentStudent.from_pretrained(mis)
    # missing directory
    with pytest.raises(CheckpointError):
        FusedPlanner.from_pretrained(tmp_path / "nothing")


# ----------------------------------------------------------------- pipeline
def test_untrained_pipeline_on_synthetic_frame():
    from latentvla_ros.runtime import build_pipeline_from_dir

    agent = build_pipeline_from_dir(None, preset="edge")
    frame = make_frame(cameras=3)
    traj = agent.compute_trajectory(agent_input_of(frame))
    assert traj.poses.shape == (8, 3) and traj.is_finite() and not traj.is_fallback
    assert traj.stamp_ns == frame.stamp_ns
    assert agent.untrained and "untrained" in agent.model_id and "untrained" in traj.model_id
    bev, plan = agent.last_bev, agent.last_plan
    assert bev.tokens.shape == (64, 64) and bev.tokens.dtype == np.float32
    assert (bev.grid_rows, bev.grid_cols, bev.cell_size_m, bev.origin_x_m) == (8, 8, 8.0, -32.0)
    np.testing.assert_array_equal(bev.ego_status, frame.ego.status_vector())
    assert plan.token_ids.shape == (12,) and plan.token_ids.min() >= 0 and plan.token_ids.max() < 16
    np.testing.assert_allclose(plan.token_probabilities.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(plan.token_ids, plan.token_probabilities.argmax(-1))
    assert plan.action_embeddings.shape == (12, 192) and plan.visual_embeddings.shape == (16, 192)
    assert plan.action_embeddings.dtype == np.float32
    assert agent.timings.total_ms > 0


def test_concurrent_agent_gives_the_sequential_result_and_reports_errors(monkeypatch):
    import threading

    from latentvla_ros.runtime import build_pipeline_from_dir, resolve_intra_op_threads

    assert resolve_intra_op_threads(3) == 3 and resolve_intra_op_threads(0) >= 1
    agent = build_pipeline_from_dir(None, preset="edge")
    frames = [make_frame(seed=s) for s in range(3)]
    sequential = [agent.compute_trajectory(agent_input_of(f)).poses for f in frames]
    agent.concurrent = True
    seen_threads = []
    reason = agent.reasoner.reason
    monkeypatch.setattr(agent.reasoner, "reason", lambda f: seen_threads.append(threading.current_thread()) or reason(f))
    try:
        for frame, expected in zip(frames, sequential):
            np.testing.assert_allclose(agent.compute_trajectory(agent_input_of(frame)).poses, expected, atol=1e-6)
        assert seen_threads and all(t is not threading.current_thread() for t in seen_threads)
        assert agent.timings.reason_ms > 0 and agent.timings.total_ms > 0

        def broken(_frame):
            raise ValueError("bad frame")

        monkeypatch.setattr(agent.reasoner, "reason", broken)
        with pytest.raises(ValueError, match="bad frame"):  # the worker's error reaches the caller
            agent.compute_trajectory(agent_input_of(frames[0]))
    finally:
        agent.close()
    assert agent._worker is None


def test_pipeline_loads_checkpoints_and_matches_models(tmp_path):
    from latentvla_ros.runtime import build_pipeline_from_dir

    torch.manual_seed(1)
    bev, student, planner = BevBackbone().eval(), LatentStudent().eval(), randomize_(FusedPlanner()).eval()
    bev.save_pretrained(tmp_path / "bev_backbone")
    student.save_pretrained(tmp_path / "student")
    planner.save_pretrained(tmp_path / "planner")
    agent = build_pipeline_from_dir(tmp_path, preset="paper")  # checkpoints' configs win over the preset
    assert not agent.untrained and "untrained" not in agent.model_id
    assert agent.bev.model_id.startswith("bev_backbone:bev_backbone:")
    frame = make_frame(seed=3)
    traj = agent.compute_trajectory(agent_input_of(frame))
    feats = agent.bev.features(frame)
    with torch.no_grad():
        image = torch.from_numpy(feats["image"])
        ego = torch.from_numpy(feats["ego_status"])
        tokens = bev(image, torch.from_numpy(feats["lidar_bev"]), ego)
        expected = planner(tokens, ego, student_context(student, image, ego))[0].numpy()
    np.testing.assert_allclose(traj.poses, expected, atol=1e-5)


def test_planner_input_and_output_errors():
    from latentvla_ros.runtime import (
        BevFeatureExtractor,
        LatentReasoner,
        MissingInputError,
        ModelOutputError,
        PipelineInputError,
        TrajectoryPlanner,
    )

    frame = make_frame()
    bev = BevFeatureExtractor().extract(frame)
    plan = LatentReasoner().reason(frame)
    planner = TrajectoryPlanner(PlannerConfig.preset("edge", fusion="student"))
    assert planner.needs_plan and planner.fusion == "student"
    with pytest.raises(MissingInputError):
        planner.plan(bev, None)
    bad_plan = dataclasses.replace(plan, action_embeddings=plan.action_embeddings[:, :10])
    with pytest.raises(PipelineInputError):
        planner.plan(bev, bad_plan)
    with pytest.raises(PipelineInputError):
        planner.plan(dataclasses.replace(bev, tokens=bev.tokens[:10]), plan)
    nan_bev = dataclasses.replace(bev, tokens=np.full_like(bev.tokens, np.nan))
    with pytest.raises(PipelineInputError):
        planner.plan(nan_bev, plan)
    assert planner.plan(bev, plan).poses.shape == (8, 3)
    unfused = TrajectoryPlanner(PlannerConfig.preset("edge", fusion="none"))
    assert unfused.plan(bev, None).is_finite()
    with torch.no_grad():
        unfused.model.head[-1].bias.fill_(float("nan"))
    with pytest.raises(ModelOutputError):
        unfused.plan(bev, None)
    bad_frame = make_frame()
    bad_frame.ego.velocity[0] = np.nan
    with pytest.raises(FeatureError):
        BevFeatureExtractor().extract(bad_frame)


def test_onnx_backend_matches_torch(tmp_path):
    from latentvla_ros.runtime import (
        BevFeatureExtractor,
        LatentReasoner,
        TrajectoryPlanner,
        export_onnx,
        onnx_model_id,
    )

    torch.manual_seed(2)
    randomize_(FusedPlanner()).save_pretrained(tmp_path / "planner")
    BevBackbone().save_pretrained(tmp_path / "bev")
    LatentStudent().save_pretrained(tmp_path / "student")
    frame = make_frame(seed=5)
    results = {}
    for backend in ("torch", "onnx"):
        kw = dict(backend=backend)
        bev = BevFeatureExtractor(checkpoint_dir=tmp_path / "bev", onnx_path=tmp_path / "onnx" / "bev.onnx", **kw)
        reasoner = LatentReasoner(checkpoint_dir=tmp_path / "student", onnx_path=tmp_path / "onnx" / "student.onnx", **kw)
        planner = TrajectoryPlanner(checkpoint_dir=tmp_path / "planner", onnx_path=tmp_path / "onnx" / "planner.onnx", **kw)
        tokens, plan = bev.extract(frame), reasoner.reason(frame)
        results[backend] = (tokens, plan, planner.plan(tokens, plan))
    (t_bev, t_plan, t_traj), (o_bev, o_plan, o_traj) = results["torch"], results["onnx"]
    assert np.abs(t_bev.tokens - o_bev.tokens).max() < 1e-4
    assert np.abs(t_plan.action_embeddings - o_plan.action_embeddings).max() < 1e-4
    assert np.abs(t_plan.visual_embeddings - o_plan.visual_embeddings).max() < 1e-4
    assert np.abs(t_plan.token_probabilities - o_plan.token_probabilities).max() < 1e-4
    assert np.abs(t_traj.poses - o_traj.poses).max() < 1e-4
    assert o_traj.model_id == t_traj.model_id and "untrained" not in o_traj.model_id
    # the exported file carries the model id; a second runtime reuses it
    path = tmp_path / "onnx" / "planner.onnx"
    assert onnx_model_id(path) == t_traj.model_id
    mtime = path.stat().st_mtime_ns
    TrajectoryPlanner(checkpoint_dir=tmp_path / "planner", backend="onnx", onnx_path=path)
    assert path.stat().st_mtime_ns == mtime
    # a stale or broken file at onnx_path is replaced by a fresh export
    stale = tmp_path / "stale.onnx"
    stale.write_bytes(b"not onnx")
    fresh = TrajectoryPlanner(checkpoint_dir=tmp_path / "planner", backend="onnx", onnx_path=stale)
    assert np.abs(fresh.plan(t_bev, t_plan).poses - t_traj.poses).max() < 1e-4
    # batch > 1 through the dynamic batch axis
    import onnxruntime as ort

    from latentvla_ros.runtime import example_inputs

    model = FusedPlanner.from_pretrained(tmp_path / "planner")
    out = export_onnx("planner", tmp_path / "planner", tmp_path / "p2.onnx")
    inputs = example_inputs("planner", model.config, batch_size=3)
    (ref,) = ort.InferenceSession(str(out)).run(None, {k: v.numpy() for k, v in inputs.items()})
    with torch.no_grad():
        assert np.abs(model(**inputs).numpy() - ref).max() < 1e-4


def test_channels_last_and_bf16_runtime_options():
    from latentvla_ros.runtime import BevFeatureExtractor

    torch.manual_seed(0)
    frame = make_frame(seed=7)
    ref = BevFeatureExtractor().model.state_dict()
    base = BevFeatureExtractor()
    base.model.load_state_dict(ref)
    fast = BevFeatureExtractor(channels_last=True)
    fast.model.load_state_dict(ref)
    half = BevFeatureExtractor(bf16=True)
    half.model.load_state_dict(ref)
    a, b, c = base.extract(frame).tokens, fast.extract(frame).tokens, half.extract(frame).tokens
    assert np.abs(a - b).max() < 1e-4
    assert c.dtype == np.float32 and np.isfinite(c).all() and np.abs(a - c).max() < 0.25
