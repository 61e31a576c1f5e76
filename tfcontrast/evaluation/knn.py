"""k-nearest-neighbour classification of frozen embeddings (the kNN monitor).

The weighted vote follows Wu et al. 2018 (InstDisc) as used by lightly's and
solo-learn's kNN monitors: each of the `k` nearest training embeddings votes for its
class with weight

- `weighting="plain"`: 1 (majority vote),
- `weighting="temperature"`: `exp(s / t)` with `s` the cosine similarity
  (`metric="cosine"`) or `exp(-d / t)` with `d` the Euclidean distance (`metric="l2"`),

and the class with the largest total wins (ties go to the smallest class label, as in
scikit-learn). Reference: Wu, Xiong, Yu, Lin, "Unsupervised Feature Learning via
Non-Parametric Instance Discrimination", CVPR 2018.
"""

from __future__ import annotations

import numpy as np

from tfcontrast import _checks
from tfcontrast._normalization import l2_normalize_numpy
from tfcontrast._search import exact_search
from tfcontrast.evaluation._common import (
    as_embeddings,
    as_labels,
)

_OWNER = "knn_accuracy"


def knn_predict(
    train_embeddings,
    train_labels,
    test_embeddings=None,
    k: int = 200,
    metric: str = "cosine",
    weighting: str = "temperature",
    temperature: float = 0.1,
    batch_size: int = 512,
) -> np.ndarray:
    """Predicts a label for every test embedding by a (weighted) kNN vote.

    Args:
        train_embeddings: `(N, D)` reference embeddings (array or tensor).
        train_labels: `(N,)` class labels (ints or strings).
        test_embeddings: `(M, D)` embeddings to classify; `None` classifies the
            training embeddings leave-one-out (each one never votes for itself).
        k: neighbours that vote, `1 <= k <= N` (`N - 1` leave-one-out).
        metric: `"cosine"` or `"l2"`.
        weighting: `"plain"` (majority) or `"temperature"` (`exp(similarity / t)`).
        temperature: `t` of the temperature weighting.
        batch_size: test embeddings per chunk (memory is bounded by chunks).

    Returns:
        `(M,)` predicted labels, same dtype as `train_labels`.
    """
    train = as_embeddings(train_embeddings, "train_embeddings")
    labels = as_labels(train_labels, "train_labels", train.shape[0])
    _checks.choice("metric", metric, ("cosine", "l2"), _OWNER)
    _checks.choice("weighting", weighting, ("plain", "temperature"), _OWNER)
    temperature = _checks.positive("temperature", temperature, _OWNER)
    k = _checks.integer("k", k, _OWNER)
    loo = test_embeddings is None
    test = train if loo else as_embeddings(test_embeddings, "test_embeddings")
    if test.shape[1] != train.shape[1]:
        raise ValueError(
            f"{_OWNER}: `test_embeddings` dimension {test.shape[1]} does not match "
            f"`train_embeddings` dimension {train.shape[1]}."
        )
    limit = train.shape[0] - 1 if loo else train.shape[0]
    if k > limit:
        raise ValueError(
            f"{_OWNER}: `k`={k} is larger than the number of training embeddings available "
            f"({limit}{', leave-one-out' if loo else ''})."
        )
    if metric == "cosine":
        train = l2_normalize_numpy(train)
        test = train if loo else l2_normalize_numpy(test)
    classes, class_ids = np.unique(labels, return_inverse=True)
    scores, idx = exact_search(
        test,
        train,
        k,
        metric,
        query_batch_size=batch_size,
        exclude=np.arange(train.shape[0]) if loo else None,
    )
    if weighting == "plain":
        weights = np.ones_like(scores, dtype=np.float64)
    else:
        logits = scores.astype(np.float64) / temperature
        if metric == "l2":
            logits = -logits
        # Shifting by the row maximum keeps exp finite and leaves the argmax unchanged.
        weights = np.exp(logits - logits.max(axis=1, keepdims=True))
    votes = np.zeros((test.shape[0], classes.shape[0]), dtype=np.float64)
    rows = np.repeat(np.arange(test.shape[0]), k)
    np.add.at(votes, (rows, class_ids[idx].ravel()), weights.ravel())
    return classes[np.argmax(votes, axis=1)]


def knn_accuracy(
    train_embeddings,
    train_labels,
    test_embeddings=None,
    test_labels=None,
    k: int = 200,
    metric: str = "cosine",
    weighting: str = "temperature",
    temperature: float = 0.1,
    batch_size: int = 512,
) -> float:
    """Top-1 accuracy of a kNN classifier on frozen embeddings.

    `accuracy = mean_i [ argmax_c sum_{j in kNN(i)} w_ij [y_j = c] == y_i ]` with
    `w_ij = 1` (plain) or `exp(s_ij / t)` (temperature), as in InstDisc / lightly's kNN
    monitor (`k = 200`, `t = 0.1`).

    Args:
        train_embeddings: `(N, D)` reference embeddings.
        train_labels: `(N,)` labels of the references.
        test_embeddings: `(M, D)` embeddings to classify, or `None` for leave-one-out
            accuracy on the training set.
        test_labels: `(M,)` true labels (ignored and may be `None` leave-one-out).
        k, metric, weighting, temperature, batch_size: see `knn_predict`.

    Returns:
        Accuracy in `[0, 1]` as a Python float.

    Example:

    ```python
    acc = knn_accuracy(train_emb, train_y, test_emb, test_y, k=20, weighting="plain")
    ```
    """
    pred = knn_predict(
        train_embeddings,
        train_labels,
        test_embeddings,
        k=k,
        metric=metric,
        weighting=weighting,
        temperature=temperature,
        batch_size=batch_size,
    )
    if test_embeddings is None:
        truth = as_labels(train_labels, "train_labels", pred.shape[0])
    else:
        if test_labels is None:
            raise ValueError(f"{_OWNER}: `test_labels` is required with `test_embeddings`.")
        truth = as_labels(test_labels, "test_labels", pred.shape[0])
    return float(np.mean(pred == truth))


def few_shot_1nn_scores(
    train_embeddings,
    train_labels,
    test_embeddings,
    test_labels,
    shots_per_class: int = 10,
    draws: int = 5,
    seed: int = 0,
    metric: str = "cosine",
) -> np.ndarray:
    """1-NN accuracy with `shots_per_class` labelled training examples per class.

    The label-efficient score of self-supervised papers: draw `shots_per_class` examples
    of every class from the training set (draw `d` uses seed `seed + d`), classify the
    test set by its nearest drawn example, and repeat `draws` times.

    Returns:
        The `(draws,)` accuracies; report their mean (and spread).

    Example:

    ```python
    scores = few_shot_1nn_scores(train_emb, train_y, test_emb, test_y, shots_per_class=10)
    print(f"10 labels per class: {scores.mean():.3f} +- {scores.std():.3f}")
    ```
    """
    from tfcontrast.evaluation.probe import few_shot_indices

    train_embeddings = as_embeddings(train_embeddings, "train_embeddings")
    train_labels = as_labels(train_labels, "train_labels", len(train_embeddings))
    _checks.integer("draws", draws, "few_shot_1nn_scores")
    scores = []
    for d in range(draws):
        idx = few_shot_indices(train_labels, shots_per_class, seed=seed + d)
        scores.append(
            knn_accuracy(
                train_embeddings[idx],
                train_labels[idx],
                test_embeddings,
                test_labels,
                k=1,
                metric=metric,
                weighting="plain",
            )
        )
    return np.asarray(scores)
