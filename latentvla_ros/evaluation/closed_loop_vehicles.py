"""The closed-loop ego vehicle classes in highway-env (built lazily: importing highway-env is slow): the ego under
ContinuousAction (never reverses, keeps its route, records its pose each simulation step, drawn in the logs' ego
colour) and the data generator's expert recording its pose. Used by ``evaluation/closed_loop.py``."""
from __future__ import annotations

from typing import Any

from latentvla_ros.data.missions import prune_route

_CLASSES: dict[str, Any] = {}


def closed_loop_vehicle_classes() -> dict[str, Any]:
    """The ego vehicle classes (built lazily: importing highway-env is slow)."""
    if _CLASSES:
        return _CLASSES
    from highway_env.vehicle.kinematics import Vehicle

    from latentvla_ros.data.highway import _expert_class, _flip_pose, ego_color_mixin

    expert_base = _expert_class()

    class ClosedLoopVehicle(ego_color_mixin(), Vehicle):
        """The ego under ContinuousAction: a kinematic bicycle that never reverses, with
        a route (for the command) and its pose recorded at every simulation step; drawn
        in the logs' ego colour."""

        MIN_SPEED = 0.0

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.route: list = []
            self.trace: list[tuple[float, float, float]] = []
            self.target_lane_index = self.lane_index
            self.target_speed = float(self.speed)

        def step(self, dt: float) -> None:
            super().step(dt)
            if self.speed < 0.0:
                self.speed = 0.0
            self.route = prune_route(self.route, self.lane_index)
            self.trace.append(_flip_pose(self.position[0], self.position[1], self.heading))

    class RecordingExpert(expert_base):
        """The data generator's IDM/MOBIL expert, recording its pose at every step."""

        def step(self, dt: float) -> None:
            super().step(dt)
            if not hasattr(self, "trace"):
                self.trace = []
            self.trace.append(_flip_pose(self.position[0], self.position[1], self.heading))

    _CLASSES.update(ego=ClosedLoopVehicle, expert=RecordingExpert)
    return _CLASSES
