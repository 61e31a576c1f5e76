"""Verification metrics: decide "same or different?" for pairs by thresholding a score.

Each pair has a score (a similarity, higher is closer, or a distance, lower is closer)
and a truth `same` (both items have the same identity / class). A threshold `t`
*accepts* a pair when `score >= t` (similarity) or `score <= t` (distance). Over the
accepted pairs:

- TAR (true accept rate, = recall = TPR): accepted same pairs / all same pairs,
- FAR (false accept rate, = FPR): accepted different pairs / all different pairs,
- precision: accepted same pairs / accepted pairs, and F1 = 2 P R / (P + R).

`roc_curve` gives (FAR, TAR) at every distinct score, `tar_at_far` the best TAR whose
FAR does not exceed a budget (the face-verification convention, e.g. TAR at FAR = 1e-3
in the IJB benchmarks), and `threshold_curve` all counts and rates per threshold, which
`retrieval.Index.calibrate` uses to choose a match threshold. No interpolation: every
point is a threshold that can actually be used.

Example:

```python
import numpy as np
from tfcontrast.evaluation import roc_curve, tar_at_far

sims = np.sum(emb_a * emb_b, axis=1)          # cosine similarity of normalised pairs
far, tar, thresholds = roc_curve(sims, same)  # same: (P,) bool
tar_at_far(sims, same, far=1e-3)
```
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from tfcontrast.evaluation._common import to_numpy


class ThresholdCurve(NamedTuple):
    """Counts and rates at each distinct score used as threshold, tightest first.

    Attributes:
        thresholds: `(T,)` float64 distinct scores, from the one accepting fewest pairs
            (largest similarity / smallest distance) to the one accepting all.
        tp, fp, fn, tn: `(T,)` int64 accepted same, accepted different, rejected same,
            rejected different pairs.
        precision, recall, f1, fpr: `(T,)` float64 (`recall` is TAR, `fpr` is FAR);
            precision is defined everywhere since each threshold accepts >= 1 pair.
    """

    thresholds: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    tn: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    fpr: np.ndarray


class RocCurve(NamedTuple):
    """ROC points; unpacks as `far, tar, thresholds` (FAR ascending).

    The first point, `(0, 0)`, accepts nothing (threshold `+inf` for similarities,
    `-inf` for distances).
    """

    far: np.ndarray
    tar: np.ndarray
    thresholds: np.ndarray


def _pairs(scores, same, owner: str) -> tuple[np.ndarray, np.ndarray]:
    s = to_numpy(scores, "scores")
    y = to_numpy(same, "same")
    if s.ndim != 1 or s.shape[0] == 0:
        raise ValueError(f"{owner}: `scores` must have shape (P,) with P >= 1; received {s.shape}.")
    if not np.issubdtype(s.dtype, np.number) or np.issubdtype(s.dtype, np.complexfloating):
        raise ValueError(f"{owner}: `scores` must be real numbers; received dtype {s.dtype}.")
    s = s.astype(np.float64)
    if not np.all(np.isfinite(s)):
        bad = np.flatnonzero(~np.isfinite(s))
        raise ValueError(
            f"{owner}: `scores` has {bad.size} non-finite value(s) (NaN or inf), the first "
            f"at position {bad[0]}."
        )
    if y.shape != s.shape:
        raise ValueError(
            f"{owner}: `same` must have shape {s.shape} (one truth per score); received {y.shape}."
        )
    if y.dtype != bool:
        if not np.issubdtype(y.dtype, np.number) or not np.all((y == 0) | (y == 1)):
            raise ValueError(
                f"{owner}: `same` must be booleans or 0/1 (1 = same identity); received "
                f"dtype {y.dtype} with values other than 0 and 1."
            )
        y = y.astype(bool)
    if y.all() or not y.any():
        raise ValueError(
            f"{owner}: `same` must hold both same (True) and different (False) pairs; "
            f"received {int(y.sum())} same of {y.size}."
        )
    return s, y


def threshold_curve(scores, same, higher_is_closer: bool = True) -> ThresholdCurve:
    """Precision, recall (TAR), F1 and FPR (FAR) at every distinct score as threshold.

    Args:
        scores: `(P,)` pair scores (array or tensor), finite.
        same: `(P,)` booleans (or 0/1): the pair is a true match.
        higher_is_closer: `True` for similarities (accept `score >= t`), `False` for
            distances (accept `score <= t`).

    Returns:
        `ThresholdCurve`, tightest threshold first.
    """
    s, y = _pairs(scores, same, "threshold_curve")
    key = -s if higher_is_closer else s  # ascending key = tightest first
    order = np.argsort(key, kind="stable")
    key, y = key[order], y[order]
    # The last position of each run of equal keys: accepting up to it takes the run whole.
    last = np.flatnonzero(np.append(key[1:] != key[:-1], True))
    tp = np.cumsum(y)[last]
    fp = np.cumsum(~y)[last]
    num_same, num_diff = int(y.sum()), int((~y).sum())
    precision = tp / (tp + fp)
    recall = tp / num_same
    with np.errstate(invalid="ignore"):
        f1 = np.where(tp > 0, 2.0 * precision * recall / (precision + recall), 0.0)
    thresholds = -key[last] if higher_is_closer else key[last]
    return ThresholdCurve(
        thresholds=thresholds,
        tp=tp.astype(np.int64),
        fp=fp.astype(np.int64),
        fn=(num_same - tp).astype(np.int64),
        tn=(num_diff - fp).astype(np.int64),
        precision=precision,
        recall=recall,
        f1=f1,
        fpr=fp / num_diff,
    )


def roc_curve(scores, same, higher_is_closer: bool = True) -> RocCurve:
    """ROC of pair verification: (FAR, TAR) at every distinct score as threshold.

    Args:
        scores: `(P,)` pair scores, finite.
        same: `(P,)` booleans (or 0/1), `True` for same-identity pairs.
        higher_is_closer: `True` for similarities, `False` for distances.

    Returns:
        `RocCurve(far, tar, thresholds)`, starting at `(0, 0)` and ending at `(1, 1)`.
    """
    c = threshold_curve(scores, same, higher_is_closer)
    start = np.inf if higher_is_closer else -np.inf
    return RocCurve(
        far=np.concatenate([[0.0], c.fpr]),
        tar=np.concatenate([[0.0], c.recall]),
        thresholds=np.concatenate([[start], c.thresholds]),
    )


def tar_at_far(scores, same, far: float = 1e-3, higher_is_closer: bool = True) -> float:
    """The true accept rate at the loosest threshold whose false accept rate is <= `far`.

    Args:
        scores: `(P,)` pair scores, finite.
        same: `(P,)` booleans (or 0/1), `True` for same-identity pairs.
        far: the false accept budget, in `[0, 1]`. With `N` different pairs, FAR moves
            in steps of `1 / N`: a budget below `1 / N` is met only by thresholds that
            accept no different pair.
        higher_is_closer: `True` for similarities, `False` for distances.

    Returns:
        TAR in `[0, 1]` (0 when even the tightest threshold exceeds the budget).
    """
    if isinstance(far, bool) or not isinstance(far, (int, float, np.number)) or not 0 <= far <= 1:
        raise ValueError(f"tar_at_far: `far` must be a number in [0, 1]; received far={far!r}.")
    c = roc_curve(scores, same, higher_is_closer)
    # TAR and FAR both grow as the threshold loosens: the last point within budget.
    return float(c.tar[np.flatnonzero(c.far <= far)[-1]])
