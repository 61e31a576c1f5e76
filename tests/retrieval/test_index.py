import json
import os
import sys

import numpy as np
import pytest

from tfcontrast.retrieval import Index, backends


def _brute(queries, base, k, metric):
    """Independent reference: full score matrix, full sort."""
    q = queries.astype(np.float64)
    b = base.astype(np.float64)
    if metric == "cosine":
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        b = b / np.linalg.norm(b, axis=1, keepdims=True)
        s = q @ b.T
        order = np.argsort(-s, axis=1)[:, :k]
    elif metric == "dot":
        s = q @ b.T
        order = np.argsort(-s, axis=1)[:, :k]
    else:
        s = np.sqrt(((q[:, None, :] - b[None, :, :]) ** 2).sum(-1))
        order = np.argsort(s, axis=1)[:, :k]
    return np.take_along_axis(s, order, axis=1), order


@pytest.mark.parametrize("metric", ["cosine", "l2", "dot"])
@pytest.mark.parametrize("k", [1, 5, 17])
def test_exact_matches_brute_force(rng, metric, k):
    base = rng.standard_normal((103, 8)).astype("float32")
    queries = rng.standard_normal((29, 8)).astype("float32")
    index = Index(metric=metric, query_batch_size=7, index_batch_size=13)
    index.add(base[:50]).add(base[50:])  # several adds
    scores, idx, labels, payloads = index.search(queries, k=k)
    ref_s, ref_i = _brute(queries, base, k, metric)
    np.testing.assert_array_equal(idx, ref_i)
    np.testing.assert_allclose(scores, ref_s, rtol=1e-4, atol=1e-4)
    assert labels is None and payloads is None
    assert index.higher_is_closer == (metric != "l2")


def test_k_equals_size_and_single_vector(rng):
    base = rng.standard_normal((10, 4)).astype("float32")
    index = Index(metric="l2", index_batch_size=3).add(base)
    _, idx, _, _ = index.search(base, k=10)
    assert sorted(idx[0].tolist()) == list(range(10))
    np.testing.assert_array_equal(idx[:, 0], np.arange(10))  # each vector finds itself
    res = index.search(base[3], k=2)  # (D,) query
    assert res.indices.shape == (1, 2) and res.indices[0, 0] == 3


def test_exclude_self(rng):
    base = rng.standard_normal((40, 6)).astype("float32")
    index = Index(metric="cosine", query_batch_size=6, index_batch_size=9).add(base)
    _, idx, _, _ = index.search(base, k=5, exclude_self=True)
    assert not np.any(idx == np.arange(40)[:, None])
    ref_s, ref_i = _brute(base, base, 6, "cosine")
    np.testing.assert_array_equal(idx, ref_i[:, 1:])


def test_exclude_ids_for_a_subset_of_queries(rng):
    base = rng.standard_normal((30, 4)).astype("float32")
    index = Index(metric="l2", query_batch_size=2, index_batch_size=7).add(base)
    picks = np.array([3, 17, 29])
    _, idx, _, _ = index.search(base[picks], k=4, exclude_ids=picks)
    _, ref_i = _brute(base[picks], base, 5, "l2")
    np.testing.assert_array_equal(idx, ref_i[:, 1:])
    _, idx, _, _ = index.search(base[:2], k=2, exclude_ids=[-1, 1])  # -1: exclude nothing
    assert idx[0, 0] == 0 and 1 not in idx[1]
    with pytest.raises(ValueError, match="exclude_ids"):
        index.search(base[:2], k=2, exclude_ids=[1])


def test_labels_and_payloads(rng):
    base = rng.standard_normal((20, 3)).astype("float32")
    labels = np.arange(20) % 4
    payloads = [{"id": i, "name": f"item{i}"} for i in range(20)]
    index = Index(metric="dot")
    index.add(base[:12], labels=labels[:12], payloads=payloads[:12])
    index.add(base[12:], labels=labels[12:], payloads=payloads[12:])
    res = index.search(base[:2], k=3)
    np.testing.assert_array_equal(res.labels, labels[res.indices])
    assert res.payloads[1][2] == payloads[res.indices[1, 2]]


