"""Latent action model: VQ, both training stages, checkpoints, labels, evaluation.

Synthetic logs: a top-down, ego-up scene whose background (checker texture and
dashed lane lines) scrolls with a known ego action (piecewise-constant
longitudinal/lateral speed), plus two squares ("other vehicles") that move
independently in the image.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from latentvla_ros.core.checkpoint import load_state_dict
from latentvla_ros.core.config_base import ConfigError
from latentvla_ros.models.configuration_lam import LamConfig
from latentvla_ros.models.modeling_lam import EmaVectorQuantizer, LatentActionModel, build_lam, load_lam
from latentvla_ros.training.common import TrainConfig
from latentvla_ros.training.lam import (
    EGO_CODES_FILE,
    ENV_CODES_FILE,
    LamDataError,
    LamTransitionDataset,
    downsample_frames,
    encode_log,
    evaluate_lam,
    label_logs_with_lam,
    last_epoch_index,
    load_log_arrays,
    split_transitions,
    train_lam,
)

torch.set_num_threads(1)

MPP = 0.25  # metres per camera pixel
DT = 0.1


def make_synthetic_log(directory: Path, num_frames: int = 120, seed: int = 0, size: int = 128) -> Path:
    """Write a driving log (format of docs/architecture.md) with known ego motion."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    # ego action: piecewise-constant speed (px/frame) forward and sideways
    vx = np.zeros(num_frames)
    vy = np.zeros(num_frames)
    t = 0
    while t < num_frames:
        dur = int(rng.integers(6, 15))
        vx[t:t + dur] = rng.choice([0.5, 2.0, 3.5])
        vy[t:t + dur] = rng.choice([-1.0, 0.0, 1.0])
        t += dur
    ex = np.concatenate([[0.0], np.cumsum(vx[:-1])])
    ey = np.concatenate([[0.0], np.cumsum(vy[:-1])])
    # two other vehicles: independent image-space random walks with abrupt velocity changes
    objects = np.zeros((2, num_frames, 2))
    for k in range(2):
        pos = rng.uniform(24, size - 24, 2)
        vel = rng.uniform(-3, 3, 2)
        for i in range(num_frames):
            if rng.random() < 0.15:
                vel = rng.uniform(-3, 3, 2)
            pos = pos + vel
            for d in range(2):
                if pos[d] < 12 or pos[d] > size - 12:
                    vel[d] = -vel[d]
                    pos[d] = np.clip(pos[d], 12, size - 12)
            objects[k, i] = pos
    rows, cols = np.mgrid[0:size, 0:size]
    cam = np.zeros((num_frames, 1, size, size, 3), np.uint8)
    c = size // 2
    for i in range(num_frames):
        xw = np.round(ex[i]) + (c - rows)  # forward is up
        yw = np.round(ey[i]) + (c - cols)  # left is left
        img = np.zeros((size, size, 3), np.uint8)
        checker = ((np.floor(xw / 8) + np.floor(yw / 8)) % 2) * 40 + 60
        img[..., 0] = checker
        img[..., 1] = checker
        img[..., 2] = checker
        lane = (np.mod(yw, 24) < 2) & (np.mod(xw, 16) < 8)
        img[lane] = 230
        img[c - 7:c + 7, c - 4:c + 4] = (40, 200, 40)  # ego
        for k, color in enumerate(((40, 60, 220), (220, 60, 40))):  # other vehicles
            r0, c0 = int(objects[k, i, 0]), int(objects[k, i, 1])
            img[r0 - 6:r0 + 6, c0 - 6:c0 + 6] = color
        cam[i, 0] = img
    pose = np.stack([ex * MPP, ey * MPP, np.zeros(num_frames)], axis=1)
    status = np.zeros((num_frames, 5), np.float32)
    status[:, 0] = vx * MPP / DT
    status[:, 1] = vy * MPP / DT
    status[1:, 2] = np.diff(status[:, 0]) / DT
    status[1:, 3] = np.diff(status[:, 1]) / DT
    fut = np.zeros((num_frames, 8, 3), np.float32)
    valid = np.zeros(num_frames, bool)
    for i in range(num_frames):
        idx = i + 5 * np.arange(1, 9)
        if idx[-1] < num_frames:
            valid[i] = True
            fut[i, :, 0] = pose[idx, 0] - pose[i, 0]
            fut[i, :, 1] = pose[idx, 1] - pose[i, 1]
    np.save(directory / "camera.npy", cam)
    np.save(directory / "ego_pose.npy", pose)
    np.save(directory / "ego_status.npy", status)
    np.save(directory / "command.npy", np.ones(num_frames, np.uint8))
    np.save(directory / "future_trajectory.npy", fut)
    np.save(directory / "future_valid.npy", valid)
    (directory / "meta.json").write_text(json.dumps({"source": "synthetic", "dt_s": DT, "num_frames": num_frames,
                                                      "camera_names": ["bev"], "camera_meters_per_pixel": MPP}))
    return directory


