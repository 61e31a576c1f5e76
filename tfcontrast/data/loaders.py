"""Loaders: tfds names, image folders, NumPy arrays and `.npz` files -> `tf.data`.

Every loader returns an *unbatched* `tf.data.Dataset` whose elements are
`(image, label)` (or `image` alone when there are no labels), with images float32 in
[0, 1] of shape `(H, W, C)` and labels int32. Feed it to `tfcontrast.data.multiview` or
`tfcontrast.data.class_balanced`, or batch it yourself.

This module is TensorFlow only (`tf.data`, `tf.io`); it is imported lazily by
`tfcontrast.data`.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import tensorflow as tf

from tfcontrast import _checks

logger = logging.getLogger("tfcontrast.data")

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".bmp")
# File signatures: a file with an image extension but another signature is skipped.
_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")


def _size_pair(image_size, owner):
    if image_size is None:
        return None
    return _checks.size_pair("image_size", image_size, owner)


def image_batch(x, owner: str = "from_arrays", name: str = "x") -> np.ndarray:
    """NumPy images as `(N, H, W, C)` with N > 0 (a 3-D array gains a channel axis)."""
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise ValueError(
            f"{owner}: `{name}` must have shape (N, H, W) or (N, H, W, C); received shape {x.shape}."
        )
    if x.shape[0] == 0:
        raise ValueError(f"{owner}: `{name}` is empty.")
    return x


def images_to_float(x, owner: str = "from_arrays", name: str = "x") -> np.ndarray:
    """NumPy images -> float32 `(N, H, W, C)` in [0, 1] (integers are divided by 255)."""
    x = image_batch(x, owner, name)
    if np.issubdtype(x.dtype, np.integer):
        return (x.astype(np.float32) / 255.0).astype(np.float32)
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{owner}: `{name}` must hold numbers; received dtype {x.dtype}.")
    x = x.astype(np.float32)
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0 + 1e-6:
        raise ValueError(
            f"{owner}: float images in `{name}` must be in [0, 1]; received values in "
            f"[{lo:g}, {hi:g}]. Divide by the maximum (e.g. x / {hi:g}) or pass uint8 images."
        )
    return x


def from_arrays(x, y=None) -> tf.data.Dataset:
    """Dataset of `(image, label)` (or `image`) from NumPy arrays.

    Args:
        x: images `(N, H, W)` or `(N, H, W, C)`: integers (divided by 255) or floats in
            [0, 1].
        y: optional integer labels `(N,)`.

    Returns:
        An unbatched `tf.data.Dataset`.

    Example:

    ```python
    digits = sklearn.datasets.load_digits()
    ds = tfcontrast.data.from_arrays(digits.images / 16.0, digits.target)
    ```
    """
    x = images_to_float(x)
    if y is None:
        return tf.data.Dataset.from_tensor_slices(x)
    y = _checks.integer_labels(y, "from_arrays", n=x.shape[0])
    return tf.data.Dataset.from_tensor_slices((x, y))


def from_npz(path: str, x_key: str = "x", y_key: str = "y") -> tf.data.Dataset:
    """Dataset from an `.npz` file holding images under `x_key` and optional labels `y_key`.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: the file has no `x_key` array, or the arrays are malformed.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"from_npz: no such file: {path!r}.")
    with np.load(path, allow_pickle=False) as data:
        if x_key not in data:
            raise ValueError(
                f"from_npz: {path!r} has no array {x_key!r} (`x_key`); it holds {sorted(data.files)}."
            )
        x = data[x_key]
        y = data[y_key] if y_key in data else None
    return from_arrays(x, y)


def from_tfds(
    name: str,
    split: str = "train",
    data_dir: str | None = None,
    image_key: str = "image",
    label_key: str | None = "label",
    download: bool = True,
    image_size=None,
    **load_kwargs,
) -> tf.data.Dataset:
    """Dataset from `tensorflow-datasets`, as `(image, label)` float/int32 pairs.

    `data_dir` is passed to `tfds.load` unchanged, so a dataset already prepared there is
    read without downloading (None uses tfds' default, `~/tensorflow_datasets` or
    `$TFDS_DATA_DIR`).

    Args:
        name: tfds name, e.g. `"cifar10"`.
        split: split expression, e.g. `"train[:10%]"`.
        data_dir: directory of prepared tfds data.
        image_key: feature holding the image.
        label_key: feature holding the label; None (or absent from the dataset) gives
            images only.
        download: let tfds download and prepare the data when missing.
        image_size: optional `(height, width)` to resize to (needed for datasets whose
            images differ in size before batching).
        **load_kwargs: passed on to `tfds.load`.

    Example:

    ```python
    ds = tfcontrast.data.from_tfds("cifar10", split="train", data_dir="/data/tfds")
    ```
    """
    import tensorflow_datasets as tfds

    ds = tfds.load(name, split=split, data_dir=data_dir, download=download, **load_kwargs)
    spec = ds.element_spec
    if not isinstance(spec, dict) or image_key not in spec:
        keys = sorted(spec) if isinstance(spec, dict) else spec
        raise ValueError(
            f"from_tfds: {name!r} has no feature {image_key!r} (`image_key`); features: {keys}."
        )
    has_label = label_key is not None and label_key in spec
    size = _size_pair(image_size, "from_tfds")

    def convert(example):
        image = _to_unit_float(example[image_key])
        if size is not None:
            image = tf.image.resize(image, size, antialias=True)
        if has_label:
            return image, tf.cast(example[label_key], tf.int32)
        return image

    return ds.map(convert, num_parallel_calls=tf.data.AUTOTUNE)