def test_save_load_round_trip(rng, tmp_path):
    base = rng.standard_normal((30, 5)).astype("float32")
    labels = np.array([f"c{i % 3}" for i in range(30)])
    payloads = [[i, "x", None, 1.5] for i in range(30)]
    index = Index(metric="l2", query_batch_size=4, index_batch_size=7)
    index.add(base, labels=labels, payloads=payloads)
    path = index.save(str(tmp_path / "idx"))
    assert sorted(os.listdir(path)) == ["arrays.npz", "index.json"]
    with open(os.path.join(path, "index.json")) as f:
        meta = json.load(f)
    assert meta["config"]["metric"] == "l2" and meta["size"] == 30
    loaded = Index.load(path)
    assert len(loaded) == 30 and loaded.dim == 5 and loaded.index_batch_size == 7
    q = rng.standard_normal((6, 5)).astype("float32")
    a, b = index.search(q, k=4), loaded.search(q, k=4)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_allclose(a.scores, b.scores)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.payloads == b.payloads
    loaded.add(base[:1], labels=labels[:1], payloads=payloads[:1])  # still usable
    assert len(loaded) == 31
    # Arrays load without pickle.
    np.load(os.path.join(path, "arrays.npz"), allow_pickle=False)["embeddings"]


def test_errors(rng):
    index = Index()
    with pytest.raises(ValueError, match="empty"):
        index.search(np.ones((1, 3)), k=1)
    index.add(rng.standard_normal((5, 3)))
    with pytest.raises(ValueError, match="dimension"):
        index.search(np.ones((1, 4)), k=1)
    with pytest.raises(ValueError, match="dimension"):
        index.add(np.ones((2, 4)))
    with pytest.raises(ValueError, match="`k`"):
        index.search(np.ones((1, 3)), k=6)
    with pytest.raises(ValueError, match="`k`"):
        index.search(np.ones((1, 3)), k=0)
    with pytest.raises(ValueError, match="`k`"):
        index.search(np.ones((5, 3)), k=5, exclude_self=True)
    with pytest.raises(ValueError, match="labels"):
        index.add(np.ones((1, 3)), labels=[1])
    with pytest.raises(ValueError, match="embeddings"):
        index.add(np.ones((3,)))
    with pytest.raises(ValueError, match="metric"):
        Index(metric="manhattan")
    with pytest.raises(ValueError, match="backend"):
        Index(backend="annoy")
    with pytest.raises(ValueError, match="index_batch_size"):
        Index(index_batch_size=0)
    with pytest.raises(ValueError, match="JSON-serialisable"):
        Index().add(np.ones((2, 3)), payloads=[object(), 1])
    with pytest.raises(ValueError, match="payloads"):
        Index().add(np.ones((2, 3)), payloads=[1])


def test_accepts_tensors(rng):
    import keras

    base = rng.standard_normal((12, 4)).astype("float32")
    index = Index().add(keras.ops.convert_to_tensor(base))
    res = index.search(keras.ops.convert_to_tensor(base[:2]), k=1)
    np.testing.assert_array_equal(res.indices[:, 0], [0, 1])


@pytest.mark.parametrize("metric", ["cosine", "l2", "dot"])
def test_faiss_backend_matches_exact(rng, metric, tmp_path):
    pytest.importorskip("faiss", reason="faiss-cpu is not installed (optional backend)")
    base = rng.standard_normal((200, 16)).astype("float32")
    queries = rng.standard_normal((15, 16)).astype("float32")
    labels = np.arange(200) % 7
    exact = Index(metric=metric).add(base, labels=labels)
    fast = Index(metric=metric, backend="faiss").add(base[:100], labels=labels[:100])
    fast.add(base[100:], labels=labels[100:])
    a, b = exact.search(queries, k=6), fast.search(queries, k=6)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(a.labels, b.labels)
    loaded = Index.load(fast.save(str(tmp_path / "faiss_idx")))
    assert loaded.backend == "faiss"
    np.testing.assert_array_equal(loaded.search(queries, k=6).indices, b.indices)
    np.testing.assert_allclose(loaded.embeddings, fast.embeddings)


