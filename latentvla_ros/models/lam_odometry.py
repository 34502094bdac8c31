"""Rigid motion of an ego-up top-down view: warping and registration (label-free odometry).

- ``warp_by_ego_motion``: the view as seen after the ego moved by (dx, dy, dyaw): a
  rigid warp about the ego pixel (used by the LAM's forward model).
- ``register_rigid``: the rigid motion that best maps one frame onto the next, by a
  coarse-to-fine search over candidate motions (forward motion, then yaw, then lateral,
  then a finer forward step) minimising the mean squared difference of the grey
  images. It uses the frames only (no labels): the ego IDM's "correlation layer".
- ``refine_transition``: the motion over t -> t + s from the s single-frame steps,
  composed (single steps stay below the 4.33 m period of highway-env's lane dashes, so
  the forward search, ``-0.5 .. 4 m`` per 0.1 s step, is not aliased), then refined on
  the pair (t, t + s) where lateral motion and yaw are three times larger.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

#: Candidate motions of one frame step (0.1 s at 10 Hz): forward [m], yaw [rad], lateral [m].
STEP_DX = torch.arange(-0.5, 4.0001, 0.25)
STEP_DYAW = torch.arange(-0.06, 0.06001, 0.01)
STEP_DY = torch.arange(-0.4, 0.4001, 0.1)
STEP_DX_FINE = torch.tensor([-0.125, -0.0625, 0.0, 0.0625, 0.125])
#: Refinement over the whole transition around the composed single steps (yaw, lateral, forward, yaw).
SEQ_REFINE = ((2, torch.arange(-0.09, 0.09001, 0.015)), (1, torch.arange(-0.6, 0.6001, 0.1)),
              (0, torch.tensor([-0.25, -0.125, 0.0, 0.125, 0.25])), (2, torch.tensor([-0.006, -0.003, 0.0, 0.003, 0.006])))
#: Half-size of the ego's own box left out of the registration error (it never moves in the view) [m].
EGO_BOX_M = (3.5, 1.5)
#: Per-pixel squared difference is capped here (robust to other vehicles moving on their own).
ERROR_CAP = 1.0


def warp_by_ego_motion(frame: torch.Tensor, motion: torch.Tensor, meters_per_pixel: float,
                       ego_row: float, padding_mode: str = "border") -> torch.Tensor:
    """The ego-up frame (B, C, S, S) as seen after the ego moved by ``motion`` (B, 3: dx, dy [m]
    in the ego frame at t, dyaw [rad]): a rigid warp about the ego pixel (row ``ego_row``,
    centre column), bilinear, differentiable in ``motion``; outside the frame: edge values
    (``padding_mode`` "border"), or zeros ("zeros")."""
    b, _, h, w = frame.shape
    rows = torch.arange(h, device=frame.device, dtype=frame.dtype)
    cols = torch.arange(w, device=frame.device, dtype=frame.dtype)
    rr, cc = torch.meshgrid(rows, cols, indexing="ij")
    ego_col = (w - 1) / 2.0
    # output pixel -> point in the ego frame at t + s (x ahead, y left) [m]
    xp = ((ego_row - rr) * meters_per_pixel)[None]
    yp = ((ego_col - cc) * meters_per_pixel)[None]
    dx, dy, dyaw = (motion[:, i, None, None].to(frame.dtype) for i in range(3))
    cos, sin = torch.cos(dyaw), torch.sin(dyaw)
    x = cos * xp - sin * yp + dx
    y = sin * xp + cos * yp + dy
    src_row = ego_row - x / meters_per_pixel
    src_col = ego_col - y / meters_per_pixel
    grid = torch.stack([(2.0 * src_col + 1.0) / w - 1.0, (2.0 * src_row + 1.0) / h - 1.0], dim=-1)
    return F.grid_sample(frame, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


def compose_motions(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """(B, 3) motion ``first`` followed by ``second`` (given in the frame reached by ``first``)."""
    c, s = torch.cos(first[:, 2]), torch.sin(first[:, 2])
    dx = first[:, 0] + c * second[:, 0] - s * second[:, 1]
    dy = first[:, 1] + s * second[:, 0] + c * second[:, 1]
    return torch.stack([dx, dy, first[:, 2] + second[:, 2]], dim=1)


def _outside_ego_box(h: int, w: int, meters_per_pixel: float, ego_row: float, device) -> torch.Tensor:
    rows = torch.arange(h, device=device, dtype=torch.float32)[:, None]
    cols = torch.arange(w, device=device, dtype=torch.float32)[None, :]
    inside = ((rows - ego_row).abs() * meters_per_pixel <= EGO_BOX_M[0]) & \
             ((cols - (w - 1) / 2.0).abs() * meters_per_pixel <= EGO_BOX_M[1])
    return (~inside).float()


def _best(cur: torch.Tensor, nxt: torch.Tensor, base: torch.Tensor, axis: int, values: torch.Tensor,
          meters_per_pixel: float, ego_row: float, weight: torch.Tensor) -> torch.Tensor:
    """``base`` (B, 3) with component ``axis`` offset by the candidate value that fits best."""
    b, n = base.shape[0], len(values)
    cand = base[:, None, :].repeat(1, n, 1)
    cand[:, :, axis] = cand[:, :, axis] + values.to(base)[None]
    warped = warp_by_ego_motion(cur.repeat_interleave(n, 0), cand.reshape(b * n, 3), meters_per_pixel, ego_row)
    diff = (warped - nxt.repeat_interleave(n, 0)).pow(2).clamp_max(ERROR_CAP) * weight
    err = diff.mean(dim=(1, 2, 3)).reshape(b, n)
    return cand[torch.arange(b), err.argmin(dim=1)]


@torch.no_grad()
def register_rigid(cur: torch.Tensor, nxt: torch.Tensor, meters_per_pixel: float, ego_row: float,
                   init: torch.Tensor | None = None, search=None) -> torch.Tensor:
    """(B, 3) rigid motion (dx, dy, dyaw) mapping ``cur`` onto ``nxt`` (B, C, S, S, any scale): one frame
    step searched from zero, or ``search`` (axis, offsets) steps around ``init``."""
    grey_c, grey_n = cur.float().mean(1, keepdim=True), nxt.float().mean(1, keepdim=True)
    weight = _outside_ego_box(cur.shape[-2], cur.shape[-1], meters_per_pixel, ego_row, cur.device)
    m = torch.zeros(cur.shape[0], 3, device=cur.device) if init is None else init.clone()
    steps = search or ((0, STEP_DX), (2, STEP_DYAW), (1, STEP_DY), (0, STEP_DX_FINE))
    for axis, values in steps:
        m = _best(grey_c, grey_n, m, axis, values, meters_per_pixel, ego_row, weight)
    return m


@torch.no_grad()
def refine_transition(first: torch.Tensor, last: torch.Tensor, composed: torch.Tensor, meters_per_pixel: float,
                      ego_row: float) -> torch.Tensor:
    """The composed single steps, refined on the whole transition (3x the lateral/yaw signal)."""
    return register_rigid(first, last, meters_per_pixel, ego_row, init=composed, search=SEQ_REFINE)


__all__ = ["compose_motions", "refine_transition", "register_rigid", "warp_by_ego_motion"]
