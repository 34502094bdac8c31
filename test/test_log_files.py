"""One log reader underneath (issue 14 b): DrivingLog, the teacher's and the LAM's readers
load a log's files with data/log_files.py and report a bad file the same way."""
from __future__ import annotations

import numpy as np
import pytest
from test_data_log_format import write_log

from latentvla_ros.data import log_files
from latentvla_ros.data.log_format import DrivingLog, LogFormatError


def test_one_error_class_and_meta_reader(tmp_path):
    from latentvla_ros.training import teacher

    assert teacher.LogFormatError is LogFormatError is log_files.LogFormatError
    assert log_files.read_meta(tmp_path) == {}
    with pytest.raises(LogFormatError, match="missing meta.json"):
        log_files.read_meta(tmp_path, required=True)
    (tmp_path / "meta.json").write_text("[1, 2]")
    with pytest.raises(LogFormatError, match="not a JSON object"):
        log_files.read_meta(tmp_path)
    np.save(tmp_path / "a.npy", np.array([object()], dtype=object))
    with pytest.raises(LogFormatError, match="cannot read"):  # never unpickled
        log_files.load_array(tmp_path, "a.npy")


def test_a_corrupt_array_reads_the_same_everywhere(tmp_path):
    from latentvla_ros.models.configuration_lam import LamConfig
    from latentvla_ros.training.lam_data import LamDataError, load_log_arrays
    from latentvla_ros.training.teacher import read_log

    write_log(tmp_path / "l1", n=20)
    np.testing.assert_array_equal(read_log(tmp_path / "l1", need_codes=False)["camera"], DrivingLog(tmp_path / "l1").camera_array)
    (tmp_path / "l1" / "camera.npy").write_bytes(b"not an npy file")
    for read in (lambda: DrivingLog(tmp_path / "l1"), lambda: read_log(tmp_path / "l1", need_codes=False)):
        with pytest.raises(LogFormatError, match=r"camera.npy: cannot read"):
            read()
    with pytest.raises(LamDataError, match=r"camera.npy: cannot read"):
        load_log_arrays(tmp_path / "l1", LamConfig(crop_px=0, image_size=32))
