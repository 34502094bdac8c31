"""Typed parameters of every node. GENERATED from schema/<node>.schema.json by
``python -m latentvla_ros.ros.contracts.typed_params``: do not edit by hand (the schema is
the source; test/test_typed_params.py fails while this file and the schemas disagree)."""
from __future__ import annotations

from dataclasses import dataclass

from latentvla_ros.ros.contracts.typed_params import ParamGroup


@dataclass(frozen=True)
class DebugParams(ParamGroup):
    """The ``debug.*`` parameters of bev_features."""

    bev_image_period_s: float  # read-only


@dataclass(frozen=True)
class LidarExtrinsicsParams(ParamGroup):
    """The ``lidar_extrinsics.*`` parameters of bev_features, trajectory_planner."""

    frame_id: str  # read-only
    pitch: float  # read-only
    roll: float  # read-only
    x: float  # read-only
    y: float  # read-only
    yaw: float  # read-only
    z: float  # read-only


@dataclass(frozen=True)
class ObstacleGuardParams(ParamGroup):
    """The ``obstacle_guard.*`` parameters of trajectory_planner."""

    cluster_cell_m: float  # read-only
    creep_release: bool  # read-only
    creep_speed_mps: float  # read-only
    ego_length_m: float  # read-only
    ego_width_m: float  # read-only
    enabled: bool  # read-only
    follow: bool  # read-only
    follow_min_speed_mps: float  # read-only
    follow_time_gap_s: float  # read-only
    front_margin_m: float  # read-only
    go_accel_mps2: float  # read-only
    go_horizon_s: float  # read-only
    go_latch: bool  # read-only
    go_latch_speed_mps: float  # read-only
    go_speed_mps: float  # read-only
    horizon_s: float  # read-only
    max_decel_mps2: float  # read-only
    max_gap_s: float  # read-only
    max_height_m: float  # read-only
    max_plan_lateral_accel_mps2: float  # read-only
    max_track_speed_mps: float  # read-only
    min_decel_mps2: float  # read-only
    min_height_m: float  # read-only
    plan_check: bool  # read-only
    plan_limit_lateral_accel_mps2: float  # read-only
    range_m: float  # read-only
    side_margin_m: float  # read-only
    stop_margin_m: float  # read-only
    time_step_s: float  # read-only
    track_gate_m: float  # read-only
    velocity_window_s: float  # read-only
    yield_min_speed_mps: float  # read-only
    yield_moving: bool  # read-only
    young_track_horizon_s: float  # read-only


@dataclass(frozen=True)
class QosParams(ParamGroup):
    """The ``qos.*`` parameters of bev_features, latent_reasoner, sensor_sync, teacher_labeler."""

    input_depth: int  # read-only
    input_reliability: str  # read-only
    output_depth: int  # read-only


@dataclass(frozen=True)
class SensorQosParams(ParamGroup):
    """The ``qos.*`` parameters of trajectory_planner, twist_controller."""

    input_depth: int  # read-only
    input_reliability: str  # read-only
    output_depth: int  # read-only
    sensor_depth: int  # read-only
    sensor_reliability: str  # read-only


@dataclass(frozen=True)
class TwistParams(ParamGroup):
    """The ``twist.*`` parameters of twist_controller."""

    coast_mps2: float  # read-only
    full_brake_mps2: float  # read-only
    full_throttle_mps2: float  # read-only


@dataclass(frozen=True)
class BevFeaturesParams(ParamGroup):
    """Parameters of bev_features (schema/bev_features.schema.json)."""

    backend: str  # read-only
    checkpoint: str  # read-only
    debug: DebugParams
    device: str  # read-only
    diagnostics_period_s: float  # read-only
    frame_id: str  # read-only
    input_timeout_s: float  # settable at run time
    lidar_extrinsics: LidarExtrinsicsParams
    preset: str  # read-only
    qos: QosParams
    torch_threads: int  # read-only
    use_tf: bool  # read-only


@dataclass(frozen=True)
class LatentReasonerParams(ParamGroup):
    """Parameters of latent_reasoner (schema/latent_reasoner.schema.json)."""

    backend: str  # read-only
    checkpoint: str  # read-only
    device: str  # read-only
    diagnostics_period_s: float  # read-only
    frame_id: str  # read-only
    input_timeout_s: float  # settable at run time
    lam_checkpoint: str  # read-only
    preset: str  # read-only
    qos: QosParams
    torch_threads: int  # read-only


@dataclass(frozen=True)
class SensorSyncParams(ParamGroup):
    """Parameters of sensor_sync (schema/sensor_sync.schema.json)."""

    acceleration_filter_tau_s: float  # read-only
    allow_headerless: bool  # read-only
    camera_names: list[str]  # read-only
    camera_transport: str  # read-only
    diagnostics_period_s: float  # read-only
    frame_id: str  # read-only
    input_gap_factor: float  # read-only
    input_timeout_s: float  # settable at run time
    max_stamp_ahead_s: float  # read-only
    qos: QosParams
    queue_size: int  # read-only
    slop_s: float  # read-only
    time_jump_reset_s: float  # read-only


@dataclass(frozen=True)
class TeacherLabelerParams(ParamGroup):
    """Parameters of teacher_labeler (schema/teacher_labeler.schema.json)."""

    device: str  # read-only
    diagnostics_period_s: float  # read-only
    frame_id: str  # read-only
    input_timeout_s: float  # settable at run time
    model_path: str  # read-only
    output_file: str  # read-only
    publish: bool  # read-only
    qos: QosParams
    torch_threads: int  # read-only


@dataclass(frozen=True)
class TrajectoryPlannerParams(ParamGroup):
    """Parameters of trajectory_planner (schema/trajectory_planner.schema.json)."""

    allow_untrained: bool  # read-only
    backend: str  # read-only
    checkpoint: str  # read-only
    device: str  # read-only
    diagnostics_period_s: float  # read-only
    fallback_deceleration_mps2: float  # settable at run time
    frame_id: str  # read-only
    guard_input: str  # read-only
    input_timeout_s: float  # settable at run time
    lidar_extrinsics: LidarExtrinsicsParams
    obstacle_guard: ObstacleGuardParams
    plan_timeout_s: float  # settable at run time
    preset: str  # read-only
    qos: SensorQosParams
    route_timeout_s: float  # settable at run time
    torch_threads: int  # read-only
    use_tf: bool  # read-only
    watchdog_rate_hz: float  # read-only


@dataclass(frozen=True)
class TwistControllerParams(ParamGroup):
    """Parameters of twist_controller (schema/twist_controller.schema.json)."""

    accel_fit_s: float  # read-only
    control_rate_hz: float  # read-only
    diagnostics_period_s: float  # read-only
    feedforward_from_mps: float  # read-only
    feedforward_full_mps: float  # read-only
    input_timeout_s: float  # settable at run time
    max_steering_rad: float  # read-only
    max_yaw_acceleration_radps2: float  # read-only
    output: str  # read-only
    qos: SensorQosParams
    speed_kp: float  # read-only
    stale_deceleration_mps2: float  # settable at run time
    trajectory_timeout_s: float  # settable at run time
    twist: TwistParams
    use_vehicle_status: bool  # read-only
    wheelbase_m: float  # read-only


PARAM_TYPES: dict[str, type[ParamGroup]] = {
    "bev_features": BevFeaturesParams,
    "latent_reasoner": LatentReasonerParams,
    "sensor_sync": SensorSyncParams,
    "teacher_labeler": TeacherLabelerParams,
    "trajectory_planner": TrajectoryPlannerParams,
    "twist_controller": TwistControllerParams,
}