def tiny_config(**overrides) -> LamConfig:
    values = dict(image_size=32, encoder_channels=(8, 16), idm_hidden_dim=32, cond_hidden_dim=16,
                  latent_dim=8, fdm_channels=(8, 16), action_embed_dim=16, restart_buffer_size=256,
                  dead_code_threshold=1)
    values.update(overrides)
    return LamConfig.edge(**values)


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("lam_logs")
    return [make_synthetic_log(root / f"log{i}", num_frames=100, seed=i) for i in range(2)]


@pytest.fixture(scope="module")
def trained(logs, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("lam_run")
    cfg1 = TrainConfig(epochs=4, batch_size=32, lr=2e-3, warmup_steps=2, seed=0)
    cfg2 = TrainConfig(epochs=3, batch_size=32, lr=2e-3, warmup_steps=2, seed=1)
    result = train_lam(logs, out, model_config=tiny_config(), train_cfg_stage1=cfg1, train_cfg_stage2=cfg2,
                       show_progress=False)
    return {"out": out, "result": result, "cfg1": cfg1, "cfg2": cfg2}


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


# ---------------------------------------------------------------------------
# config
# ---------------------------------------------------------------------------
def test_presets_validate_and_round_trip():
    for name in ("edge", "paper"):
        cfg = LamConfig.preset(name)
        assert cfg.codebook_size == 16 and cfg.frame_stride == 3 and cfg.image_size == 64
        assert LamConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ConfigError, match="preset"):
        LamConfig.preset("huge")


@pytest.mark.parametrize("field,value", [
    ("image_size", 60), ("frame_stride", 0), ("codebook_size", 1), ("vq_decay", 1.0), ("vq_commitment", 0.0),
    ("vq_commitment", 2.0), ("dead_code_threshold", -1), ("crop_ego_row_fraction", 1.0), ("crop_px", 4),
    ("code_names", ("one name",)), ("ego_supervision_fraction", 1.0), ("stem_downsample", 3),
    ("fdm_channels", (16,)), ("encoder_channels", (8, 8, 8, 8, 8, 8)), ("trajectory_scale_m", float("nan")),
])
def test_invalid_config_raises(field, value):
    with pytest.raises(ConfigError, match=field):
        LamConfig.edge(**{field: value})


# ---------------------------------------------------------------------------
# VQ
# ---------------------------------------------------------------------------
def test_vq_straight_through_usage_and_perplexity():
    torch.manual_seed(0)
    vq = EmaVectorQuantizer(16, 4, decay=0.9, commitment=0.25, buffer_size=64)
    vq.train()
    z = torch.randn(64, 4, requires_grad=True)
    out = vq(z)
    assert bool(vq.initialized)
    assert out.codes.shape == (64,) and out.quantized.shape == (64, 4)
    (out.quantized.sum() + out.commitment_loss).backward()
    assert z.grad is not None and torch.all(torch.isfinite(z.grad))  # straight-through
    counts = vq.usage_counts()
    assert float(counts.sum()) == 64
    assert 1.0 <= float(out.perplexity) <= 16.0
    # eval mode: no usage counting, no codebook change
    before = vq.codebook.clone()
    vq.eval()
    vq(torch.randn(8, 4))
    assert torch.equal(vq.codebook, before) and float(vq.usage_counts().sum()) == 64