class _NumpyFaiss:
    """A NumPy stand-in for the few FAISS calls `backends.FaissBackend` makes (a "Flat"
    index: squared L2 distances or inner products, best first). It checks tfcontrast's
    side of the contract where faiss-cpu is not installed; the real library runs in
    `test_faiss_backend_matches_exact` where it is."""

    METRIC_INNER_PRODUCT, METRIC_L2 = 0, 1

    class IndexFlat:
        def __init__(self, d, metric):
            self.d, self.metric, self.is_trained = d, metric, True
            self.rows = np.zeros((0, d), np.float32)

        @property
        def ntotal(self):
            return self.rows.shape[0]

        def train(self, x):  # pragma: no cover - a Flat index needs no training
            raise AssertionError("a Flat index is never trained")

        def add(self, x):
            assert x.dtype == np.float32 and x.shape[1] == self.d
            self.rows = np.concatenate([self.rows, x])

        def search(self, q, k):
            if self.metric == _NumpyFaiss.METRIC_L2:
                d = ((q[:, None, :] - self.rows[None]) ** 2).sum(-1)
            else:
                d = -(q @ self.rows.T)
            idx = np.argsort(d, axis=1, kind="stable")[:, :k]
            scores = np.take_along_axis(d, idx, axis=1)
            return (scores if self.metric == _NumpyFaiss.METRIC_L2 else -scores), idx

        def reconstruct_n(self, start, n):
            return self.rows[start : start + n]

    @classmethod
    def index_factory(cls, d, description, metric):
        assert description == "Flat"
        return cls.IndexFlat(d, metric)

    @staticmethod
    def serialize_index(index):
        header = np.array([index.metric, index.d], np.float32)
        return np.concatenate([header, index.rows.ravel()]).view(np.uint8)

    @classmethod
    def deserialize_index(cls, data):
        values = data.view(np.float32)
        index = cls.IndexFlat(int(values[1]), int(values[0]))
        index.rows = values[2:].reshape(-1, index.d).copy()
        return index


@pytest.mark.parametrize("metric", ["cosine", "l2", "dot"])
def test_faiss_backend_against_a_numpy_stand_in(rng, metric, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", _NumpyFaiss)
    base = rng.standard_normal((60, 5)).astype("float32")
    queries = rng.standard_normal((7, 5)).astype("float32")
    exact = Index(metric=metric).add(base, labels=np.arange(60) % 4)
    fast = Index(metric=metric, backend="faiss").add(base[:25], labels=np.arange(25) % 4)
    fast.add(base[25:], labels=np.arange(25, 60) % 4)
    a, b = exact.search(queries, k=4), fast.search(queries, k=4)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5, atol=1e-5)  # l2: distances
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_allclose(fast.embeddings, exact.embeddings)
    with pytest.raises(ValueError, match="backend='exact'"):
        fast.search(base, k=2, exclude_self=True)
    path = fast.save(str(tmp_path / "idx"))
    assert sorted(np.load(os.path.join(path, "arrays.npz")).files) == ["faiss_index", "labels"]
    loaded = Index.load(path)
    assert loaded.backend == "faiss" and len(loaded) == 60
    np.testing.assert_array_equal(loaded.search(queries, k=4).indices, b.indices)
    _rewrite_meta(path, size=61)
    with pytest.raises(ValueError, match=r"arrays\.npz.*FAISS index of 60 rows.*size=61"):
        Index.load(path)
    empty = Index(metric=metric, backend="faiss")
    assert empty.embeddings.shape == (0, 0)
    assert Index.load(empty.save(str(tmp_path / "empty"))).size == 0


