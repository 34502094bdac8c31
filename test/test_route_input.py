"""The planner's route input (issue 12, ROUTE_CONTRACT.md): the mission route ahead in the ego frame,
resampled by hand-checked geometry, taken from a real simulator log, fed to the planner's route token,
the ONNX export and the runtime stage, and given to every agent in the closed loop."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from test_models import make_frame, randomize_

from latentvla_ros.core.agent import AgentInput, agent_input_of
from latentvla_ros.core.lanes import Polyline
from latentvla_ros.core.route import MAX_ROUTE_OFFSET_M, resample_route, route_to_ego
from latentvla_ros.models.configuration_planner import PlannerConfig
from latentvla_ros.models.modeling_planner import FusedPlanner

EDGE = Path(__file__).resolve().parents[1] / "checkpoints" / "edge"


# ----------------------------------------------------------------------------- geometry by hand
def test_route_to_ego_by_hand():
    # ego at (10, 5) facing +y (north): a point 3 m north is 3 m ahead, one 1 m west is 1 m to the left
    got = route_to_ego(np.array([[10.0, 8.0], [9.0, 5.0]]), np.array([10.0, 5.0, np.pi / 2]))
    np.testing.assert_allclose(got, [[3.0, 0.0], [0.0, 1.0]], atol=1e-12)


def test_resample_route_on_a_straight_line():
    # a line 2 m to the left, from 5 m behind to 100 m ahead: points every 3 m ahead of the projection
    pts, ok = resample_route(np.array([[-5.0, 2.0], [100.0, 2.0]]), 4, 3.0)
    assert ok and pts.dtype == np.float32 and pts.shape == (4, 2)
    np.testing.assert_allclose(pts, [[3.0, 2.0], [6.0, 2.0], [9.0, 2.0], [12.0, 2.0]], atol=1e-6)
    # past the polyline's end the points continue along its last segment
    pts, ok = resample_route(np.array([[-5.0, 0.0], [0.0, 0.0], [5.0, 0.0]]), 3, 3.0)
    np.testing.assert_allclose(pts, [[3.0, 0.0], [6.0, 0.0], [9.0, 0.0]], atol=1e-6)
    assert ok


def test_resample_route_on_a_90_degree_arc():
    # a left turn of radius 20 m starting at the ego (heading +x), from 0.3 rad before it to 90 deg
    r = 20.0
    theta = np.linspace(-0.3, np.pi / 2, 4001)
    arc = np.stack([r * np.sin(theta), r * (1.0 - np.cos(theta))], axis=1)
    pts, ok = resample_route(arc, 12, 3.0)
    assert ok
    s = 3.0 * np.arange(1, 13)
    on_arc = s <= r * np.pi / 2  # 31.4 m: 10 points on the arc, then along its last direction (+y)
    expected = np.where(on_arc[:, None], np.stack([r * np.sin(s / r), r * (1.0 - np.cos(s / r))], axis=1),
                        np.stack([np.full_like(s, r), r + (s - r * np.pi / 2)], axis=1))
    np.testing.assert_allclose(pts, expected, atol=2e-3)  # chords of a 4001-point arc: < 0.1 mm off


@pytest.mark.parametrize("route", [
    None,
    np.array([[1.0, 0.0]]),  # one point
    np.array([[1.0, 0.0], [1.0, 0.0]]),  # no length
    np.array([[0.0, 0.0], [np.nan, 1.0], [10.0, 0.0]]),  # a NaN
    np.array([[0.0, np.inf], [10.0, 0.0]]),
    np.array([[-10.0, MAX_ROUTE_OFFSET_M + 0.5], [50.0, MAX_ROUTE_OFFSET_M + 0.5]]),  # ego not on it
    "not a route",
])
def test_resample_route_rejects_what_is_not_a_usable_route(route):
    pts, ok = resample_route(route, 5, 3.0)
    assert not ok and pts.shape == (5, 2) and pts.dtype == np.float32 and not pts.any()


# ----------------------------------------------------------------------------- a real simulator log
@pytest.fixture(scope="module")
def roundabout_log(tmp_path_factory):
    from latentvla_ros.data import highway
    from latentvla_ros.data.log_format import DrivingLog

    path = tmp_path_factory.mktemp("route") / "roundabout"
    highway.generate_log(path, "roundabout", seed=3, num_frames=160)
    return DrivingLog(path)


def test_log_route_follows_the_logged_expert_through_a_roundabout(roundabout_log):
    """The route input of every valid frame of a roundabout log (the ego enters, turns ~170 deg in
    the ring and leaves; no frame excluded): the expert's 8 future positions lie on average
    0.35 m from the route polyline (measured, max 0.58 m per frame)."""
    from latentvla_ros.data.route import log_route_ego, log_route_world, mission_lanes

    log = roundabout_log
    yaw = np.unwrap(np.asarray(log.ego_pose_array)[:, 2])
    assert yaw.max() - yaw.min() > 2.5  # really drives around the roundabout
    assert mission_lanes(log) is mission_lanes(log)  # matched once per log
    dist = []
    for t in np.flatnonzero(np.asarray(log.future_valid)):
        route = log_route_ego(log, int(t))
        np.testing.assert_allclose(route, route_to_ego(log_route_world(log, int(t)), log.ego_pose(int(t))))
        dist.append(Polyline(route).distance(log.future_trajectory(int(t))[:, :2]).mean())
    dist = np.asarray(dist)
    assert len(dist) >= 100
    assert dist.mean() < 1.0 and np.percentile(dist, 95) < 1.0, (dist.mean(), dist.max())


def test_route_samples_cached_once_per_log_and_in_the_planner_dataset(roundabout_log, monkeypatch):
    from latentvla_ros.data import route as route_mod
    from latentvla_ros.data.route import log_route_ego, log_route_samples, route_cache_name
    from latentvla_ros.data.torch_datasets import FrameDataset

    log = roundabout_log
    points, valid = log_route_samples(log, 12, 3.0)
    assert points.shape == (log.num_frames, 12, 2) and valid.all()
    for t in (0, 50, 120):
        np.testing.assert_allclose(points[t], resample_route(log_route_ego(log, t), 12, 3.0)[0])
    assert log.has_array(route_cache_name(12, 3.0)) and route_cache_name(12, 3.0) in log.meta["route_cache"]

    def boom(*a, **k):
        raise AssertionError("recomputed")

    monkeypatch.setattr(route_mod, "log_route_ego", boom)  # from now on only the cache may answer
    again, valid2 = log_route_samples(log, 12, 3.0)
    np.testing.assert_array_equal(again, points)
    ds = FrameDataset([log.path], image_size=(64, 64), with_lidar=False, route_points=12, route_spacing_m=3.0)
    li, t = (int(v) for v in ds.index[7])
    sample = ds[7]
    assert sample["route"].shape == (12, 2) and bool(sample["route_valid"])
    np.testing.assert_array_equal(sample["route"].numpy(), points[t])
    assert "route" not in FrameDataset([log.path], image_size=(64, 64), with_lidar=False)[0]


# ----------------------------------------------------------------------------- the model
def test_route_points_0_is_the_planner_of_before():
    from safetensors import safe_open

    cfg0 = PlannerConfig.preset("edge", route_points=0)
    torch.manual_seed(0)
    p0 = FusedPlanner(cfg0).eval()
    torch.manual_seed(0)
    p12 = FusedPlanner(PlannerConfig.preset("edge")).eval()
    assert PlannerConfig.preset("edge").route_points == 12 and PlannerConfig.preset("paper").route_points == 12
    assert PlannerConfig().route_points == 0  # the class default: old config.json files load with it
    # the shipped (route) checkpoint has the parameters of the planner of before plus the route MLP, created last
    with safe_open(str(EDGE / "planner" / "model.safetensors"), "pt") as f:
        shipped = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    assert {k: tuple(v.shape) for k, v in p12.state_dict().items()} == shipped
    assert {k: tuple(v.shape) for k, v in p0.state_dict().items()} == {k: v for k, v in shipped.items()
                                                                       if not k.startswith("route.")}
    s0, s12 = p0.state_dict(), p12.state_dict()
    assert set(s12) - set(s0) == {"route.0.weight", "route.0.bias", "route.2.weight", "route.2.bias"}
    assert all(torch.equal(s0[k], s12[k]) for k in s0)
    g = torch.Generator().manual_seed(1)
    bev, ego = torch.randn(2, 64, 64, generator=g), torch.randn(2, 8, generator=g)
    ctx = torch.randn(2, 28, 192, generator=g)
    with torch.no_grad():
        ref = p0(bev, ego, ctx)
        assert torch.equal(ref, p0(bev, ego, ctx, torch.randn(2, 12, 2, generator=g), torch.ones(2)))


def test_route_conditioned_planner_follows_its_route_and_degrades_without_one():
    planner = randomize_(FusedPlanner(PlannerConfig.preset("edge"))).eval()
    g = torch.Generator().manual_seed(2)
    bev, ego, ctx = torch.randn(1, 64, 64, generator=g), torch.randn(1, 8, generator=g), torch.randn(1, 28, 192, generator=g)
    s = 3.0 * torch.arange(1, 13, dtype=torch.float32)
    left = torch.stack([s, 0.02 * s * s], -1)[None]
    right = torch.stack([s, -0.02 * s * s], -1)[None]
    with torch.no_grad():
        a, b = planner(bev, ego, ctx, left, torch.ones(1)), planner(bev, ego, ctx, right, torch.ones(1))
        assert (a - b).abs().max() > 1e-4  # float noise: ~1e-7
        none = planner(bev, ego, ctx)  # route None = no route
        assert torch.equal(none, planner(bev, ego, ctx, left, torch.zeros(1)))
        assert torch.equal(none, planner(bev, ego, ctx, right, torch.zeros(1)))


def test_stage_resamples_the_route_counts_invalid_ones_and_onnx_agrees(tmp_path):
    from latentvla_ros.runtime import BevFeatureExtractor, LatentReasoner, TrajectoryPlanner

    torch.manual_seed(3)
    randomize_(FusedPlanner(PlannerConfig.preset("edge"))).save_pretrained(tmp_path / "planner")
    frame = make_frame(seed=4)
    bev, plan = BevFeatureExtractor().extract(frame), LatentReasoner().reason(frame)
    x = np.linspace(-10.0, 60.0, 50)
    left, right = np.stack([x, 0.02 * x * x], 1), np.stack([x, -0.02 * x * x], 1)
    out = {}
    for backend in ("torch", "onnx"):
        stage = TrajectoryPlanner(checkpoint_dir=tmp_path / "planner", backend=backend, onnx_path=tmp_path / "p.onnx")
        if backend == "onnx":
            names = {i.name for i in stage._run.session.get_inputs()}
            assert {"route", "route_valid"} <= names
        out[backend] = [stage.plan(bev, plan, r).poses for r in (left, right, None, np.full((4, 2), np.nan))]
        assert stage.route_invalid_count == 2 and stage.route_missing
        stage.plan(bev, plan, left)
        assert not stage.route_missing and stage.route_invalid_count == 2
    for t, o in zip(out["torch"], out["onnx"]):
        assert np.abs(t - o).max() < 1e-4
    t_left, t_right, t_none, t_nan = out["torch"]
    assert np.abs(t_left - t_right).max() > 1e-4
    np.testing.assert_array_equal(t_none, t_nan)


def test_agent_passes_agent_input_route_to_the_planner():
    from latentvla_ros.runtime import BevFeatureExtractor, LatentReasoner, LatentVLAAgent, TrajectoryPlanner

    torch.manual_seed(5)
    planner = TrajectoryPlanner(PlannerConfig.preset("edge"))
    randomize_(planner.model)
    agent = LatentVLAAgent(BevFeatureExtractor(), LatentReasoner(), planner)
    frame = make_frame(seed=6)
    x = np.linspace(-10.0, 60.0, 50)
    left = np.stack([x, 0.02 * x * x], 1)
    with_route = agent.compute_trajectory(agent_input_of(frame, route=left))
    assert isinstance(agent_input_of(frame, route=left), AgentInput) and planner.route_invalid_count == 0
    np.testing.assert_allclose(with_route.poses, planner.plan(agent.last_bev, agent.last_plan, left).poses)
    without = agent.compute_trajectory(agent_input_of(frame))
    assert planner.route_invalid_count == 1 and np.abs(with_route.poses - without.poses).max() > 1e-4


def _pre_route_checkpoints(root: Path) -> Path:
    """checkpoints/edge as a planner written before the route input: its config.json without the route
    fields and the route anchor (they did not exist), its weights without the route MLP, no ONNX file."""
    import json
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copytree(EDGE, root)
    planner = root / "planner"
    data = json.loads((planner / "config.json").read_text())
    for key in ("route_points", "route_spacing_m", "route_dropout"):
        data["config"].pop(key, None)
    data["config"]["anchor"] = "heading_speed"
    (planner / "config.json").write_text(json.dumps(data))
    weights = {k: v for k, v in load_file(str(planner / "model.safetensors")).items() if not k.startswith("route.")}
    save_file(weights, str(planner / "model.safetensors"))
    (planner / "model.onnx").unlink(missing_ok=True)
    return root


def test_old_checkpoint_still_loads_and_plans(tmp_path):
    import onnx

    from latentvla_ros.runtime import build_pipeline_from_dir, export_onnx

    old = _pre_route_checkpoints(tmp_path / "edge_before_route")
    agent = build_pipeline_from_dir(old)
    assert agent.planner.config.route_points == 0 and not agent.untrained
    frame = make_frame(seed=8)
    x = np.linspace(-10.0, 60.0, 50)
    a = agent.compute_trajectory(agent_input_of(frame, route=np.stack([x, 0.02 * x * x], 1)))
    b = agent.compute_trajectory(agent_input_of(frame))
    assert a.is_finite() and np.array_equal(a.poses, b.poses)  # no route token: the route is not used
    assert agent.planner.route_invalid_count == 0  # and a planner without one does not count it missing
    path = export_onnx("planner", old / "planner", tmp_path / "planner.onnx")
    assert [i.name for i in onnx.load(str(path)).graph.input] == ["bev_tokens", "ego_status", "context"]
    shipped = export_onnx("planner", EDGE / "planner", tmp_path / "shipped.onnx")  # the shipped one takes the route
    assert [i.name for i in onnx.load(str(shipped)).graph.input] == ["bev_tokens", "ego_status", "context", "route",
                                                                       "route_valid"]


def test_config_rejects_bad_route_values():
    from latentvla_ros.core.config_base import ConfigError

    for field, value in (("route_points", -1), ("route_spacing_m", 0.0), ("route_dropout", 1.5)):
        with pytest.raises(ConfigError, match="route"):
            PlannerConfig.preset("edge", **{field: value})
    with pytest.raises(ValueError):
        resample_route(np.zeros((3, 2)), 0, 3.0)
    assert dataclasses.replace(PlannerConfig.preset("edge"), route_points=0, anchor="heading_speed").uses_route is False


def test_batch_route_dropout_marks_samples_without_a_route():
    from latentvla_ros.training.planner import batch_route

    batch = {"route": torch.ones(4000, 12, 2), "route_valid": torch.ones(4000, dtype=torch.bool)}
    torch.manual_seed(0)
    route, valid = batch_route(batch, 0.1)
    assert route.shape == (4000, 12, 2) and 0.07 < 1.0 - valid.mean().item() < 0.13
    assert batch_route(batch)[1].min().item() == 1.0 and batch_route({}) == (None, None)


# ----------------------------------------------------------------------------- closed loop
class RecordingAgent:
    """Constant velocity, recording the route each step's AgentInput carries."""

    name = "recording"
    requires_scene = False

    def __init__(self):
        from latentvla_ros.evaluation.baselines import ConstantVelocityPlanner

        self.inner = ConstantVelocityPlanner(use_yaw_rate=False)
        self.routes: list = []

    def compute_trajectory(self, agent_input):
        self.routes.append(agent_input.route)
        return self.inner.compute_trajectory(agent_input)


