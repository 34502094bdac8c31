"""RViz/Foxglove markers of what the model nodes think: the latent tokens (drawn by the
planner and by the latent_reasoner) and the planner's fallback state."""
from __future__ import annotations

import colorsys

from geometry_msgs.msg import Vector3
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import Marker

from latentvla_ros.core.sizes import DEFAULT_ACTION_SPACE


def token_color(token_id: int, codebook_size: int = DEFAULT_ACTION_SPACE.codebook_size, alpha: float = 1.0) -> ColorRGBA:
    r, g, b = colorsys.hsv_to_rgb((token_id % codebook_size) / codebook_size, 0.75, 0.95)
    return ColorRGBA(r=r, g=g, b=b, a=alpha)


def token_label(ids: list[int], names: tuple[str, ...] | list[str] = ()) -> str:
    """'latent tokens: 3 3 5 ...', or with the LAM's code names (runs merged, in order):
    'latent tokens: straight 24 m/s x5 > left 8 m/s 12 deg/s x7'."""
    if not names:
        return "latent tokens: " + " ".join(str(t) for t in ids)
    runs: list[list] = []
    for t in ids:
        if runs and runs[-1][0] == t:
            runs[-1][1] += 1
        else:
            runs.append([t, 1])
    return "latent tokens: " + " > ".join(
        f"{names[t] if 0 <= t < len(names) else t} x{n}" for t, n in runs)


def latent_token_markers(header, plan, namespace: str = "latentvla", names: tuple[str, ...] | list[str] = (),
                         label_z: float = 3.6) -> list[Marker]:
    """The 12 latent tokens as a row of bars to the right of the ego: colour = code id,
    height = the token's probability; a label above them with the ids, or the LAM's code
    names when ``names`` are given (``token_label``)."""
    markers = []
    if plan is None:
        markers.append(Marker(header=header, ns=f"{namespace}/latent_tokens", id=0, action=Marker.DELETEALL))
        return markers
    ids = [int(t) for t in plan.token_ids]
    probs = plan.token_probabilities
    codebook = probs.shape[-1] if probs.ndim == 2 else DEFAULT_ACTION_SPACE.codebook_size  # the plan's own codebook
    for k, tok in enumerate(ids):
        p = float(probs[k, tok]) if probs.ndim == 2 and tok < probs.shape[1] else 1.0
        height = 0.3 + 2.7 * max(0.0, min(1.0, p))
        m = Marker(header=header, ns=f"{namespace}/latent_tokens", id=k, type=Marker.CUBE, action=Marker.ADD,
                   scale=Vector3(x=0.6, y=0.6, z=height), color=token_color(tok, codebook))
        m.pose.position.x, m.pose.position.y, m.pose.position.z = 1.0 * k - 2.0, -6.0, height / 2
        m.pose.orientation.w = 1.0
        markers.append(m)
    label = Marker(header=header, ns=f"{namespace}/latent_tokens", id=len(ids), type=Marker.TEXT_VIEW_FACING,
                   action=Marker.ADD, scale=Vector3(x=0.0, y=0.0, z=0.8), color=ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0),
                   text=token_label(ids, names))
    label.pose.position.x, label.pose.position.y, label.pose.position.z = 3.5, -6.0, label_z
    label.pose.orientation.w = 1.0
    markers.append(label)
    return markers


def fallback_state_marker(header, is_fallback: bool, reason: str, namespace: str = "latentvla") -> list[Marker]:
    """A disc around the ego: green while the model drives, red in fallback."""
    color = ColorRGBA(r=0.95, g=0.15, b=0.15, a=0.45) if is_fallback else ColorRGBA(r=0.1, g=0.8, b=0.3, a=0.25)
    disc = Marker(header=header, ns=f"{namespace}/fallback_state", id=0, type=Marker.CYLINDER, action=Marker.ADD,
                  scale=Vector3(x=7.0, y=7.0, z=0.1), color=color)
    disc.pose.orientation.w = 1.0
    text = Marker(header=header, ns=f"{namespace}/fallback_state", id=1, type=Marker.TEXT_VIEW_FACING,
                  action=Marker.ADD, scale=Vector3(x=0.0, y=0.0, z=1.2), color=ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0),
                  text=f"FALLBACK: {reason}" if is_fallback else "MODEL")
    text.pose.position.z, text.pose.position.x = 5.0, 0.0
    text.pose.orientation.w = 1.0
    return [disc, text]
