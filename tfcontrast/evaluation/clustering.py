"""Clustering and representation-geometry metrics of embeddings.

- `clustering_scores`: NMI and AMI between k-means clusters and the labels
  (scikit-learn's `KMeans`, `normalized_mutual_info_score`,
  `adjusted_mutual_info_score`).
- `alignment` / `uniformity`: Wang & Isola, "Understanding Contrastive Representation
  Learning through Alignment and Uniformity on the Hypersphere", ICML 2020.
- `infonce_bound`: the InfoNCE lower bound on mutual information, `log(K) - L`
  (van den Oord et al. 2018; Tian et al. 2020). It is the NumPy, whole-data-set
  counterpart of the Keras metric `tfcontrast.losses.MutualInformationBound`, which
  computes the same in-batch bound (cosine scores, symmetric InfoNCE, `K` = batch size)
  during `fit`.
"""

from __future__ import annotations

import numpy as np

from tfcontrast import _checks
from tfcontrast._normalization import l2_normalize_numpy
from tfcontrast.evaluation._common import (
    as_embeddings,
    as_labels,
)


def clustering_scores(
    embeddings,
    labels,
    n_clusters: int | None = None,
    normalize: bool = True,
    n_init: int = 3,
    seed: int = 0,
) -> dict[str, float]:
    """NMI and AMI of k-means clusters of the embeddings against the labels.

    Args:
        embeddings: `(N, D)` embeddings.
        labels: `(N,)` class labels.
        n_clusters: clusters of k-means; defaults to the number of classes.
        normalize: L2-normalise before clustering (k-means on the sphere ~ cosine).
        n_init: k-means restarts.
        seed: k-means `random_state`.

    Returns:
        `{"nmi": ..., "ami": ...}`.
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import (
        adjusted_mutual_info_score,
        normalized_mutual_info_score,
    )

    x = as_embeddings(embeddings, "embeddings")
    y = as_labels(labels, "labels", x.shape[0])
    if n_clusters is None:
        n_clusters = int(np.unique(y).shape[0])
    n_clusters = _checks.integer("n_clusters", n_clusters, "clustering_scores")
    if n_clusters > x.shape[0]:
        raise ValueError(
            f"clustering_scores: `n_clusters`={n_clusters} exceeds the number of "
            f"embeddings ({x.shape[0]})."
        )
    if normalize:
        x = l2_normalize_numpy(x)
    assignment = KMeans(n_clusters=n_clusters, n_init=n_init, random_state=seed).fit_predict(x)
    return {
        "nmi": float(normalized_mutual_info_score(y, assignment)),
        "ami": float(adjusted_mutual_info_score(y, assignment)),
    }


def alignment(x, y, alpha: float = 2.0, normalize: bool = True) -> float:
    """Alignment `E_{(x, y) positive} |f(x) - f(y)|_2^alpha` (lower is better).

    Args:
        x: `(N, D)` embeddings of the first views.
        y: `(N, D)` embeddings of the paired second views (row `i` pairs with row `i`).
        alpha: exponent (Wang & Isola use 2).
        normalize: L2-normalise first (the metric is defined on the hypersphere).
    """
    a = as_embeddings(x, "x")
    b = as_embeddings(y, "y")
    if a.shape != b.shape:
        raise ValueError(f"alignment: `x` {a.shape} and `y` {b.shape} must have the same shape.")
    alpha = _checks.positive("alpha", alpha, "alignment")
    if normalize:
        a, b = l2_normalize_numpy(a), l2_normalize_numpy(b)
    dist = np.linalg.norm(a.astype(np.float64) - b, axis=1)
    return float(np.mean(dist**alpha))


def class_alignment(embeddings, labels, alpha: float = 2.0, normalize: bool = True) -> float:
    """Alignment over all same-label pairs `i < j` (a supervised variant of `alignment`).

    Returns 0.0 when no label occurs twice.
    """
    x = as_embeddings(embeddings, "embeddings")
    lab = as_labels(labels, "labels", x.shape[0])
    alpha = _checks.positive("alpha", alpha, "class_alignment")
    if normalize:
        x = l2_normalize_numpy(x)
    x = x.astype(np.float64)
    total, count = 0.0, 0
    for c in np.unique(lab):
        members = x[lab == c]
        m = members.shape[0]
        if m < 2:
            continue
        sq = np.sum(members**2, axis=1)
        d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * members @ members.T, 0.0)
        iu = np.triu_indices(m, k=1)
        total += float(np.sum(d2[iu] ** (alpha / 2.0)))
        count += iu[0].shape[0]
    return total / count if count else 0.0


def uniformity(embeddings, t: float = 2.0, normalize: bool = True, batch_size: int = 256) -> float:
    """Uniformity `log E_{i<j} exp(-t |f(x_i) - f(x_j)|_2^2)` (lower is better).

    Computed exactly over all `N (N - 1) / 2` pairs in chunks, with a log-sum-exp for
    stability. On the unit sphere it lies in `[-4t, 0]`.

    Args:
        embeddings: `(N, D)` embeddings, `N >= 2`.
        t: the Gaussian-potential scale (Wang & Isola use 2).
        normalize: L2-normalise first.
        batch_size: rows per chunk.
    """
    x = as_embeddings(embeddings, "embeddings")
    if x.shape[0] < 2:
        raise ValueError("uniformity: `embeddings` needs at least 2 rows.")
    t = _checks.positive("t", t, "uniformity")
    if normalize:
        x = l2_normalize_numpy(x)
    x = x.astype(np.float64)
    n = x.shape[0]
    sq = np.sum(x * x, axis=1)
    maxima, sums = [], []
    for r0 in range(0, n, batch_size):
        xb = x[r0 : r0 + batch_size]
        d2 = np.maximum(sq[r0 : r0 + xb.shape[0], None] + sq[None, :] - 2.0 * xb @ x.T, 0.0)
        rows = np.arange(xb.shape[0])[:, None] + r0
        upper = np.arange(n)[None, :] > rows  # pairs i < j only
        logits = np.where(upper, -t * d2, -np.inf)
        if not np.any(upper):
            continue
        m = np.max(logits[upper])
        maxima.append(m)
        sums.append(np.sum(np.exp(logits - m)))
    m = max(maxima)
    total = sum(s * np.exp(mi - m) for s, mi in zip(sums, maxima, strict=True))
    return float(m + np.log(total) - np.log(n * (n - 1) / 2.0))


def _log_softmax_diag(logits: np.ndarray) -> np.ndarray:
    m = logits.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.sum(np.exp(logits - m), axis=1))
    return np.diag(logits) - lse


def infonce_bound(x, y, temperature: float = 0.1, batch_size: int | None = None) -> float:
    """InfoNCE lower bound on the mutual information of paired views, `log(K) - L`.

    The pairs are split into batches of `K = batch_size` (all `N` pairs by default);
    in each batch `L` is the symmetric InfoNCE
    `L = -1/(2K) sum_i [log softmax_j(s_ij / t)_i + log softmax_j(s_ji / t)_i]` with
    `s_ij` the cosine similarity of `x_i` and `y_j`, and the result is the mean of
    `log(K) - L` over batches (a trailing batch of one pair is dropped). This equals
    what `tfcontrast.losses.MutualInformationBound` reports for the same batches.

    Args:
        x: `(N, D)` embeddings of the first views.
        y: `(N, D)` embeddings of the second views (row `i` pairs with row `i`).
        temperature: `t` of the scores.
        batch_size: `K`; `None` for a single batch of all `N` pairs.

    Returns:
        The bound in nats (at most `log(K)`).
    """
    a = as_embeddings(x, "x")
    b = as_embeddings(y, "y")
    if a.shape != b.shape:
        raise ValueError(
            f"infonce_bound: `x` {a.shape} and `y` {b.shape} must have the same shape."
        )
    if a.shape[0] < 2:
        raise ValueError("infonce_bound: needs at least 2 pairs.")
    temperature = _checks.positive("temperature", temperature, "infonce_bound")
    k = (
        a.shape[0]
        if batch_size is None
        else _checks.integer("batch_size", batch_size, "infonce_bound", least=2)
    )
    a = l2_normalize_numpy(a).astype(np.float64)
    b = l2_normalize_numpy(b).astype(np.float64)
    bounds = []
    for s0 in range(0, a.shape[0], k):
        ab, bb = a[s0 : s0 + k], b[s0 : s0 + k]
        if ab.shape[0] < 2:
            continue
        logits = ab @ bb.T / temperature
        loss = -0.5 * (np.mean(_log_softmax_diag(logits)) + np.mean(_log_softmax_diag(logits.T)))
        bounds.append(np.log(ab.shape[0]) - loss)
    return float(np.mean(bounds))
