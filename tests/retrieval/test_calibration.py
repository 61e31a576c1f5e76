import json
import os

import numpy as np
import pytest

from tfcontrast.retrieval import Index


def _open_set(rng, n_known=20, n_unknown=20, dim=16, per_class=5, n_queries=400, spread=0.45):
    """Gallery of known classes; queries from known and unknown classes (open set)."""
    centers = rng.standard_normal((n_known + n_unknown, dim))
    gy = np.repeat(np.arange(n_known), per_class)
    gx = centers[gy] + spread * rng.standard_normal((gy.size, dim))
    qy = rng.integers(0, n_known + n_unknown, n_queries)
    qx = centers[qy] + spread * rng.standard_normal((n_queries, dim))
    return gx.astype("float32"), gy, qx.astype("float32"), qy


def _nearest(queries, base, metric, skip_self=False):
    """Brute force in float64: score and position of each query's nearest base row."""
    scores, where = [], []
    for i, q in enumerate(queries.astype(np.float64)):
        best, best_j = None, None
        for j, b in enumerate(base.astype(np.float64)):
            if skip_self and i == j:
                continue
            if metric == "cosine":
                s = q @ b / (np.linalg.norm(q) * np.linalg.norm(b))
            elif metric == "dot":
                s = q @ b
            else:
                s = np.linalg.norm(q - b)
            closer = best is None or (s < best if metric == "l2" else s > best)
            if closer:
                best, best_j = s, j
        scores.append(best)
        where.append(best_j)
    return np.array(scores), np.array(where)


def _reference_calibration(nearest_scores, correct, target, higher_is_closer):
    """Every distinct nearest score as threshold; the loosest with precision >= target."""
    rows = []
    for t in sorted(set(nearest_scores.tolist()), reverse=higher_is_closer):
        tp = fp = fn = tn = 0
        for s, ok in zip(nearest_scores, correct):
            accepted = s >= t if higher_is_closer else s <= t
            tp += accepted and ok
            fp += accepted and not ok
            fn += (not accepted) and ok
            tn += (not accepted) and not ok
        rows.append((t, tp / (tp + fp), tp / (tp + fn), fp / (fp + tn)))
    chosen = [row for row in rows if row[1] >= target][-1]
    return rows, chosen