@pytest.mark.parametrize("kind", ["agent", "planner"])
def test_closed_loop_drivers_give_every_agent_the_episode_route(kind):
    """AgentDriver (our agents) and PlannerDriver (the baselines) hand the agent the episode's mission
    route (the centreline the scene and the route progress use) in the ego frame of each step."""
    from latentvla_ros.evaluation.closed_loop import ClosedLoopConfig, HighwayClosedLoopEnv
    from latentvla_ros.evaluation.drivers import AgentDriver, PlannerDriver

    agent = RecordingAgent()
    driver = AgentDriver(agent) if kind == "agent" else PlannerDriver(agent)
    env = HighwayClosedLoopEnv("roundabout", 20_001, ClosedLoopConfig(max_steps=6, stop_off_road=False))
    try:
        obs = env.reset()
        driver.reset(env)
        for _ in range(3):
            driver.plan(obs)
            expected = route_to_ego(env.route.points, obs.pose)
            np.testing.assert_allclose(agent.routes[-1], expected)
            np.testing.assert_allclose(env.scene(obs).route_centerline, env.route.points)  # the scene's route
            pts, ok = resample_route(agent.routes[-1], 12, 3.0)
            assert ok and 2.0 < pts[0, 0] < 4.0 and abs(pts[0, 1]) < 1.5  # on the route, 3 m ahead
            env.step(None)
            obs = env.observation
    finally:
        env.close()
    assert len(agent.routes) == 3