def test_dead_code_restart_revives_unused_codes():
    torch.manual_seed(0)
    vq = EmaVectorQuantizer(16, 2, decay=0.5, commitment=0.25, buffer_size=256)
    vq.train()
    vq(torch.randn(256, 2))  # data init spreads codes over a unit cloud
    vq.codebook[8:] += 100.0  # make half the codes unreachable
    vq.ema_sum.copy_(vq.codebook * vq.ema_count[:, None])
    vq.reset_usage()
    for _ in range(3):
        vq(torch.randn(256, 2))
    usage = vq.usage_counts()
    assert int((usage[8:] > 0).sum()) == 0
    restarted = vq.restart_dead_codes(min_count=1)
    assert restarted >= 8
    assert float(vq.codebook[8:].abs().max()) < 10.0  # now near the data
    vq(torch.randn(512, 2))
    assert int((vq.usage_counts() > 0).sum()) > 8
    # frozen quantizers never restart
    vq.frozen = True
    assert vq.restart_dead_codes(min_count=10 ** 6) == 0


# ---------------------------------------------------------------------------
# model
# ---------------------------------------------------------------------------
def test_stage_freezing_and_shapes():
    torch.manual_seed(0)
    model = build_lam(tiny_config())
    b = 4
    frames = [torch.randint(0, 256, (b, 3, 32, 32), dtype=torch.uint8) for _ in range(3)]
    out = model(frames[1], frames[2], ego_motion=torch.zeros(b, 3), trajectory=torch.zeros(b, 8, 3),
                ego_status=torch.zeros(b, 8), future_valid=torch.ones(b))
    assert out["prediction"].shape == (b, 3, 32, 32) and out["env_codes"].shape == (b,)
    assert not any(p.requires_grad for p in model.idm_ego_cnn.parameters())
    model.set_stage(2)
    assert not any(p.requires_grad for m in model.env_modules() for p in m.parameters())
    assert all(p.requires_grad for p in model.idm_ego_cnn.parameters())
    assert model.vq_env.frozen and not model.vq_ego.frozen
    out = model(frames[1], frames[2])  # stage 2 needs no ground truth
    assert out["ego_codes"].shape == (b,)
    out["loss"].backward()
    codes = model.encode_ego(frames[1], frames[2])
    assert codes.shape == (b,) and int(codes.min()) >= 0 and int(codes.max()) < 16
    with pytest.raises(ValueError):
        model.set_stage(3)


def test_untrained_fdm_is_copy_baseline_and_codes_move_the_view():
    model = build_lam(tiny_config())
    frames = [torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8) for _ in range(3)]
    env = torch.zeros(2, dtype=torch.long)
    with torch.no_grad():
        model.vq_ego.codebook[0, :3] = 0.0  # code 0: no motion
        # code 1: 2.5 m ahead = 5 px at 0.5 m/px (code entries are motions in odometry_scale units)
        model.vq_ego.codebook[1, :3] = torch.tensor([2.5 / model.config.odometry_scale[0], 0.0, 0.0])
    pred = model.decode(frames[1], env, env)
    assert torch.allclose(pred, LatentActionModel.prepare_frames(frames[1]))
    moved = model.decode(frames[1], env, torch.ones(2, dtype=torch.long))
    expected = LatentActionModel.prepare_frames(frames[1])[:, :, :-5]  # the scene slides down by 5 rows
    assert torch.allclose(moved[:, :, 5:], expected, atol=1e-5)


# ---------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------
def test_downsample_is_area_mean():
    cam = np.random.default_rng(0).integers(0, 256, (3, 1, 8, 8, 3), dtype=np.uint8)
    out = downsample_frames(cam, 0, 4)
    expected = cam[:, 0].reshape(3, 4, 2, 4, 2, 3).astype(float).mean(axis=(2, 4))
    assert out.shape == (3, 3, 4, 4) and out.dtype == torch.uint8
    assert np.abs(out.permute(0, 2, 3, 1).numpy() - expected).max() <= 0.5 + 1e-6


def test_last_epoch_index():
    assert last_epoch_index(100, TrainConfig(epochs=5, batch_size=10)) == 4
    assert last_epoch_index(100, TrainConfig(epochs=5, batch_size=10, max_steps=25)) == 2
    assert last_epoch_index(100, TrainConfig(epochs=5, batch_size=10, max_steps=25), world_size=2) == 4
    assert last_epoch_index(5, TrainConfig(epochs=3, batch_size=10)) == 2


