"""The fusion verdict written into docs/results.md and README comes from the paired 95% intervals."""
from latentvla_ros.evaluation.results_json import fusion_reading, markdown_paired


def _pair(mean, lo, hi):
    return {"mean": mean, "ci95": [lo, hi], "episodes": 100}


def test_no_gain_and_ablations_without_effect_say_the_planner_ignores_the_student():
    r = {"paired": {"e2e_student vs e2e_none": _pair(-1.6, -9.4, 6.2),
                    "e2e_student vs e2e_student_shuffled": _pair(-1.9, -8.2, 4.8),
                    "e2e_student vs e2e_student_zeroed": _pair(-2.6, -8.7, 3.7)}}
    text = fusion_reading(r)
    assert "-1.6 [-9.4, +6.2]: no measurable difference" in text
    assert "does not rely on what the student says" in text
    assert text in markdown_paired(r)


def test_a_gain_and_used_tokens_are_named():
    r = {"paired": {"e2e_student vs e2e_none": _pair(6.5, 0.5, 13.6),
                    "e2e_student vs e2e_student_shuffled": _pair(10.7, 3.9, 18.2),
                    "e2e_student vs e2e_student_zeroed": _pair(2.0, -1.0, 5.0)}}
    text = fusion_reading(r)
    assert "+6.5 [+0.5, +13.6]: gain" in text
    assert "shuffled (+10.7 [+3.9, +18.2])" in text and "zeroed" not in text.split("matter")[1]
    assert fusion_reading({"paired": {"e2e_student vs e2e_none": _pair(-5.0, -9.0, -1.0)}}).endswith(": loss.")


def test_without_the_fusion_pair_nothing_is_claimed():
    assert fusion_reading({"paired": {}}) == ""
    assert fusion_reading({}) == ""


def test_an_ablation_that_drives_better_says_the_tokens_mislead_the_planner():
    # docs/results.md at 07cf446: zeroing the action embeddings drove 3.0 points better, interval below zero;
    # the reading then said "does not measurably change the driving"
    r = {"paired": {"e2e_student vs e2e_none": _pair(-0.2, -3.9, 4.0),
                    "e2e_student vs e2e_student_shuffled": _pair(1.6, -1.7, 5.2),
                    "e2e_student vs e2e_student_zeroed": _pair(-3.0, -5.5, -0.7)}}
    text = fusion_reading(r)
    assert "does not measurably change" not in text and "does not rely" not in text
    assert "with them zeroed (-3.0 [-5.5, -0.7], the fused student minus the ablation) the same planner drives better" in text
    assert text.endswith("Shuffled across frames (+1.6 [-1.7, +5.2]): no measurable difference.")
