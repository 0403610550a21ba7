"""Standardised logistic regression on fixed features: the linear
baselines of the quality benchmark and the fitted head of the new-audio
recipe's frozen member, one fit for both.

A fit is scikit-learn's StandardScaler + LogisticRegression (one-vs-rest
for multi-label targets [N, C]), C chosen on a validation split by MAP@3
(lwlrap for multi-label). `dense_weights` folds the scaler into the
linear map, so a network's Dense layer with softmax (or sigmoid) gives
the fit's predict_proba exactly: logits = W (x - mu) / sigma + b.
"""

from typing import Tuple

import numpy as np

from tagger import metrics

C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
ABSENT_LOGIT = -30.0   # a class no training row holds: never predicted


def fit(x_train, y_train, x_val, y_val, num_classes: int, seed: int,
        multi_label: bool = False, sample_weight=None):
  """(pipeline, C, validation figure): C by validation MAP@3 (lwlrap)."""
  best = None
  for c in C_GRID:
    model = fit_at(x_train, y_train, c, seed, multi_label, sample_weight)
    score = _figure(model, x_val, y_val, num_classes, multi_label)
    if best is None or score > best[0]:
      best = (score, c, model)
  return best[2], best[1], best[0]


def fit_at(x, y, c: float, seed: int, multi_label: bool = False,
           sample_weight=None):
  """The standardised logistic regression at C = c, fitted on x [N, D]
  (sample_weight [N]: each row's weight in the loss; single-label)."""
  from sklearn.linear_model import LogisticRegression  # pylint: disable=g-import-not-at-top
  from sklearn.multiclass import OneVsRestClassifier  # pylint: disable=g-import-not-at-top
  from sklearn.pipeline import make_pipeline  # pylint: disable=g-import-not-at-top
  from sklearn.preprocessing import StandardScaler  # pylint: disable=g-import-not-at-top
  linear = LogisticRegression(C=c, max_iter=3000, random_state=seed)
  model = make_pipeline(StandardScaler(), OneVsRestClassifier(linear)
                        if multi_label else linear)
  if sample_weight is None:
    return model.fit(x, y)
  if multi_label:
    raise ValueError("sample weights take single-label data")
  return model.fit(x, y, logisticregression__sample_weight=sample_weight)


def _figure(model, x, y, num_classes: int, multi_label: bool) -> float:
  p = probabilities(model, x, num_classes)
  if multi_label:
    return metrics.lwlrap(y, np.log(p + 1e-9))[0]
  return metrics.map_at_3(p, y)


def probabilities(model, x, num_classes: int) -> np.ndarray:
  """[N, num_classes] probabilities (classes absent from training: 0)."""
  out = np.zeros((len(x), num_classes))
  out[:, _classes(model, num_classes)] = model.predict_proba(x)
  return out


def _classes(model, num_classes: int) -> np.ndarray:
  classes = getattr(model, "classes_", None)
  if classes is None or np.ndim(classes) != 1 or len(classes) == 0:
    return np.arange(num_classes)   # one-vs-rest on [N, C] targets
  return np.asarray(classes, int)


def dense_weights(model, num_classes: int) -> Tuple[np.ndarray, np.ndarray]:
  """A fitted pipeline -> (kernel [D, C], bias [C]) of the Dense layer that
  computes its logits from the raw features (the scaler folded in)."""
  scaler, linear = model.steps[0][1], model.steps[-1][1]
  if hasattr(linear, "estimators_"):   # one-vs-rest: a sigmoid per class
    coef = np.concatenate([e.coef_ for e in linear.estimators_])
    intercept = np.concatenate([e.intercept_ for e in linear.estimators_])
    classes = np.arange(num_classes)
  else:
    coef, intercept = linear.coef_, linear.intercept_
    classes = np.asarray(linear.classes_, int)
    if coef.shape[0] == 1:   # two classes: softmax([-z/2, z/2]) = sigmoid(z)
      coef = np.concatenate([-coef / 2, coef / 2])
      intercept = np.concatenate([-intercept / 2, intercept / 2])
  scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
  w = coef / scale                                   # [c, D]
  b = intercept - w @ scaler.mean_                   # [c]
  kernel = np.zeros((coef.shape[1], num_classes), np.float32)
  bias = np.full(num_classes, ABSENT_LOGIT, np.float32)
  kernel[:, classes] = w.T
  bias[classes] = b
  return kernel, bias
