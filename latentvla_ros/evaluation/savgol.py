"""Savitzky-Golay filtering as NAVSIM's comfort metrics use it (``scipy.signal.savgol_filter``
with ``mode='interp'``), in plain numpy."""
from __future__ import annotations

from math import factorial

import numpy as np


def _savgol_weights(window: int, polyorder: int, deriv: int, positions: np.ndarray, delta: float) -> np.ndarray:
    """Weights (P, window) evaluating the ``deriv``-th derivative of the least
    squares polynomial through ``window`` unit-spaced samples at ``positions``
    (relative to the first sample)."""
    c = (window - 1) / 2.0
    xs = np.arange(window, dtype=np.float64) - c
    v = xs[:, None] ** np.arange(polyorder + 1)[None, :]
    t = np.asarray(positions, dtype=np.float64) - c
    d = np.zeros((len(t), polyorder + 1), dtype=np.float64)
    for k in range(deriv, polyorder + 1):
        d[:, k] = factorial(k) / factorial(k - deriv) * t ** (k - deriv)
    w = np.linalg.solve(v.T @ v, d.T).T @ v.T
    return w / delta**deriv


def savgol_filter(
    x: np.ndarray, window_length: int, polyorder: int, deriv: int = 0, delta: float = 1.0
) -> np.ndarray:
    """Savitzky-Golay filter along the last axis, ``mode='interp'``.

    Matches ``scipy.signal.savgol_filter(x, window_length, polyorder, deriv,
    delta, axis=-1, mode='interp')`` to rounding, including even windows (whose
    interior outputs scipy evaluates half a sample after the window centre).
    The first/last ``window_length // 2`` outputs come from the polynomial
    fitted to the first/last window.
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[-1]
    if not (0 <= polyorder < window_length <= n):
        raise ValueError(f"need 0 <= polyorder < window_length <= len(x), got {polyorder}, {window_length}, {n}")
    if deriv > polyorder:
        return np.zeros_like(x)
    half = window_length // 2
    out = np.empty_like(x)
    if half > 0:
        w_head = _savgol_weights(window_length, polyorder, deriv, np.arange(half), delta)
        out[..., :half] = x[..., :window_length] @ w_head.T
        w_tail = _savgol_weights(
            window_length, polyorder, deriv, np.arange(window_length - half, window_length), delta
        )
        out[..., n - half:] = x[..., n - window_length:] @ w_tail.T
    # interior: odd window -> centred; even -> window [i-half+1, i+half], evaluated at i + 0.5
    pos = half if window_length % 2 else half - 0.5
    start_off = half if window_length % 2 else half - 1
    w_mid = _savgol_weights(window_length, polyorder, deriv, np.array([pos]), delta)[0]
    n_mid = n - 2 * half
    if n_mid > 0:
        idx = np.arange(half, n - half)[:, None] - start_off + np.arange(window_length)[None, :]
        out[..., half:n - half] = x[..., idx] @ w_mid
    return out