def test_split_has_no_shared_frames():
    for n_logs in (1, 2, 6):
        parts = split_transitions([100] * n_logs, 3, 0.2)
        assert sum(map(len, parts["holdout"])) > 0 and sum(map(len, parts["train"])) > 0
        for tr, ho in zip(parts["train"], parts["holdout"]):
            if len(tr) and len(ho):
                assert tr.max() + 3 < ho.min() - 3  # frames t-3..t+3 never overlap


def test_dataset_items(logs):
    cfg = tiny_config()
    ds = LamTransitionDataset(logs, cfg, split="all")
    assert len(ds) == 2 * (100 - 3)
    item = ds[0]
    assert item["frames_t"].shape == (3, 32, 32) and item["frames_t"].dtype == torch.uint8
    assert torch.equal(item["frames_prev"], item["frames_t"])  # t=0 has no previous frame
    assert item["trajectory"].shape == (8, 3) and item["ego_status"].shape == (8,)
    assert float(item["ego_status"][1]) == 1.0  # command STRAIGHT one-hot
    pose = np.load(logs[0] / "ego_pose.npy")
    assert np.allclose(item["ego_motion"].numpy(), pose[3] - pose[0], atol=1e-5)


def test_bad_logs_raise(tmp_path):
    with pytest.raises(LamDataError, match="camera"):
        load_log_arrays(tmp_path, tiny_config())
    np.save(tmp_path / "camera.npy", np.zeros((2, 1, 8, 8, 3), np.uint8))
    with pytest.raises(LamDataError, match="frames"):
        load_log_arrays(tmp_path, tiny_config())
    np.save(tmp_path / "camera.npy", np.zeros((10, 1, 8, 8, 3), np.uint8))
    np.save(tmp_path / "ego_pose.npy", np.zeros((9, 3)))
    with pytest.raises(LamDataError, match="ego_pose"):
        load_log_arrays(tmp_path, tiny_config())


# ---------------------------------------------------------------------------
# training end to end (tiny model, two synthetic logs)
# ---------------------------------------------------------------------------
def test_training_loss_falls_and_usage_logged(trained):
    out = trained["out"]
    rows1 = _read_csv(out / "lam_stage1" / "metrics.csv")
    rows2 = _read_csv(out / "lam_stage2" / "metrics.csv")
    assert len(rows1) == trained["cfg1"].epochs and len(rows2) == trained["cfg2"].epochs
    # stage 1 optimises the weighted error (no loss on the road entering the view, more on what the ego
    # motion leaves unexplained); stage 2 the plain one, which must beat copying the last frame
    first, last = float(rows1[0]["train/recon_fit"]), float(rows1[-1]["train/recon_fit"])
    assert last < first
    for key in ("env/codes_used", "env/usage", "env/perplexity", "restarted_codes"):
        assert key in rows1[0]
    for key in ("ego/codes_used", "ego/perplexity", "env/perplexity"):
        assert key in rows2[0]
    assert all(float(r["env/codes_used"]) >= 1 for r in rows1)
    assert float(rows1[-1]["restarted_codes"]) == 0  # no restart after the last epoch
    assert float(rows2[-1]["train/recon_mse"]) < float(rows2[-1]["train/copy_mse"])


def test_env_parts_frozen_in_stage2(trained):
    out = trained["out"]
    s1 = load_state_dict(out / "lam_stage1" / "checkpoint")
    s2 = load_state_dict(out / "lam")
    env_keys = [k for k in s1 if k.startswith(("idm_env_", "vq_env."))]
    assert any(k.startswith("vq_env.codebook") for k in env_keys) and len(env_keys) > 5
    for k in env_keys:
        assert torch.equal(s1[k], s2[k]), k
    ego_keys = [k for k in s1 if k.startswith("idm_ego_")]
    assert any(not torch.equal(s1[k], s2[k]) for k in ego_keys)


def test_checkpoint_reload_gives_identical_codes(trained, logs):
    model = load_lam(trained["out"] / "lam")
    assert model.stage == 2
    log = load_log_arrays(logs[0], model.config)
    env_a, ego_a = encode_log(model, log)
    env_b, ego_b = encode_log(load_lam(trained["out"] / "lam"), log)
    assert np.array_equal(env_a, env_b) and np.array_equal(ego_a, ego_b)
    labels = np.load(logs[0] / EGO_CODES_FILE)
    assert np.array_equal(labels[: len(ego_a)], ego_a.astype(np.int16))


