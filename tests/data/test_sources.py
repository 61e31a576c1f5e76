"""ImageSource: every kind of collection streams the same pixels and labels, in bounded
memory (cached only when it fits), split, sampled and batched the way the CLI uses it."""

import csv
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tfcontrast.data import sources
from tfcontrast.data.sources import ImageSource, open_source

pytestmark = pytest.mark.tf_only(reason="tf.data pipelines")


@pytest.fixture
def images(rng):
    """12 RGB 6x5 uint8 images of 3 classes (4 each)."""
    return rng.integers(0, 256, size=(12, 6, 5, 3), dtype=np.uint8), np.repeat(np.arange(3), 4)


def _write(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return str(path)


def _read_all(source, labels=True):
    xs, ys = [], []
    for batch in source.batches(5, labels=labels).as_numpy_iterator():
        x, y = batch if isinstance(batch, tuple) else (batch, None)
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs), (None if ys[0] is None else np.concatenate(ys))


def test_labelled_and_flat_folders_and_manifests_read_the_same_pixels(tmp_path, images):
    x, y = images
    labelled = [
        _write(tmp_path / "by_class" / f"c{label}" / f"{i:02d}.png", im)
        for i, (im, label) in enumerate(zip(x, y))
    ]
    flat = [_write(tmp_path / "flat" / f"{i:02d}.png", im) for i, im in enumerate(x)]
    (tmp_path / "flat" / "notes.txt").write_text("not an image")
    with open(tmp_path / "list.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label"])
        for i, label in enumerate(y):
            writer.writerow([f"flat/{i:02d}.png", ["cat", "dog", "eel"][label]])
    rows = [{"path": f"flat/{i:02d}.png"} for i in range(12)]
    (tmp_path / "list.json").write_text(json.dumps(rows))
    (tmp_path / "list.jsonl").write_text("\n".join(json.dumps(r) for r in rows))

    source = open_source(str(tmp_path / "by_class"))
    assert source.class_names == ["c0", "c1", "c2"] and source.payloads == labelled
    got_x, got_y = _read_all(source)
    np.testing.assert_allclose(got_x, x / 255.0, atol=1e-6)
    np.testing.assert_array_equal(got_y, y)

    flat_source = open_source(str(tmp_path / "flat"))
    assert flat_source.labels is None and flat_source.payloads == flat
    assert len(flat_source.skipped) == 1 and flat_source.skipped[0].endswith("notes.txt")
    got_x, got_y = _read_all(flat_source)
    assert got_y is None
    np.testing.assert_allclose(got_x, x / 255.0, atol=1e-6)

    manifest = open_source(str(tmp_path / "list.csv"))
    assert manifest.class_names == ["cat", "dog", "eel"]
    got_x, got_y = _read_all(manifest)
    np.testing.assert_allclose(got_x, x / 255.0, atol=1e-6)
    np.testing.assert_array_equal(got_y, y)
    for name in ("list.json", "list.jsonl"):
        unlabelled = open_source(str(tmp_path / name))
        assert unlabelled.labels is None and len(unlabelled) == 12


def test_tfrecords_with_and_without_labels(tmp_path, images):
    x, y = images
    for name, with_label in (
        ("labelled.tfrecord", True),
        ("plain-a.tfrecord", False),
        ("plain-b.tfrecords", False),
    ):
        with tf.io.TFRecordWriter(str(tmp_path / name)) as writer:
            for image, label in zip(x, y):
                feature = {
                    "image/encoded": tf.train.Feature(
                        bytes_list=tf.train.BytesList(value=[tf.io.encode_png(image).numpy()])
                    )
                }
                if with_label:
                    feature["label"] = tf.train.Feature(
                        int64_list=tf.train.Int64List(value=[int(label)])
                    )
                writer.write(
                    tf.train.Example(
                        features=tf.train.Features(feature=feature)
                    ).SerializeToString()
                )
    source = open_source(str(tmp_path / "labelled.tfrecord"))
    assert len(source) == 12 and source.image_shape == (6, 5, 3)
    np.testing.assert_array_equal(source.labels, y)
    train, test = source.split(test_fraction=0.25, seed=1)
    got_x, got_y = _read_all(test)  # the records at the test positions, in order
    positions = np.array([source.payloads.index(p) for p in test.payloads])
    np.testing.assert_allclose(got_x, x[positions] / 255.0, atol=1e-6)
    np.testing.assert_array_equal(got_y, y[positions])
    assert sorted(train.payloads + test.payloads) == list(range(12))
    plain = open_source(str(tmp_path / "plain-*"))  # a glob: both files, 24 records
    assert len(plain) == 24 and plain.labels is None
    with pytest.raises(ValueError, match="P x K batches draw examples at random"):
        source.class_balanced(2, 2)


