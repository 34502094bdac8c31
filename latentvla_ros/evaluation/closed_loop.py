"""Closed-loop driving in highway-env: the env loop, the drivers, and the episode metrics.

The loop (``run_episode``) is the same for every method:

1. ``HighwayClosedLoopEnv`` synthesises the ego's sensors at the current 10 Hz step with
   the data generator's own functions (``data/highway.py``: ``render_ego_camera``,
   ``synthesize_lidar``, ``extract_map``, ``route_command``): an ego-up camera image, a
   LiDAR cloud, the ego status by finite differences at the simulation rate, and the
   route command, stamped with simulation time (``stamp_base_ns + step * 100 ms``).
2. A *driver* turns that observation into a planned ``Trajectory`` (8 poses at 0.5 s,
   ego frame). For our methods the driver is the ROS 2 node graph itself
   (``apps.sim_bridge.RosGraphDriver``: sensor messages out, ``PlannedTrajectory`` with the
   same stamp back); baselines implement ``core.agent.AbstractAgent`` and are
   called directly (``PlannerDriver``); the IDM/MOBIL expert (``ExpertDriver``) drives
   the ego itself (the ceiling).
3. ``core.tracking.track`` (pure pursuit + P speed control, ``highway_tracker_config``)
   turns the trajectory into (acceleration, steering), normalised to highway-env's
   ``ContinuousAction`` ranges, and the env advances 0.1 s (``_simulate``: the physics of ``env.step``).

Each (scenario, seed) is a *mission* (``data/missions.py``): highway and merge a fixed
distance, roundabout the exit the seed asks for, intersection through the junction and
out the exit the seed asks for (left / straight / right cycle with the seed); the route
is the lane path there, the time limit long enough to finish it. Episodes stop at a
collision (``vehicle.crashed``), when an ego corner leaves the drivable area (the map's
lane polygons), when the route is completed, or at the time limit (``max_steps``).

Per episode: collision (any contact), the contacts (``evaluation/collisions.py``: which agent,
both speeds, the contact geometry, whether the ego is at fault by NAVSIM's rules, the same
function the open-loop scorer uses), off-road, route progress [m along the route centreline], route
completion (progress / route length, capped at 1),
mean speed, comfort (NAVSIM's six comfort checks, ``pdms.comfort_checks``, on sliding
4 s windows of the driven path; the fraction of windows that pass), and a
PDMS-style score ``NC * DAC * (5 * EP + 2 * C) / 7`` with NC = 0 after an at-fault collision
(0.5 with a static object; 1 when the ego was hit: stopped, rear-ended, or a lateral contact
inside its lane -- the episode still ends at the contact, so progress stops there),
DAC = 0 after leaving the road, EP = progress / max(progress, expert progress on the
same seed) (1 when both are below 5 m) and C the comfort fraction. There is no TTC
term (it needs a 4 s open-loop proposal; closed loop collisions are counted directly).

Pure: no rclpy import (the ROS driver lives in ``apps/sim_bridge.py``).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from latentvla_ros.core.config_base import ConfigBase, require
from latentvla_ros.core.tracking import ControlCommand, TrackerConfig, track
from latentvla_ros.core.types import (
    AgentBox,
    CameraImage,
    EgoState,
    MapGeometry,
    SensorFrame,
)
from latentvla_ros.data.missions import EXPERT_CRUISE_MPS, Mission, mission_for, plan_route, route_points
from latentvla_ros.data.splits import SCENARIOS
from latentvla_ros.evaluation.closed_loop_vehicles import closed_loop_vehicle_classes
from latentvla_ros.evaluation.collisions import episode_nc
from latentvla_ros.evaluation.geometry import Polyline, box_corners, point_segment_distance, points_in_union
from latentvla_ros.evaluation.pdms import COMFORT_METRICS, DRIVABLE_AREA_TOLERANCE_M, PdmsConfig, comfort_checks
from latentvla_ros.evaluation.simulation import AX, AY, HEADING, STATE_SIZE, VX, VY, YAW_RATE, X, Y

POLICY_HZ = 10
STEP_NS = 100_000_000
ACCELERATION_RANGE = (-5.0, 5.0)  # highway-env ContinuousAction defaults [m/s^2]
STEERING_RANGE = (-math.pi / 4.0, math.pi / 4.0)  # [rad]


# ----------------------------------------------------------------------------- config
@dataclass
class ClosedLoopConfig(ConfigBase):
    max_steps: int | None = None
    """Policy steps (10 Hz) per episode at most; None: the mission's time limit
    (``data/missions.py``: long enough to finish the route)."""
    sim_hz: int = 20
    """highway-env simulation frequency [Hz] (a multiple of 10, as in the data generator)."""
    density: float = 1.0
    """Traffic density factor (as in ``data/highway.py``)."""
    stop_on_collision: bool = True
    """End the episode at the first collision."""
    stop_off_road: bool = True
    """End the episode when the ego leaves the drivable area."""
    off_road_tolerance_m: float = DRIVABLE_AREA_TOLERANCE_M
    """A corner counts as off-road only when it lies farther than this outside the
    drivable area [m]: the map's per-lane polygons leave small wedge-shaped gaps where
    lanes meet at an angle (roundabout entries), which the expert cuts through."""
    route_end_margin_m: float = 60.0
    """The route centreline continues this far past the mission's goal (where the road
    does) [m]: progress projects cleanly up to the goal, and scene-based planners (the
    reference planner's 4 s horizon) do not see the route end before the goal."""
    comfort_window_steps: int = 40
    """Comfort is checked on windows of this many 0.1 s steps (4 s, NAVSIM's horizon)."""
    comfort_stride_steps: int = 10
    """Stride between comfort windows [steps]."""
    progress_threshold_m: float = 5.0
    """EP = 1 when both the method's and the expert's progress are below this [m]."""

    def validate(self) -> None:
        require(self.max_steps is None or self.max_steps >= 1, "max_steps", "must be None or >= 1")
        require(self.sim_hz >= POLICY_HZ and self.sim_hz % POLICY_HZ == 0, "sim_hz", f"must be a multiple of {POLICY_HZ}")
        require(self.density > 0, "density", "must be > 0")
        require(0.0 <= self.off_road_tolerance_m < 1.0, "off_road_tolerance_m", "must be in [0, 1)")
        require(self.route_end_margin_m >= 0, "route_end_margin_m", "must be >= 0")
        require(self.comfort_window_steps >= 8, "comfort_window_steps", "must be >= 8")
        require(self.comfort_stride_steps >= 1, "comfort_stride_steps", "must be >= 1")
        require(self.progress_threshold_m >= 0, "progress_threshold_m", "must be >= 0")


def highway_tracker_config(**overrides: Any) -> TrackerConfig:
    """The pure-pursuit tracker tuned to highway-env's vehicle.

    highway-env's kinematic bicycle turns about the box centre with a yaw rate of
    ``v sin(beta) / (L / 2)``, ``tan(beta) = tan(delta) / 2``, i.e. a bicycle of wheelbase L
    (5 m) whose poses are the box centre, L / 2 ahead of its rear axle (the centre slips by beta:
    ``reference_to_rear_axle_m``); decelerations are capped at the action range (5 m/s^2), accelerations at
    2 m/s^2, inside NAVSIM's comfortable 2.40 (with 3 m/s^2 the P speed loop's catch-up after every slow-down
    failed the longitudinal-acceleration comfort check: validation seeds 30000-30011, fused student at
    intersections and roundabouts 78.9 / 90.8 -> 84.1 / 93.0, comfort 0.85 / 0.68 -> 0.86 / 0.76).
    """
    values = dict(wheelbase_m=5.0, reference_to_rear_axle_m=2.5, max_acceleration_mps2=2.0, max_deceleration_mps2=5.0,
                  max_steering_rad=0.6)
    values.update(overrides)
    return TrackerConfig(**values)


def control_to_action(cmd: ControlCommand, acceleration_range: tuple[float, float] = ACCELERATION_RANGE,
                      steering_range: tuple[float, float] = STEERING_RANGE) -> np.ndarray:
    """(acceleration, steering) -> highway-env ContinuousAction in [-1, 1]^2.

    highway-env's frame has y pointing down, so a left turn (positive steering in our
    right-handed frame) is a negative highway-env steering angle.
    """

    def norm(value: float, rng: tuple[float, float]) -> float:
        lo, hi = rng
        return float(np.clip(2.0 * (value - lo) / (hi - lo) - 1.0, -1.0, 1.0))

    acc = cmd.acceleration_mps2 if math.isfinite(cmd.acceleration_mps2) else acceleration_range[0]
    steer = cmd.steering_rad if math.isfinite(cmd.steering_rad) else 0.0
    return np.array([norm(acc, acceleration_range), norm(-steer, steering_range)], dtype=np.float64)


# ----------------------------------------------------------------------------- observations
@dataclass
class Observation:
    """What the drivers get at one 10 Hz step (world = our right-handed frame)."""

    scenario: str
    seed: int
    step: int
    stamp_ns: int
    pose: np.ndarray  # (3,) world x, y, yaw
    ego: EgoState  # ego-frame velocity / acceleration / yaw rate + command
    speed_mps: float
    agents: np.ndarray  # (A, 8) world x, y, heading, length, width, vx, vy, track id
    frame: SensorFrame | None  # camera + LiDAR + ego (None when sensors are off)


@dataclass
class StepOutcome:
    collided: bool
    off_road: bool
    route_completed: bool
    progress_m: float
    route_completion: float = 0.0  # progress / route length, in [0, 1]


class HighwayClosedLoopEnv:
    """One closed-loop episode of a scenario/seed in highway-env (ContinuousAction).

    ``expert=True`` puts the data generator's IDM/MOBIL expert in the ego's place (it
    ignores the control). ``sensors=False`` skips the camera render and LiDAR (for the
    expert, which needs neither). The same (scenario, seed, config) gives the same
    episode for the same sequence of controls.
    """

    def __init__(self, scenario: str, seed: int, config: ClosedLoopConfig | None = None, *, expert: bool = False,
                 sensors: bool = True, camera: Any = None, lidar: Any = None, stamp_base_ns: int = 1_000_000_000):
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}; expected one of {SCENARIOS}")
        from latentvla_ros.data.highway import CameraConfig, LidarConfig

        self.scenario = scenario
        self.seed = int(seed)
        self.config = config or ClosedLoopConfig()
        self.mission: Mission = mission_for(scenario, self.seed, self.config.max_steps)
        self.expert = bool(expert)
        self.sensors = bool(sensors)
        self.camera = camera or CameraConfig()
        self.lidar = lidar or LidarConfig()
        self.stamp_base_ns = int(stamp_base_ns)
        self.env: Any = None
        self.ego: Any = None
        self.step_index = 0
        self.progress_m = 0.0
        self._s = 0.0
        self._s0 = 0.0
        self._tracks: dict[int, tuple[Any, int]] = {}
        self.contacts: list[dict] = []  # the ego's first contact(s), evaluation/collisions.py records
        self._obs: Observation | None = None

    # ------------------------------------------------------------------ setup
    def reset(self) -> Observation:
        from latentvla_ros.data.highway import (
            DrivableRaster,
            _env_classes,
            _reset_idm_class,
            _rng_for,
            _scenario_config,
            extract_map,
        )
        from latentvla_ros.data.highway_fast import accelerate_road

        self.close()
        cfg = self.config
        classes = _env_classes()
        ego_classes = closed_loop_vehicle_classes()
        rng = _rng_for(self.seed, self.scenario, cfg.density)
        destination = self.mission.destination
        if self.scenario in ("roundabout", "intersection"):
            rng.integers(3)  # the draw that used to pick the exit: keeps the rest of the stream
        self.cruise_speed_mps = EXPERT_CRUISE_MPS[self.scenario] * float(rng.uniform(0.9, 1.1))
        self._lidar_rng = np.random.default_rng(rng.integers(2**63))
        cam = self.camera
        c0, r0 = cam.ego_pixel_xy
        reach = math.hypot(max(r0, cam.height - r0), max(c0, cam.width - c0)) * cam.meters_per_pixel
        scaling = 1.0 / cam.meters_per_pixel
        render_px = int(math.ceil(2.0 * reach * scaling)) + 4
        env_cfg = _scenario_config(self.scenario, cfg.density, self.max_steps, render_px, scaling, cfg.sim_hz)
        env_cfg["action"] = {"type": "ContinuousAction", "acceleration_range": list(ACCELERATION_RANGE),
                             "steering_range": list(STEERING_RANGE), "clip": True}
        if self.scenario == "intersection":
            env_cfg["destination"] = destination
        _reset_idm_class()
        self.env = classes[self.scenario](config=env_cfg, render_mode="rgb_array" if self.sensors else None)
        self.env.reset(seed=self.seed)
        road = self.env.road
        accelerate_road(road)  # exact: cached traffic loops (data/highway_fast.py)
        old = self.env.vehicle
        ego = ego_classes["ego"].create_from(old)
        ego.route = plan_route(road, old.lane_index, destination)
        ego.target_lane_index = old.lane_index
        if self.expert:
            ego = ego_classes["expert"].create_from(ego)
            ego.lock_cruise_speed(self.cruise_speed_mps)
            ego.set_scenario(self.scenario)
            ego.trace = []
        road.vehicles[road.vehicles.index(old)] = ego
        self.env.vehicle = ego
        self.ego = ego
        # route (to the mission's goal) and map (cropped to the route)
        lanes = plan_route(road, old.lane_index, destination)
        full = Polyline(route_points(road, lanes))
        s_start = float(full.project(np.array([[old.position[0], -old.position[1]]]))[0])
        if self.mission.route_m is not None:
            goal = s_start + float(self.mission.route_m)
        else:  # EXIT_ROAD_M into the last lane of the path (the exit road)
            from latentvla_ros.data.missions import EXIT_ROAD_M

            last = float(road.network.get_lane((lanes[-1][0], lanes[-1][1], 0)).length)
            goal = full.length - last + min(EXIT_ROAD_M, last - 5.0)
        lo_s = max(s_start - 50.0, 0.0)
        self.route = full.substring(lo_s, goal + cfg.route_end_margin_m)
        self._goal_s = goal - lo_s
        margin = 90.0
        lo, hi = self.route.points.min(axis=0) - margin, self.route.points.max(axis=0) + margin
        self.map: MapGeometry = extract_map(road, (lo[0], lo[1], hi[0], hi[1]))
        self._drivable = [np.asarray(p, dtype=np.float64) for p in self.map.drivable_polygons]
        self._raster = DrivableRaster(self.map.drivable_polygons, self.lidar.drivable_resolution_m) if self.sensors else None
        self._tracks = {}
        self.contacts = []
        self._watch_contacts()
        self.step_index = 0
        # warm-up step (as the data generator): frame 0 has a motion history
        ego.trace.append(self._pose_now())
        self._advance(None if self.expert else np.zeros(2))
        self._s = self._s0 = float(self.route.project(self._pose_now()[None, :2])[0])
        self.route_length_m = max(self._goal_s - self._s0, 1e-6)
        self.progress_m = 0.0
        self._obs = self._observe()
        return self._obs

    def _watch_contacts(self) -> None:
        """Record the ego's contacts (``self.contacts``) right after the road step that flags
        the first one: the boxes still touch there (highway-env pushes them apart at the next step)."""
        from latentvla_ros.evaluation.collisions import highway_env_contacts
        from latentvla_ros.evaluation.pdms import PdmsConfig

        road, step = self.env.road, self.env.road.step
        lanes = [Polyline(c) for c in self.map.lane_centerlines if len(np.asarray(c).reshape(-1, 2)) >= 2]
        scorer = PdmsConfig(drivable_area_tolerance_m=self.config.off_road_tolerance_m)

        def watched(dt: float) -> None:
            step(dt)
            if not self.contacts and (self.ego.crashed or self.ego.impact is not None):
                self.contacts = highway_env_contacts(self.ego, road.vehicles, road.objects, dt, lanes=lanes,
                                                     drivable=self._drivable, config=scorer, track_id=self._track_id)

        road.step = watched

    def close(self) -> None:
        if self.env is not None:
            self.env.close()
            self.env = None
            from latentvla_ros.data.highway import _reset_idm_class

            _reset_idm_class()

    def __enter__(self) -> "HighwayClosedLoopEnv":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ state
    @property
    def max_steps(self) -> int:
        return self.mission.max_steps

    @property
    def dt_sim(self) -> float:
        return 1.0 / self.config.sim_hz

    @property
    def ego_length_m(self) -> float:
        return float(self.ego.LENGTH)

    @property
    def ego_width_m(self) -> float:
        return float(self.ego.WIDTH)

    def _pose_now(self) -> np.ndarray:
        from latentvla_ros.data.highway import _flip_pose

        return np.asarray(_flip_pose(self.ego.position[0], self.ego.position[1], self.ego.heading), dtype=np.float64)

    def _track_id(self, obj: Any) -> int:
        entry = self._tracks.get(id(obj))
        if entry is None or entry[0] is not obj:
            entry = (obj, len(self._tracks))
            self._tracks[id(obj)] = entry
        return entry[1]

    def _ego_status(self) -> tuple[np.ndarray, np.ndarray, float]:
        """Ego-frame velocity, acceleration and yaw rate by finite differences at the sim rate."""
        hist = np.asarray(self.ego.trace[-3:], dtype=np.float64)
        while len(hist) < 3:
            hist = np.vstack([hist[:1], hist])
        dt = self.dt_sim
        vel = (hist[2, :2] - hist[1, :2]) / dt
        vel_prev = (hist[1, :2] - hist[0, :2]) / dt
        acc = (vel - vel_prev) / dt
        d_yaw = (hist[2, 2] - hist[1, 2] + np.pi) % (2.0 * np.pi) - np.pi
        yaw = hist[2, 2]
        c, s = math.cos(yaw), math.sin(yaw)

        def to_ego(v: np.ndarray) -> np.ndarray:
            return np.array([c * v[0] + s * v[1], -s * v[0] + c * v[1]], dtype=np.float32)

        return to_ego(vel), to_ego(acc), float(d_yaw / dt)

    def _observe(self) -> Observation:
        from latentvla_ros.data.highway import _object_row, render_ego_camera, route_command, synthesize_lidar

        road = self.env.road
        pose = self._pose_now()
        rows = [_object_row(v, self._track_id(v)) for v in road.vehicles if v is not self.ego]
        rows += [_object_row(o, self._track_id(o)) for o in road.objects]
        agents = np.asarray(rows, dtype=np.float32).reshape(-1, 8)
        vel, acc, yaw_rate = self._ego_status()
        command = route_command(self.ego)
        ego = EgoState(velocity=vel, acceleration=acc, yaw_rate=yaw_rate, command=command)
        stamp = self.stamp_base_ns + self.step_index * STEP_NS
        frame = None
        if self.sensors:
            image = render_ego_camera(self.env, pose, self.camera)
            cloud = synthesize_lidar(pose, agents, self._raster, self.lidar, self._lidar_rng)
            frame = SensorFrame(stamp_ns=stamp, cameras=[CameraImage(image=image, name="front")], lidar_points=cloud, ego=ego)
        return Observation(scenario=self.scenario, seed=self.seed, step=self.step_index, stamp_ns=stamp, pose=pose,
                           ego=ego, speed_mps=float(np.hypot(vel[0], vel[1])), agents=agents, frame=frame)

    @property
    def observation(self) -> Observation:
        if self._obs is None:
            raise RuntimeError("call reset() first")
        return self._obs

    def is_off_road(self, pose: np.ndarray | None = None) -> bool:
        """An ego corner lies outside the drivable area by more than the tolerance."""
        pose = self._pose_now() if pose is None else pose
        corners = box_corners(pose[0], pose[1], pose[2], self.ego_length_m, self.ego_width_m)
        outside = corners[~points_in_union(corners, self._drivable)]
        tol = self.config.off_road_tolerance_m
        for q in outside:
            near = [p for p in self._drivable
                    if np.all(q >= p.min(axis=0) - tol - 1e-9) and np.all(q <= p.max(axis=0) + tol + 1e-9)]
            dist = min((float(point_segment_distance(q, p, np.roll(p, -1, axis=0)).min()) for p in near),
                       default=float("inf"))
            if dist > tol:
                return True
        return False

    def _advance(self, action: np.ndarray | None) -> None:
        """``env.step`` without the observation / reward / termination (unused here, and
        the Kinematics observation alone costs a third of a step): the ContinuousAction
        goes to the ego in ``_simulate``; the intersection spawns and clears traffic
        after every policy step as its ``step`` does."""
        env = self.env
        env.time += 1.0 / env.config["policy_frequency"]
        env._simulate(action)
        if self.scenario == "intersection":
            env._clear_vehicles()
            env._spawn_vehicle(spawn_probability=env.config["spawn_probability"])

    def step(self, control: ControlCommand | None) -> StepOutcome:
        """Apply ``control`` for 0.1 s (the expert ignores it) and observe."""
        if self.env is None:
            raise RuntimeError("call reset() first")
        if self.expert:
            action = None
        else:
            control = control or ControlCommand(ACCELERATION_RANGE[0], 0.0, 0.0)
            action = control_to_action(control)
        self._advance(action)
        self.step_index += 1
        pose = self._pose_now()
        # progress: projection onto the route near the previous arc length (no jumps
        # to other parts of a route that passes close to itself)
        self._s = self.route.project_within(pose[:2], self._s - 20.0, self._s + 60.0)
        self.progress_m = max(self._s - self._s0, 0.0)
        done = self._s >= self._goal_s
        self._obs = self._observe()
        return StepOutcome(collided=bool(self.ego.crashed), off_road=self.is_off_road(pose),
                           route_completed=bool(done), progress_m=self.progress_m,
                           route_completion=min(self.progress_m / self.route_length_m, 1.0))

    def route_ego(self, obs: Observation | None = None) -> np.ndarray:
        """The episode's mission route centreline (the one the scene and the route progress use)
        in the ego frame of ``obs`` (default: the current observation), (K, 2): the route input
        every agent gets (``AgentInput.route``)."""
        from latentvla_ros.core.route import route_to_ego

        obs = obs or self.observation
        return route_to_ego(self.route.points, obs.pose)

    def scene(self, obs: Observation | None = None):
        """A PDMS ``Scene`` of the current state (for scene-based planners such as the
        reference planner): agents now (they forecast them at constant velocity), the
        route centreline, the expert's cruise speed as the speed limit."""
        from latentvla_ros.evaluation.pdms import Scene
        from latentvla_ros.evaluation.scenes import highway_env_vehicle

        obs = obs or self.observation
        agents = [
            AgentBox(x=float(r[0]), y=float(r[1]), heading=float(r[2]), length=float(r[3]), width=float(r[4]),
                     vx=float(r[5]), vy=float(r[6]), track_id=int(r[7]),
                     is_static=bool(abs(r[5]) < 1e-6 and abs(r[6]) < 1e-6))
            for r in obs.agents
        ]
        return Scene(ego_pose=obs.pose, ego=obs.ego, map=self.map, agent_frames=[agents], agent_dt_s=0.1,
                     route_centerline=self.route.points, **highway_env_vehicle(self.ego_length_m, self.ego_width_m),
                     speed_limit_mps=self.cruise_speed_mps,
                     token=f"{self.scenario}:{self.seed}:{obs.step}")


