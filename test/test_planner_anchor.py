"""The planner's constant-velocity anchor goes straight ahead along the heading at the
ego's speed: the slip angle's lateral velocity vy must not bend it (issue 12)."""
from __future__ import annotations

import json

import pytest
import torch

from latentvla_ros.models.configuration_planner import PlannerConfig
from latentvla_ros.models.modeling_planner import FusedPlanner, anchor_xy


def _zero_head(planner: FusedPlanner) -> FusedPlanner:
    """Head output 0: x, y = the anchor, heading = 0."""
    torch.nn.init.zeros_(planner.head[2].weight)
    torch.nn.init.zeros_(planner.head[2].bias)
    return planner.eval()


def test_anchor_ignores_the_slip_angle():
    status = torch.zeros(1, 8)
    status[0, 4], status[0, 5] = 8.0, 6.0  # |v| = 10 m/s, slip atan(6/8) ~ 37 deg
    times = 0.5 * torch.arange(1, 9, dtype=torch.float32).view(1, -1, 1)
    xy = anchor_xy(status, times)
    # by hand: x = 10 t, y = 0 at t = 0.5 .. 4 s
    assert torch.allclose(xy[0, :, 0], 10.0 * times[0, :, 0], atol=1e-4)
    assert torch.count_nonzero(xy[0, :, 1]) == 0
    legacy = anchor_xy(status, times, "velocity")
    assert legacy[0, -1, 1].item() == pytest.approx(6.0 * 4.0)


def test_planner_uses_the_heading_anchor_and_old_checkpoints_keep_theirs(tmp_path):
    cfg = PlannerConfig.preset("edge", fusion="none")
    assert cfg.anchor == "route_speed"  # without a route (none given here) it is the straight-ahead anchor
    assert PlannerConfig.preset("edge", route_points=0).anchor == "heading_speed"
    planner = _zero_head(FusedPlanner(cfg))
    status = torch.zeros(1, 8)
    status[0, 4], status[0, 5] = 12.0, 5.0  # |v| = 13
    with torch.no_grad():
        poses = planner(torch.zeros(1, cfg.num_bev_tokens, cfg.bev_token_dim), status)
    assert poses[0, -1, 0].item() == pytest.approx(13.0 * 4.0, abs=1e-3)
    assert poses[0, :, 1].abs().max().item() == pytest.approx(0.0, abs=1e-6)
    # a checkpoint config written before the field existed was trained with (vx, vy)
    saved = planner.save_pretrained(tmp_path / "planner")
    path = tmp_path / "planner" / "config.json"
    payload = json.loads(path.read_text())
    payload["config"].pop("anchor")
    path.write_text(json.dumps(payload))
    old = _zero_head(FusedPlanner.from_pretrained(saved))
    assert old.config.anchor == "velocity"
    with torch.no_grad():
        poses = old(torch.zeros(1, cfg.num_bev_tokens, cfg.bev_token_dim), status)
    assert poses[0, -1, 1].item() == pytest.approx(5.0 * 4.0, abs=1e-3)
    with pytest.raises(Exception, match="anchor"):
        PlannerConfig.preset("edge", anchor="sideways")


def test_the_status_token_sees_no_acceleration_unless_configured(tmp_path):
    """Closed loop, a planner that sees the acceleration braked itself to a stop (its own braking
    predicts more braking): by default the acceleration never reaches the status token, while the
    command and velocity do; old checkpoints (no field) saw it and keep it."""
    torch.manual_seed(0)
    planner = FusedPlanner(PlannerConfig.preset("edge", fusion="none")).eval()
    assert planner.config.status_acceleration is False
    bev = torch.randn(1, planner.config.num_bev_tokens, planner.config.bev_token_dim)
    status = torch.zeros(1, 8)
    status[0, 1], status[0, 4] = 1.0, 12.0
    braking = status.clone()
    braking[0, 6], braking[0, 7] = -4.0, 1.5
    faster = status.clone()
    faster[0, 4] = 20.0
    with torch.no_grad():
        assert torch.equal(planner(bev, status), planner(bev, braking))
        assert not torch.allclose(planner(bev, status), planner(bev, faster))
        sees = FusedPlanner(PlannerConfig.preset("edge", fusion="none", status_acceleration=True)).eval()
        sees.load_state_dict(planner.state_dict())
        assert not torch.allclose(sees(bev, status), sees(bev, braking))
    data = planner.config.to_dict()
    data.pop("status_acceleration")
    assert PlannerConfig.from_dict(data).status_acceleration is True