def test_npz_arrays_resize_and_keep_their_test_split(tmp_path, images):
    x, y = images
    np.savez(tmp_path / "keras.npz", x_train=x[:8], y_train=y[:8], x_test=x[8:], y_test=y[8:])
    source = open_source(str(tmp_path / "keras.npz"), image_size=3)
    train, test = source.split(0.5)
    assert (len(train), len(test)) == (8, 4) and test.image_shape == (3, 3, 3)
    got_x, got_y = _read_all(test)
    expected = tf.image.resize(x[8:] / 255.0, (3, 3), antialias=True).numpy()
    np.testing.assert_allclose(got_x, np.clip(expected, 0, 1), atol=1e-5)
    np.testing.assert_array_equal(got_y, y[8:])
    digits = open_source("digits")
    assert len(digits) == 1797 and digits.image_shape == (8, 8, 1)


def test_shuffled_batches_cover_every_example_once_per_epoch_cached_or_not(tmp_path, images):
    x, y = images
    for i, im in enumerate(x):
        _write(tmp_path / "flat" / f"{i:02d}.png", im)
    image_bytes = int(np.prod(x.shape[1:]))
    for cache_bytes, cached in ((12 * image_bytes, True), (12 * image_bytes - 1, False)):
        source = open_source(str(tmp_path / "flat"), cache_bytes=cache_bytes)
        assert source._cached() is cached
        ds = source.batches(5, seed=3)
        epochs = [np.concatenate(list(ds.as_numpy_iterator())) for _ in range(2)]
        for epoch in epochs:  # every image once, whatever the order
            assert epoch.shape == x.shape
            key = lambda a: sorted(map(bytes, np.round(a * 255).astype(np.uint8)))  # noqa: E731
            assert key(epoch) == key(x / 255.0)
        assert not np.array_equal(epochs[0], epochs[1])  # reshuffled each epoch


def test_batches_without_a_seed_cache_nothing(tmp_path, images):
    # A pass without a seed (embedding) is read once: a cache would hold every decoded
    # image (up to `cache_bytes`) for the dataset's life for nothing. A second pass over
    # the same dataset reads the files again, so it sees them rewritten.
    x, _ = images
    paths = [_write(tmp_path / "flat" / f"{i:02d}.png", im) for i, im in enumerate(x)]
    source = open_source(str(tmp_path / "flat"))
    assert source._cached()  # small enough to cache when training
    ds = source.batches(5)
    first = np.concatenate(list(ds.as_numpy_iterator()))
    np.testing.assert_allclose(first, x / 255.0, atol=1e-6)
    for path, im in zip(paths, x):
        Image.fromarray(255 - im).save(path)
    second = np.concatenate(list(ds.as_numpy_iterator()))
    np.testing.assert_allclose(second, (255 - x) / 255.0, atol=1e-6)


def test_class_balanced_batches_decode_the_drawn_files(tmp_path, images):
    x, y = images
    for i, (im, label) in enumerate(zip(x, y)):
        _write(tmp_path / "by_class" / f"c{label}" / f"{i:02d}.png", im)
    source = open_source(str(tmp_path / "by_class"))
    images_b, labels_b = next(iter(source.class_balanced(2, 3, seed=0)))
    labels_b = labels_b.numpy()
    assert images_b.shape == (6, 6, 5, 3)
    assert (
        len(set(labels_b[:3])) == 1 and len(set(labels_b[3:])) == 1 and labels_b[0] != labels_b[3]
    )
    for image, label in zip(images_b.numpy(), labels_b):  # each drawn image is one of its class
        matches = np.all(np.abs(x / 255.0 - image) < 1e-6, axis=(1, 2, 3))
        assert matches.sum() == 1 and y[np.argmax(matches)] == label
    with pytest.raises(ValueError, match="larger than the smallest class"):
        source.class_balanced(2, 5)


