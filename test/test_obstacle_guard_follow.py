"""The obstacle guard's follow retime and its young-track horizon / caution (``core/obstacle_guard.py``), on the
hand-made point clouds of test_obstacle_guard.py (its CFG, cars and frames: see that module's doc).

Follow: a conflicting track that moves along the path is followed at its along-path speed u: the plan
is retimed to s(t) = integral of max(v0 - d t, u) (never faster than planned) with the gentlest d of
linspace(1.5, 6, 4) = 1.5, 3, 4.5, 6 m/s^2 whose plan keeps the front half lengthened by 0.5 s x u clear.
For a car at constant u whose rear edge is at x0 (ego frame) and an ego at v0 = 10 on a straight plan,
the car's rear is at x0 + u t and the lengthened front at s(t) + 3.5 + 0.5 u: no conflict while
f(t) = s(t) - u t < x0 - 3.5 - 0.5 u. With u = 6: f rises as 4 t - d t^2 / 2 until t_f = 4 / d and then
stays at 8 / d.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from test_obstacle_guard import CFG, PLAN_X, _car_along_x, _creep, _ego, _guard_on, _plan, _straight_route

from latentvla_ros.core.obstacle_guard import ObstacleGuard

FOLLOW = replace(CFG, follow=True)
U = 6.0  # the lead car's speed along x [m/s]


def test_lead_car_moving_the_same_way_is_followed_at_its_speed_with_the_gentlest_deceleration():
    # Rear edge at x0 = 9 (final frame), 6 m/s, seen 6 frames (velocity known, exactly (6, 0)).
    # The plan (10 t) meets it when 10 t + 3.5 >= 9 + 6 t: t >= 1.375 -> conflict at 1.4 s.
    # No conflict with the gap while 8 / d < 9 - 3.5 - 3 = 2.5, d > 3.2: d = 1.5 (8/1.5 = 5.3) and d = 3
    # (f(1.4) = 8/3 = 2.67) conflict; d = 4.5 does not (max f = 1.78). With d = 4.5, t_f = 0.8889 s:
    # s(0.5) = 5 - 2.25 * 0.25 = 4.4375; s(t >= t_f) = 32 / 4.5 + 6 (t - t_f) = 6 t + 1.7778.
    guard, plan, out, verdict = _guard_on(_car_along_x(9.0), (U, 0.0), ObstacleGuard(FOLLOW))
    assert verdict.action == "follow"
    assert verdict.conflict_time_s == pytest.approx(1.4) and verdict.conflict_track == 0
    t = np.arange(1, 9) * 0.5
    expected = np.where(t < 4.0 / 4.5, 10 * t - 2.25 * t * t, 6 * t + 32 / 4.5 - 6 * 4.0 / 4.5)
    np.testing.assert_allclose(out.poses[:, 0], expected, atol=1e-9)
    np.testing.assert_array_equal(out.poses[:, 1:], 0.0)
    assert np.all(out.poses[:, 0] <= PLAN_X + 1e-12)
    # frames 0-2 (seen < 0.25 s: velocity unknown, a standing car within CFG's 3 s young horizon): stop
    # retime, 'slow'; frames 3-5 (velocity known): 'follow'
    assert (guard.plans, guard.interventions, guard.follows, guard.stops) == (6, 6, 3, 0)
    # the old guard stopped 1 m before the conflicting pose (arc 14 -> 13 m) for a car driving away at 6 m/s
    _, _, old, old_verdict = _guard_on(_car_along_x(9.0), (U, 0.0), ObstacleGuard(CFG))
    assert old_verdict.action == "slow" and old.poses[-1, 0] == pytest.approx(13.0)


def test_lead_car_too_close_to_follow_falls_back_to_the_stop_retime():
    # Rear edge at x0 = 7: the gap needs 8 / d < 7 - 6.5 = 0.5, d > 16: no candidate -> stop retime.
    # The plan meets the car at 10 t + 3.5 >= 7 + 6 t: t >= 0.875 -> 0.9 s, arc 9 -> stop at 8.
    guard, _, out, verdict = _guard_on(_car_along_x(7.0), (U, 0.0), ObstacleGuard(FOLLOW))
    assert verdict.action == "slow" and verdict.stop_distance_m == pytest.approx(8.0)
    assert guard.follows == 0 and out.poses[-1, 0] == pytest.approx(8.0)


@pytest.mark.parametrize("v_obj", [(-6.0, 0.0), (0.5, 0.0), (0.0, 0.0)])
def test_oncoming_slow_or_static_cars_are_not_followed(v_obj):
    # along-path speed -6, 0.5 (< follow_min_speed_mps = 1) or 0: the stop retime ('slow'), never 'follow'
    guard, _, _, verdict = _guard_on(_car_along_x(30.0), v_obj, ObstacleGuard(FOLLOW))
    assert verdict.action in ("slow", "stop") and guard.follows == 0


@pytest.mark.parametrize("car_x, action", [
    # seen once (velocity unknown): the car's rear at 20 conflicts at 1.7 s (test_obstacle_guard's static car)
    # > 0.5 s: no stop retime but a 'caution', braking at min_decel 1.5 m/s^2 without a stop point:
    # s(t) = 10 t - 0.75 t^2 (standing at 6.7 s, after the plan's 4 s);
    (20.0, "caution"),
    # at x = 7 the conflict is at 7 - 10 t <= 3.5, t = 0.4 <= 0.5: a standing car, the stop retime, 'slow'
    (7.0, "slow"),
])
def test_a_track_without_a_known_velocity_is_standing_only_within_the_young_horizon(car_x, action):
    guard = ObstacleGuard(replace(CFG, young_track_horizon_s=0.5))
    out, verdict = guard.filter(_car_along_x(car_x), 0, _ego(), _plan())
    assert verdict.action == action
    if action == "slow":
        assert verdict.conflict_time_s == pytest.approx(0.4)
    else:
        assert verdict.conflict_time_s == pytest.approx(1.7) and verdict.conflict_track == 0
        t = np.arange(1, 9) * 0.5
        np.testing.assert_allclose(out.poses[:, 0], 10 * t - 0.75 * t * t, atol=1e-9)
        np.testing.assert_array_equal(out.poses[:, 1:], 0.0)
        assert (guard.interventions, guard.cautions, guard.stops) == (1, 1, 0)


def test_once_its_velocity_is_known_a_standing_car_counts_over_the_whole_horizon():
    # the same car at 20 seen standing for 0.5 s (6 frames): velocity (0, 0), known -> conflict at 1.7 s, 'slow'
    _, _, _, verdict = _guard_on(_car_along_x(20.0), (0.0, 0.0), ObstacleGuard(replace(CFG, young_track_horizon_s=0.5)))
    assert verdict.action == "slow" and verdict.conflict_time_s == pytest.approx(1.7)


def test_a_young_track_still_blocks_the_creep_release_over_the_go_horizon():
    # test_obstacle_guard's parked car 12 m ahead, seen once: the go candidate reaches it at 3.1 s, later than
    # the young horizon, but a car of unknown velocity must not be driven into: no release, the creeping plan
    # itself is clear -> 'clear', unchanged.
    guard, plan, out, verdict = _creep(_car_along_x(12.0), _straight_route(), replace(CFG, young_track_horizon_s=0.5))
    assert verdict.action == "clear" and out is plan and guard.releases == 0
