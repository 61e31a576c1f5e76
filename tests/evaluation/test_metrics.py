import numpy as np
import pytest
from sklearn.metrics import average_precision_score
from sklearn.neighbors import KNeighborsClassifier

from tfcontrast import evaluation as ev


def _blobs(rng, n_per_class=20, classes=4, dim=8, spread=0.3):
    centers = rng.standard_normal((classes, dim)) * 3.0
    y = np.repeat(np.arange(classes), n_per_class)
    x = centers[y] + spread * rng.standard_normal((y.shape[0], dim))
    return x.astype("float32"), y


# ----------------------------------------------------------------------------- kNN
@pytest.mark.parametrize("metric", ["cosine", "l2"])
@pytest.mark.parametrize("weighting", ["plain", "temperature"])
def test_knn_matches_sklearn(rng, metric, weighting):
    train, ytr = _blobs(rng, spread=2.5)  # overlapping: errors happen
    test, yte = _blobs(rng, n_per_class=10, spread=2.5)
    t, k = 0.5, 7
    if weighting == "plain":
        weights = "uniform"
    elif metric == "cosine":
        weights = lambda d: np.exp((1.0 - d) / t)  # noqa: E731  sklearn cosine d = 1 - s
    else:
        weights = lambda d: np.exp(-d / t)  # noqa: E731
    ref = KNeighborsClassifier(
        n_neighbors=k,
        metric="cosine" if metric == "cosine" else "euclidean",
        algorithm="brute",
        weights=weights,
    ).fit(train, ytr)
    pred = ev.knn_predict(train, ytr, test, k=k, metric=metric, weighting=weighting, temperature=t)
    np.testing.assert_array_equal(pred, ref.predict(test))
    acc = ev.knn_accuracy(
        train, ytr, test, yte, k=k, metric=metric, weighting=weighting, temperature=t
    )
    assert acc == pytest.approx(ref.score(test, yte))
    assert 0.0 < acc < 1.0


def test_knn_hand_fixture_temperature_beats_majority():
    # 1-D points on a line; query at 0. Neighbours: 0.1 (class 1), 1.0, 1.1 (class 0).
    train = np.array([[0.1], [1.0], [1.1]], "float32")
    ytr = np.array([1, 0, 0])
    test, yte = np.array([[0.0]], "float32"), np.array([1])
    assert ev.knn_accuracy(train, ytr, test, yte, k=3, metric="l2", weighting="plain") == 0.0
    # exp(-0.1/0.1) = e^-1 vs exp(-10) + exp(-11): class 1 wins.
    assert ev.knn_accuracy(train, ytr, test, yte, k=3, metric="l2", temperature=0.1) == 1.0


def test_knn_leave_one_out(rng):
    x, y = _blobs(rng, spread=2.0)
    k = 5
    correct = 0
    for i in range(x.shape[0]):  # reference: refit without point i
        keep = np.arange(x.shape[0]) != i
        clf = KNeighborsClassifier(n_neighbors=k, metric="euclidean", algorithm="brute")
        correct += clf.fit(x[keep], y[keep]).predict(x[i : i + 1])[0] == y[i]
    acc = ev.knn_accuracy(x, y, k=k, metric="l2", weighting="plain")
    assert acc == pytest.approx(correct / x.shape[0])


def test_knn_errors(rng):
    x, y = _blobs(rng, n_per_class=3, classes=2)
    with pytest.raises(ValueError, match="`k`"):
        ev.knn_accuracy(x, y, x, y, k=7)
    with pytest.raises(ValueError, match="`k`"):
        ev.knn_accuracy(x, y, k=6)  # leave-one-out leaves 5
    with pytest.raises(ValueError, match="weighting"):
        ev.knn_accuracy(x, y, x, y, k=2, weighting="distance")
    with pytest.raises(ValueError, match="temperature"):
        ev.knn_accuracy(x, y, x, y, k=2, temperature=0.0)
    with pytest.raises(ValueError, match="train_labels"):
        ev.knn_accuracy(x, y[:-1], x, y, k=2)
    with pytest.raises(ValueError, match="dimension"):
        ev.knn_accuracy(x, y, x[:, :3], y, k=2)


