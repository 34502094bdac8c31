"""ros.contracts.monitoring: the per-node statistics behind diagnostics and the benchmark's per-node times."""
from __future__ import annotations

from latentvla_ros.ros.contracts.monitoring import NodeStats


def test_since_mark_gives_the_samples_recorded_after_it():
    stats = NodeStats(window=5)
    stats.on_processed(1.0, 10.0)
    stats.on_processed(2.0)  # no stamp: a processing time without a latency
    mark = stats.mark()
    assert stats.since(mark) == ([], [])
    stats.on_processed(3.0, 30.0)
    stats.on_processed(4.0)
    assert stats.since(mark) == ([3.0, 4.0], [30.0])
    assert stats.since((0, 0)) == ([1.0, 2.0, 3.0, 4.0], [10.0, 30.0])
    for i in range(10):  # more than the window since the mark: what the window still holds
        stats.on_processed(100.0 + i, 200.0 + i)
    processing, latency = stats.since(mark)
    assert processing == [105.0, 106.0, 107.0, 108.0, 109.0] and latency == [205.0, 206.0, 207.0, 208.0, 209.0]
    assert stats.snapshot()["processing"]["count"] == 5
