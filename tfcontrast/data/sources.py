"""Image sources that stream: what `tfcontrast train` and `tfcontrast index` read.

An `ImageSource` lists a collection's examples (image files, rows of in-memory arrays,
or records of TFRecord files and tfds splits) and their labels, and decodes images only
inside the `tf.data` pipelines it makes: decoded in parallel, cached in memory when the
decoded images fit in `cache_bytes`, shuffled, batched and prefetched. A collection of
any size trains in a bounded amount of host memory.

```python
source = tfcontrast.data.open_source("photos/", image_size=96)   # or .npz, .csv, ...
train, test = source.split(test_fraction=0.3, seed=0)
model.fit(train.batches(256, seed=0), epochs=10)                 # images only
embeddings = model.predict(test.batches(512))
```

`open_source` reads:

- a folder with one subfolder per class (labelled) or of image files alone (unlabelled);
- a manifest: `.csv` with a `path` column and an optional `label` column, `.json` (a list
  of `{"path": ..., "label": ...}` objects) or `.jsonl` (one object per line); relative
  paths are relative to the manifest's folder, labels are names or integers;
- TFRecord files (`.tfrecord`, `.tfrecords`, `.tfrec`, or a glob pattern of them) of
  `tf.train.Example`s with the encoded image under `image` or `image/encoded` and an
  optional integer label under `label` or `image/class/label`;
- `.npz` files (arrays `x` and optional `y`, or Keras' `x_train, y_train, x_test, y_test`,
  whose test arrays become `source.test`), NumPy arrays (`ImageSource.from_arrays`),
  `digits` (scikit-learn's 8x8 digits) and `tfds:NAME` (its `test` split when it has one).

Unreadable files are skipped and counted (`source.skipped`). TensorFlow only.
"""

from __future__ import annotations

import csv
import glob
import json
import os

import numpy as np
import tensorflow as tf

from tfcontrast import _checks
from tfcontrast.data import loaders
from tfcontrast.data._kinds import TFRECORD_EXTENSIONS, missing_path, source_kind

# Decoded images (uint8) are cached in memory up to this many bytes; larger collections
# are decoded again every epoch, so that host memory does not grow with the collection.
CACHE_BYTES = 512 * 2**20
# Without `image_size`, the size of file collections is read from the headers of this
# many files spread over the list (every header of 50,000 JPEGs took 100 s); a file of
# another size among the others is resized to the common size when it is read.
PROBE_LIMIT = 1000
_IMAGE_KEYS = ("image", "image/encoded")
_LABEL_KEYS = ("label", "image/class/label")