def test_label_files(trained, logs):
    for path in logs:
        for name in (EGO_CODES_FILE, ENV_CODES_FILE):
            codes = np.load(path / name)
            assert codes.dtype == np.int16 and codes.shape == (100,)
            assert np.all(codes[-3:] == -1)
            assert np.all((codes[:-3] >= 0) & (codes[:-3] < 16))
    summary = label_logs_with_lam(trained["out"] / "lam", logs[:1])
    assert summary[str(logs[0])]["labeled"] == 97


def test_eval_report(trained, logs):
    report = json.loads((trained["out"] / "lam" / "eval.json").read_text())
    assert report["split"] == "holdout" and report["num_transitions"] > 0
    nf = report["next_frame"]
    assert nf["mse"] > 0 and nf["mse_copy_last_frame"] > 0
    for name in ("env", "ego"):
        cb = report["codebooks"][name]
        assert 1 <= cb["codes_used"] <= 16 and 1.0 <= cb["perplexity"] <= 16.0
    assert nf["mse_random_ego_codes"] > 0 and nf["mse_swapped_ego_codes"] > 0
    assert 0.0 <= report["h_ego_given_env_bits"] <= report["h_ego_bits"] + 1e-9
    probe = report["probe"]
    for name in ("ego", "env", "ego_env", "baseline"):
        assert probe[name]["r2"] <= 1.0 and len(probe[name]["r2_per_dim"]) == 3
    assert probe["baseline"]["r2"] <= 0.05
    assert "skipped" in report["probe_agents"]  # the synthetic logs have no agents.npy
    again = evaluate_lam(trained["out"] / "lam", logs, out_path=trained["out"] / "eval2.json")
    assert again["next_frame"] == report["next_frame"]


def test_resume_does_not_retrain(trained, logs):
    out = trained["out"]
    before = (out / "lam" / "model.safetensors").read_bytes()
    result = train_lam(logs, out, model_config=tiny_config(), train_cfg_stage1=trained["cfg1"],
                       train_cfg_stage2=trained["cfg2"], show_progress=False, label=False, evaluate=False)
    assert result["stage1"]["steps"] == trained["result"]["stage1"]["steps"]
    assert result["stage2"]["steps"] == trained["result"]["stage2"]["steps"]
    assert (out / "lam" / "model.safetensors").read_bytes() == before
    assert len(_read_csv(out / "lam_stage1" / "metrics.csv")) == trained["cfg1"].epochs


@pytest.mark.slow
def test_edge_preset_learns_ego_motion(tmp_path):
    """Edge preset on more synthetic data: ego codes explain the ego motion better than env codes."""
    logs = [make_synthetic_log(tmp_path / f"log{i}", num_frames=300, seed=10 + i) for i in range(5)]
    cfg = TrainConfig(epochs=6, batch_size=32, lr=1e-3, warmup_steps=20, seed=0)
    result = train_lam(logs, tmp_path / "run", preset="edge", train_cfg_stage1=cfg, train_cfg_stage2=cfg,
                       show_progress=False, label=False)
    report = result["eval"]
    assert report["next_frame"]["mse"] < report["next_frame"]["mse_copy_last_frame"]
    assert report["probe"]["ego"]["r2"] > report["probe"]["env"]["r2"]
    assert report["probe"]["ego"]["r2"] > 0.2
    assert report["next_frame"]["mse_random_ego_codes"] > 1.3 * report["next_frame"]["mse"]


# ---------------------------------------------------------------------------
# separation of ego and environment (issue 13)
# ---------------------------------------------------------------------------
def test_env_encoder_never_sees_ego_motion():
    """Stage 1: the ego's own motion reaches the forward model only, never the environmental
    encoder (no shortcut): the env codes do not change with it, the prediction does."""
    torch.manual_seed(0)
    model = build_lam(tiny_config())
    model.eval()
    b = 6
    cur, nxt = (torch.randint(0, 256, (b, 3, 32, 32), dtype=torch.uint8) for _ in range(2))
    with torch.no_grad():
        model.fdm.out.weight.normal_(0, 0.1)  # a forward model that is not the copy baseline
        runs = [model(cur, nxt, ego_motion=torch.randn(b, 3) * 5, trajectory=torch.randn(b, 8, 3) * 10,
                      ego_status=torch.randn(b, 8), future_valid=torch.ones(b)) for _ in range(2)]
    assert torch.equal(runs[0]["env_codes"], runs[1]["env_codes"])
    assert not torch.allclose(runs[0]["prediction"], runs[1]["prediction"])
    model.set_stage(2)  # stage 2: no ego motion reaches the forward model either
    with torch.no_grad():
        a = model(cur, nxt, ego_motion=torch.randn(b, 3) * 5)["prediction"]
        c = model(cur, nxt, ego_motion=torch.randn(b, 3) * 5)["prediction"]
    assert torch.equal(a, c)


