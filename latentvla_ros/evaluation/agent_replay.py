"""Logged agents for the PDM score: resampled at the simulation rate (NAVSIM's metric cache),
and the constant-velocity forecast PDM-Closed plans with."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from latentvla_ros.core.types import AgentBox
from latentvla_ros.evaluation.geometry import box_corners, unwrap_angles, wrap_angle
from latentvla_ros.evaluation.simulation import SIM_DT_S


@dataclass
class AgentReplay:
    """Agents resampled at 0.1 s (index k <-> k * 0.1 s), sorted by track.

    ``corners`` (T, N, 4, 2), ``centers`` (T, N, 2), ``valid`` (T, N);
    ``initial_speed`` is the speed at the track's first appearance (NAVSIM
    classifies "stopped tracks" by that); ``is_static`` marks static objects
    (NC 0.5 instead of 0, always "stopped").
    """

    times_s: np.ndarray
    track_keys: list[tuple]
    track_ids: np.ndarray
    is_static: np.ndarray
    initial_speed: np.ndarray
    boxes: np.ndarray  # (T, N, 5) x, y, heading, length, width
    velocity: np.ndarray  # (T, N, 2)
    valid: np.ndarray
    corners: np.ndarray
    centers: np.ndarray

    @property
    def num_agents(self) -> int:
        return len(self.track_keys)


def _box_tuple(b: AgentBox) -> tuple:
    return (
        float(b.x), float(b.y), float(b.heading), float(b.length), float(b.width),
        float(b.vx), float(b.vy), bool(b.is_static),
    )


def build_agent_replay(
    frames: Sequence[Sequence[AgentBox]],
    frame_dt_s: float,
    num_samples: int = int(round(5.0 / SIM_DT_S)) + 1,
    sample_dt_s: float = SIM_DT_S,
) -> AgentReplay:
    """Resample logged agent frames (frame k at ``k * frame_dt_s``) at ``sample_dt_s``.

    Like NAVSIM's metric cache: a track is interpolated linearly (heading
    unwrapped, velocity too) between its first and last appearance and is
    absent outside. Deviations: a track seen in a single frame exists only
    within half a frame interval of it (NAVSIM keeps it at all times); after
    the last frame of the scene, tracks present in it move on at constant
    velocity (static objects stay), so that short logs still cover the TTC
    lookahead. Boxes with ``track_id < 0`` are single-frame tracks. Result is
    independent of the order of boxes within a frame.
    """
    samples: dict[tuple, list[tuple[float, tuple]]] = {}
    last_frame_t = (len(frames) - 1) * frame_dt_s if frames else 0.0
    for k, frame in enumerate(frames):
        t = k * frame_dt_s
        named = sorted(
            ((int(b.track_id), _box_tuple(b)) for b in frame if int(b.track_id) >= 0),
        )
        seen: set[int] = set()
        for tid, tup in named:
            if tid in seen:  # duplicate id in one frame: keep the first (sorted)
                continue
            seen.add(tid)
            samples.setdefault((0, tid), []).append((t, tup))
        anon = sorted(_box_tuple(b) for b in frame if int(b.track_id) < 0)
        for j, tup in enumerate(anon):
            samples[(1, k, j)] = [(t, tup)]

    keys = sorted(samples)
    n = len(keys)
    t_s = sample_dt_s * np.arange(num_samples, dtype=np.float64)
    boxes = np.zeros((num_samples, n, 5), dtype=np.float64)
    vel = np.zeros((num_samples, n, 2), dtype=np.float64)
    valid = np.zeros((num_samples, n), dtype=bool)
    is_static = np.zeros(n, dtype=bool)
    initial_speed = np.zeros(n, dtype=np.float64)
    track_ids = np.array([k[1] if k[0] == 0 else -1 for k in keys], dtype=np.int64)
    tol = 1e-9
    for i, key in enumerate(keys):
        data = samples[key]
        times = np.array([d[0] for d in data], dtype=np.float64)
        arr = np.array([d[1][:7] for d in data], dtype=np.float64)  # x y h l w vx vy
        is_static[i] = any(d[1][7] for d in data)
        initial_speed[i] = 0.0 if is_static[i] else float(np.hypot(arr[0, 5], arr[0, 6]))
        if len(times) == 1:
            m = np.abs(t_s - times[0]) <= 0.5 * frame_dt_s + tol
            boxes[m, i] = arr[0, :5]
            vel[m, i] = arr[0, 5:7]
            valid[m, i] = True
        else:
            m = (t_s >= times[0] - tol) & (t_s <= times[-1] + tol)
            q = np.clip(t_s[m], times[0], times[-1])
            h = unwrap_angles(arr[:, 2])
            boxes[m, i, 0] = np.interp(q, times, arr[:, 0])
            boxes[m, i, 1] = np.interp(q, times, arr[:, 1])
            boxes[m, i, 2] = wrap_angle(np.interp(q, times, h))
            boxes[m, i, 3] = np.interp(q, times, arr[:, 3])
            boxes[m, i, 4] = np.interp(q, times, arr[:, 4])
            vel[m, i, 0] = np.interp(q, times, arr[:, 5])
            vel[m, i, 1] = np.interp(q, times, arr[:, 6])
            valid[m, i] = True
        # constant-velocity continuation past the end of the recorded scene
        if abs(times[-1] - last_frame_t) <= tol:
            after = t_s > last_frame_t + tol
            if np.any(after):
                dt_after = t_s[after] - last_frame_t
                v_last = np.zeros(2) if is_static[i] else arr[-1, 5:7]
                boxes[after, i, 0] = arr[-1, 0] + v_last[0] * dt_after
                boxes[after, i, 1] = arr[-1, 1] + v_last[1] * dt_after
                boxes[after, i, 2:5] = arr[-1, 2:5]
                vel[after, i] = v_last
                valid[after, i] = True
    corners = box_corners(boxes[..., 0], boxes[..., 1], boxes[..., 2], boxes[..., 3], boxes[..., 4])
    return AgentReplay(
        times_s=t_s,
        track_keys=keys,
        track_ids=track_ids,
        is_static=is_static,
        initial_speed=initial_speed,
        boxes=boxes,
        velocity=vel,
        valid=valid,
        corners=corners,
        centers=boxes[..., :2].copy(),
    )


def constant_velocity_frames(
    frame0: Sequence[AgentBox], num_frames: int, dt_s: float = SIM_DT_S
) -> list[list[AgentBox]]:
    """Forecast ``frame0`` at constant velocity (PDM-Closed's observation model)."""
    out: list[list[AgentBox]] = []
    for k in range(num_frames):
        t = k * dt_s
        frame = []
        for b in frame0:
            vx, vy = (0.0, 0.0) if b.is_static else (float(b.vx), float(b.vy))
            frame.append(
                AgentBox(
                    x=float(b.x) + vx * t, y=float(b.y) + vy * t, heading=float(b.heading),
                    length=float(b.length), width=float(b.width), vx=vx, vy=vy,
                    track_id=int(b.track_id), is_static=bool(b.is_static),
                )
            )
        out.append(frame)
    return out