class ImageSource:
    """A collection of images read lazily, with optional integer labels.

    Build one with `open_source` or `ImageSource.from_arrays`. `len(source)` is the
    number of examples; `labels` (int32 NumPy, or None), `class_names`, `image_shape`
    (after resizing), `payloads` (the file path of each example, or its row number) and
    `skipped` (unreadable files left out) describe it; `test` is the collection's own
    held-out part when it has one (Keras-layout `.npz`, tfds), else None.

    Args:
        name: what the source is, for messages.
        keys: one entry per example, sliced by `tf.data` and given to `read`: file
            paths, row numbers, or positions in `records` order.
        read: `key -> image` (uint8 or float32 in [0, 1], `(H, W, C)`), traced by
            `tf.data`.
        image_shape: `(H, W, C)` of the images `read` returns.
        labels: int32 labels, one per key, or None.
        records: for sequential sources (TFRecord, tfds): a function returning the
            ordered dataset of `(record, label)` (or `record`); `read` then decodes a
            record, and `keys` are positions.
    """

    def __init__(
        self,
        name: str,
        keys,
        read,
        image_shape,
        labels=None,
        class_names=None,
        payloads=None,
        skipped=(),
        records=None,
        image_size=None,
        cache_bytes: int = CACHE_BYTES,
    ):
        self.name = name
        self.keys = np.asarray(keys)
        self.labels = None if labels is None else np.asarray(labels, np.int32)
        self.class_names = class_names
        self.payloads = list(payloads) if payloads is not None else list(range(len(self.keys)))
        self.skipped = list(skipped)
        self.test: ImageSource | None = None
        self._read = read
        self._records = records
        self._positions = np.arange(len(self.keys))  # into the records, for sequential ones
        self.cache_bytes = cache_bytes
        self._source_shape = tuple(int(d) for d in image_shape)
        self.image_size = (
            None if image_size is None else _checks.size_pair("image_size", image_size, name)
        )
        h, w = self.image_size or self._source_shape[:2]
        self.image_shape = (h, w, self._source_shape[2])
        if self.image_shape[2] not in (1, 3):
            raise ValueError(
                f"{name}: images must have 1 (grayscale) or 3 (RGB) channels; received "
                f"images of shape {self._source_shape}."
            )

    # -- construction ------------------------------------------------------------------
    @classmethod
    def from_arrays(cls, x, y=None, name="arrays", image_size=None) -> ImageSource:
        """Images `(N, H, W[, C])` held in memory (uint8 kept as uint8, floats in [0, 1])."""
        x = loaders.image_batch(x, name, "x")
        if not np.issubdtype(x.dtype, np.uint8):
            x = loaders.images_to_float(x, name, "x")
        if y is not None:
            y = _checks.integer_labels(y, name, n=len(x))
        images = tf.constant(x)
        return cls(
            name,
            np.arange(len(x)),
            lambda row: tf.gather(images, row),
            x.shape[1:],
            labels=y,
            image_size=image_size,
            cache_bytes=0,  # already in memory
        )

    def _view(self, positions) -> ImageSource:
        """The examples at `positions` (indices into this source), sharing its reader."""
        view = object.__new__(ImageSource)
        view.__dict__.update(self.__dict__)
        positions = np.asarray(positions, dtype=np.int64)
        view.keys = self.keys[positions]
        view._positions = self._positions[positions]
        view.labels = None if self.labels is None else self.labels[positions]
        view.payloads = [self.payloads[i] for i in positions]
        view.test = None
        return view

    def take(self, n: int) -> ImageSource:
        """The first `n` examples."""
        return self._view(np.arange(min(int(n), len(self))))

    def sample(self, n: int, seed: int = 0) -> ImageSource:
        """`n` examples drawn at random (all of them, in order, when `n >= len(self)`)."""
        if n >= len(self):
            return self
        return self._view(np.sort(np.random.default_rng(seed).permutation(len(self))[:n]))

    def split(self, test_fraction: float = 0.3, seed: int = 0):
        """`(train, test)`: `test` is `source.test` when the collection has its own held-out
        part, else `test_fraction` of the examples (stratified by label when every class
        has two examples)."""
        if self.test is not None:
            return self._view(np.arange(len(self))), self.test
        if len(self) < 4:
            raise ValueError(f"{self.name}: {len(self)} image(s) are too few to split.")
        from sklearn.model_selection import train_test_split

        stratify = None
        if self.labels is not None and np.min(np.bincount(self.labels)) >= 2:
            stratify = self.labels
        train, test = train_test_split(
            np.arange(len(self)), test_size=test_fraction, random_state=seed, stratify=stratify
        )
        return self._view(np.sort(train)), self._view(np.sort(test))

    # -- pipelines ---------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.keys)

    @property
    def labelled(self) -> bool:
        return self.labels is not None

    def _decode(self, key):
        image = self._read(key)
        if self.image_size is not None:
            image = _resized(image, self.image_size)
        return tf.ensure_shape(image, self.image_shape)

    def _cached(self) -> bool:
        return len(self) * int(np.prod(self.image_shape)) <= self.cache_bytes

    def _examples(self, with_labels: bool, shuffle_seed=None, skip_unreadable=True):
        """Unbatched `(image, label)` (or `image`): uint8 or float32 images. Without
        `skip_unreadable`, every example comes out, in order (a file that cannot be
        decoded is an error), and the dataset knows its length."""
        labels = with_labels and self.labelled
        if self._records is None:
            parts = (self.keys, self.labels) if labels else self.keys
            ds = tf.data.Dataset.from_tensor_slices(parts)
            shuffle_buffer = len(self)
        else:  # sequential records: keep this view's positions, in their order
            wanted = np.zeros(int(self._positions.max(initial=-1)) + 1, bool)
            wanted[self._positions] = True
            wanted_t = tf.constant(wanted)
            records = self._records().take(len(wanted)).enumerate()
            ds = records.filter(lambda i, _: wanted_t[i]).map(lambda _, element: element)
            if not labels and isinstance(ds.element_spec, tuple):
                ds = ds.map(lambda record, _: record)
            shuffle_buffer = min(len(self), 10_000)
        # Only training (a seed) iterates one dataset for epoch after epoch; a pass without
        # a seed (embedding, `arrays`) would fill a cache of up to `cache_bytes` that is never
        # read again and lives as long as the dataset.
        cached = shuffle_seed is not None and self._cached()
        if shuffle_seed is not None and not cached:  # shuffle keys before decoding
            ds = ds.shuffle(shuffle_buffer, seed=shuffle_seed, reshuffle_each_iteration=True)
        decode = (lambda key, y: (self._decode(key), y)) if labels else self._decode
        ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
        if skip_unreadable:
            ds = ds.ignore_errors(log_warning=True)
        else:
            ds = ds.apply(tf.data.experimental.assert_cardinality(len(self)))
        if cached:
            ds = ds.map(_to_uint8 if not labels else lambda x, y: (_to_uint8(x), y)).cache()
            if shuffle_seed is not None:
                ds = ds.shuffle(len(self), seed=shuffle_seed, reshuffle_each_iteration=True)
        return ds

    def batches(
        self, batch_size: int, seed: int | None = None, labels: bool = False
    ) -> tf.data.Dataset:
        """Batches of float32 images in [0, 1] (with their labels when `labels` and the
        source has them).

        With a `seed` (training) they are reshuffled every epoch and a file that cannot be
        decoded is skipped with a warning. Without one (embedding) every example comes
        out in order, so row i of `model.predict(source.batches(n))` is `payloads[i]`,
        and an undecodable file is an error.
        """
        batch_size = _checks.integer("batch_size", batch_size, "ImageSource.batches")
        ds = self._examples(labels, shuffle_seed=seed, skip_unreadable=seed is not None)
        to_float = (lambda x, y: (_to_float(x), y)) if labels and self.labelled else _to_float
        ds = ds.batch(batch_size).map(to_float, num_parallel_calls=tf.data.AUTOTUNE)
        return ds.prefetch(tf.data.AUTOTUNE)

    def class_balanced(self, classes_per_batch: int, per_class: int, seed: int = 0):
        """Endless P x K batches `(images, labels)` (`tfcontrast.data.class_balanced`'s
        sampling), decoding only the drawn images; use `steps_per_epoch` in `fit`."""
        from tfcontrast.data.balanced import balanced_indices

        if self.labels is None:
            raise ValueError(f"{self.name}: P x K batches need labels; the source has none.")
        if self._records is not None:
            raise ValueError(
                f"{self.name}: P x K batches draw examples at random and need files or arrays "
                "(a folder, a manifest, an .npz); TFRecord and tfds sources are read in order."
            )
        keys = tf.constant(self.keys)
        labels = tf.constant(self.labels)

        def load(index):
            images = tf.map_fn(
                lambda key: _to_float(self._decode(key)),
                tf.gather(keys, index),
                fn_output_signature=tf.TensorSpec(self.image_shape, tf.float32),
            )
            return images, tf.gather(labels, index)

        indices = balanced_indices(
            self.labels, classes_per_batch, per_class, seed, "class_balanced"
        )
        return indices.map(load, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

    def arrays(self):
        """`(images, labels)` as NumPy: float32 images in [0, 1] of every example (for
        samples small enough to hold; see `sample`)."""
        xs, ys = [], []
        for batch in self.batches(1024, labels=True).as_numpy_iterator():
            x, y = batch if isinstance(batch, tuple) else (batch, None)
            xs.append(x)
            ys.append(y)
        if not xs:
            raise ValueError(f"{self.name}: no image could be read.")
        x = np.concatenate(xs)
        return x, (np.concatenate(ys).astype(np.int32) if self.labelled else None)

    def describe(self) -> str:
        text = f"{len(self)} images of shape {self.image_shape}"
        if self.class_names is not None:
            text += f" in {len(self.class_names)} classes"
        elif self.labels is None:
            text += ", no labels"
        if self.skipped:
            text += f" ({len(self.skipped)} unreadable file(s) skipped)"
        return text


def _to_uint8(image):
    if image.dtype == tf.uint8:
        return image
    return tf.cast(tf.round(tf.clip_by_value(image, 0.0, 1.0) * 255.0), tf.uint8)


def _resized(image, size):
    """Float32 image in [0, 1] resized (antialiased) to `size`."""
    return tf.clip_by_value(tf.image.resize(_to_float(image), size, antialias=True), 0.0, 1.0)


def _to_float(image):
    if image.dtype.is_integer:
        return tf.cast(image, tf.float32) / 255.0
    return tf.cast(image, tf.float32)


# -- opening a source --------------------------------------------------------------------
def open_source(
    data: str, image_size=None, channels: int | None = None, cache_bytes: int = CACHE_BYTES
) -> ImageSource:
    """The `ImageSource` of `data`: a folder, a manifest (`.csv`, `.json`, `.jsonl`),
    TFRecord files, an `.npz` file, `"digits"` or `"tfds:NAME"` (see the module).

    Args:
        data: what to read.
        image_size: int or `(height, width)` to resize every image to (needed when the
            files differ in size).
        channels: 1 or 3 for files; None keeps grayscale files grayscale.
        cache_bytes: decoded images are cached in memory when they fit in this many bytes.

    Raises:
        FileNotFoundError: `data` names no file or folder.
        ValueError: the collection is malformed (the message says how).
    """
    data = os.fspath(data)
    if channels not in (None, 1, 3):
        raise ValueError(f"open_source: `channels` must be 1, 3 or None; received {channels!r}.")
    options = dict(image_size=image_size, cache_bytes=cache_bytes)
    kind = source_kind(data)
    if kind == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        return ImageSource.from_arrays(
            (digits.images / 16.0).astype("float32"), digits.target, "digits", image_size
        )
    if kind == "tfds":
        return _tfds_source(data[5:], image_size)
    if kind == "tfrecord":
        return _tfrecord_source(data, channels, **options)
    missing = missing_path(data)
    if missing:
        raise FileNotFoundError(missing)
    if os.path.isdir(data):
        listing = loaders.list_folder(data, image_size, owner=data, probe_limit=PROBE_LIMIT)
        return _file_source(data, listing, channels, **options)
    lower = data.lower()
    if lower.endswith(".npz"):
        return _npz_source(data, image_size)
    if lower.endswith((".csv", ".json", ".jsonl")):
        return _manifest_source(data, channels, **options)
    raise ValueError(
        f"expected 'digits', 'tfds:NAME', a folder, a manifest (.csv, .json, .jsonl), "
        f"TFRecord files ({', '.join(TFRECORD_EXTENSIONS)}) or an .npz file; received {data!r}."
    )


def _file_source(name, listing, channels, image_size, cache_bytes) -> ImageSource:
    channels = channels or listing["channels"]
    size = listing["size"]

    def read(path):
        image = tf.io.decode_image(
            tf.io.read_file(path), channels=channels, expand_animations=False
        )
        if image_size is not None or listing["every_size_read"]:
            return image
        # Sizes were read from a sample of the headers: a file of another size is resized
        # to the common one rather than breaking a batch.
        same = tf.reduce_all(tf.equal(tf.shape(image)[:2], size))
        return tf.cond(same, lambda: image, lambda: _to_uint8(_resized(image, size)))

    return ImageSource(
        name,
        listing["files"],
        read,
        (*size, channels),
        labels=listing["labels"],
        class_names=listing["class_names"],
        payloads=listing["files"],
        skipped=listing["skipped"],
        image_size=image_size,
        cache_bytes=cache_bytes,
    )


def _npz_source(path, image_size) -> ImageSource:
    with np.load(path, allow_pickle=False) as arrays:
        files = set(arrays.files)
        if {"x_train", "x_test"} <= files:
            keys = ("x_train", "y_train", "x_test", "y_test")
        elif "x" in files:
            keys = ("x", "y", None, None)
        else:
            raise ValueError(
                f"{path!r} holds arrays {sorted(files)}; expected x (and y), or "
                "x_train, y_train, x_test, y_test."
            )
        parts = [arrays[k] if k in files else None for k in keys]
    name = os.path.basename(path)
    source = ImageSource.from_arrays(parts[0], parts[1], f"{name}: x", image_size)
    if parts[2] is not None:
        source.test = ImageSource.from_arrays(parts[2], parts[3], f"{name}: x_test", image_size)
        if source.test._source_shape != source._source_shape:
            raise ValueError(
                f"{name}: x_test images have shape {source.test._source_shape}, x_train "
                f"{source._source_shape}; expected the same."
            )
    return source


def _labels_from_names(values, owner):
    """Integer labels of `values` (names or integers) and the class names, sorted."""
    if all(v is None or v == "" for v in values):
        return None, None
    if any(v is None or v == "" for v in values):
        raise ValueError(f"{owner}: some rows have a label and some do not; label all or none.")
    as_text = [str(v) for v in values]
    try:
        classes = sorted(set(as_text), key=int)
    except ValueError:
        classes = sorted(set(as_text))
    lookup = {name: i for i, name in enumerate(classes)}
    return np.array([lookup[v] for v in as_text], np.int32), classes


def _manifest_rows(path):
    if path.lower().endswith(".csv"):
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or "path" not in reader.fieldnames:
                raise ValueError(
                    f"{path!r}: a CSV manifest needs a header with a 'path' column (and an "
                    f"optional 'label' column); received columns {reader.fieldnames}."
                )
            return list(reader)
    with open(path) as f:
        if path.lower().endswith(".jsonl"):
            rows = [json.loads(line) for line in f if line.strip()]
        else:
            rows = json.load(f)
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "path" in r for r in rows):
        raise ValueError(
            f"{path!r}: a JSON manifest is a list of objects with a 'path' (and an optional "
            "'label'); .jsonl holds one such object per line."
        )
    return rows


