"""Independent reference implementations for tests (written differently from the code under test).

``savgol_reference``: Savitzky-Golay filter with scipy's ``mode='interp'`` semantics, one
``numpy.polyfit`` per output sample (the module under test solves the normal equations once
per window position), so that the scorer's comfort metrics are checked without scipy.
"""
from __future__ import annotations

import numpy as np


def _fit_eval(segment: np.ndarray, polyorder: int, deriv: int, position: float, delta: float) -> float:
    centre = (len(segment) - 1) / 2.0
    coeffs = np.polyfit(np.arange(len(segment)) - centre, segment, polyorder)
    return float(np.polyval(np.polyder(coeffs, deriv), position - centre)) / delta**deriv


def savgol_reference(x, window_length: int, polyorder: int, deriv: int = 0, delta: float = 1.0) -> np.ndarray:
    """scipy.signal.savgol_filter(x, window_length, polyorder, deriv, delta, mode='interp') along the last axis.

    Interior samples: the polynomial through the window around the sample (for an even
    window, samples i - w/2 + 1 .. i + w/2, evaluated half a sample after i, as scipy's
    convolution does); the first and last w // 2 samples: the polynomial through the
    first / last window, evaluated at each of them.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim > 1:
        return np.stack([savgol_reference(row, window_length, polyorder, deriv, delta) for row in x])
    n, w, half = len(x), window_length, window_length // 2
    if deriv > polyorder:
        return np.zeros_like(x)
    out = np.empty(n)
    for i in range(n):
        if i < half:
            out[i] = _fit_eval(x[:w], polyorder, deriv, i, delta)
        elif i >= n - half:
            out[i] = _fit_eval(x[n - w:], polyorder, deriv, i - (n - w), delta)
        elif w % 2:
            out[i] = _fit_eval(x[i - half:i + half + 1], polyorder, deriv, half, delta)
        else:
            out[i] = _fit_eval(x[i - half + 1:i + half + 1], polyorder, deriv, half - 0.5, delta)
    return out