@pytest.mark.parametrize("metric", ["cosine", "l2", "dot"])
def test_calibrate_matches_brute_force_sweep(rng, metric):
    gx, gy, qx, qy = _open_set(rng, n_known=8, n_unknown=8, per_class=4, n_queries=150, spread=0.7)
    index = Index(metric=metric, query_batch_size=16, index_batch_size=10).add(gx, labels=gy)
    target = 0.9
    result = index.calibrate(qx, qy, target_precision=target)

    scores, where = _nearest(qx, gx, metric)
    correct = gy[where] == qy
    rows, chosen = _reference_calibration(scores, correct, target, metric != "l2")
    curve = result.curve
    np.testing.assert_allclose(curve.thresholds, [r[0] for r in rows], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(curve.precision, [r[1] for r in rows])
    np.testing.assert_allclose(curve.recall, [r[2] for r in rows])
    np.testing.assert_allclose(curve.fpr, [r[3] for r in rows])
    assert result.threshold == pytest.approx(chosen[0], rel=1e-4, abs=1e-4)
    assert result.precision == pytest.approx(chosen[1]) and result.precision >= target
    assert result.recall == pytest.approx(chosen[2])
    assert result.fpr == pytest.approx(chosen[3])
    p, r = chosen[1], chosen[2]
    assert result.f1 == pytest.approx(2 * p * r / (p + r))
    assert (result.num_matches, result.num_non_matches) == (correct.sum(), (~correct).sum())
    assert 0.0 < result.recall < 1.0  # the threshold rejects some matches: not trivial
    assert index.threshold == result.threshold
    assert index.calibration["target_precision"] == target
    # match with the stored threshold gives what calibrate measured on the same queries.
    labels, known, _, _ = index.match(qx)
    assert np.mean(labels[known] == qy[known]) == pytest.approx(result.precision)
    assert np.sum(known & (labels == qy)) == pytest.approx(result.recall * correct.sum())


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_calibrated_precision_holds_on_held_out_half(metric):
    rng = np.random.default_rng(1)
    gx, gy, qx, qy = _open_set(rng, n_queries=2000)
    index = Index(metric=metric).add(gx, labels=gy)
    target = 0.99
    result = index.calibrate(qx[:1000], qy[:1000], target_precision=target)
    held_x, held_y = qx[1000:], qy[1000:]
    labels, known, _, _ = index.match(held_x)
    assert known.any() and not known.all()
    precision = np.mean(labels[known] == held_y[known])
    answerable = index.search(held_x, k=1).labels[:, 0] == held_y
    recall = np.sum(known & (labels == held_y)) / answerable.sum()
    assert precision >= target - 0.01, (precision, result)
    assert recall > 0.3, recall  # a useful threshold, not one that rejects all
    # Without a threshold, the nearest label is wrong far more often.
    assert np.mean(answerable) < 0.6


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_match_matches_brute_force(rng, metric):
    gx, gy, qx, _ = _open_set(rng, n_known=6, n_unknown=6, per_class=3, n_queries=60)
    index = Index(metric=metric).add(gx, labels=gy)
    scores, where = _nearest(qx, gx, metric)
    threshold = float(np.median(scores))
    labels, known, got_scores, idx = index.match(qx, threshold=threshold)
    expected_known = scores >= threshold if metric == "cosine" else scores <= threshold
    near_median = np.abs(scores - threshold) < 1e-5  # float32 vs float64 at the border
    np.testing.assert_array_equal(known[~near_median], expected_known[~near_median])
    np.testing.assert_array_equal(idx, where)
    np.testing.assert_allclose(got_scores, scores, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(labels, np.where(known, gy[where], -1))
    assert 0 < known.sum() < known.size


def test_string_labels_and_unknown_marker(rng):
    gx, gy, qx, qy = _open_set(rng, n_known=5, n_unknown=5, per_class=3, n_queries=80)
    names = np.array([f"item{i}" for i in range(10)])
    index = Index(metric="cosine").add(gx, labels=names[gy])
    result = index.calibrate(qx, names[qy], target_precision=0.8)
    labels, known, _, _ = index.match(qx)
    assert labels.dtype.kind == "U"
    assert 0 < known.sum() < known.size
    assert np.all(labels[~known] == "unknown")
    assert np.all(np.isin(labels[known], names[:5]))
    labels, known, _, _ = index.match(qx, unknown="?")
    assert np.all(labels[~known] == "?")
    with pytest.raises(ValueError, match="`unknown`.*also a label"):
        index.match(qx, unknown="item3")
    with pytest.raises(ValueError, match="`unknown`.*string"):
        index.match(qx, unknown=-1)
    assert result.threshold == index.threshold


def test_exclude_self_calibrates_on_the_indexed_set(rng):
    gx, gy, _, _ = _open_set(rng, n_known=10, per_class=6, spread=0.7)
    index = Index(metric="l2").add(gx, labels=gy)
    result = index.calibrate(gx, gy, target_precision=0.9, exclude_self=True)
    scores, where = _nearest(gx, gx, "l2", skip_self=True)
    _, chosen = _reference_calibration(scores, gy[where] == gy, 0.9, False)
    assert result.threshold == pytest.approx(chosen[0], rel=1e-4)


def test_save_load_keeps_threshold(rng, tmp_path):
    gx, gy, qx, qy = _open_set(rng, n_known=8, n_unknown=8, per_class=4, n_queries=120)
    index = Index(metric="cosine").add(gx, labels=gy)
    result = index.calibrate(qx, qy, target_precision=0.9)
    path = index.save(str(tmp_path / "idx"))
    loaded = Index.load(path)
    assert loaded.threshold == result.threshold
    assert loaded.calibration == result.summary()
    a, b = index.match(qx), loaded.match(qx)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.known, b.known)
    json.dumps(result.to_dict())  # reports can write it as JSON
    loaded.threshold = 0.5  # by hand: the calibration summary no longer applies
    assert loaded.threshold == 0.5 and loaded.calibration is None
    # Files written before calibration existed still load, without a threshold.
    meta_path = os.path.join(path, "index.json")
    with open(meta_path) as f:
        meta = json.load(f)
    del meta["threshold"], meta["calibration"]
    with open(meta_path, "w") as f:
        json.dump(meta, f)
    assert Index.load(path).threshold is None
    meta["threshold"] = "0.5"
    with open(meta_path, "w") as f:
        json.dump(meta, f)
    with pytest.raises(ValueError, match=r"index\.json.*threshold"):
        Index.load(path)


def test_calibration_errors(rng):
    gx, gy, qx, qy = _open_set(rng, n_known=4, n_unknown=4, per_class=3, n_queries=40)
    index = Index(metric="cosine").add(gx, labels=gy)
    with pytest.raises(ValueError, match="calibrate.*or pass `threshold=`"):
        index.match(qx)
    # Only matches: queries are the gallery items themselves.
    with pytest.raises(ValueError, match="`labels`.*non-matches"):
        index.calibrate(gx, gy)
    # Only non-matches: every query from a class that is not indexed.
    with pytest.raises(ValueError, match="`labels`.*0 matches"):
        index.calibrate(qx, qy + 100)
    with pytest.raises(ValueError, match="`labels`.*shape"):
        index.calibrate(qx, qy[:-1])
    with pytest.raises(ValueError, match="`labels`.*kind"):
        index.calibrate(qx, qy.astype(str))
    for bad in (0.0, 1.5, -1, "high", None):
        with pytest.raises(ValueError, match="`target_precision`"):
            index.calibrate(qx, qy, target_precision=bad)
    bad_x = qx.copy()
    bad_x[3, 0] = np.nan
    with pytest.raises(ValueError, match="`embeddings`.*non-finite"):
        index.calibrate(bad_x, qy)
    with pytest.raises(ValueError, match="`embeddings`.*dimension"):
        index.calibrate(qx[:, :3], qy)
    with pytest.raises(ValueError, match="`threshold`.*finite"):
        index.match(qx, threshold=np.nan)
    with pytest.raises(ValueError, match="`threshold`"):
        index.threshold = "0.5"
    with pytest.raises(ValueError, match="no labels"):
        Index().add(gx).calibrate(qx, qy)
    with pytest.raises(ValueError, match="no labels"):
        Index().add(gx).match(qx, threshold=0.5)


def test_unreachable_target_precision_says_the_best(rng):
    # Random labels: nearest labels are right by chance only; precision 1 is out of reach.
    x = rng.standard_normal((200, 8)).astype("float32")
    index = Index(metric="l2").add(x[:100], labels=rng.integers(0, 3, 100))
    before = index.threshold
    with pytest.raises(ValueError, match=r"`target_precision`=1.0.*best precision"):
        index.calibrate(x[100:], rng.integers(0, 3, 100), target_precision=1.0)
    assert index.threshold == before  # unchanged on failure
