"""Match thresholds for `Index`: calibrate on labelled data, then match or say "unknown".

Matching is nearest-neighbour with a threshold: a query takes the label of its nearest
indexed entry when that entry is within the threshold (similarity `>= t` for cosine and
dot, Euclidean distance `<= t` for l2), otherwise it is *unknown*. On a labelled
calibration set, each query is

- a true positive when it is accepted and the nearest label is its own,
- a false positive when it is accepted with another label (a wrong answer given),
- a false negative when it is rejected although the nearest label is its own,
- a true negative when it is rejected and the nearest label is not its own,

so precision is the fraction of given answers that are right, recall the fraction of
answerable queries answered, FPR the fraction of wrong nearest labels let through.
`calibrate` sweeps every distinct nearest score as threshold
(`tfcontrast.evaluation.threshold_curve`) and keeps the loosest one whose precision
reaches the target. Queries of items absent from the index (unknowns) are what a
threshold learns to reject: put some in the calibration set.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import numpy as np

from tfcontrast.evaluation.verification import ThresholdCurve, threshold_curve


class MatchResult(NamedTuple):
    """Result of `Index.match`; unpacks as `labels, known, scores, indices`.

    Attributes:
        labels: `(Q,)` label of the nearest entry, or the unknown marker (`-1` for
            numeric labels, `"unknown"` for string labels, unless `unknown=` is given)
            where the nearest entry is beyond the threshold.
        known: `(Q,)` bool, `True` where the nearest entry is within the threshold.
        scores: `(Q,)` float32 similarity (cosine, dot) or distance (l2) of the nearest
            entry, whether accepted or not.
        indices: `(Q,)` int64 index position of the nearest entry.
    """

    labels: np.ndarray
    known: np.ndarray
    scores: np.ndarray
    indices: np.ndarray


@dataclasses.dataclass(frozen=True)
class CalibrationResult:
    """Result of `Index.calibrate`.

    Attributes:
        threshold: the chosen threshold (a similarity for cosine / dot, a distance for
            l2); `Index.match` accepts a nearest entry within it.
        target_precision: the precision asked for.
        precision, recall, f1, fpr: measured on the calibration set at `threshold`.
        num_matches: calibration queries whose nearest entry has their label.
        num_non_matches: the others (wrong label, or an item absent from the index).
        higher_is_closer: `True` when `threshold` is a similarity.
        curve: the whole sweep, one point per distinct nearest score, tightest first.
    """

    threshold: float
    target_precision: float
    precision: float
    recall: float
    f1: float
    fpr: float
    num_matches: int
    num_non_matches: int
    higher_is_closer: bool
    curve: ThresholdCurve

    def summary(self) -> dict[str, Any]:
        """The scalars, JSON-ready (what `Index.save` keeps as `calibration`)."""
        return {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "curve"
        }

    def to_dict(self) -> dict[str, Any]:
        """Scalars and the curve as lists, JSON-ready (for reports)."""
        out = self.summary()
        out["curve"] = {name: values.tolist() for name, values in self.curve._asdict().items()}
        return out


def check_threshold(value, name: str, owner: str) -> float | None:
    """`None` or a finite float; raises ValueError naming `name` otherwise."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise ValueError(f"{owner}: `{name}` must be a number or None; received {value!r}.")
    if not np.isfinite(value):
        raise ValueError(f"{owner}: `{name}` must be finite; received {value!r}.")
    return float(value)


def accepts(scores: np.ndarray, threshold: float, higher_is_closer: bool) -> np.ndarray:
    """Whether each nearest score is within `threshold` (inclusive)."""
    return scores >= threshold if higher_is_closer else scores <= threshold


def check_target_precision(value, owner: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise ValueError(f"{owner}: `target_precision` must be a number in (0, 1]; got {value!r}.")
    if not 0.0 < value <= 1.0:
        raise ValueError(
            f"{owner}: `target_precision` must be in (0, 1]; received target_precision={value!r}."
        )
    return float(value)


def calibrate_threshold(
    nearest_scores: np.ndarray,
    correct: np.ndarray,
    target_precision: float,
    higher_is_closer: bool,
    owner: str = "Index.calibrate",
) -> CalibrationResult:
    """Chooses the loosest threshold whose precision on `(nearest_scores, correct)` is
    at least `target_precision` (see the module docstring for the counts)."""
    num_matches = int(correct.sum())
    num_non = int(correct.size - num_matches)
    if num_matches == 0 or num_non == 0:
        raise ValueError(
            f"{owner}: the calibration data (`embeddings`, `labels`) must give both matches "
            f"(nearest entry has the query's label) and non-matches; found {num_matches} "
            f"matches and {num_non} non-matches in {correct.size} queries. Add queries the "
            "index should reject (items not in the index) and ones it should accept."
        )
    curve = threshold_curve(nearest_scores, correct, higher_is_closer)
    ok = np.flatnonzero(curve.precision >= target_precision)
    if ok.size == 0:
        best = int(np.argmax(curve.precision))
        raise ValueError(
            f"{owner}: no threshold reaches `target_precision`={target_precision}; the best "
            f"precision on this calibration set is {curve.precision[best]:.4f} (threshold "
            f"{curve.thresholds[best]:.6g}, recall {curve.recall[best]:.4f}). Lower the "
            "target or calibrate with more data."
        )
    j = ok[-1]  # thresholds run tightest first: the last one that qualifies is loosest
    return CalibrationResult(
        threshold=float(curve.thresholds[j]),
        target_precision=float(target_precision),
        precision=float(curve.precision[j]),
        recall=float(curve.recall[j]),
        f1=float(curve.f1[j]),
        fpr=float(curve.fpr[j]),
        num_matches=num_matches,
        num_non_matches=num_non,
        higher_is_closer=bool(higher_is_closer),
        curve=curve,
    )


def unknown_marker(unknown, labels: np.ndarray, owner: str = "Index.match"):
    """The marker for unknown queries: `-1` for numeric labels, `"unknown"` for strings.

    A marker equal to a stored label would make an unknown look like that label:
    refused.
    """
    is_text = labels.dtype.kind in "US"
    if unknown is None:
        unknown = "unknown" if is_text else -1
    elif is_text != isinstance(unknown, str):
        kind = "a string" if is_text else "a number"
        raise ValueError(
            f"{owner}: `unknown` must be {kind} like the index labels ({labels.dtype}); "
            f"received unknown={unknown!r}."
        )
    if np.any(labels == unknown):
        raise ValueError(
            f"{owner}: `unknown`={unknown!r} is also a label in the index; pass another "
            "`unknown` marker."
        )
    return unknown