# ----------------------------------------------------------------------------- episodes
@dataclass
class EpisodeResult:
    """One closed-loop episode (json-friendly via ``to_dict``)."""

    method: str
    scenario: str
    seed: int
    steps: int
    termination: str  # collision | off_road | route_completed | max_steps | error
    collision: bool  # any contact (highway-env's vehicle.crashed)
    off_road: bool
    route_completed: bool
    progress_m: float
    mean_speed_mps: float
    comfort: float  # fraction of 4 s windows passing all six checks
    comfort_checks: dict[str, float]  # per check: fraction of windows passing
    fallbacks: int = 0  # trajectories flagged is_fallback
    no_plan: int = 0  # steps without a trajectory (timeouts): full brake
    guard_actions: dict[str, int] = field(default_factory=dict)  # obstacle guard verdicts per step ({}: no guard)
    mean_plan_ms: float = float("nan")  # wall time from observation to trajectory
    p95_plan_ms: float = float("nan")
    wall_s: float = 0.0
    cpu_s: float = 0.0  # process CPU time (all threads: includes a composed graph's nodes)
    model_id: str = ""
    error: str = ""
    destination: str = ""  # the mission's exit ('' for fixed-distance missions)
    turn: str = "follow"  # left | straight | right | follow
    route_length_m: float = float("nan")  # from the start to the mission's goal
    route_completion: float = 0.0  # progress / route length, in [0, 1]
    max_steps: int = 0  # the time limit [policy steps]
    at_fault_collision: bool = False  # a contact the ego is at fault for (NAVSIM's rules)
    contacts: list[dict] = field(default_factory=list)  # evaluation/collisions.py contact records
    path: list[list[float]] = field(default_factory=list)  # (T, 3) world poses at 10 Hz
    speeds: list[float] = field(default_factory=list)
    stamps_ns: list[int] = field(default_factory=list)  # observation stamps
    trajectory_stamps_ns: list[int] = field(default_factory=list)  # stamps of the trajectories used

    def to_dict(self, with_path: bool = True) -> dict:
        d = asdict(self)
        if not with_path:
            for key in ("path", "speeds", "stamps_ns", "trajectory_stamps_ns"):
                d.pop(key)
        return d


