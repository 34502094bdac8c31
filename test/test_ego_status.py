"""One ego-status builder (issue 14 b): the runtime's EgoState.status_vector and every
training reader (teacher, LAM, ego-MLP) build the same 8-d rows with core.types.ego_status_vectors."""
from __future__ import annotations

import numpy as np
import pytest
from test_data_log_format import write_log

from latentvla_ros.core.types import DrivingCommand, EgoState, ego_status_vectors
from latentvla_ros.data.log_format import DrivingLog


def test_builder_rows():
    rows = ego_status_vectors(np.array([[1, 2, 3, 4, 9], [np.inf, np.nan, 0, 0, 0]], np.float32), np.array([7, 1]))
    assert rows.dtype == np.float32
    np.testing.assert_array_equal(rows, [[0, 0, 0, 1, 1, 2, 3, 4], [0, 1, 0, 0, 0, 0, 0, 0]])
    with pytest.raises(ValueError, match="mismatch"):
        ego_status_vectors(np.zeros((3, 5)), np.zeros(2))
    ego = EgoState(np.array([3.0, 0.1]), np.array([np.nan, 0.2]), 0.0, DrivingCommand.RIGHT)
    v = ego.status_vector()  # the runtime keeps non-finite values: its callers refuse them
    assert v.dtype == np.float32 and v[:4].tolist() == [0, 0, 1, 0] and np.isnan(v[6]) and v[7] == pytest.approx(0.2)


def test_every_reader_builds_the_runtime_rows(tmp_path):
    from latentvla_ros.models.configuration_lam import LamConfig
    from latentvla_ros.training.lam_data import load_log_arrays
    from latentvla_ros.training.teacher import read_log

    write_log(tmp_path / "l1", n=40, speed=7.0, yaw_rate=0.1)
    log = DrivingLog(tmp_path / "l1")
    runtime = np.stack([log.ego_state(t).status_vector() for t in range(log.num_frames)])
    assert runtime[:, :4].sum(axis=1).tolist() == [1.0] * 40 and runtime[0, 4] == pytest.approx(7.0)
    np.testing.assert_array_equal(read_log(tmp_path / "l1", need_codes=False)["status"], runtime)
    np.testing.assert_array_equal(ego_status_vectors(log.ego_status_array, log.command_array), runtime)
    lam = load_log_arrays(tmp_path / "l1", LamConfig(crop_px=0, image_size=32, meters_per_pixel=0.5))
    np.testing.assert_array_equal(lam.ego_status, runtime)
