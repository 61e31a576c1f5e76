"""Plain NumPy / SciPy reference implementations for the tests.

Written independently of `tfcontrast` (loops, float64, SciPy where it has the same
quantity) so that tests compare the library against something it did not compute itself.
Other test modules may import these helpers.

Conventions mirror the library's documentation:

- `pairwise(name, a, b)` returns the `(B1, B2)` matrix of the named distance.
- `closeness(name, a, b)` returns it oriented smaller-is-closer (the dot product is a
  similarity, so its "distance" is `-<a, b>`); `similarity(name, a, b)` returns it
  oriented larger-is-closer (cosine: the cosine similarity `1 - cosine_distance`).
- Mining helpers take a smaller-is-closer matrix `d` and integer labels; anchor `i` is
  reference `i` (self excluded from positives) unless `exclude_self=False`.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import distance as sp_distance
from scipy.stats import wasserstein_distance

PROB_EPS = 1e-7

DISTANCE_NAMES = (
    "cosine",
    "dot",
    "euclidean",
    "squared_euclidean",
    "manhattan",
    "kl",
    "js",
    "wasserstein",
)
PROBABILITY_DISTANCES = ("kl", "js", "wasserstein")


def numerical_gradient(fn, x, step=1e-4) -> np.ndarray:
    """Central finite differences of the scalar `fn` at every coordinate of `x`
    (float64)."""
    x = np.asarray(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[idx] += step
        down[idx] -= step
        grad[idx] = (fn(up) - fn(down)) / (2 * step)
    return grad


# -- distances ----------------------------------------------------------------------
def _cosine(x, y):
    nx, ny = np.linalg.norm(x), np.linalg.norm(y)
    if nx == 0.0 or ny == 0.0:
        return 1.0  # a zero vector has cosine 0 to everything
    return float(sp_distance.cosine(x, y))


def _kl(p, q):
    p = np.clip(p, PROB_EPS, 1.0)
    q = np.clip(q, PROB_EPS, 1.0)
    return float(sum(pk * np.log(pk / qk) for pk, qk in zip(p, q, strict=True)))


def _js(p, q):
    p = np.clip(p, PROB_EPS, 1.0)
    q = np.clip(q, PROB_EPS, 1.0)
    m = 0.5 * (p + q)
    return 0.5 * (float(np.sum(p * np.log(p / m))) + float(np.sum(q * np.log(q / m))))


def _wasserstein(x, y):
    bins = np.arange(len(x), dtype=np.float64)
    return float(wasserstein_distance(bins, bins, u_weights=x, v_weights=y))


_SCALAR = {
    "cosine": _cosine,
    "dot": lambda x, y: float(np.dot(x, y)),
    "euclidean": lambda x, y: float(np.sqrt(np.sum((x - y) ** 2))),
    "squared_euclidean": lambda x, y: float(np.sum((x - y) ** 2)),
    "manhattan": lambda x, y: float(np.sum(np.abs(x - y))),
    "kl": _kl,
    "js": _js,
    "wasserstein": _wasserstein,
}


def pairwise(name: str, a, b=None) -> np.ndarray:
    """The `(B1, B2)` matrix of distance `name` between the rows of `a` and `b`."""
    a = np.asarray(a, dtype=np.float64)
    b = a if b is None else np.asarray(b, dtype=np.float64)
    fn = _SCALAR[name]
    out = np.empty((len(a), len(b)))
    for i in range(len(a)):
        for j in range(len(b)):
            out[i, j] = fn(a[i], b[j])
    return out


def closeness(name: str, a, b=None) -> np.ndarray:
    """`pairwise` oriented so that smaller means closer."""
    m = pairwise(name, a, b)
    return -m if name == "dot" else m


def similarity(name: str, a, b=None) -> np.ndarray:
    """`pairwise` oriented so that larger means closer (cosine: cosine similarity)."""
    m = pairwise(name, a, b)
    if name == "dot":
        return m
    if name == "cosine":
        return 1.0 - m
    return -m


# -- label sets ---------------------------------------------------------------------
def same_label(a, b) -> bool:
    """Integer labels: equal; multi-hot rows: at least one label in common."""
    if np.ndim(a):
        return bool(np.any(np.logical_and(a, b)))
    return a == b


def positives_of(labels, i, ref_labels=None, exclude_self=True):
    ref_labels = labels if ref_labels is None else ref_labels
    return [
        j
        for j in range(len(ref_labels))
        if same_label(ref_labels[j], labels[i]) and not (exclude_self and j == i)
    ]


def negatives_of(labels, i, ref_labels=None):
    """References with no label in common with anchor `i` (never the anchor itself)."""
    own = ref_labels is None
    ref_labels = labels if own else ref_labels
    return [
        j
        for j in range(len(ref_labels))
        if not same_label(ref_labels[j], labels[i]) and not (own and j == i)
    ]


# -- mining ---------------------------------------------------------------------------
def semi_hard_negative(d, i, p, negatives):
    """FaceNet: closest negative farther than positive `p`, else the farthest negative."""
    farther = [n for n in negatives if d[i, n] > d[i, p]]
    if farther:
        return min(farther, key=lambda n: d[i, n])
    return max(negatives, key=lambda n: d[i, n])


def mine_triplets(d, labels, miner, sim=None):
    """Per-anchor list of `(p, n)` triplets for `miner`.

    `miner` is one of `"all"`, `"hard"`, `"semi_hard"` (hardest positive),
    `"semi_hard_all"` (every positive) or `"multi_similarity"` (needs `sim`, the
    larger-is-closer matrix; epsilon 0.1).
    """
    out = []
    for i in range(len(labels)):
        pos, neg = positives_of(labels, i), negatives_of(labels, i)
        if not pos or not neg:
            out.append([])
            continue
        if miner == "all":
            out.append([(p, n) for p in pos for n in neg])
        elif miner == "hard":
            p = max(pos, key=lambda j: d[i, j])
            n = min(neg, key=lambda j: d[i, j])
            out.append([(p, n)])
        elif miner == "semi_hard":
            p = max(pos, key=lambda j: d[i, j])
            out.append([(p, semi_hard_negative(d, i, p, neg))])
        elif miner == "semi_hard_all":
            out.append([(p, semi_hard_negative(d, i, p, neg)) for p in pos])
        elif miner == "multi_similarity":
            kp, kn = multi_similarity_pairs(sim, labels, i)
            out.append([(p, n) for p in kp for n in kn])
        else:
            raise KeyError(miner)
    return out


def multi_similarity_pairs(sim, labels, i, epsilon=0.1):
    """Kept positives and negatives of anchor `i` (Wang et al. 2019)."""
    pos, neg = positives_of(labels, i), negatives_of(labels, i)
    if not pos or not neg:
        return [], []
    min_pos = min(sim[i, p] for p in pos)
    max_neg = max(sim[i, n] for n in neg)
    kept_neg = [n for n in neg if sim[i, n] + epsilon > min_pos]
    kept_pos = [p for p in pos if sim[i, p] - epsilon < max_neg]
    return kept_pos, kept_neg


def mined_pair_sets(d, labels, miner, sim=None):
    """Per-anchor `(positive set, negative set)` a pair loss uses under `miner`."""
    out = []
    for i in range(len(labels)):
        if miner in (None, "all"):
            pos, neg = positives_of(labels, i), negatives_of(labels, i)
        elif miner == "multi_similarity":
            pos, neg = multi_similarity_pairs(sim, labels, i)
        else:
            triplets = mine_triplets(d, labels, miner)[i]
            pos = sorted({p for p, _ in triplets})
            neg = sorted({n for _, n in triplets})
        out.append((pos, neg))
    return out


# -- losses ---------------------------------------------------------------------------
def contrastive_loss(d, labels, margin, miner=None, sim=None):
    """Per-anchor pair-margin contrastive loss (Hadsell et al. 2006)."""
    out = np.zeros(len(labels))
    for i, (pos, neg) in enumerate(mined_pair_sets(d, labels, miner, sim)):
        pull = np.mean([d[i, p] ** 2 for p in pos]) if pos else 0.0
        push = np.mean([max(0.0, margin - d[i, n]) ** 2 for n in neg]) if neg else 0.0
        out[i] = pull + push
    return out


def triplet_loss(d, labels, margin, miner, sim=None, soft_margin=False):
    """Per-anchor mean triplet loss over the mined triplets (0 when none)."""
    out = np.zeros(len(labels))
    for i, triplets in enumerate(mine_triplets(d, labels, miner, sim)):
        if not triplets:
            continue
        vals = []
        for p, n in triplets:
            gap = d[i, p] - d[i, n]
            vals.append(np.log1p(np.exp(gap)) if soft_margin else max(0.0, gap + margin))
        out[i] = np.mean(vals)
    return out


def one_nn_accuracy(train_x, train_y, test_x, test_y, metric="euclidean") -> float:
    """1-nearest-neighbour accuracy under `metric` ("euclidean" or "cosine")."""
    train_x = np.asarray(train_x, dtype=np.float64)
    test_x = np.asarray(test_x, dtype=np.float64)
    if metric == "cosine":
        train_x = train_x / np.maximum(np.linalg.norm(train_x, axis=1, keepdims=True), 1e-12)
        test_x = test_x / np.maximum(np.linalg.norm(test_x, axis=1, keepdims=True), 1e-12)
    d = ((test_x[:, None, :] - train_x[None, :, :]) ** 2).sum(-1)
    return float(np.mean(np.asarray(train_y)[np.argmin(d, axis=1)] == np.asarray(test_y)))
