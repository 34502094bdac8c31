"""The balanced data preset: every turn and both lane-change directions equally often,
at several densities (issue 12 item 3)."""
from __future__ import annotations

from collections import Counter

from latentvla_ros.data.highway import generate_log
from latentvla_ros.data.log_format import DrivingLog
from latentvla_ros.data.missions import TURNS
from latentvla_ros.data.presets import DENSITIES, command_counts, preset_jobs


def test_balanced_preset_covers_every_turn_equally(tmp_path):
    jobs = preset_jobs("balanced", tmp_path, seeds_per_cell=12)
    assert len(jobs) == 4 * len(DENSITIES) * 12 and len({j["out_dir"] for j in jobs}) == len(jobs)
    assert max(j["seed"] for j in jobs) < 10_000  # training seeds
    for scenario in ("roundabout", "intersection"):
        for density in DENSITIES:
            turns = Counter(TURNS[j["destination"]] for j in jobs if j["scenario"] == scenario and j["density"] == density)
            assert turns == {"left": 4, "straight": 4, "right": 4}
    lanes = Counter(j["initial_lane"] for j in jobs if j["scenario"] == "highway")
    assert set(lanes) == {0, 1, 2} and len(set(lanes.values())) == 1
    assert all(j["destination"] is None for j in jobs if j["scenario"] in ("highway", "merge"))


def test_every_highway_preset_lane_exists(tmp_path):
    """Each starting lane the preset asks for is a lane of the simulated road (a 4th lane of the
    3-lane HighwayEnvFast failed a quarter of the highway logs with an IndexError), the ego starts
    in it, and a lane that does not exist is a clear error."""
    import numpy as np
    import pytest

    starts = {}
    for job in preset_jobs("balanced", tmp_path, seeds_per_cell=3, densities=(1.0,), scenarios=("highway",)):
        generate_log(**{**job, "num_frames": 1})
        starts[job["initial_lane"]] = float(DrivingLog(job["out_dir"]).ego_pose_array[0, 1])
    ys = np.array([starts[k] for k in sorted(starts)])
    assert sorted(starts) == [0, 1, 2] and np.all(np.abs(np.diff(ys)) > 3.0)  # one lane width apart
    with pytest.raises(ValueError, match="lanes 0..2"):
        generate_log(tmp_path / "bad", "highway", seed=0, num_frames=1, initial_lane=3)


def test_preset_logs_take_the_asked_exit(tmp_path):
    job = next(j for j in preset_jobs("balanced", tmp_path, seeds_per_cell=3, densities=(1.0,),
                                      scenarios=("roundabout",)) if j["destination"] == "wxr")
    job["num_frames"] = 3
    generate_log(**job)
    log = DrivingLog(job["out_dir"])
    assert log.meta["destination"] == "wxr" and log.meta["initial_lane"] == -1
    counts = command_counts([job["out_dir"]])
    assert sum(counts["roundabout"].values()) == len(log) == 3
    # the training report says how much data of each command the models saw
    from latentvla_ros.training.pipeline import _data_lines

    lines = _data_lines(tmp_path, {"data": 60.0})
    assert lines[2].startswith("1 logs, 3 frames; generated in 1.0 min")
    assert lines[-2].startswith("| roundabout | ")