# ----------------------------------------------------------------------------- retrieval
def _reference_retrieval(q, ql, g, gl, ks, exclude_self):
    """Plain loops; AP from scikit-learn."""
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    gn = g / np.linalg.norm(g, axis=1, keepdims=True)
    out = {n: [] for n in ["p1", "rp", "mapr", "map", "mrr", "map_sk"] + [f"r{k}" for k in ks]}
    for i in range(q.shape[0]):
        cand = [j for j in range(g.shape[0]) if not (exclude_self and j == i)]
        sims = np.array([float(qn[i] @ gn[j]) for j in cand])
        rel_unsorted = np.array([gl[j] == ql[i] for j in cand])
        order = sorted(range(len(cand)), key=lambda t, s=sims: -s[t])
        rel = [bool(rel_unsorted[t]) for t in order]
        r = sum(rel)
        if r == 0:
            continue
        prec = [sum(rel[: i2 + 1]) / (i2 + 1) for i2 in range(len(rel))]
        out["p1"].append(float(rel[0]))
        out["rp"].append(sum(rel[:r]) / r)
        out["mapr"].append(sum(prec[i2] for i2 in range(r) if rel[i2]) / r)
        out["map"].append(sum(prec[i2] for i2 in range(len(rel)) if rel[i2]) / r)
        out["map_sk"].append(average_precision_score(rel_unsorted, sims))
        out["mrr"].append(1.0 / (rel.index(True) + 1))
        for k in ks:
            out[f"r{k}"].append(float(any(rel[:k])))
    return {n: np.mean(v) for n, v in out.items()}


@pytest.mark.parametrize("self_retrieval", [True, False])
def test_retrieval_metrics_against_reference(rng, self_retrieval):
    x, y = _blobs(rng, n_per_class=8, classes=5, spread=3.0)
    ks = (1, 3, 10)
    if self_retrieval:
        got = ev.retrieval_metrics(x, y, ks=ks, batch_size=7)
        ref = _reference_retrieval(x, y, x, y, ks, exclude_self=True)
    else:
        g, gl = _blobs(rng, n_per_class=6, classes=5, spread=3.0)
        got = ev.retrieval_metrics(x, y, g, gl, ks=ks, batch_size=7)
        ref = _reference_retrieval(x, y, g, gl, ks, exclude_self=False)
    assert got["precision_at_1"] == pytest.approx(ref["p1"])
    assert got["r_precision"] == pytest.approx(ref["rp"])
    assert got["map_at_r"] == pytest.approx(ref["mapr"])
    assert got["map"] == pytest.approx(ref["map"])
    assert got["map"] == pytest.approx(ref["map_sk"])  # scikit-learn's AP
    assert got["mrr"] == pytest.approx(ref["mrr"])
    for k in ks:
        assert got[f"recall_at_{k}"] == pytest.approx(ref[f"r{k}"])
    assert 0.0 < got["map_at_r"] < got["map"] < 1.0 or got["map_at_r"] <= got["map"]


def test_retrieval_closed_form():
    # Query at 0 (label 0); gallery at 1..5 with labels 0,1,0,1,1 -> ranking rel = 1,0,1,0,0.
    q, ql = np.array([[0.0]], "float32"), np.array([0])
    g = np.arange(1, 6, dtype="float32")[:, None]
    gl = np.array([0, 1, 0, 1, 1])
    got = ev.retrieval_metrics(q, ql, g, gl, ks=(1, 2), metric="l2")
    assert got["precision_at_1"] == 1.0
    assert got["recall_at_1"] == 1.0
    assert got["r_precision"] == pytest.approx(0.5)  # R = 2, 1 relevant in top 2
    assert got["map_at_r"] == pytest.approx(0.5)  # (1/2)(1/1 + 0)
    assert got["map"] == pytest.approx((1.0 + 2.0 / 3.0) / 2.0)
    assert got["mrr"] == 1.0
    # A query whose first relevant item is third.
    got = ev.retrieval_metrics(q, np.array([1]), g, np.array([0, 0, 1, 0, 0]), ks=(2,), metric="l2")
    assert got["mrr"] == pytest.approx(1.0 / 3.0)
    assert got["recall_at_2"] == 0.0
    assert got["map_at_r"] == 0.0 and got["r_precision"] == 0.0


def test_retrieval_skips_queries_without_relevant_items():
    x = np.eye(3, dtype="float32")
    got = ev.retrieval_metrics(x, [0, 0, 1], ks=(1,))
    assert got["queries_without_relevant"] == 1
    # All similarities tie at 0; ties go to the earlier gallery item, which is relevant.
    assert got["precision_at_1"] == pytest.approx(1.0)
    got = ev.retrieval_metrics(x, [1, 0, 0], ks=(1,))
    # Queries 1 and 2 (label 0) both see item 0 (label 1, the skipped query) first.
    assert got["precision_at_1"] == 0.0 and got["mrr"] == pytest.approx(0.5)