def test_a_backend_is_one_class_in_the_registry(rng, tmp_path, monkeypatch):
    """`Index` reaches its backend only through the `Backend` interface: a new class in
    the registry is a working backend, saved and loaded by name."""
    calls = []

    class Recording(backends.ExactBackend):
        name = "recording"

        def add(self, x):
            calls.append("add")
            super().add(x)

        def search(self, queries, k, exclude):
            calls.append("search")
            return super().search(queries, k, exclude)

    monkeypatch.setitem(backends._REGISTRY, "recording", Recording)
    base = rng.standard_normal((20, 3)).astype("float32")
    index = Index(metric="l2", backend="recording", index_batch_size=6).add(base)
    np.testing.assert_array_equal(index.search(base[:3], k=1).indices[:, 0], [0, 1, 2])
    loaded = Index.load(index.save(str(tmp_path / "idx")))
    assert isinstance(loaded._backend, Recording) and loaded.index_batch_size == 6
    loaded.search(base[:1], k=1)
    assert calls == ["add", "search", "search"]
    assert backends.names() == ["exact", "faiss", "recording"]


DATA = os.path.join(os.path.dirname(__file__), "data")


@pytest.mark.parametrize(
    "metric, indices, scores",
    [
        (
            "cosine",
            [[0, 7, 5], [1, 6, 8], [2, 9, 4], [10, 3, 8]],
            [
                [0.998802, 0.9815, 0.87322],
                [0.994698, 0.99045, 0.982536],
                [0.995612, 0.987662, 0.100987],
                [0.990285, 0.971347, 0.896831],
            ],
        ),
        (
            "l2",
            [[0, 7, 5], [1, 8, 6], [2, 9, 3], [3, 10, 1]],
            [
                [0.433013, 0.71807, 1.736556],
                [0.433013, 0.71807, 1.736556],
                [0.433013, 0.71807, 5.821566],
                [0.433013, 0.71807, 1.172604],
            ],
        ),
    ],
)
def test_loads_an_index_saved_before_the_backend_objects(metric, indices, scores):
    """tests/retrieval/data/index_v1_*: written by tfcontrast at 403f63d (12 rows of
    dimension 3, string labels, payloads, a threshold); searched then for these results."""
    index = Index.load(os.path.join(DATA, f"index_v1_{metric}"))
    assert (index.metric, index.backend, len(index), index.dim) == (metric, "exact", 12, 3)
    assert (index.query_batch_size, index.index_batch_size) == (5, 4)
    assert index.threshold == (0.5 if metric == "cosine" else 2.0)
    x = (np.arange(36, dtype=np.float32).reshape(12, 3) % 7) - 3.0
    x[:, 2] += np.arange(12) / 8.0
    res = index.search(x[:4] + 0.25, k=3)
    np.testing.assert_array_equal(res.indices, indices)
    np.testing.assert_allclose(res.scores, scores, atol=2e-6)
    np.testing.assert_array_equal(res.labels, np.array([f"c{i % 3}" for i in range(12)])[indices])
    assert res.payloads[3] == [{"id": i} for i in indices[3]]


# ----------------------------------------------------------------------------- load checks
def _saved(rng, tmp_path, **add_kwargs):
    base = rng.standard_normal((20, 4)).astype("float32")
    index = Index(metric="l2").add(base, **add_kwargs)
    return index.save(str(tmp_path / "idx"))


def _rewrite_meta(path, **changes):
    meta_path = os.path.join(path, "index.json")
    with open(meta_path) as f:
        meta = json.load(f)
    meta.update(changes)
    with open(meta_path, "w") as f:
        json.dump(meta, f)


@pytest.mark.parametrize("keep", [0.5, 0.1, 0.0])
def test_load_truncated_arrays_file_names_it(rng, tmp_path, keep):
    path = _saved(rng, tmp_path, labels=np.arange(20) % 3)
    npz = os.path.join(path, "arrays.npz")
    with open(npz, "rb") as f:
        data = f.read()
    with open(npz, "wb") as f:
        f.write(data[: int(len(data) * keep)])
    with pytest.raises(ValueError, match=r"arrays\.npz"):
        Index.load(path)


