"""The multi-modal planner head (issue 12, "it averages yield and go"): K trajectories + K mode logits,
trained winner-takes-all, the most likely mode driven."""
from __future__ import annotations

import math

import pytest
import torch

from latentvla_ros.core.config_base import ConfigError
from latentvla_ros.models.configuration_planner import PlannerConfig
from latentvla_ros.models.modeling_planner import FusedPlanner, expand_modes, mode_offsets, select_mode
from latentvla_ros.training.planner import mode_losses

torch.set_num_threads(1)


def _small(num_modes: int, **kw) -> PlannerConfig:
    return PlannerConfig.preset("edge", fusion="none", route_points=0, d_model=32, num_heads=2, ffn_dim=64,
                                num_layers=1, num_modes=num_modes, **kw)


def test_mode_losses_by_hand():
    target = torch.zeros(1, 2, 3)
    poses = torch.zeros(1, 2, 2, 3)
    poses[0, 0] += 1.0  # mode 0 off by 1 everywhere: L1 1
    poses[0, 1, :, 0] += 0.5  # mode 1 off by 0.5 in x only: L1 0.5 / 3
    logits = torch.tensor([[math.log(3.0), 0.0]])  # p = (0.75, 0.25): the classifier believes mode 0
    terms = mode_losses(poses, logits, target)
    assert terms["l1_best"].item() == pytest.approx(0.5 / 3)
    assert terms["mode_ce"].item() == pytest.approx(-math.log(0.25), rel=1e-5)
    assert terms["mode_hit"].item() == 0.0
    assert torch.equal(select_mode(poses, logits), poses[:, 0])
    tie = select_mode(poses, torch.zeros(1, 2))  # equal logits: the mean of the tied modes
    assert torch.allclose(tie, poses.mean(dim=1))


def test_a_single_mode_planner_grows_modes_around_its_one_trajectory():
    torch.manual_seed(0)
    one, three = _small(1), _small(3)
    single, multi = FusedPlanner(one).eval(), FusedPlanner(three).eval()
    multi.load_state_dict(expand_modes(single.state_dict(), three, multi.state_dict()))
    bev = torch.randn(2, one.num_bev_tokens, one.bev_token_dim)
    status = torch.zeros(2, 8)
    status[:, 4] = 10.0
    with torch.no_grad():
        base = single(bev, status)
        poses, logits = multi.forward_modes(bev, status)
    assert logits.shape == (2, 3) and poses.shape == (2, 3, 8, 3)
    assert torch.allclose(poses[:, 1], base, atol=1e-5)  # the middle mode is the old plan
    # the outer modes move 4 m/s slower / faster along x: 16 m at 4 s (by hand: spread 4 m/s x 4 s)
    assert (poses[:, 0, -1, 0] - base[:, -1, 0]).tolist() == pytest.approx([-16.0, -16.0], abs=1e-3)
    assert (poses[:, 2, -1, 0] - base[:, -1, 0]).tolist() == pytest.approx([16.0, 16.0], abs=1e-3)
    assert torch.allclose(poses[..., 1:], base[:, None, :, 1:].expand_as(poses[..., 1:]), atol=1e-5)
    assert mode_offsets(one).abs().max().item() == 0.0
    with pytest.raises(ConfigError, match="num_modes"):
        PlannerConfig.preset("edge", num_modes=0)


def test_winner_takes_all_drives_the_likely_mode_where_one_regression_averages():
    """Identical inputs, the logged plan goes at 10 m/s in 60% of the samples and stops in 40%: the
    single-trajectory fit is one plan for both (a least-squares fit: 24 m at 4 s, nowhere the expert went);
    the multi-modal head fits both and drives the likelier one."""
    torch.manual_seed(0)
    times = 0.5 * torch.arange(1, 9, dtype=torch.float32)
    go = torch.stack([10.0 * times, torch.zeros(8), torch.zeros(8)], dim=-1)
    stop = torch.zeros(8, 3)
    n = 40
    target = torch.stack([go if i % 5 < 3 else stop for i in range(n)])
    cfg = _small(2, constant_velocity_prior=False)
    bev = torch.zeros(n, cfg.num_bev_tokens, cfg.bev_token_dim)
    status = torch.zeros(n, 8)
    model = FusedPlanner(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(400):
        poses, logits = model.forward_modes(bev, status)
        terms = mode_losses(poses, logits, target)
        loss = 10.0 * terms["l1_best"].mean() + terms["mode_ce"].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        poses, logits = model.forward_modes(bev[:1], status[:1])
        plan = model(bev[:1], status[:1])
    ends = sorted(poses[0, :, -1, 0].tolist())
    assert ends == pytest.approx([0.0, 40.0], abs=1.5)  # one mode stops, one goes
    assert plan[0, -1, 0].item() == pytest.approx(40.0, abs=1.5)  # and the likelier one is driven
    assert torch.softmax(logits, dim=1).max().item() == pytest.approx(0.6, abs=0.05)


def test_a_multi_modal_planner_exports_to_onnx_and_drives_the_same_mode(tmp_path):
    """The runtime's onnxruntime backend runs the exported planner: the most likely mode, as torch picks it."""
    import numpy as np
    import onnxruntime as ort

    from latentvla_ros.runtime.backends import export_onnx
    from latentvla_ros.runtime.registry import example_inputs

    torch.manual_seed(0)
    cfg = PlannerConfig.preset("edge", num_modes=3)
    planner = FusedPlanner(cfg).eval()
    with torch.no_grad():
        planner.mode_head.bias.copy_(torch.tensor([0.0, 2.0, 1.0]))  # mode 1 the most likely
    inputs = example_inputs("planner", cfg)
    session = ort.InferenceSession(str(export_onnx("planner", planner, tmp_path / "planner.onnx")))
    out = session.run(None, {k: v.numpy() for k, v in inputs.items()})[0]
    with torch.no_grad():
        poses, logits = planner.forward_modes(**inputs)
    assert int(logits.argmax(dim=1)[0]) == 1
    np.testing.assert_allclose(out, poses[:, 1].numpy(), atol=1e-4)