def test_retrieval_errors(rng):
    x, y = _blobs(rng, n_per_class=2, classes=2)
    with pytest.raises(ValueError, match="ks"):
        ev.retrieval_metrics(x, y, ks=(4,))  # 3 others per query
    with pytest.raises(ValueError, match="gallery_labels"):
        ev.retrieval_metrics(x, y, x)
    with pytest.raises(ValueError, match="metric"):
        ev.retrieval_metrics(x, y, metric="hamming")
    with pytest.raises(ValueError, match="exclude_self"):
        ev.retrieval_metrics(x, y, x[:2], y[:2], ks=(1,), exclude_self=True)


# ----------------------------------------------------------------------------- clustering & geometry
def test_clustering_scores(rng):
    x, y = _blobs(rng, spread=0.05)
    scores = ev.clustering_scores(x, y)
    assert scores["nmi"] == pytest.approx(1.0) and scores["ami"] == pytest.approx(1.0)
    noise = rng.standard_normal((80, 8)).astype("float32")
    scores = ev.clustering_scores(noise, rng.integers(0, 4, 80))
    assert abs(scores["ami"]) < 0.1 and scores["nmi"] < 0.3
    with pytest.raises(ValueError, match="n_clusters"):
        ev.clustering_scores(x, y, n_clusters=0)


def test_alignment_and_uniformity_closed_forms():
    e1, e2 = np.array([[1.0, 0.0]]), np.array([[0.0, 3.0]])  # normalised: |e1 - e2|^2 = 2
    assert ev.alignment(e1, e2) == pytest.approx(2.0)
    assert ev.alignment(e1, e2, alpha=1.0) == pytest.approx(np.sqrt(2.0))
    antipodal = np.array([[1.0, 0.0], [-2.0, 0.0]])  # |x - y|^2 = 4 -> log exp(-2 * 4)
    assert ev.uniformity(antipodal) == pytest.approx(-8.0)
    with pytest.raises(ValueError, match="alpha"):
        ev.alignment(e1, e2, alpha=0)
    with pytest.raises(ValueError, match="`t`"):
        ev.uniformity(antipodal, t=-1)


def test_uniformity_and_class_alignment_loops(rng):
    x = rng.standard_normal((23, 5))
    y = rng.integers(0, 3, 23)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    pairs = [(i, j) for i in range(23) for j in range(i + 1, 23)]
    ref_u = np.log(np.mean([np.exp(-2.0 * np.sum((xn[i] - xn[j]) ** 2)) for i, j in pairs]))
    assert ev.uniformity(x, batch_size=4) == pytest.approx(ref_u, rel=1e-5)
    same = [np.sum((xn[i] - xn[j]) ** 2) for i, j in pairs if y[i] == y[j]]
    assert ev.class_alignment(x, y) == pytest.approx(np.mean(same), rel=1e-5)


def _ref_infonce_bound(a, b, t):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    n = a.shape[0]
    terms = []
    for i in range(n):
        row = [np.exp(a[i] @ b[j] / t) for j in range(n)]
        col = [np.exp(a[j] @ b[i] / t) for j in range(n)]
        terms.append(-np.log(row[i] / sum(row)))
        terms.append(-np.log(col[i] / sum(col)))
    return np.log(n) - np.mean(terms)


def test_infonce_bound(rng):
    a = rng.standard_normal((12, 6))
    b = a + 0.3 * rng.standard_normal((12, 6))
    assert ev.infonce_bound(a, b, temperature=0.2) == pytest.approx(_ref_infonce_bound(a, b, 0.2))
    batched = ev.infonce_bound(a, b, temperature=0.2, batch_size=4)
    ref = np.mean([_ref_infonce_bound(a[i : i + 4], b[i : i + 4], 0.2) for i in (0, 4, 8)])
    assert batched == pytest.approx(ref)
    assert ev.infonce_bound(a, a, temperature=0.002) == pytest.approx(np.log(12), abs=1e-3)
    with pytest.raises(ValueError, match="batch_size"):
        ev.infonce_bound(a, b, batch_size=1)


def test_infonce_bound_agrees_with_keras_metric(rng):
    infonce = pytest.importorskip("tfcontrast.losses.infonce")
    if not hasattr(infonce, "MutualInformationBound"):
        pytest.skip("tfcontrast.losses.infonce.MutualInformationBound not available")
    a = rng.standard_normal((16, 6)).astype("float32")
    b = (a + 0.5 * rng.standard_normal((16, 6))).astype("float32")
    metric = infonce.MutualInformationBound(temperature=0.1)
    metric.update_state(None, np.stack([a[:8], b[:8]], axis=1))
    metric.update_state(None, np.stack([a[8:], b[8:]], axis=1))
    expected = ev.infonce_bound(a, b, temperature=0.1, batch_size=8)
    assert float(metric.result()) == pytest.approx(expected, abs=1e-4)


