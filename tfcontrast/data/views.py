"""Multi-view batches `(B, V, H, W, C)` for self-supervised and SupCon training.

TensorFlow only (`tf.data`); imported lazily by `tfcontrast.data`.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfcontrast.data import loaders


def as_dataset(data, owner: str) -> tuple[tf.data.Dataset, bool]:
    """Normalises `data` to an unbatched dataset of `(image, label)` or `image`.

    Accepts a `tf.data.Dataset` (elements `image`, `(image, label)` or a dict with
    `"image"` and optional `"label"`), a tuple `(x, y)` of arrays, or an array `x`.
    Returns the dataset (images float32 in [0, 1]) and whether it has labels.
    """
    if isinstance(data, tf.data.Dataset):
        spec = data.element_spec
        if isinstance(spec, dict):
            if "image" not in spec:
                raise ValueError(
                    f"{owner}: dict elements need an 'image' key; received keys {sorted(spec)}."
                )
            has_label = "label" in spec
            data = data.map(
                (lambda e: (e["image"], e["label"])) if has_label else (lambda e: e["image"])
            )
            spec = data.element_spec
        has_label = isinstance(spec, tuple)
        if has_label and len(spec) != 2:
            raise ValueError(
                f"{owner}: dataset elements must be `image` or `(image, label)`; received {spec}."
            )
        image_spec = spec[0] if has_label else spec

        def to_float(*elem):
            image = elem[0]
            image = (
                tf.cast(image, tf.float32) / 255.0
                if image.dtype.is_integer
                else tf.cast(image, tf.float32)
            )
            if has_label:
                return image, tf.cast(elem[1], tf.int32)
            return image

        if image_spec.dtype != tf.float32 or (has_label and spec[1].dtype != tf.int32):
            data = data.map(to_float)
        return data, has_label
    if isinstance(data, (tuple, list)):
        if len(data) != 2:
            raise ValueError(
                f"{owner}: `data` as a tuple must be (x, y); received {len(data)} items."
            )
        return loaders.from_arrays(*data), True
    if isinstance(data, np.ndarray) or hasattr(data, "__array__"):
        return loaders.from_arrays(data), False
    raise ValueError(
        f"{owner}: `data` must be a tf.data.Dataset, an array of images or a tuple (x, y); "
        f"received {type(data).__name__}."
    )


def check_image_spec(spec, owner: str):
    shape = spec.shape
    if shape.rank != 3:
        raise ValueError(
            f"{owner}: images must have shape (H, W, C) before batching; received {shape}."
        )
    if shape[0] is None or shape[1] is None or shape[2] is None:
        raise ValueError(
            f"{owner}: images have no fixed size ({shape}), e.g. images of mixed sizes; "
            "resize them first (`from_folder(..., image_size=...)`, "
            "`from_tfds(..., image_size=...)` or `ds.map(lambda x, y: (tf.image.resize(x, size), y))`)."
        )


def view_augmenter(augmenter, views, owner: str):
    """A `ViewAugmenter` from a layer, a list of layers, or a `ViewAugmenter`."""
    from tfcontrast.layers.augmentation import ViewAugmenter

    if isinstance(augmenter, ViewAugmenter):
        if views is not None and views != augmenter.views:
            raise ValueError(
                f"{owner}: `views`={views!r} does not match the augmenter's {augmenter.views} views."
            )
        return augmenter
    if augmenter is None:
        raise ValueError(
            f"{owner}: `augmenter` is required (e.g. tfcontrast.layers.simclr_augmentation(32))."
        )
    if isinstance(augmenter, (list, tuple)):
        return ViewAugmenter(list(augmenter), views=views)
    if views is None:
        views = 2
    if not isinstance(views, int) or views < 1:
        raise ValueError(f"{owner}: `views` must be an integer >= 1; received views={views!r}.")
    return ViewAugmenter(augmenter, views=views)


def _options(deterministic: bool) -> tf.data.Options:
    options = tf.data.Options()
    options.deterministic = bool(deterministic)
    return options


def multiview(
    data,
    augmenter,
    views: int | None = 2,
    batch_size: int = 256,
    shuffle: bool = True,
    shuffle_buffer: int = 10_000,
    seed: int | None = None,
    drop_remainder: bool = True,
    deterministic: bool = False,
    cache: bool = False,
) -> tf.data.Dataset:
    """Batches of augmented views, ready for `fit`.

    The pipeline is `shuffle -> batch -> augment (vectorised over the batch, parallel)
    -> prefetch(AUTOTUNE)`. Each element is `views` of shape `(B, V, H, W, C)` (or, for
    multi-crop augmenters with different view sizes, a tuple of `(B, H_v, W_v, C)`),
    followed by the labels `(B,)` when the data has labels (for SupCon, or ignored by
    self-supervised losses).

    Determinism: with `deterministic=True` and a seed (here for the shuffle, and on the
    augmentation layers), two pipelines built the same way produce the same batches;
    augmentation then runs one batch at a time, since the layers' random state advances
    with each call. With `deterministic=False` batches are augmented in parallel and may
    be produced in any order.

    Args:
        data: a `tf.data.Dataset` of `image` / `(image, label)` / `{"image", "label"}`
            elements, an array of images, or a tuple `(x, y)`. Integer images are
            divided by 255; float images must be in [0, 1].
        augmenter: a layer (e.g. `tfcontrast.layers.simclr_augmentation(32)`) applied
            `views` times, a list of layers (one per view), or a `ViewAugmenter`.
        views: number of views (for a single layer).
        batch_size: images per batch.
        shuffle: shuffle the images before batching.
        shuffle_buffer: shuffle buffer size.
        seed: shuffle seed.
        drop_remainder: drop the last partial batch (contrastive losses prefer full
            batches).
        deterministic: reproducible order and augmentation (see above).
        cache: cache the decoded images in memory before shuffling.

    Returns:
        A `tf.data.Dataset`.

    Example:

    ```python
    ds = tfcontrast.data.multiview(
        tfcontrast.data.from_tfds("cifar10"),
        tfcontrast.layers.cifar_augmentation(32), views=2, batch_size=512)
    model.fit(ds, epochs=100)
    ```
    """
    owner = "multiview"
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(
            f"{owner}: `batch_size` must be an integer >= 1; received batch_size={batch_size!r}."
        )
    ds, has_label = as_dataset(data, owner)
    spec = ds.element_spec[0] if has_label else ds.element_spec
    check_image_spec(spec, owner)
    aug = view_augmenter(augmenter, views, owner)
    if cache:
        ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    parallel = 1 if deterministic else tf.data.AUTOTUNE
    if has_label:
        ds = ds.map(lambda x, y: (aug(x, training=True), y), num_parallel_calls=parallel)
    else:
        ds = ds.map(lambda x: aug(x, training=True), num_parallel_calls=parallel)
    return ds.prefetch(tf.data.AUTOTUNE).with_options(_options(deterministic))


__all__ = ["multiview"]
