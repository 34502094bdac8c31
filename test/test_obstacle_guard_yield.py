"""The obstacle guard's yield retime (``GuardConfig.yield_moving``, off by default, from ``yield_min_speed_mps``),
on the hand-made point clouds of test_obstacle_guard.py (its CFG, cars and frames: see that module's doc; the ego
plans x = 10 t at 10 m/s).

A car crossing the path from the right: rear edge x in [15.8, 20.3], centre y = -6 in the final frame, moving
(0, 5) m/s (seen 6 frames: velocity known). Its y extent at t is [-6.9 + 5 t, -5.1 + 5 t], inside the ego box's
|lat| <= 1.3 for the steps t = 0.8 .. 1.6 s. The plan's front half (lon 0 .. 3.5) reaches x = 15.8 when
10 t >= 12.3: first conflict at t = 1.3 s.
Yield candidates brake from 10 m/s at d = 1.5, 3, 4.5, 6 m/s^2 without a stop point, s(t) = 10 t - d t^2 / 2,
poses at 0.5 s interpolated linearly from the origin for the check:
- d = 1.5: s(1.0) = 9.25, s(1.5) = 13.3125 -> s(1.4) = 12.5: lon 3.3 <= 3.5 with the car still beside: conflict;
- d = 3 (standing at 10 / 3 s, 16.67 m): s(1.5) = 11.625, s(2.0) = 14 -> s(1.6) = 12.1: lon 3.7 > 3.5; from 1.7 s the car has left
  (-6.9 + 8.5 = 1.6 > 1.3): no conflict -> taken.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from test_obstacle_guard import CFG, _car_along_x, _guard_on

from latentvla_ros.core.config_base import ConfigError
from latentvla_ros.core.obstacle_guard import GuardConfig, ObstacleGuard

YIELD = replace(CFG, yield_moving=True, yield_min_speed_mps=10.0)  # the ego drives at 10 m/s: yields
CROSSING = (0.0, 5.0)


def test_a_car_crossing_ahead_is_yielded_to_with_the_gentlest_deceleration_that_lets_it_pass():
    guard, _, out, verdict = _guard_on(_car_along_x(15.8, -6.0), CROSSING, ObstacleGuard(YIELD))
    assert verdict.action == "yield" and verdict.conflict_track == 0
    assert verdict.conflict_time_s == pytest.approx(1.3)
    t = np.arange(1, 9) * 0.5
    np.testing.assert_allclose(out.poses[:, 0], np.where(t < 10 / 3, 10 * t - 1.5 * t * t, 100 / 6), atol=1e-9)
    np.testing.assert_array_equal(out.poses[:, 1:], 0.0)
    # frames 0-2 (seen < 0.25 s: velocity unknown) got the stop retime, frames 3-5 the yield
    assert (guard.plans, guard.yields, guard.stops) == (6, 3, 0)


@pytest.mark.parametrize("cfg", [replace(YIELD, yield_min_speed_mps=10.5), replace(YIELD, yield_moving=False), CFG])
def test_below_the_yield_speed_or_with_the_yield_off_the_same_car_gets_the_stop_retime(cfg):
    # the stop retime, 1 m before the conflicting pose (arc 13 -> 12); CFG: the default (off)
    guard, _, out, verdict = _guard_on(_car_along_x(15.8, -6.0), CROSSING, ObstacleGuard(cfg))
    assert verdict.action == "slow" and verdict.stop_distance_m == pytest.approx(12.0)
    assert out.poses[-1, 0] == pytest.approx(12.0) and guard.yields == 0


@pytest.mark.parametrize("v_obj, n", [((0.0, 0.0), 6), ((0.5, 0.0), 6), ((0.0, 5.0), 1)])
def test_standing_slow_and_young_tracks_are_never_yielded_to(v_obj, n):
    # a car in the lane 20 m ahead, standing, at 0.5 m/s (< follow_min_speed 1 m/s), or crossing at 5 m/s but seen
    # once (velocity unknown: standing within CFG's 3 s young horizon): the stop retime
    guard, _, _, verdict = _guard_on(_car_along_x(20.0), v_obj, ObstacleGuard(YIELD), n=n)
    assert verdict.action in ("slow", "stop") and guard.yields == 0


@pytest.mark.parametrize("value", [-1.0, float("inf"), float("nan")])
def test_yield_speed_must_be_a_number_not_below_zero(value):
    with pytest.raises(ConfigError, match="^yield_min_speed_mps"):
        GuardConfig(yield_min_speed_mps=value)