# ----------------------------------------------------------------------------- linear probe
def test_linear_probe_separable_and_deterministic(rng):
    train, ytr = _blobs(rng, spread=0.3)
    test, yte = _blobs(np.random.default_rng(0), spread=0.3)  # same centers as train
    acc1 = ev.linear_probe(train, ytr, test, yte, epochs=30, seed=3)
    acc2 = ev.linear_probe(train, ytr, test, yte, epochs=30, seed=3)
    assert acc1 == acc2 == 1.0


def test_linear_probe_close_to_sklearn(rng):
    from sklearn.linear_model import LogisticRegression

    train, ytr = _blobs(rng, n_per_class=60, classes=3, spread=4.0)
    test, yte = _blobs(np.random.default_rng(0), n_per_class=60, classes=3, spread=4.0)
    ref = LogisticRegression(max_iter=1000).fit(train, ytr).score(test, yte)
    acc, model = ev.linear_probe(train, ytr, test, yte, epochs=40, return_model=True)
    assert abs(acc - ref) <= 0.06
    assert 0.4 < acc < 1.0
    assert model.layers[-1].units == 3


def test_few_shot(rng):
    y = np.repeat(np.array(["a", "b", "c"]), 10)
    idx = ev.few_shot_indices(y, 4, seed=1)
    labels, counts = np.unique(y[idx], return_counts=True)
    assert labels.tolist() == ["a", "b", "c"] and counts.tolist() == [4, 4, 4]
    np.testing.assert_array_equal(idx, ev.few_shot_indices(y, 4, seed=1))
    x = rng.standard_normal((30, 4)).astype("float32")
    acc = ev.linear_probe(x, y, x, y, shots_per_class=2, epochs=5)
    assert 0.0 <= acc <= 1.0
    with pytest.raises(ValueError, match="shots_per_class"):
        ev.linear_probe(x, y, x, y, shots_per_class=11)


# ----------------------------------------------------------------------------- all in one
def test_evaluate_embeddings(rng):
    x, y = _blobs(rng, n_per_class=10, classes=3, spread=1.0)
    tx, ty = _blobs(np.random.default_rng(0), n_per_class=10, classes=3, spread=1.0)
    views = (x, x + 0.1 * rng.standard_normal(x.shape).astype("float32"))
    out = ev.evaluate_embeddings(
        x,
        y,
        tx,
        ty,
        views=views,
        metrics=("knn", "linear_probe", "retrieval", "clustering", "geometry"),
        knn_k=200,  # capped at 30
        probe_kwargs={"epochs": 5},
    )
    expected = {
        "knn_accuracy", "linear_probe_accuracy", "precision_at_1", "recall_at_1",
        "recall_at_5", "recall_at_10", "r_precision", "map_at_r", "map", "mrr", "nmi",
        "ami", "uniformity", "class_alignment", "alignment", "infonce_bound",
    }  # fmt: skip
    assert set(out) == expected
    assert out["knn_accuracy"] == ev.knn_accuracy(tx, ty, x, y, k=30)
    assert out["map_at_r"] == pytest.approx(ev.retrieval_metrics(x, y)["map_at_r"])
    assert all(np.isfinite(v) for v in out.values())
    with pytest.raises(ValueError, match="metrics"):
        ev.evaluate_embeddings(x, y, metrics=("knn", "fid"))
    with pytest.raises(ValueError, match="train_embeddings"):
        ev.evaluate_embeddings(x, y, metrics=("linear_probe",))


def test_few_shot_1nn_scores_match_a_scikit_learn_1nn_per_draw():
    from sklearn.neighbors import KNeighborsClassifier

    from tfcontrast.evaluation import few_shot_1nn_scores, few_shot_indices

    rng = np.random.default_rng(3)
    train, test = rng.normal(size=(120, 6)), rng.normal(size=(40, 6))
    train_y, test_y = np.repeat(np.arange(4), 30), rng.integers(0, 4, 40)
    scores = few_shot_1nn_scores(train, train_y, test, test_y, shots_per_class=3, draws=4, seed=7)
    assert scores.shape == (4,)
    for d, score in enumerate(scores):
        idx = few_shot_indices(train_y, 3, seed=7 + d)
        assert len(idx) == 12
        reference = KNeighborsClassifier(1, metric="cosine").fit(train[idx], train_y[idx])
        assert score == pytest.approx(reference.score(test, test_y))
