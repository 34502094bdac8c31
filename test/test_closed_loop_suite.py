"""The closed-loop suite of issue 12: missions with routes to finish, route completion,
the direct (no ROS) path agreeing with the ROS graph, paired differences, results.json,
failure pictures, fan-out and the fusion ablations."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from latentvla_ros.core.types import DrivingCommand
from latentvla_ros.data.missions import SCENARIOS, destination_for, mission_for, time_limit_steps
from latentvla_ros.evaluation.closed_loop import ClosedLoopConfig, HighwayClosedLoopEnv, run_episode
from latentvla_ros.evaluation.drivers import AgentDriver, ExpertDriver, PlannerDriver

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = ROOT / "checkpoints" / "edge"


def test_missions_cycle_through_the_exits_and_leave_time_to_finish():
    assert [destination_for("intersection", s) for s in (20_000, 20_001, 20_002, 20_003)] == ["o3", "o1", "o2", "o3"]
    assert {mission_for("roundabout", s).turn for s in range(20_000, 20_003)} == {"left", "straight", "right"}
    assert mission_for("highway", 5).destination is None and mission_for("highway", 5).route_m == 300.0
    assert mission_for("merge", 5, max_steps=7).max_steps == 7
    # highway: 300 m at half the 25 m/s cruise is 24 s, + 8 s of slack = 320 steps
    assert time_limit_steps("highway") == 320
    assert all(time_limit_steps(sc) > 100 for sc in SCENARIOS)


def test_expert_finishes_the_highway_route_and_route_completion_is_measured():
    env = HighwayClosedLoopEnv("highway", 20_000, ClosedLoopConfig(), expert=True, sensors=False)
    result = run_episode(env, ExpertDriver())
    assert result.termination == "route_completed" and result.route_completed
    assert result.route_completion == pytest.approx(1.0)
    # 300 m from where the episode starts (the warm-up step already drove ~1-2 m of it)
    assert result.progress_m >= result.route_length_m == pytest.approx(300.0, abs=3.0)
    assert result.steps < result.max_steps == time_limit_steps("highway")


@pytest.mark.parametrize("seed,command", [(20_001, DrivingCommand.LEFT), (20_000, DrivingCommand.RIGHT)])
def test_intersection_mission_asks_for_its_turn(seed, command):
    """o1 is a left turn, o3 a right turn: the route command says so on the way."""
    commands = []
    env = HighwayClosedLoopEnv("intersection", seed, ClosedLoopConfig(max_steps=150), expert=True, sensors=False)
    result = run_episode(env, ExpertDriver(), on_step=lambda obs, *_: commands.append(obs.ego.command))
    assert env.mission.turn == {DrivingCommand.LEFT: "left", DrivingCommand.RIGHT: "right"}[command]
    assert command in commands and result.turn == env.mission.turn
    assert 0.0 < result.route_completion <= 1.0


def test_failure_picture_shows_the_episode(tmp_path):
    from latentvla_ros.evaluation.baselines import ConstantVelocityPlanner
    from latentvla_ros.evaluation.episode_plots import failure_name, is_failure, plot_episode

    env = HighwayClosedLoopEnv("roundabout", 20_000, ClosedLoopConfig(max_steps=80))
    result = run_episode(env, PlannerDriver(ConstantVelocityPlanner(use_yaw_rate=False)))
    assert is_failure(result)  # constant velocity cannot take a roundabout
    path = plot_episode(env, result, tmp_path / failure_name(result))
    assert path.is_file() and path.stat().st_size > 10_000
    assert "roundabout_20000" in path.name


class _Tee:
    """Drives with ``first``; asks ``second`` for a plan on the same observation."""

    def __init__(self, first, second):
        self.first, self.second, self.name = first, second, "tee"
        self.pairs: list[tuple[np.ndarray, np.ndarray]] = []

    def reset(self, env):
        self.first.reset(env)
        self.second.reset(env)

    def plan(self, obs):
        a, b = self.first.plan(obs), self.second.plan(obs)
        self.pairs.append((np.asarray(a.poses, dtype=np.float64), np.asarray(b.poses, dtype=np.float64)))
        return a


def _student_graph() -> dict:
    graph = dict(name="latentvla_student", fusion="student")
    if (CHECKPOINTS / "planner" / "config.json").is_file():
        graph.update(bev_checkpoint=str(CHECKPOINTS / "bev_backbone"), planner_checkpoint=str(CHECKPOINTS / "planner"),
                     student_checkpoint=str(CHECKPOINTS / "student"))
    return graph


@pytest.mark.parametrize("guard_input", ["auto", "lidar"])
def test_direct_path_plans_what_the_ros_graph_plans(ros_context, guard_input):
    """The big suite runs the core stages directly; on the same episode (same observations,
    stamped as the suite stamps a session's first episode) the ROS node graph publishes
    the same trajectories. guard_input lidar: the planner's obstacle guard reads the frame's
    cloud and its own odometry (as in a process of its own) instead of the SensorFrame."""
    from latentvla_ros.apps.sim_bridge import GraphVariant, RosGraphSession
    from latentvla_ros.evaluation.agents import build_agent_from_graph
    from latentvla_ros.evaluation.drivers import episode_stamp_base

    graph = _student_graph()
    cfg = ClosedLoopConfig(max_steps=10, stop_off_road=False)
    agent = build_agent_from_graph(graph)  # guarded (GuardedAgent), as the graph's planner node by default
    variant = GraphVariant(**graph, extra_overrides={"trajectory_planner": {"guard_input": guard_input}})
    with RosGraphSession(variant, context=ros_context) as session:
        tee = _Tee(session.driver(), AgentDriver(agent))
        result = run_episode(HighwayClosedLoopEnv("roundabout", 20_001, cfg, stamp_base_ns=episode_stamp_base(0)), tee)
        planner = next(n for n in session.nodes if n.get_name() == "trajectory_planner")
        node_guard = planner.guard
    assert result.error == "" and len(tee.pairs) == result.steps == 10
    for ros, direct in tee.pairs:
        np.testing.assert_allclose(direct, ros, atol=1e-3)  # float32 messages: sub-millimetre
    # the episode exercises the obstacle guard (a vehicle ahead in the roundabout): both paths retimed
    # the same plans, and the node saw every frame's LiDAR
    assert agent.guard.interventions > 0
    assert (node_guard.guard.interventions, node_guard.guard.stops) == (agent.guard.interventions, agent.guard.stops)
    assert node_guard.guard.plans >= agent.guard.plans  # + the graph's start-up probe frame
    assert node_guard.no_lidar == node_guard.no_odometry == 0
    assert planner.guard_input == ("frame" if guard_input == "auto" else "lidar")


def test_suite_drives_the_same_path_directly_and_through_ros():
    """``run_method_episodes`` of the direct method and of its ROS twin drive the same
    episode along the same path (the first episode after the graph's start-up probes
    included: its acceleration estimate must start fresh, as the direct path's does)."""
    import os

    from latentvla_ros.apps.sim_bridge import run_method_episodes
    from latentvla_ros.evaluation.drivers import ClosedLoopMethod

    graph = _student_graph()
    cfg = ClosedLoopConfig(max_steps=12, stop_off_road=False)
    episodes = [("merge", 20_000)]
    direct = run_method_episodes(ClosedLoopMethod("d", "agent", graph=graph), episodes, cfg)[0]
    ros = run_method_episodes(ClosedLoopMethod("r", "ros", graph=graph), episodes, cfg,
                              domain_id=int(os.environ["ROS_DOMAIN_ID"]))[0]
    assert direct.error == ros.error == "" and direct.steps == ros.steps == 12
    np.testing.assert_allclose(np.asarray(direct.path), np.asarray(ros.path), atol=1e-2)


def test_results_json_has_the_issue_shape_and_paired_differences_by_hand():
    from latentvla_ros.evaluation.results_json import build_results_json, paired_difference

    rows = [{"method": m, "scenario": sc, "pdms": p} for m, sc, p in
            [("expert", "highway", 1.0), ("expert", "merge", 0.8), ("pdm_closed", "highway", 0.9)]]

    def ep(method, sc, seed, score, **kw):
        base = dict(method=method, scenario=sc, seed=seed, score=score, collision=False, off_road=False,
                    route_completed=True, route_completion=1.0)
        return base | kw

    episodes = [ep("latentvla_student", "highway", 1, 0.9), ep("latentvla_student", "highway", 2, 0.5),
                ep("latentvla_none", "highway", 1, 0.7), ep("latentvla_none", "highway", 2, 0.2,
                                                             off_road=True, route_completed=False, route_completion=0.4),
                ep("latentvla_none", "merge", 3, 0.6)]
    out = build_results_json(rows, ["expert", "pdm_closed"], episodes, ["latentvla_student", "latentvla_none"],
                             n_boot=200)
    assert set(out) == {"open_loop", "closed_loop", "paired"}
    assert out["open_loop"]["expert"] == {"scenes": 2, "pdms": pytest.approx(90.0),
                                          "per_scenario": {"highway": pytest.approx(100.0), "merge": pytest.approx(80.0)}}
    assert out["open_loop"]["reference"]["pdms"] == pytest.approx(90.0)
    none = out["closed_loop"]["e2e_none"]
    assert none["episodes"] == 3 and none["score"] == pytest.approx(50.0)
    assert none["off_road_rate"] == pytest.approx(1 / 3) and none["collision_rate"] == 0.0
    assert none["route_completion"] == pytest.approx(0.8)
    assert none["per_scenario"]["highway"]["off_road_rate"] == pytest.approx(0.5)
    pair = out["paired"]["e2e_student vs e2e_none"]
    # same (scenario, seed) only: highway 1 (90 - 70) and 2 (50 - 20); merge 3 has no partner
    assert pair["episodes"] == 2 and pair["mean"] == pytest.approx(25.0)
    assert pair["ci95"][0] == pytest.approx(20.0) and pair["ci95"][1] == pytest.approx(30.0)
    nan_pair = paired_difference({("a", 1): float("nan")}, {("a", 1): 1.0})
    assert nan_pair["episodes"] == 0 and math.isnan(nan_pair["mean"])


def test_episodes_count_what_the_obstacle_guard_did_and_results_report_its_share():
    """How much of the driving is the model's: each planning step's guard verdict is counted per episode
    (the roundabout seed below has a vehicle ahead: the guard retimes some plans), and results.json gives
    the shares per method and scenario (hand-computed), with a markdown table; no guard: no shares."""
    from latentvla_ros.evaluation.agents import build_agent_from_graph
    from latentvla_ros.evaluation.results_json import build_results_json, markdown_guard

    agent = build_agent_from_graph(_student_graph())
    seen = []
    driver = AgentDriver(agent)
    result = run_episode(HighwayClosedLoopEnv("roundabout", 20_001, ClosedLoopConfig(max_steps=10, stop_off_road=False)),
                         driver, on_step=lambda *_: seen.append(agent.last_verdict.action))
    assert result.error == "" and sum(result.guard_actions.values()) == result.steps == 10
    assert result.guard_actions == {a: seen.count(a) for a in set(seen)}
    assert agent.guard.interventions > 0 and result.guard_actions.get("clear", 0) < 10
    unguarded = run_episode(HighwayClosedLoopEnv("merge", 20_000, ClosedLoopConfig(max_steps=3), expert=True), ExpertDriver())
    assert unguarded.guard_actions == {}

    def ep(method, seed, actions):
        return dict(method=method, scenario="roundabout", seed=seed, score=1.0, collision=False, off_road=False,
                    route_completed=True, route_completion=1.0, guard_actions=actions)

    episodes = [ep("latentvla_student", 1, {"clear": 6, "stop": 2}), ep("latentvla_student", 2, {"clear": 1, "go": 1}),
                ep("latentvla_none", 1, {})]
    out = build_results_json([], [], episodes, ["latentvla_student", "latentvla_none"], n_boot=50)
    share = out["closed_loop"]["e2e_student"]["per_scenario"]["roundabout"]["guard_share"]
    assert share == {"clear": pytest.approx(0.7), "go": pytest.approx(0.1), "stop": pytest.approx(0.2)}
    assert "guard_share" not in out["closed_loop"]["e2e_none"]
    table = markdown_guard(out)
    assert "| e2e_student | roundabout | 70.0 | 10.0 | 20.0 |" in table and "e2e_none" not in table
    assert markdown_guard(build_results_json([], [], episodes[2:], ["latentvla_none"], n_boot=50)) == ""


def _square(x):
    return x * x


def test_fanout_keeps_the_order_and_reports_eta():
    from latentvla_ros.core.fanout import Progress, resolve_backend, run_tasks

    assert run_tasks([(_square, (i,)) for i in range(5)], 1, costs=[1, 5, 2, 4, 3], progress=False) == [0, 1, 4, 9, 16]
    assert resolve_backend("auto", 1, None) == "inline"
    assert resolve_backend("process", 4, None) == "process"
    bar = Progress([1.0, 3.0], "t", enabled=False)
    bar.start -= 10.0  # 10 s elapsed for a quarter of the cost: 30 s left
    bar.advance(1.0)
    assert bar.eta_s() == pytest.approx(30.0, rel=0.05)


@pytest.mark.slow
def test_fanout_on_local_ray():
    pytest.importorskip("ray")
    from latentvla_ros.core.fanout import run_tasks

    assert run_tasks([(_square, (i,)) for i in range(4)], 2, backend="ray", progress=False) == [0, 1, 4, 9]


@dataclass
class _Plan:
    token_ids: np.ndarray
    token_probabilities: np.ndarray
    action_embeddings: np.ndarray
    visual_embeddings: np.ndarray


class _Reasoner:
    model_id = "student"
    untrained = False
    config = None

    def reason(self, frame):
        k = float(frame)
        return _Plan(np.full(12, int(k)), np.full((12, 16), k), np.full((12, 4), k), np.full((3, 4), k))


def test_fusion_ablations_change_only_the_action_tokens():
    from latentvla_ros.evaluation.agents import AblatedReasoner

    zeroed = AblatedReasoner(_Reasoner(), "zeroed").reason(3)
    assert not zeroed.action_embeddings.any() and (zeroed.visual_embeddings == 3).all() and (zeroed.token_ids == 3).all()
    shuffled = AblatedReasoner(_Reasoner(), "shuffled", seed=0)
    plans = [shuffled.reason(k) for k in range(1, 60)]
    assert all((p.visual_embeddings == k).all() for k, p in zip(range(1, 60), plans))  # own frame's visual tokens
    foreign = [p for k, p in zip(range(1, 60), plans) if p.action_embeddings[0, 0] != k]
    assert len(foreign) > 40  # other frames' action tokens
    assert all(p.token_ids[0] == p.action_embeddings[0, 0] for p in plans)  # ids and embeddings move together
    assert "shuffled" in shuffled.model_id
    shuffled.reset(7)
    first = shuffled.reason(99)
    assert first.action_embeddings[0, 0] == 99  # a new episode draws from its own frames only


def test_closed_loop_tracker_accelerates_within_navsim_comfort():
    """The shared closed-loop tracker never commands more acceleration than NAVSIM's comfort bound (a P loop at
    3 m/s^2 failed the lon_accel check after every slow-down, for every tracker-driven method)."""
    from latentvla_ros.evaluation.closed_loop import highway_tracker_config
    from latentvla_ros.evaluation.pdm_metrics import PdmsConfig

    assert highway_tracker_config().max_acceleration_mps2 <= PdmsConfig().max_lon_accel


def test_validation_overrides_reach_the_guard_and_the_tracker(monkeypatch):
    """scripts/validation_closed_loop.py's --guard-param / --tracker-param: the guarded agent gets a guard with the
    GuardConfig fields changed, every method's episodes run with the tracker fields changed; without them the
    defaults (the shipped guard and highway_tracker_config)."""
    import importlib.util

    from latentvla_ros.apps.evaluate import EvalPlan, MethodSpec, closed_loop_methods
    from latentvla_ros.evaluation import drivers
    from latentvla_ros.evaluation.agents import build_agent_from_graph
    from latentvla_ros.evaluation.closed_loop import highway_tracker_config

    spec = importlib.util.spec_from_file_location("validation_closed_loop", ROOT / "scripts" / "validation_closed_loop.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    parse_params = script.parse_params
    guard = parse_params(["yield_moving=true", "yield_min_speed_mps=12.5"])
    tracker = parse_params(["max_yaw_acceleration_radps2=1.0"])
    assert guard == (("yield_moving", True), ("yield_min_speed_mps", 12.5))
    specs = {"latentvla_student": MethodSpec(name="latentvla_student", kind="agent", fusion="student"),
             "expert": MethodSpec(name="expert", kind="expert")}
    plan = EvalPlan(closed_loop_methods=("latentvla_student", "expert"), guard_overrides=guard, tracker_overrides=tracker)
    methods = closed_loop_methods(specs, plan)
    assert methods["latentvla_student"].graph["guard"] == {"yield_moving": True, "yield_min_speed_mps": 12.5}
    assert all(m.options["tracker"] == {"max_yaw_acceleration_radps2": 1.0} for m in methods.values())
    agent = build_agent_from_graph({**_student_graph(), "guard": methods["latentvla_student"].graph["guard"]})
    assert agent.guard.config.yield_moving and agent.guard.config.yield_min_speed_mps == 12.5
    assert not build_agent_from_graph(_student_graph()).guard.config.yield_moving
    defaults = closed_loop_methods(specs, EvalPlan(closed_loop_methods=("latentvla_student", "expert")))
    assert defaults["latentvla_student"].graph["guard"] is True and "tracker" not in defaults["expert"].options
    # open loop too: the guarded agent's open-loop twin gets the same guard, an unguarded one none
    from latentvla_ros.apps.evaluate import open_loop_specs
    from latentvla_ros.evaluation.agents import build_agent

    specs["latentvla_student_unguarded"] = MethodSpec(name="latentvla_student_unguarded", kind="agent", fusion="student",
                                                      guard=False)
    ol = {s.name: s for s in open_loop_specs(specs, EvalPlan(open_loop_methods=tuple(specs), guard_overrides=guard))}
    assert ol["latentvla_student"].guard == {"yield_moving": True, "yield_min_speed_mps": 12.5}
    assert ol["latentvla_student_unguarded"].guard is False and ol["expert"].guard is True
    assert build_agent("student", guard=ol["latentvla_student"].guard).guard.config.yield_min_speed_mps == 12.5
    assert open_loop_specs(specs, EvalPlan(open_loop_methods=tuple(specs)))[0].guard is True

    used = []
    monkeypatch.setattr(drivers, "run_episode", lambda env, driver, tracker=None: used.append(tracker) or env.close())
    drivers.drive_episodes(methods["expert"], [("merge", 20_000)], ExpertDriver, sensors=False)
    drivers.drive_episodes(defaults["expert"], [("merge", 20_000)], ExpertDriver, sensors=False)
    assert used == [highway_tracker_config(max_yaw_acceleration_radps2=1.0), highway_tracker_config()]