def test_open_loop_agents_get_the_logs_mission_route(roundabout_log, monkeypatch):
    """``latentvla evaluate``'s open loop hands every sensor agent ``log_route_ego`` of the scene's frame
    (the route the scene is scored against, in the ego frame)."""
    from latentvla_ros.apps import evaluate
    from latentvla_ros.data.route import log_route_ego, log_route_world
    from latentvla_ros.evaluation.scenes import scene_from_log

    agent = RecordingAgent()
    monkeypatch.setattr(evaluate, "_planner_for", lambda spec: agent)
    out = evaluate.open_loop_log_task(str(roundabout_log.path), [evaluate.MethodSpec("recording", "agent")], 40, False)
    assert not out["errors"] and len(agent.routes) == len(out["rows"]) >= 2
    for row, route in zip(out["rows"], agent.routes):
        t = row["frame"]
        np.testing.assert_allclose(route, log_route_ego(roundabout_log, t))
        np.testing.assert_allclose(scene_from_log(roundabout_log, t).route_centerline, log_route_world(roundabout_log, t))


def test_planner_training_feeds_the_logs_route(roundabout_log, tmp_path, monkeypatch):
    """train_planner on a real log: the planner sees the log's route (route_valid 1 but for the
    route_dropout share), and the trained checkpoint keeps the route token."""
    from latentvla_ros.models.modeling_planner import E2EPlanner
    from latentvla_ros.training.common import TrainConfig
    from latentvla_ros.training.planner import train_planner

    seen = []
    forward = FusedPlanner.forward

    def spy(self, bev_tokens, ego_status, context=None, route=None, route_valid=None):
        seen.append((None if route is None else route.detach().clone(), None if route_valid is None else route_valid.clone()))
        return forward(self, bev_tokens, ego_status, context, route, route_valid)

    monkeypatch.setattr(FusedPlanner, "forward", spy)
    cfg = TrainConfig(epochs=1, batch_size=16, max_steps=2, warmup_steps=0, seed=0)
    pcfg = PlannerConfig.preset("edge", route_dropout=0.5)
    train_planner([roundabout_log.path], tmp_path / "run", "edge", "none", cfg, holdout_fraction=0.0,
                  show_progress=False, planner_config=pcfg)
    train_steps = seen[:2]
    assert all(r is not None and r.shape == (16, 12, 2) for r, _ in train_steps)
    valid = torch.cat([v for _, v in train_steps])
    assert 0 < valid.sum() < len(valid)  # dropout 0.5: some samples without their route, most with
    assert all(r.abs().sum() > 0 for r, _ in train_steps)
    model = E2EPlanner.from_pretrained(tmp_path / "run")
    assert model.planner.config.route_points == 12 and model.planner.route is not None


