"""evaluation/savgol.py: argument checks, defaults and dtypes pinned by hand (the values
themselves are compared with recorded scipy output in test_eval_geometry.py)."""
from __future__ import annotations

import numpy as np
import pytest

from latentvla_ros.evaluation.savgol import savgol_filter


@pytest.mark.parametrize("window, poly", [(3, 3), (3, 4), (8, 2), (0, 0), (3, -1)])
def test_bad_window_or_order_is_a_clear_error(window, poly):
    with pytest.raises(ValueError, match=rf"^need 0 <= polyorder < window_length <= len\(x\), got {poly}, {window}, 7$"):
        savgol_filter(np.arange(7.0), window, poly)


def test_default_delta_is_one_sample():
    # a line of slope 3 per sample: first derivative 3, second 0
    x = 3.0 * np.arange(10)
    np.testing.assert_allclose(savgol_filter(x, 5, 2, deriv=1), np.full(10, 3.0), atol=1e-12)
    np.testing.assert_allclose(savgol_filter(x, 5, 2, deriv=1, delta=0.5), np.full(10, 6.0), atol=1e-12)
    np.testing.assert_allclose(savgol_filter(x, 5, 2, deriv=2), np.zeros(10), atol=1e-12)


def test_window_of_one_is_the_identity():
    x = np.array([0.0, 1.0, 0.0, 1.0, 5.0])
    np.testing.assert_array_equal(savgol_filter(x, 1, 0), x)


def test_integer_and_float32_input_give_the_float64_answer():
    # 5-point quadratic smoothing of an alternating signal: interior (-3, 12, 17, 12, -3) / 35 weights
    x = np.array([0, 1, 0, 1, 0, 1, 0])
    out = savgol_filter(x, 5, 2)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out[2], (12 + 12) / 35.0, rtol=1e-12)
    np.testing.assert_allclose(out[3], (-3 + 17 - 3) / 35.0, rtol=1e-12)
    np.testing.assert_allclose(out, savgol_filter(x.astype(np.float64), 5, 2), rtol=1e-15)
    x32 = np.array([0.1, 1.3, 0.2, 1.7, 0.4, 1.1, 0.3], dtype=np.float32)
    out32 = savgol_filter(x32, 5, 2)
    assert out32.dtype == np.float64
    np.testing.assert_allclose(out32, savgol_filter(x32.astype(np.float64), 5, 2), rtol=1e-14)
