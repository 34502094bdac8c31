"""data/highway_fast.py: highway-env's traffic loops with cached projections and predictions give the
same simulation, float for float, as highway-env's own loops -- every vehicle's pose, speed and target
speed at every step, in the two scenarios where each cache matters (intersection: RegulatedRoad's
yielding rule; highway: IDM/MOBIL neighbour search) -- and the road class swap survives deepcopy."""
from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import pytest

from latentvla_ros.data import highway_fast

ROOT = Path(__file__).resolve().parents[1]


def _trace(monkeypatch, scenario: str, seed: int, steps: int, fast: bool, expert: bool) -> tuple[list, type]:
    """benchmarks/sim_traffic_speed.py's episode trace (it sets ``highway_fast.ENABLED``; monkeypatch restores it)."""
    monkeypatch.setattr(highway_fast, "ENABLED", fast)
    spec = importlib.util.spec_from_file_location("sim_traffic_speed", ROOT / "benchmarks" / "sim_traffic_speed.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows, _, road_class = bench.trace(scenario, seed, steps, fast, expert)
    return rows, road_class


@pytest.mark.parametrize("scenario,seed,expert", [("intersection", 30000, True), ("highway", 30001, False)])
def test_cached_traffic_loops_simulate_exactly_what_highway_env_does(monkeypatch, scenario, seed, expert):
    import highway_env

    if highway_env.__version__ not in highway_fast.VERIFIED_VERSIONS:
        pytest.skip(f"highway-env {highway_env.__version__}: the caches are off, nothing to compare")
    slow, slow_class = _trace(monkeypatch, scenario, seed, 60, False, expert)
    fast, fast_class = _trace(monkeypatch, scenario, seed, 60, True, expert)
    assert not getattr(slow_class, "_latentvla_fast", False) and fast_class._latentvla_fast
    assert len(slow) >= 30 and len(slow[0]) >= 3  # an episode with traffic, not an early stop
    if scenario == "intersection":  # the regulation did act: some vehicle yielded on the way
        assert any(row[5] for step in slow for row in step)
    assert fast == slow


def test_fast_road_deep_copies_act_on_the_copy(monkeypatch):
    """highway-env deep-copies vehicles (and with them the road) to predict the ego: the copy's cached
    loops must work on the copy's vehicles, never the original's."""
    from latentvla_ros.data.highway import _env_classes

    monkeypatch.setattr(highway_fast, "ENABLED", True)
    env = _env_classes()["intersection"](config={"initial_vehicle_count": 8})
    try:
        env.reset(seed=3)
        road = env.road
        assert highway_fast.accelerate_road(road) and highway_fast.accelerate_road(road)  # idempotent
        twin = copy.deepcopy(road)
        assert type(twin) is type(road) and twin._latentvla_fast
        before = [v.position.copy() for v in road.vehicles]
        for _ in range(5):
            twin.act()
            twin.step(1 / 15)
        assert all((v.position == p).all() for v, p in zip(road.vehicles, before))
        assert any((t.position != p).any() for t, p in zip(twin.vehicles, before))
    finally:
        env.close()