def _manifest_source(path, channels, image_size, cache_bytes) -> ImageSource:
    try:
        rows = _manifest_rows(path)
    except (json.JSONDecodeError, csv.Error, UnicodeDecodeError) as error:
        raise ValueError(f"{path!r} is not a readable manifest ({error}).") from None
    if not rows:
        raise ValueError(f"{path!r}: the manifest lists no images.")
    root = os.path.dirname(os.path.abspath(path))
    return from_files(
        [os.path.join(root, str(row["path"])) for row in rows],
        [row.get("label") for row in rows],
        image_size=image_size,
        channels=channels,
        name=path,
        cache_bytes=cache_bytes,
    )


def from_files(
    paths,
    labels=None,
    image_size=None,
    channels: int | None = None,
    name: str = "from_files",
    cache_bytes: int = CACHE_BYTES,
) -> ImageSource:
    """The `ImageSource` of a list of image files, with optional labels (class names or
    integers, one per file; the classes are their sorted values). Missing files and
    files that are not images are skipped and counted (`source.skipped`)."""
    paths = [os.fspath(p) for p in paths]
    labels = [None] * len(paths) if labels is None else list(labels)
    if len(labels) != len(paths):
        raise ValueError(f"{name}: {len(labels)} labels for {len(paths)} files.")
    size = None if image_size is None else _checks.size_pair("image_size", image_size, name)
    positions, skipped, size, every_size_read = loaders.screen_files(
        paths, size, name, "listed", probe_limit=PROBE_LIMIT
    )
    if not positions:
        raise ValueError(f"{name}: none of the {len(paths)} listed files is a readable image.")
    files = [paths[i] for i in positions]
    label_ids, class_names = _labels_from_names([labels[i] for i in positions], name)
    listing = {
        "files": files,
        "labels": label_ids,
        "class_names": class_names,
        "skipped": skipped,
        "size": size,
        "every_size_read": every_size_read,
        "channels": 1 if loaders._gray_files(files) else 3,
    }
    return _file_source(name, listing, channels, image_size, cache_bytes)


