"""Linear probe: a Keras logistic regression trained on frozen embeddings."""

from __future__ import annotations

import numpy as np

from tfcontrast import _checks
from tfcontrast.evaluation._common import (
    as_embeddings,
    as_labels,
)

_OWNER = "linear_probe"


def few_shot_indices(labels, shots_per_class: int, seed: int = 0) -> np.ndarray:
    """Indices of `shots_per_class` examples of every class, drawn without replacement.

    Raises ValueError naming `shots_per_class` if a class has fewer examples.
    """
    labels = np.asarray(labels)
    shots = _checks.integer("shots_per_class", shots_per_class, _OWNER)
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if members.shape[0] < shots:
            raise ValueError(
                f"{_OWNER}: `shots_per_class`={shots} but class {c!r} has only "
                f"{members.shape[0]} training examples."
            )
        chosen.append(rng.choice(members, size=shots, replace=False))
    return np.sort(np.concatenate(chosen))


def linear_probe(
    train_embeddings,
    train_labels,
    test_embeddings,
    test_labels,
    shots_per_class: int | None = None,
    epochs: int = 50,
    batch_size: int = 256,
    learning_rate: float = 0.01,
    weight_decay: float = 1e-4,
    standardize: bool = True,
    seed: int = 0,
    return_model: bool = False,
):
    """Top-1 accuracy of a logistic regression trained on frozen embeddings.

    A single `Dense(num_classes, activation="softmax")` layer (zero-initialised, so the
    convex problem has a deterministic start) is trained with Adam on the cross-entropy
    `-mean_i log softmax(W x_i + b)_{y_i} + weight_decay * |W|^2`, on features
    standardised with the training mean and standard deviation. Batches are drawn in a
    fixed order from `seed`, so repeated calls give the same number.

    The few-shot mode (`shots_per_class=N`) trains on `N` randomly chosen examples per
    class (label-efficient evaluation, e.g. 1%/10% ImageNet labels in SimCLR).

    Args:
        train_embeddings: `(N, D)` frozen training features.
        train_labels: `(N,)` labels (ints or strings).
        test_embeddings: `(M, D)` frozen test features.
        test_labels: `(M,)` labels; classes unseen in training count as errors.
        shots_per_class: `None` for all labels, or labels per class for few-shot.
        epochs, batch_size, learning_rate, weight_decay: optimisation settings.
        standardize: z-score features with the training statistics.
        seed: seed of the few-shot draw and of the batch order.
        return_model: also return the trained Keras classifier (which expects
            standardised features when `standardize=True`).

    Returns:
        Accuracy as a float, or `(accuracy, model)` with `return_model=True`.

    Example:

    ```python
    acc = linear_probe(train_emb, train_y, test_emb, test_y, shots_per_class=10)
    ```
    """
    import keras

    train = as_embeddings(train_embeddings, "train_embeddings")
    y_train = as_labels(train_labels, "train_labels", train.shape[0])
    test = as_embeddings(test_embeddings, "test_embeddings")
    y_test = as_labels(test_labels, "test_labels", test.shape[0])
    if test.shape[1] != train.shape[1]:
        raise ValueError(
            f"{_OWNER}: `test_embeddings` dimension {test.shape[1]} does not match "
            f"`train_embeddings` dimension {train.shape[1]}."
        )
    epochs = _checks.integer("epochs", epochs, _OWNER)
    batch_size = _checks.integer("batch_size", batch_size, _OWNER)
    learning_rate = _checks.positive("learning_rate", learning_rate, _OWNER)
    if weight_decay < 0:
        raise ValueError(f"{_OWNER}: `weight_decay` must be >= 0; received {weight_decay!r}.")
    if shots_per_class is not None:
        keep = few_shot_indices(y_train, shots_per_class, seed)
        train, y_train = train[keep], y_train[keep]

    classes, y_ids = np.unique(y_train, return_inverse=True)
    if standardize:
        mean = train.mean(axis=0, keepdims=True)
        std = train.std(axis=0, keepdims=True) + 1e-6
        train = (train - mean) / std
        test = (test - mean) / std

    model = keras.Sequential(
        [
            keras.Input(shape=(train.shape[1],)),
            keras.layers.Dense(
                classes.shape[0],
                activation="softmax",
                kernel_initializer="zeros",
                kernel_regularizer=keras.regularizers.L2(weight_decay) if weight_decay else None,
            ),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
    )
    # A seeded batch order (instead of fit's global-RNG shuffle) keeps runs reproducible;
    # `train_on_batch` avoids fit's per-epoch overhead, which dominates on small sets.
    rng = np.random.default_rng(seed)
    y_ids = y_ids.astype(np.int32)
    for _ in range(epochs):
        order = rng.permutation(train.shape[0])
        for b0 in range(0, train.shape[0], batch_size):
            idx = order[b0 : b0 + batch_size]
            model.train_on_batch(train[idx], y_ids[idx])
    probs = model.predict(test, batch_size=4096, verbose=0)
    pred = classes[np.argmax(probs, axis=1)]
    accuracy = float(np.mean(pred == y_test))
    return (accuracy, model) if return_model else accuracy
