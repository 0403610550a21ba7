"""MAP@3 on hand-computed cases."""

import numpy as np
import pytest

from tagger import metrics


@pytest.mark.parametrize("predicted, actual, expected", [
    (["a", "b", "c"], "a", 1.0),
    (["a", "b", "c"], "b", 1 / 2),
    (["a", "b", "c"], "c", 1 / 3),
    (["a", "b", "c"], "d", 0.0),          # label not predicted
    (["a", "b", "c", "d"], "d", 0.0),     # only the first 3 count
    (["b"], "b", 1.0),                    # fewer than 3 predictions
    ([], "b", 0.0),
    (["a", "a", "b"], "b", 1 / 3),        # a repeat keeps its place...
    (["a", "a", "a"], "a", 1.0),          # ...and counts once
])
def test_average_precision_hand_computed(predicted, actual, expected):
  assert metrics.average_precision_at_k(predicted, actual) == pytest.approx(
      expected)


def test_map_is_the_mean_over_clips():
  got = metrics.map_at_k([["a", "b", "c"], ["c", "a", "b"], ["x"]],
                         ["a", "b", "y"])
  assert got == pytest.approx((1 + 1 / 3 + 0) / 3)


def test_from_scores_ties_go_to_the_lower_class():
  scores = np.array([[0.2, 0.2, 0.2, 0.4],   # top: 3, then 0, 1 (tie)
                     [0.1, 0.3, 0.3, 0.3]])  # top: 1, 2, 3
  np.testing.assert_array_equal(metrics.top_k(scores), [[3, 0, 1], [1, 2, 3]])
  assert metrics.map_at_3(scores, [1, 3]) == pytest.approx((1 / 3 + 1 / 3) / 2)
  assert metrics.accuracy(scores, [3, 2]) == 0.5


def test_confusion_and_per_class_accuracy():
  scores = np.eye(3)[[0, 1, 1, 2]]
  matrix = metrics.confusion(scores, [0, 1, 2, 2], 3)
  np.testing.assert_array_equal(matrix, [[1, 0, 0], [0, 1, 0], [0, 1, 1]])
  np.testing.assert_allclose(metrics.per_class_accuracy(matrix), [1, 1, 0.5])


def test_lwlrap_is_label_weighted_lrap_and_ap_per_class_is_sklearns():
  from sklearn import metrics as sk  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  truth = rng.random((60, 7)) < 0.3
  truth[np.arange(60), rng.integers(0, 7, 60)] = True
  scores = rng.random((60, 7))
  value, per_class, weights = metrics.lwlrap(truth, scores)
  assert value == pytest.approx(sk.label_ranking_average_precision_score(
      truth, scores, sample_weight=truth.sum(1)))
  assert (per_class * weights).sum() == pytest.approx(value)
  np.testing.assert_allclose(
      metrics.average_precision_per_class(truth, scores),
      [sk.average_precision_score(truth[:, k], scores[:, k])
       for k in range(7)])
  # One label per clip: lwlrap is the label's mean reciprocal rank.
  single = np.eye(7, dtype=bool)[rng.integers(0, 7, 60)]
  ranks = (scores >= scores[single][:, None]).sum(1)
  assert metrics.lwlrap(single, scores)[0] == pytest.approx(
      np.mean(1 / ranks))
  perfect = metrics.lwlrap(truth, truth + 0.1 * scores)[0]
  assert perfect == 1.0