def test_sample_and_arrays(images):
    x, y = images
    source = ImageSource.from_arrays(x, y)
    sample = source.sample(5, seed=0)
    got_x, got_y = sample.arrays()
    rows = np.array(sample.payloads)
    assert len(set(rows)) == 5
    np.testing.assert_allclose(got_x, x[rows] / 255.0, atol=1e-6)
    np.testing.assert_array_equal(got_y, y[rows])
    assert source.sample(50) is source


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "nowhere", "no such file or folder"),
        (lambda p: (p / "a.txt").write_text("x") and p / "a.txt", "expected 'digits'"),
        (
            lambda p: (p / "m.csv").write_text("file,label\na.png,1\n") and p / "m.csv",
            "needs a header with a 'path' column",
        ),
        (
            lambda p: (p / "m.json").write_text('{"path": 1}') and p / "m.json",
            "a JSON manifest is a list of objects",
        ),
        (
            lambda p: (p / "m.csv").write_text("path\nmissing.png\n") and p / "m.csv",
            "none of the 1 listed files",
        ),
        (lambda p: p / "none-*.tfrecord", "no TFRecord file matches"),
    ],
)
def test_bad_sources_say_what_was_expected(tmp_path, make, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        open_source(str(make(tmp_path)))


def test_mixed_class_folders_and_loose_images_are_refused(tmp_path, images):
    x, _ = images
    _write(tmp_path / "c0" / "a.png", x[0])
    _write(tmp_path / "b.png", x[1])
    with pytest.raises(ValueError, match="both class subfolders and image files"):
        open_source(str(tmp_path))


def test_a_file_that_cannot_be_decoded_is_skipped_in_training_and_an_error_when_embedding(
    tmp_path, images
):
    x, _ = images
    paths = [_write(tmp_path / "flat" / f"{i:02d}.png", im) for i, im in enumerate(x)]
    with open(paths[4], "r+b") as f:  # a download cut short: the header whole, pixels gone
        f.truncate(os.path.getsize(paths[4]) - 24)
    source = open_source(str(tmp_path / "flat"), cache_bytes=0)
    assert len(source) == 12  # the signature passes the listing
    seen = np.concatenate(list(source.batches(5, seed=0).as_numpy_iterator()))
    assert len(seen) == 11  # training goes on without it
    ordered = source.batches(5)
    assert ordered.cardinality().numpy() == 3  # known: Keras' predict does not guess
    with pytest.raises(tf.errors.InvalidArgumentError):
        list(ordered.as_numpy_iterator())  # embeddings would no longer match the payloads


def test_large_collections_read_a_sample_of_headers_and_resize_the_odd_file(
    tmp_path, images, monkeypatch
):
    x, _ = images
    paths = [_write(tmp_path / "flat" / f"{i:02d}.png", im) for i, im in enumerate(x)]
    odd = np.zeros((9, 7, 3), np.uint8) + 200
    _write(tmp_path / "flat" / "05.png", odd)  # another size, among the unread headers
    with pytest.raises(ValueError, match="2 different sizes.*image_size"):
        open_source(str(tmp_path / "flat"))  # every header read: the odd size is seen
    monkeypatch.setattr(sources, "PROBE_LIMIT", 3)  # headers 0, 5 (the odd one) and 11
    with pytest.raises(ValueError, match="2 different sizes"):
        open_source(str(tmp_path / "flat"))
    monkeypatch.setattr(sources, "PROBE_LIMIT", 2)  # headers 0 and 11 only
    source = open_source(str(tmp_path / "flat"))
    assert source.image_shape == (6, 5, 3) and source.payloads == paths
    got, _ = _read_all(source, labels=False)
    assert got.shape == (12, 6, 5, 3)
    np.testing.assert_allclose(got[5], 200 / 255.0, atol=1e-6)  # resized, not dropped
    np.testing.assert_allclose(got[4], x[4] / 255.0, atol=1e-6)  # the others untouched
