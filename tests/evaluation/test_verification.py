import numpy as np
import pytest
from sklearn.metrics import roc_curve as sk_roc_curve

from tfcontrast import evaluation as ev


def _pairs(rng, n=300, ties=False):
    same = rng.random(n) < 0.3
    # Same pairs score higher on average, with overlap so every rate takes many values.
    scores = rng.normal(0.0, 1.0, n) + 1.5 * same
    if ties:
        scores = np.round(scores, 1)  # many tied scores
    return scores, same


def _rates_at(scores, same, t, higher_is_closer):
    """Brute force: counts of one threshold, one pair at a time."""
    tp = fp = fn = tn = 0
    for s, y in zip(scores, same):
        accepted = s >= t if higher_is_closer else s <= t
        if accepted and y:
            tp += 1
        elif accepted:
            fp += 1
        elif y:
            fn += 1
        else:
            tn += 1
    return tp, fp, fn, tn


def _reference_curve(scores, same, higher_is_closer):
    ts = sorted(set(scores.tolist()), reverse=higher_is_closer)  # tightest first
    rows = []
    for t in ts:
        tp, fp, fn, tn = _rates_at(scores, same, t, higher_is_closer)
        p = tp / (tp + fp)
        r = tp / (tp + fn)
        f1 = 0.0 if tp == 0 else 2 * p * r / (p + r)
        rows.append((t, tp, fp, fn, tn, p, r, f1, fp / (fp + tn)))
    return [np.array(col) for col in zip(*rows)]


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("higher_is_closer", [True, False])
def test_threshold_curve_matches_brute_force(rng, ties, higher_is_closer):
    scores, same = _pairs(rng, ties=ties)
    if not higher_is_closer:
        scores = -scores  # a distance: same pairs lower
    got = ev.threshold_curve(scores, same, higher_is_closer=higher_is_closer)
    ref = _reference_curve(scores, same, higher_is_closer)
    names = ("thresholds", "tp", "fp", "fn", "tn", "precision", "recall", "f1", "fpr")
    for name, want in zip(names, ref):
        np.testing.assert_allclose(getattr(got, name), want, rtol=1e-12, err_msg=name)
    if ties:
        assert got.thresholds.size < scores.size  # ties were merged, not split


def test_roc_matches_sklearn_and_brute_force(rng):
    scores, same = _pairs(rng, ties=True)
    far, tar, thresholds = ev.roc_curve(scores, same)
    sk_fpr, sk_tpr, sk_thr = sk_roc_curve(same, scores, drop_intermediate=False)
    np.testing.assert_allclose(far, sk_fpr)
    np.testing.assert_allclose(tar, sk_tpr)
    np.testing.assert_allclose(thresholds[1:], sk_thr[1:])
    assert thresholds[0] == np.inf and far[0] == 0 and tar[0] == 0
    assert far[-1] == 1 and tar[-1] == 1
    # Distances: the same curve with the scores negated.
    d_far, d_tar, d_thr = ev.roc_curve(-scores, same, higher_is_closer=False)
    np.testing.assert_allclose(d_far, far)
    np.testing.assert_allclose(d_tar, tar)
    np.testing.assert_allclose(d_thr, -thresholds)


@pytest.mark.parametrize("far", [0.0, 0.001, 0.01, 0.05, 0.1, 0.5, 1.0])
@pytest.mark.parametrize("higher_is_closer", [True, False])
def test_tar_at_far_matches_brute_force(rng, far, higher_is_closer):
    scores, same = _pairs(rng, n=400, ties=True)
    if not higher_is_closer:
        scores = -scores
    best = 0.0  # accepting nothing: FAR 0, TAR 0
    for t in np.unique(scores):
        tp, fp, fn, tn = _rates_at(scores, same, t, higher_is_closer)
        if fp / (fp + tn) <= far:
            best = max(best, tp / (tp + fn))
    got = ev.tar_at_far(scores, same, far=far, higher_is_closer=higher_is_closer)
    assert got == pytest.approx(best)


def test_tar_at_far_separable_and_tensor_input():
    import keras

    scores = keras.ops.convert_to_tensor(np.array([0.9, 0.8, 0.7, 0.2, 0.1], "float32"))
    same = np.array([1, 1, 0, 1, 0])
    # Thresholds 0.9, 0.8: TAR 1/3, 2/3 at FAR 0; 0.7 lets the first different pair in.
    assert ev.tar_at_far(scores, same, far=0.0) == pytest.approx(2 / 3)
    assert ev.tar_at_far(scores, same, far=0.5) == pytest.approx(1.0)
    assert ev.tar_at_far(scores, same.astype(bool), far=0.49) == pytest.approx(2 / 3)


def test_verification_errors():
    scores, same = np.array([0.1, 0.5, 0.9]), np.array([False, True, True])
    with pytest.raises(ValueError, match="`scores`.*non-finite"):
        ev.roc_curve(np.array([0.1, np.nan, 0.9]), same)
    with pytest.raises(ValueError, match="`scores`"):
        ev.roc_curve(scores[:, None], same)
    with pytest.raises(ValueError, match="`same`.*shape"):
        ev.roc_curve(scores, same[:2])
    with pytest.raises(ValueError, match="`same`.*0/1"):
        ev.roc_curve(scores, np.array([0, 2, 1]))
    with pytest.raises(ValueError, match="`same`.*both"):
        ev.roc_curve(scores, np.ones(3, bool))
    with pytest.raises(ValueError, match="`same`.*both"):
        ev.threshold_curve(scores, np.zeros(3, int))
    for far in (-0.1, 1.5, "0.1", None):
        with pytest.raises(ValueError, match="`far`"):
            ev.tar_at_far(scores, same, far=far)