def test_lam_separates_ego_from_env(trained):
    """Synthetic two-factor world (scrolling background = ego motion, two squares moving
    independently of it): the ego codes must explain the ego factor and the forward model
    must depend on them; the environmental codes must not carry the ego motion."""
    report = json.loads((trained["out"] / "lam" / "eval.json").read_text())
    ego_r2, env_r2 = report["probe"]["ego"]["r2"], report["probe"]["env"]["r2"]
    assert ego_r2 >= 0.5, report["probe"]
    assert ego_r2 >= env_r2 + 0.3, report["probe"]
    nf = report["next_frame"]
    assert nf["mse_random_ego_codes"] >= 1.2 * nf["mse"], nf
    assert nf["mse_swapped_ego_codes"] >= 1.1 * nf["mse"], nf


def test_atlas_names_codes_and_renders(trained, logs):
    from latentvla_ros.training.lam_atlas import ATLAS_JSON, ATLAS_PNG, code_name

    atlas = json.loads((trained["out"] / "lam" / ATLAS_JSON).read_text())
    assert len(atlas["codes"]) == 16 and abs(sum(c["share"] for c in atlas["codes"]) - 1.0) < 1e-6
    png = (trained["out"] / "lam" / ATLAS_PNG).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    names = load_lam(trained["out"] / "lam").config.code_names
    assert len(names) == 16 and len(set(names)) == 16
    assert [c["name"] for c in atlas["codes"]] == list(names)
    used = [c for c in atlas["codes"] if c["count"]]
    fastest = max(used, key=lambda c: c["mean"][0])
    assert fastest["mean"][0] > min(c["mean"][0] for c in used)
    assert code_name((0.05, 0.0, 0.0), 0.3) == "stopped"
    assert code_name((7.2, 0.0, 0.0), 0.3) == "straight 24 m/s"
    assert code_name((2.4, 0.3, 0.1), 0.3).startswith("left 8 m/s")
    assert code_name((2.4, -0.3, -0.1), 0.3).startswith("right 8 m/s")


def test_report_writes_docs_shape(trained, tmp_path):
    from latentvla_ros.training.lam_report import write_lam_docs

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "training.md").write_text("# Training report\n\n## Latent action model (old)\n\nold numbers\n\n"
                                      "## Teacher and distilled student\n\nkept\n")
    (docs / "training.json").write_text(json.dumps({"other": 1}))
    write_lam_docs(trained["out"] / "lam", tmp_path / "out", "latentvla train lam --write-docs", docs)
    md = (docs / "training.md").read_text()
    assert "old numbers" not in md and "kept" in md and "H(ego | env)" in md and "images/lam_atlas.png" in md
    data = json.loads((docs / "training.json").read_text())
    assert data["other"] == 1
    lam = data["lam"]
    assert set(lam["ego_motion_r2"]) == {"ego_tokens", "env_tokens"}
    assert set(lam["agent_motion_r2"]) == {"ego_tokens", "env_tokens", "no_tokens"}
    assert set(lam["next_frame_mse"]) == {"true_codes", "random_ego_codes", "swapped_ego_codes", "copy_last_frame"}
    assert isinstance(lam["h_ego_given_env_bits"], float)
    assert set(lam["codes_used"]) == {"env", "ego"} and set(lam["perplexity"]) == {"env", "ego"}
    assert (docs / "images" / "lam_atlas.png").is_file()