@pytest.mark.parametrize(
    "content", ['{"format": "tfcontrast.retrieval.Index", "conf', "", "[1, 2]"]
)
def test_load_truncated_or_invalid_json_names_it(rng, tmp_path, content):
    path = _saved(rng, tmp_path)
    with open(os.path.join(path, "index.json"), "w") as f:
        f.write(content)
    with pytest.raises(ValueError, match=r"index\.json"):
        Index.load(path)


def test_load_missing_arrays_file(rng, tmp_path):
    path = _saved(rng, tmp_path)
    os.remove(os.path.join(path, "arrays.npz"))
    with pytest.raises(ValueError, match=r"arrays\.npz"):
        Index.load(path)


def test_load_rows_disagreeing_with_recorded_size(rng, tmp_path):
    # The audit's case: 5 stored rows in an index.json that says size=20.
    base = rng.standard_normal((5, 4)).astype("float32")
    path = Index(metric="l2").add(base).save(str(tmp_path / "idx"))
    _rewrite_meta(path, size=20)
    with pytest.raises(ValueError, match=r"arrays\.npz.*5 rows.*size.*20"):
        Index.load(path)


@pytest.mark.parametrize(
    "changes, pattern",
    [
        ({"dim": 7}, r"arrays\.npz.*dimension"),
        ({"size": -1}, r"index\.json.*size"),
        ({"size": "20"}, r"index\.json.*size"),
        ({"dim": None}, r"index\.json.*dim"),
        ({"payloads": [{"id": 1}] * 3}, r"index\.json.*payloads.*20"),
        ({"config": {"metric": "hamming"}}, r"index\.json.*metric"),
        ({"config": None}, r"index\.json.*config"),
        ({"has_labels": True}, r"arrays\.npz.*labels"),
        ({"version": 99}, r"index\.json.*version"),
    ],
)
def test_load_inconsistent_metadata(rng, tmp_path, changes, pattern):
    path = _saved(rng, tmp_path)
    _rewrite_meta(path, **changes)
    with pytest.raises(ValueError, match=pattern):
        Index.load(path)


def test_load_label_count_disagreeing_with_size(rng, tmp_path):
    path = _saved(rng, tmp_path, labels=np.arange(20))
    arrays = dict(np.load(os.path.join(path, "arrays.npz")))
    arrays["labels"] = arrays["labels"][:12]
    np.savez(os.path.join(path, "arrays.npz"), **arrays)
    with pytest.raises(ValueError, match=r"arrays\.npz.*12 labels.*20"):
        Index.load(path)


# ----------------------------------------------------------------------------- non-finite input
@pytest.mark.parametrize("metric", ["cosine", "l2", "dot"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_rows_are_refused(rng, metric, bad):
    base = rng.standard_normal((10, 4)).astype("float32")
    base[7, 2] = bad
    index = Index(metric=metric)
    with pytest.raises(ValueError, match=r"`embeddings`.*row 7"):
        index.add(base)
    assert len(index) == 0  # nothing half-added
    index.add(base[:7])
    queries = rng.standard_normal((3, 4)).astype("float32")
    queries[1, 0] = bad
    with pytest.raises(ValueError, match=r"`queries`.*row 1"):
        index.search(queries, k=2)
    with pytest.raises(ValueError, match=r"`queries`"):
        index.search(queries[1], k=2)  # a single (D,) vector too


def test_values_beyond_float32_are_refused():
    # 1e39 is finite in float64 but inf once stored as float32.
    with pytest.raises(ValueError, match=r"`embeddings`.*non-finite"):
        Index().add(np.array([[1.0, 1e39]]))


def test_load_refuses_non_finite_stored_rows(rng, tmp_path):
    path = _saved(rng, tmp_path)
    arrays = dict(np.load(os.path.join(path, "arrays.npz")))
    arrays["embeddings"][3, 1] = np.nan
    np.savez(os.path.join(path, "arrays.npz"), **arrays)
    with pytest.raises(ValueError, match=r"arrays\.npz.*non-finite.*row 3"):
        Index.load(path)