def test_route_anchor_moves_along_the_route_at_the_ego_speed():
    """'route_speed' anchor by hand: on a 20 m-radius left arc at 10 m/s, the anchor after 1 s lies
    10 m along the arc (chord error of the 3 m polyline < 0.1 m); without a valid route it is the
    straight-ahead anchor; an ego 1 m left of a straight route is brought back onto it."""
    import math

    import torch

    from latentvla_ros.models.modeling_planner import anchor_xy, route_anchor_xy

    ang = torch.tensor([3.0 * k / 20.0 for k in range(1, 13)])
    arc = torch.stack([20 * torch.sin(ang), 20 * (1 - torch.cos(ang))], -1)[None]
    status = torch.zeros(1, 8)
    status[0, 4] = 10.0
    times = 0.5 * torch.arange(1, 9, dtype=torch.float32).view(1, -1, 1)
    along = anchor_xy(status, times, "route_speed", arc, torch.ones(1))[0]
    for k, t in ((1, 1.0), (3, 2.0)):
        expect = (20 * math.sin(10 * t / 20), 20 * (1 - math.cos(10 * t / 20)))
        assert abs(float(along[k, 0]) - expect[0]) < 0.1 and abs(float(along[k, 1]) - expect[1]) < 0.1, (along[k], expect)
    straight = anchor_xy(status, times, "route_speed", arc, torch.zeros(1))[0]
    assert torch.allclose(straight[:, 0], 10 * times[0, :, 0]) and torch.all(straight[:, 1] == 0)
    offset = torch.tensor([[[3.0 * k, -1.0] for k in range(1, 13)]])  # route 1 m to the right of the ego
    p = route_anchor_xy(offset, torch.tensor([[20.0, 60.0]]))[0]
    assert abs(float(p[0, 1]) + 1.0) < 1e-4 and abs(float(p[1, 1]) + 1.0) < 1e-4  # on the route
    assert float(p[1, 0]) > 55.0  # past the last point it continues along the last segment