def test_old_lam_checkpoint_is_rejected_clearly(trained, tmp_path):
    from latentvla_ros.core.checkpoint import CheckpointError

    old = tmp_path / "old_lam"
    old.mkdir()
    payload = json.loads((trained["out"] / "lam" / "config.json").read_text())
    payload["config"]["cond_dropout"] = 0.1  # a field of the first LAM version
    (old / "config.json").write_text(json.dumps(payload))
    (old / "model.safetensors").write_bytes((trained["out"] / "lam" / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="retrain"):
        load_lam(old)


def test_weak_supervision_is_optional_and_fixed(logs):
    cfg = tiny_config(ego_supervision_fraction=0.1)
    ds = LamTransitionDataset(logs, cfg, split="all")
    marks = np.array([float(ds[i]["supervised"]) for i in range(len(ds))])
    assert 0.03 < marks.mean() < 0.2
    assert np.array_equal(marks, [float(ds[i]["supervised"]) for i in range(len(ds))])
    assert all(float(LamTransitionDataset(logs, tiny_config(), split="all")[i]["supervised"]) == 0 for i in range(20))
    model = build_lam(cfg, stage=2)
    batch = torch.utils.data.default_collate([ds[i] for i in range(16)])
    batch["supervised"] = torch.ones(16)
    out = model(batch["frames_t"], batch["frames_next"], ego_motion=batch["ego_motion"], supervised=batch["supervised"])
    assert float(out["ego_supervision"]) > 0
    out["loss"].backward()
    assert model.ego_motion_head.weight.grad is not None


def test_noisy_transitions_of_recovery_logs_get_no_ego_code(trained, logs, tmp_path):
    # DART recovery logs (data/perturbation.py): the motion of a noise burst is no expert action,
    # so its transitions get ego code -1 (teacher / token targets skip them); the rest is unchanged
    import shutil

    copy = tmp_path / "noisy"
    shutil.copytree(logs[0], copy)
    pert = np.zeros((100, 2), np.float32)
    pert[40:45, 0] = 0.1  # steps 40..44 carried noise
    np.save(copy / "perturbation.npy", pert)
    label_logs_with_lam(trained["out"] / "lam", [copy])
    clean, noisy = np.load(logs[0] / EGO_CODES_FILE), np.load(copy / EGO_CODES_FILE)
    stride = load_lam(trained["out"] / "lam").config.frame_stride
    dropped = np.zeros(100, bool)
    dropped[40 - stride + 1:45] = True  # transition t -> t + stride spans steps t .. t + stride - 1
    assert np.all(noisy[dropped] == -1) and np.array_equal(noisy[~dropped], clean[~dropped])
    assert np.array_equal(np.load(copy / ENV_CODES_FILE), np.load(logs[0] / ENV_CODES_FILE))


def test_stage1_loss_ignores_unseen_pixels_and_weights_unexplained_ones():
    """Stage 1 (issue 13): pixels that the true ego-motion warp brings in from outside frame t weigh 0 in the
    loss (no action can predict new road at the edge); pixels the warp leaves unexplained (other road users
    moving on their own) weigh more. Label-free: only the frames and the ego motion the FDM already gets."""
    torch.manual_seed(0)
    model = build_lam(tiny_config(env_mask_unseen=True, env_residual_weight=2.0, meters_per_pixel=0.5))
    b, s = 2, 32
    cur = torch.zeros(b, 3, s, s)
    nxt = torch.zeros(b, 3, s, s)
    nxt[:, :, 20:24, 4:8] = 0.4  # a "vehicle" the ego motion does not explain
    motion = torch.tensor([[4.0, 0.0, 0.0]] * b)  # 4 m ahead = 8 rows of new road at the top
    w = model._stage1_pixel_weights(cur, nxt, motion)
    assert w.shape == (b, 1, s, s)
    assert float(w[:, :, :7].abs().max()) == 0.0
    assert float(w[:, :, 20:24, 4:8].min()) > 5 * float(w[:, :, 12:16, 20:28].max()) > 0
    torch.testing.assert_close(w.mean(), torch.tensor(1.0))
    with torch.no_grad():  # the stage-1 loss is the weighted error
        out = model(cur, nxt, ego_motion=motion)
        fit = (w * (out["prediction"] - nxt).pow(2)).mean()
        torch.testing.assert_close(out["loss"], fit + out["commitment"] + out["usage_loss"])
    assert model._stage1_pixel_weights(cur, nxt, None) is None  # no ego motion: plain MSE
