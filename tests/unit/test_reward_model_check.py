"""The on-policy ranking statistic of a reward model, by hand."""

import numpy as np
import pytest

from rlvlm.eval.reward_model_check import ranking_stats


def test_ranking_by_hand():
    correct = np.array([[1, 0, 0], [1, 1, 1], [0, 1, 0]])
    scores = np.array([[5.0, 1.0, 7.0], [2.0, 2.0, 2.0], [3.0, 3.0, 0.0]])
    r = ranking_stats(correct, scores)
    # Question 0: (5 vs 1) win, (5 vs 7) loss; question 1 has no wrong reply; question 2: (3 vs 3) tie, (3 vs 0) win.
    assert r["mixed_pairs"] == 4
    assert r["ranking"] == pytest.approx((2 + 0.5) / 4)
    assert r["score_correct"] == pytest.approx((5 + 2 + 2 + 2 + 3) / 5)
    assert r["score_wrong"] == pytest.approx((1 + 7 + 3 + 0) / 4)
    assert r["std_between_questions"] == pytest.approx(np.std([13 / 3, 2.0, 2.0]))


def test_shapes_must_match():
    with pytest.raises(ValueError, match="must both be"):
        ranking_stats(np.zeros((2, 3)), np.zeros((3, 2)))
