"""Class-balanced P x K batches for metric losses (triplet, multi-similarity, ...).

Batch-hard triplet mining (Hermans et al., 2017, https://arxiv.org/abs/1703.07737)
needs batches holding P classes with K examples each, so every anchor has K - 1
positives and (P - 1) K negatives. TensorFlow only (`tf.data`).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfcontrast._checks import integer_labels
from tfcontrast.data import views as views_lib


def _materialise(data, y, owner):
    """(x float32 [0,1], y int32) NumPy arrays from arrays or a labelled dataset."""
    from tfcontrast.data import loaders

    if isinstance(data, tf.data.Dataset):
        if y is not None:
            raise ValueError(
                f"{owner}: pass `y` only with an array `x`; the dataset holds the labels."
            )
        ds, has_label = views_lib.as_dataset(data, owner)
        if not has_label:
            raise ValueError(f"{owner}: the dataset must yield (image, label) pairs.")
        views_lib.check_image_spec(ds.element_spec[0], owner)
        xs, ys = [], []
        for xb, yb in ds.batch(1024).as_numpy_iterator():
            xs.append(xb)
            ys.append(yb)
        if not xs:
            raise ValueError(f"{owner}: the dataset is empty.")
        return np.concatenate(xs), np.concatenate(ys).astype(np.int32)
    if y is None:
        raise ValueError(f"{owner}: `y` (integer labels) is required with an array `x`.")
    x = loaders.images_to_float(data, owner, "x")
    return x, integer_labels(y, owner, n=x.shape[0])


def class_balanced(
    x,
    y=None,
    classes_per_batch: int = 8,
    examples_per_class: int = 4,
    augmenter=None,
    views: int | None = None,
    seed: int | None = None,
    steps: int | None = None,
    deterministic: bool = False,
) -> tf.data.Dataset:
    """Batches of `classes_per_batch` (P) classes x `examples_per_class` (K) examples.

    Each batch draws P distinct classes uniformly, then K distinct examples of each
    (without replacement within the batch; batches are drawn independently, so the
    dataset is infinite unless `steps` is given: use `steps_per_epoch` in `fit`). The
    batch holds the P groups of K one after another. Sampling is stateless from `seed`,
    so the same seed gives the same batches.

    Args:
        x: images `(N, H, W[, C])` (integers divided by 255, or floats in [0, 1]), or a
            `tf.data.Dataset` of `(image, label)` that is read once into memory.
        y: integer labels `(N,)` when `x` is an array.
        classes_per_batch: P, at most the number of classes.
        examples_per_class: K, at most the size of the smallest class.
        augmenter: optional augmentation layer (or list, or `ViewAugmenter`) applied to
            each batch; with `views` (or a list / `ViewAugmenter`) the images become
            views `(P*K, V, H, W, C)` (SupCon).
        views: number of views when `augmenter` is a single layer; None applies it once.
        seed: sampling seed.
        steps: number of batches; None for an infinite dataset.
        deterministic: reproducible augmentation order (augment one batch at a time).

    Returns:
        A `tf.data.Dataset` of `(images, labels)` with `labels` int32 `(P*K,)`.

    Raises:
        ValueError: P larger than the number of classes, K larger than the smallest
            class, or malformed inputs.

    Example:

    ```python
    ds = tfcontrast.data.class_balanced(x, y, classes_per_batch=16, examples_per_class=4)
    model.compile(loss=tfcontrast.losses.TripletLoss(miner="batch_hard"))
    model.fit(ds, steps_per_epoch=100, epochs=10)
    ```
    """
    owner = "class_balanced"
    images, labels = _materialise(x, y, owner)
    images_t, labels_t = tf.constant(images), tf.constant(labels)
    indices = balanced_indices(labels, classes_per_batch, examples_per_class, seed, owner, steps)
    ds = indices.map(
        lambda index: (tf.gather(images_t, index), tf.gather(labels_t, index)),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    if augmenter is not None:
        if (
            views is None
            and not isinstance(augmenter, (list, tuple))
            and not _is_view_augmenter(augmenter)
        ):
            aug = augmenter
        else:
            aug = views_lib.view_augmenter(augmenter, views, owner)
        parallel = 1 if deterministic else tf.data.AUTOTUNE
        ds = ds.map(lambda a, b: (aug(a, training=True), b), num_parallel_calls=parallel)
    options = tf.data.Options()
    options.deterministic = bool(deterministic) or seed is not None
    return ds.prefetch(tf.data.AUTOTUNE).with_options(options)


def balanced_indices(
    labels,
    classes_per_batch: int,
    examples_per_class: int,
    seed=None,
    owner="class_balanced",
    steps=None,
) -> tf.data.Dataset:
    """Dataset of P x K example indices `(P*K,)` into `labels`: P distinct classes drawn
    uniformly, K distinct examples of each, the groups one after another. Stateless from
    `seed` (the same seed gives the same batches); endless unless `steps` is given."""
    for name, value in (
        ("classes_per_batch", classes_per_batch),
        ("examples_per_class", examples_per_class),
    ):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(
                f"{owner}: `{name}` must be an integer >= 1; received {name}={value!r}."
            )
    if steps is not None and (not isinstance(steps, int) or steps < 1):
        raise ValueError(
            f"{owner}: `steps` must be None or an integer >= 1; received steps={steps!r}."
        )
    p, k = int(classes_per_batch), int(examples_per_class)
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    if p > len(classes):
        raise ValueError(
            f"{owner}: `classes_per_batch`={p} is larger than the number of classes ({len(classes)})."
        )
    if k > counts.min():
        smallest = classes[np.argmin(counts)]
        raise ValueError(
            f"{owner}: `examples_per_class`={k} is larger than the smallest class "
            f"(class {smallest} has {counts.min()} examples); lower it or drop small classes."
        )
    # Padded table of example indices per class: row c holds the indices of class c.
    table = np.zeros((len(classes), counts.max()), dtype=np.int32)
    for row, c in enumerate(classes):
        idx = np.flatnonzero(labels == c)
        table[row, : len(idx)] = idx
    table_t = tf.constant(table)
    counts_t = tf.constant(counts, dtype=tf.int32)
    num_classes, width = table.shape
    base = 0 if seed is None else int(seed)

    def sample(step):
        key = tf.stack([tf.cast(base, tf.int64), step])
        chosen = tf.math.top_k(
            tf.random.stateless_uniform((num_classes,), seed=key), k=p
        ).indices  # (P,) distinct classes
        keys = tf.random.stateless_uniform((p, width), seed=key + [0, 1 << 40])
        valid = tf.range(width)[None, :] < tf.gather(counts_t, chosen)[:, None]
        keys = tf.where(valid, keys, -1.0)
        cols = tf.math.top_k(keys, k=k).indices  # (P, K) distinct valid positions
        return tf.reshape(tf.gather(tf.gather(table_t, chosen), cols, batch_dims=1), (-1,))

    if seed is None:
        steps_ds = tf.data.Dataset.random(rerandomize_each_iteration=True)
    else:
        steps_ds = tf.data.Dataset.counter()
    if steps is not None:
        steps_ds = steps_ds.take(steps)
    return steps_ds.map(sample, num_parallel_calls=tf.data.AUTOTUNE)


def _is_view_augmenter(obj) -> bool:
    from tfcontrast.layers.augmentation import ViewAugmenter

    return isinstance(obj, ViewAugmenter)


__all__ = ["class_balanced"]