def _to_unit_float(image):
    if image.dtype.is_integer:
        return tf.cast(image, tf.float32) / 255.0
    return tf.cast(image, tf.float32)


def _is_image_file(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return False
    return any(head.startswith(m) for m in _MAGIC)


def _probe_size(path: str):
    """(height, width) read from the image header, or None if unreadable."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            w, h = im.size
        return (h, w)
    except ImportError:
        pass
    except Exception:  # noqa: BLE001 - any decoding problem means unreadable
        return None
    try:
        shape = tf.io.decode_image(tf.io.read_file(path), expand_animations=False).shape
        return (int(shape[0]), int(shape[1]))
    except Exception:  # noqa: BLE001
        return None


_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")


def _gray_files(files, limit: int = 64) -> bool:
    """Whether the files look grayscale: PIL modes of up to `limit` of them, spread out."""
    try:
        from PIL import Image
    except ImportError:
        return False
    step = max(1, len(files) // limit)
    for fpath in files[::step][:limit]:
        try:
            with Image.open(fpath) as im:
                if im.mode not in _GRAY_MODES:
                    return False
        except Exception:  # noqa: BLE001 - an unreadable file is skipped later
            continue
    return True


def screen_files(paths, image_size, owner: str, where: str = "", extensions=None, probe_limit=None):
    """Which of `paths` are readable images, and their common size.

    A file without an image signature (or without one of `extensions`, when given; or,
    when its header is read, whose header cannot be parsed) is left out, with one warning
    on the `tfcontrast.data` logger for all of them. With `image_size` None the headers
    are read (all of them, or `probe_limit` files spread over the list: reading 50,000
    headers takes minutes), and images of several sizes raise a ValueError naming
    `image_size`.

    Returns:
        `(kept, skipped, size, every_size_read)`: the positions of the readable files,
        the paths left out, `image_size` or the files' `(height, width)` (None when none
        is readable), and whether every kept file's size was read (False when
        `probe_limit` left some unread: they may have another size).
    """
    probed_positions = range(len(paths))
    if image_size is None and probe_limit is not None and len(paths) > probe_limit:
        probed_positions = np.linspace(0, len(paths) - 1, probe_limit).astype(int)
    probed_positions = set(probed_positions) if image_size is None else set()
    kept, skipped, sizes = [], [], {}
    for position, fpath in enumerate(paths):
        ok = (extensions is None or fpath.lower().endswith(extensions)) and _is_image_file(fpath)
        if ok and position in probed_positions:
            probed = _probe_size(fpath)
            ok = probed is not None
            if ok:
                sizes.setdefault(probed, fpath)
        if ok:
            kept.append(position)
        else:
            skipped.append(fpath)
    if skipped:
        logger.warning(
            "%s: skipped %d file(s)%s that are missing or not readable images, e.g. %s",
            owner,
            len(skipped),
            f" {where}" if where else "",
            skipped[:3],
        )
    if image_size is None and len(sizes) > 1:
        examples = ", ".join(f"{p!r} is {h}x{w}" for (h, w), p in list(sizes.items())[:2])
        raise ValueError(
            f"{owner}: the images{f' {where}' if where else ''} have {len(sizes)} different "
            f"sizes ({examples}); pass `image_size=(height, width)` to resize them."
        )
    size = image_size if image_size is not None else next(iter(sizes), None)
    every_size_read = image_size is not None or len(probed_positions) == len(paths)
    return kept, skipped, size, every_size_read


def list_folder(path: str, image_size=None, owner: str = "from_folder", probe_limit=None) -> dict:
    """The readable image files of a folder, and their labels when it has class subfolders.

    A folder with subfolders is labelled: one class per subfolder (sorted names, labels
    0, 1, ...); a folder of image files alone is unlabelled. Files that are not images
    (another extension, or an image extension without an image signature) are skipped
    and counted (a warning on the `tfcontrast.data` logger). With `image_size` None the
    headers are read (every one, or `probe_limit` of them spread over the folder): images
    of several sizes raise a ValueError naming `image_size`.

    Returns:
        A dict: `files` (paths), `labels` (int32 array, or None), `class_names` (or
        None), `skipped` (paths), `size` (the images' `(height, width)`, or
        `image_size`), `every_size_read` (see `screen_files`) and `channels` (1 when
        the files are grayscale, else 3).
    """
    path = os.fspath(path)
    size = _size_pair(image_size, owner)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{owner}: no such folder: {path!r}.")
    entries = sorted(e for e in os.listdir(path) if not e.startswith("."))
    class_names = [e for e in entries if os.path.isdir(os.path.join(path, e))]
    loose = [e for e in entries if os.path.isfile(os.path.join(path, e))]
    if class_names and any(e.lower().endswith(IMAGE_EXTENSIONS) for e in loose):
        raise ValueError(
            f"{owner}: {path!r} holds both class subfolders and image files; expected one "
            "subfolder per class (labelled) or image files alone (unlabelled)."
        )
    groups = [(i, os.path.join(path, n)) for i, n in enumerate(class_names)] or [(None, path)]
    candidates, candidate_labels = [], []
    for label, folder in groups:
        for fname in sorted(os.listdir(folder)):
            fpath = os.path.join(folder, fname)
            if os.path.isfile(fpath) and not fname.startswith("."):
                candidates.append(fpath)
                candidate_labels.append(label)
    kept, skipped, size, every_size_read = screen_files(
        candidates, size, owner, f"in {path!r}", IMAGE_EXTENSIONS, probe_limit
    )
    files = [candidates[i] for i in kept]
    labels = [candidate_labels[i] for i in kept]
    present = set(labels)
    for label, folder in groups:
        if label not in present:
            what = "class folder" if label is not None else "folder"
            raise ValueError(
                f"{owner}: {what} {folder!r} holds no readable images "
                f"({', '.join(IMAGE_EXTENSIONS)})."
            )
    return {
        "files": files,
        "labels": np.asarray(labels, np.int32) if class_names else None,
        "class_names": class_names or None,
        "skipped": skipped,
        "size": size,
        "every_size_read": every_size_read,
        "channels": 1 if _gray_files(files) else 3,
    }


def decode_file(fpath, channels: int, size=None):
    """Reads and decodes one image file (tensor path) to float32 `(H, W, channels)` in
    [0, 1], resized (antialiased) to `size` when given."""
    image = tf.io.decode_image(tf.io.read_file(fpath), channels=channels, expand_animations=False)
    image = tf.cast(image, tf.float32) / 255.0
    if size is not None:
        image = tf.clip_by_value(tf.image.resize(image, size, antialias=True), 0.0, 1.0)
    return image


def from_folder(
    path: str,
    image_size=None,
    channels: int | None = None,
) -> tf.data.Dataset:
    """Dataset from an image folder: one subfolder per class, or image files alone.

    ```
    path/                       path/
      cat/ a.png b.jpg ...        a.png b.jpg c.jpeg ...   (no labels)
      dog/ c.jpeg ...
    ```

    Classes are the subfolder names in sorted order (labels 0, 1, ...); the returned
    dataset carries them as `dataset.class_names`, like Keras'
    `image_dataset_from_directory`. A folder of images without subfolders gives images
    alone (`class_names` None), for self-supervised training. Images are PNG, JPEG, GIF
    (first frame) or BMP, decoded to `channels` channels and float32 in [0, 1]. By
    default grayscale files stay 1-channel: `channels=None` reads the colour mode of up
    to 64 files and decodes to 1 channel when all of them are grayscale, else to 3.

    Files that are not images (another extension, or an image extension without an image
    signature, e.g. a truncated download) are **skipped**, and their count is logged as a
    warning on the `tfcontrast.data` logger with a few example paths. When `image_size`
    is None, every header is read to check the images share one size (mixed sizes raise
    a ValueError naming `image_size`), and headers that cannot be parsed are skipped and
    counted the same way. A file that passes these checks but fails to decode later is
    dropped by `tf.data` (`ignore_errors`, logged by TensorFlow).

    Args:
        path: root folder.
        image_size: `(height, width)` (or int) to resize every image to; required when
            the images differ in size.
        channels: 1 (grayscale), 3 (RGB) or None (1 when the files are grayscale).

    Raises:
        FileNotFoundError: `path` does not exist or is not a folder.
        ValueError: `path` holds no images, a class folder has no images, class folders
            and loose images are mixed, or the images differ in size and `image_size` is
            None.

    Example:

    ```python
    ds = tfcontrast.data.from_folder("flowers/", image_size=(96, 96))
    print(ds.class_names)
    ```
    """
    if channels not in (None, 1, 3):
        raise ValueError(
            f"from_folder: `channels` must be 1, 3 or None; received channels={channels!r}."
        )
    listing = list_folder(path, image_size)
    channels = channels or listing["channels"]
    size = _size_pair(image_size, "from_folder")
    shape = (*listing["size"], channels)

    def load(fpath):
        return tf.ensure_shape(decode_file(fpath, channels, size), shape)

    files = tf.constant(listing["files"])
    if listing["labels"] is None:
        ds = tf.data.Dataset.from_tensor_slices(files).map(
            load, num_parallel_calls=tf.data.AUTOTUNE
        )
    else:
        ds = tf.data.Dataset.from_tensor_slices((files, tf.constant(listing["labels"])))
        ds = ds.map(lambda f, y: (load(f), y), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.ignore_errors(log_warning=True)
    ds.class_names = listing["class_names"]
    ds.skipped_files = listing["skipped"]
    return ds


__all__ = ["from_arrays", "from_npz", "from_tfds", "from_folder"]
