"""The obstacle guard's go latch (``GuardConfig.go_latch``, ``core/obstacle_guard.py``; off by default, on in
these tests), on the hand-made scenes of test_obstacle_guard.py (its CFG, creeping plan, straight route and
cars: see that module's doc).

Frame 1: the ego at 0.5 m/s with the creeping plan (1 m in 4 s) on the straight route: 'go' (GO_S).
Frame 2, 0.1 s later: the ego at 2.0 m/s, above creep_speed_mps (1.5), so without the latch no release.
With it the go continues (the model's plan still slower than go_latch_speed_mps = 3 m/s on average)
from v0 = 2: s(t) = 2 t + 0.75 t^2 until 8 m/s at t = 6 / 1.5 = 4 s (s(4) = 20), then 8 m/s
(s(5) = 28 <= the route's 100 m). At the plan's pose times 0.5 .. 4 s:
1 + 0.1875 = 1.1875, 2 + 0.75 = 2.75, 3 + 1.6875 = 4.6875, 4 + 3 = 7, 5 + 4.6875 = 9.6875, 6 + 6.75 = 12.75,
7 + 9.1875 = 16.1875, 8 + 12 = 20.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from test_obstacle_guard import CFG, GO_S, V_CREEP, _car_along_x, _creep_plan, _ego, _straight_route

from latentvla_ros.core.obstacle_guard import ObstacleGuard

LATCH = replace(CFG, go_latch=True, go_latch_speed_mps=3.0)
GO_FROM_2 = np.array([1.1875, 2.75, 4.6875, 7.0, 9.6875, 12.75, 16.1875, 20.0])
NOTHING = np.zeros((0, 3))


def _released(cfg=LATCH) -> ObstacleGuard:
    guard = ObstacleGuard(cfg)
    out, verdict = guard.filter(NOTHING, 0, _ego(V_CREEP), _creep_plan(), _straight_route())
    assert verdict.action == "go"
    np.testing.assert_allclose(out.poses[:, 0], GO_S, atol=1e-9)
    return guard


def test_a_released_go_continues_above_the_creep_speed():
    # frame 2: the ego at 2 m/s, the model still creeping: the go continues (old guard: 'clear', the
    # model's 1 m in 4 s, braking the car back to a crawl: the intersection's time-outs)
    guard = _released()
    out, verdict = guard.filter(NOTHING, 100_000_000, _ego(2.0), _creep_plan(), _straight_route())
    assert verdict.action == "go" and guard.releases == 2
    np.testing.assert_allclose(out.poses[:, 0], GO_FROM_2, atol=1e-9)
    np.testing.assert_array_equal(out.poses[:, 1:], 0.0)


@pytest.mark.parametrize("metres, action", [
    (11.96, "go"),  # the model plans 2.99 m/s (above creep_speed_mps 1.5, below go_latch_speed_mps 3): go
    (12.0, "clear"),  # 3 m/s: the model drives again (even slower than the go's 20 m), the latch drops
])
def test_the_latch_holds_while_the_model_is_slower_than_the_latch_speed(metres, action):
    guard = _released()
    plan = _creep_plan(metres)
    out, verdict = guard.filter(NOTHING, 100_000_000, _ego(2.0), plan, _straight_route())
    assert verdict.action == action
    if action == "go":
        np.testing.assert_allclose(out.poses[:, 0], GO_FROM_2, atol=1e-9)
    else:
        assert out is plan
        # dropped: a third frame with the creeping plan at 2 m/s is not released (the ego is above 1.5)
        _, verdict = guard.filter(NOTHING, 200_000_000, _ego(2.0), _creep_plan(), _straight_route())
        assert verdict.action == "clear" and guard.releases == 1


def test_a_conflict_drops_the_latch():
    # frame 2: a parked car's rear 12 m ahead: the go from 2 m/s reaches 12 - 3.5 = 8.5 m at
    # t = (-2 + sqrt(4 + 25.5)) / 1.5 = 2.29 s < 5 s: no go; the creeping plan's front (<= 4.5 m) stays
    # clear of it: 'clear'. Frame 3, the car gone, the ego still at 2 m/s: the latch is gone, 'clear'.
    guard = _released()
    plan = _creep_plan()
    out, verdict = guard.filter(_car_along_x(12.0), 100_000_000, _ego(2.0), plan, _straight_route())
    assert verdict.action == "clear" and out is plan
    _, verdict = guard.filter(NOTHING, 200_000_000, _ego(2.0), _creep_plan(), _straight_route())
    assert verdict.action == "clear" and guard.releases == 1


def test_latch_off_or_reset_releases_only_below_the_creep_speed():
    for guard in (_released(replace(CFG, go_latch=False)), _released()):
        if guard.config.go_latch:
            guard.reset()  # a new episode: the latch belongs to the last one
        plan = _creep_plan()
        out, verdict = guard.filter(NOTHING, 100_000_000, _ego(2.0), plan, _straight_route())
        assert verdict.action == "clear" and out is plan and guard.releases == 1