def _tfrecord_source(pattern, channels, image_size, cache_bytes) -> ImageSource:
    files = sorted(glob.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no TFRecord file matches {pattern!r}.")
    others = [f for f in files if not f.lower().endswith(TFRECORD_EXTENSIONS)]
    if others:
        raise ValueError(
            f"{pattern!r} matches files that are not TFRecord files ({others[:2]}); expected "
            f"files ending in {', '.join(TFRECORD_EXTENSIONS)}."
        )
    first = next(iter(tf.data.TFRecordDataset(files[:1]).take(1)), None)
    if first is None:
        raise ValueError(f"{files[0]!r} holds no records.")
    example = tf.train.Example.FromString(first.numpy())
    feature = example.features.feature
    image_key = next((k for k in _IMAGE_KEYS if k in feature), None)
    if image_key is None:
        raise ValueError(
            f"{files[0]!r}: records need the encoded image under one of {list(_IMAGE_KEYS)}; "
            f"they hold {sorted(feature)}."
        )
    label_key = next((k for k in _LABEL_KEYS if k in feature), None)
    spec = {image_key: tf.io.FixedLenFeature([], tf.string)}
    if label_key is not None:
        spec[label_key] = tf.io.FixedLenFeature([], tf.int64)
    probe = tf.io.decode_image(feature[image_key].bytes_list.value[0], expand_animations=False)
    channels = channels or (1 if probe.shape[-1] == 1 else 3)

    def records():
        parsed = tf.data.TFRecordDataset(files).map(
            lambda r: tf.io.parse_single_example(r, spec), num_parallel_calls=tf.data.AUTOTUNE
        )
        if label_key is None:
            return parsed.map(lambda e: e[image_key])
        return parsed.map(lambda e: (e[image_key], tf.cast(e[label_key], tf.int32)))

    labels, count = None, 0
    if label_key is not None:  # one pass over the records, reading labels only
        labels = np.concatenate([y for _, y in records().batch(4096).as_numpy_iterator()]).astype(
            np.int32
        )
        count = len(labels)
    else:
        count = int(tf.data.TFRecordDataset(files).reduce(0, lambda n, _: n + 1))
    size = None
    if image_size is None:
        size = tuple(int(d) for d in probe.shape[:2])

    def read(record):
        image = tf.io.decode_image(record, channels=channels, expand_animations=False)
        if size is not None:  # every record must have the first one's size
            image = tf.ensure_shape(image, (*size, channels))
        return image

    return ImageSource(
        pattern,
        np.arange(count),
        read,
        (*(size or probe.shape[:2]), channels),
        labels=labels,
        records=records,
        image_size=image_size,
        cache_bytes=cache_bytes,
    )


def _tfds_source(name, image_size) -> ImageSource:
    import tensorflow_datasets as tfds

    builder = tfds.builder(name)
    builder.download_and_prepare()
    features = builder.info.features
    if "image" not in features:
        raise ValueError(f"tfds:{name} has no 'image' feature; features: {sorted(features)}.")
    has_label = "label" in features
    shape = features["image"].shape

    def split_source(split):
        def records():
            ds = builder.as_dataset(split=split, shuffle_files=False)
            if has_label:
                return ds.map(lambda e: (e["image"], tf.cast(e["label"], tf.int32)))
            return ds.map(lambda e: e["image"])

        count = builder.info.splits[split].num_examples
        labels = None
        if has_label:
            labels = np.concatenate(
                [y for _, y in records().batch(4096).as_numpy_iterator()]
            ).astype(np.int32)
        if None in shape[:2] and image_size is None:
            raise ValueError(
                f"tfds:{name} has images of several sizes; pass `image_size` to resize them."
            )
        return ImageSource(
            f"tfds:{name} ({split})",
            np.arange(count),
            lambda image: image,
            (*(shape[:2] if None not in shape[:2] else (1, 1)), shape[2] or 3),
            labels=labels,
            class_names=getattr(features["label"], "names", None) if has_label else None,
            records=records,
            image_size=image_size,
        )

    source = split_source("train")
    if "test" in builder.info.splits:
        source.test = split_source("test")
    return source


__all__ = ["CACHE_BYTES", "ImageSource", "from_files", "open_source"]