def path_states(poses: np.ndarray, velocities: np.ndarray, accelerations: np.ndarray,
                yaw_rates: np.ndarray) -> np.ndarray:
    """A driven path as simulator states (1, T, STATE_SIZE) for ``pdms.comfort_checks``."""
    n = len(poses)
    states = np.zeros((1, n, STATE_SIZE), dtype=np.float64)
    states[0, :, X], states[0, :, Y], states[0, :, HEADING] = poses[:, 0], poses[:, 1], poses[:, 2]
    states[0, :, VX], states[0, :, VY] = velocities[:, 0], velocities[:, 1]
    states[0, :, AX], states[0, :, AY] = accelerations[:, 0], accelerations[:, 1]
    states[0, :, YAW_RATE] = yaw_rates
    return states


def path_comfort(states: np.ndarray, window: int = 40, stride: int = 10,
                 config: PdmsConfig = PdmsConfig()) -> tuple[float, dict[str, float]]:
    """NAVSIM comfort on sliding windows of ``window + 1`` states (0.1 s apart).

    Returns (fraction of windows passing all checks, per-check pass fraction). Paths
    shorter than 10 states are not assessable: (1.0, all 1.0).
    """
    n = states.shape[1]
    if n < 10:
        return 1.0, {k: 1.0 for k in COMFORT_METRICS}
    length = min(window + 1, n)
    starts = list(range(0, n - length + 1, stride))
    if starts[-1] != n - length:
        starts.append(n - length)
    windows = np.concatenate([states[:, s:s + length] for s in starts], axis=0)
    checks = comfort_checks(windows, 1.0 / POLICY_HZ, config)  # (W, 6)
    return float(np.mean(np.all(checks, axis=1))), {k: float(np.mean(checks[:, i])) for i, k in enumerate(COMFORT_METRICS)}


def run_episode(env: HighwayClosedLoopEnv, driver: Any, tracker: TrackerConfig | None = None,
                on_step: Any = None) -> EpisodeResult:
    """Drive one episode: observe -> driver.plan -> track -> step, until it ends.

    ``env`` is reset here. A driver returning None means "no plan" (full brake),
    except for the expert, which drives itself. ``on_step(obs, traj, control, outcome)``
    is called after every step (plots, tests).
    """
    tracker = tracker or highway_tracker_config()
    cfg = env.config
    t_start = time.perf_counter()
    cpu_start = time.process_time()
    obs = env.reset()
    driver.reset(env)
    poses, vels, accs, yaw_rates, speeds, stamps, traj_stamps, plan_ms = [], [], [], [], [], [], [], []
    fallbacks, no_plan, control = 0, 0, None
    guard_actions: dict[str, int] = {}
    termination = "max_steps"
    outcome = StepOutcome(False, False, False, 0.0)
    model_id = ""
    error = ""
    collided = off_road = completed = False

    def record(o: Observation) -> None:
        poses.append(o.pose.copy())
        vels.append(np.asarray(o.ego.velocity, dtype=np.float64))
        accs.append(np.asarray(o.ego.acceleration, dtype=np.float64))
        yaw_rates.append(float(o.ego.yaw_rate))
        speeds.append(float(o.speed_mps))
        stamps.append(int(o.stamp_ns))

    record(obs)
    try:
        for _ in range(env.max_steps):
            t0 = time.perf_counter()
            traj = driver.plan(obs)
            plan_ms.append((time.perf_counter() - t0) * 1e3)
            action = getattr(driver, "guard_action", None)  # how much of the driving is the model's own plan
            if action:
                guard_actions[action] = guard_actions.get(action, 0) + 1
            previous, control = control, None  # the last command: the tracker limits the steering rate from it
            if traj is not None:
                traj_stamps.append(int(traj.stamp_ns))
                model_id = model_id or traj.model_id
                fallbacks += int(bool(traj.is_fallback))
                control = track(np.asarray(traj.poses, dtype=np.float64), float(traj.interval_s), obs.speed_mps, tracker,
                                previous, 1.0 / POLICY_HZ)
            elif not env.expert:
                no_plan += 1
            outcome = env.step(control)
            obs = env.observation
            record(obs)
            if on_step is not None:
                on_step(obs, traj, control, outcome)
            collided |= outcome.collided
            off_road |= outcome.off_road
            completed |= outcome.route_completed
            if outcome.collided and cfg.stop_on_collision:
                termination = "collision"
                break
            if outcome.off_road and cfg.stop_off_road:
                termination = "off_road"
                break
            if outcome.route_completed:
                termination = "route_completed"
                break
    except Exception as exc:  # noqa: BLE001 - keep the benchmark going; the episode is marked
        termination, error = "error", f"{type(exc).__name__}: {exc}"
    finally:
        env.close()
    states = path_states(np.asarray(poses), np.asarray(vels), np.asarray(accs), np.asarray(yaw_rates))
    comfort, per_check = path_comfort(states, cfg.comfort_window_steps, cfg.comfort_stride_steps)
    ms = np.asarray(plan_ms) if plan_ms else np.array([np.nan])
    return EpisodeResult(
        method=driver.name, scenario=env.scenario, seed=env.seed, steps=len(poses) - 1, termination=termination,
        collision=bool(collided), off_road=bool(off_road), route_completed=bool(completed),
        progress_m=float(outcome.progress_m if len(poses) > 1 else 0.0),
        mean_speed_mps=float(np.mean(speeds)), comfort=comfort, comfort_checks=per_check,
        fallbacks=fallbacks, no_plan=no_plan, guard_actions=guard_actions, mean_plan_ms=float(np.nanmean(ms)),
        p95_plan_ms=float(np.nanpercentile(ms, 95)) if np.any(np.isfinite(ms)) else float("nan"),
        wall_s=time.perf_counter() - t_start, cpu_s=time.process_time() - cpu_start, model_id=model_id, error=error,
        destination=env.mission.destination or "", turn=env.mission.turn,
        route_length_m=float(getattr(env, "route_length_m", float("nan"))),
        route_completion=float(outcome.route_completion if len(poses) > 1 else 0.0), max_steps=env.max_steps,
        at_fault_collision=bool(collided and any(c["at_fault"] for c in env.contacts)), contacts=list(env.contacts),
        path=[[float(v) for v in p] for p in poses], speeds=[float(s) for s in speeds], stamps_ns=stamps,
        trajectory_stamps_ns=traj_stamps,
    )


def score_episode(result: EpisodeResult | dict, expert_progress_m: float | None,
                  config: ClosedLoopConfig | None = None) -> dict[str, float]:
    """PDMS-style sub-scores of a driven episode (see the module doc).

    ``expert_progress_m`` None (no expert run for the seed): EP and the score are NaN.
    """
    cfg = config or ClosedLoopConfig()
    r = result.to_dict(with_path=False) if isinstance(result, EpisodeResult) else result
    nc = episode_nc(r)
    dac = 0.0 if r["off_road"] else 1.0
    progress = max(float(r["progress_m"]), 0.0)
    if expert_progress_m is None or not math.isfinite(expert_progress_m):
        ep = float("nan")
    else:
        top = max(progress, float(expert_progress_m))
        ep = 1.0 if top < cfg.progress_threshold_m else progress / top
    c = float(r["comfort"])
    score = nc * dac * (5.0 * ep + 2.0 * c) / 7.0
    if r.get("termination") == "error":
        score = float("nan")
    return {"nc": nc, "dac": dac, "ep": ep, "c": c, "score": score}
